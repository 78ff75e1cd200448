"""The fine-tuning command line's config: gin bindings through the gin edge that pre-training
shares (electra_jax.runtime.gin), the nested MeshConfig, flags winning over bindings, and clear
errors."""

import pytest

from electra_jax.finetune.config import (LEARNING_RATE, FinetuneConfig, resolve_config,
                                         resolve_hparams, size_of)
from electra_jax.finetune.tasks import get_task
from electra_jax.model import config as config_module
from electra_jax.runtime.mesh import MeshConfig

FLAGS = dict(task="sst2", init="random", data_dir="/data/glue")


def test_mesh_binds_through_its_own_class():
  cfg = resolve_config((), ["MeshConfig.fsdp = 2", "MeshConfig.tensor = 1"], **FLAGS)
  assert cfg.mesh == MeshConfig(data=-1, fsdp=2, tensor=1)
  assert resolve_config((), [], **FLAGS).mesh == MeshConfig()


def test_flags_win_over_bindings_and_files(tmp_path):
  gin_file = tmp_path / "ft.gin"
  gin_file.write_text("FinetuneConfig.learning_rate = 1e-3\nFinetuneConfig.seeds = [1, 2]\n")
  cfg = resolve_config([str(gin_file)], ["FinetuneConfig.batch_size = 8"], learning_rate=5e-4,
                       **FLAGS)
  assert (cfg.learning_rate, cfg.seeds, cfg.batch_size) == (5e-4, (1, 2), 8)
  assert isinstance(cfg, FinetuneConfig)


@pytest.mark.parametrize("binding, message", [
    ("FinetuneConfig.mesh = 2", "nested configs are bound through their own class"),
    ("fsdp = 2", "did you mean 'MeshConfig.fsdp = 2'?"),
    ("MeshConfig.fdsp = 2", "Did you mean fsdp"),
    ("FinetuneConfig.head = hf", "a string needs quotes"),
    ("MeshConfig.fsdp = '2'", "MeshConfig.fsdp = '2': expected int; without the quotes"),
    ("FinetuneConfig.wandb_mode = 'sync'",
     "FinetuneConfig.wandb_mode='sync'; expected one of ('online', 'offline')"),
])
def test_bad_bindings_are_one_clear_error(binding, message):
  with pytest.raises(ValueError, match=None) as err:
    resolve_config((), [binding], **FLAGS)
  assert message in str(err.value)


def test_missing_gin_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="gin file .*nope.gin does not exist"):
    resolve_config([str(tmp_path / "nope.gin")], [], **FLAGS)


def test_size_of_a_loaded_model_names_tiny():
  """A 2-layer hidden-32 checkpoint is reported as tiny (it used to print size='small'), with
  small's defaults; paper sizes keep their names."""
  tiny = config_module.PRESETS["tiny"].model
  hp = resolve_hparams(FinetuneConfig(task="sst2", init="random", data_dir="d"),
                       get_task("sst2"), tiny)
  assert hp.size == "tiny" and hp.learning_rate == LEARNING_RATE["small"]
  assert [size_of(config_module.PRESETS[s].model) for s in ("small", "base", "large")] == [
      "small", "base", "large"]


def test_misspelled_init_says_no_such_path_first(tmp_path, capsys):
  """--init naming no path fails on that (it used to ask for --tokenizer first)."""
  from electra_jax.finetune import train as ft
  missing = tmp_path / "runs" / "pretrian"
  assert ft.main(["--task=sst2", f"--init={missing}", f"--data_dir={tmp_path}",
                  f"--workdir={tmp_path / 'w'}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: --init {missing}: no such path (expected a Hugging Face directory or "
                 "Hub model id ORG/NAME, an official TF checkpoint, an electra_jax pre-training "
                 "checkpoint, or 'random')"]
