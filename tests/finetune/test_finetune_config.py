"""The fine-tuning command line's config: gin bindings through the gin edge that pre-training
shares (electra_jax.runtime.gin), the nested MeshConfig and LogConfig (and the deprecated flat
logging names), flags winning over bindings, and clear errors."""

import dataclasses

import pytest

from electra_jax.finetune.config import (FINETUNE_LOG, LEARNING_RATE, FinetuneConfig,
                                         resolve_config, resolve_hparams, size_of)
from electra_jax.finetune.tasks import get_task
from electra_jax.model import config as config_module
from electra_jax.pretrain import config as pretrain_config
from electra_jax.runtime.mesh import MeshConfig
from electra_jax.runtime.metrics import LogConfig

FLAGS = dict(task="sst2", init="random", data_dir="/data/glue")


def test_mesh_binds_through_its_own_class():
  cfg = resolve_config((), ["MeshConfig.fsdp = 2", "MeshConfig.tensor = 1"], **FLAGS)
  assert cfg.mesh == MeshConfig(data=-1, fsdp=2, tensor=1)
  assert resolve_config((), [], **FLAGS).mesh == MeshConfig()


def test_log_binds_through_the_shared_log_config():
  """`LogConfig.FIELD = VALUE` sets fine-tuning's `log`, the LogConfig pre-training nests too; a
  field left unbound keeps fine-tuning's default (log_every 10), not pre-training's (100)."""
  assert pretrain_config.LogConfig is LogConfig
  assert LogConfig().log_every == 100 and FINETUNE_LOG == LogConfig(log_every=10)
  assert resolve_config((), [], **FLAGS).log == FINETUNE_LOG
  cfg = resolve_config((), ["LogConfig.progress_bar = False", "LogConfig.tensorboard = False"],
                       **FLAGS)
  assert cfg.log == LogConfig(log_every=10, progress_bar=False, tensorboard=False)
  assert resolve_config((), ["LogConfig.log_every = 100"], **FLAGS).log.log_every == 100


@pytest.mark.parametrize("old, new, value", [
    ("progress", "progress_bar", False), ("log_every", "log_every", 3),
    ("tensorboard", "tensorboard", False), ("curves", "curves", False),
    ("wandb_project", "wandb_project", "p"), ("wandb_mode", "wandb_mode", "offline")])
def test_deprecated_flat_log_fields_warn_and_still_work(old, new, value):
  """For one release the flat names of before (gin bindings, keywords, replace and attribute
  reads) set and read `log`, each with a DeprecationWarning naming the new spelling."""
  warning = (rf"FinetuneConfig\.{old} is deprecated and goes in the next release; write "
             rf"LogConfig\.{new} \(gin: `LogConfig\.{new} = \.\.\.`")
  with pytest.warns(DeprecationWarning, match=warning):
    cfg = resolve_config((), [f"FinetuneConfig.{old} = {value!r}"], **FLAGS)
  assert cfg.log == dataclasses.replace(FINETUNE_LOG, **{new: value})
  with pytest.warns(DeprecationWarning, match=warning):
    assert FinetuneConfig(**FLAGS, **{old: value}).log == cfg.log
  with pytest.warns(DeprecationWarning, match=warning):
    assert FinetuneConfig(**FLAGS).replace(**{old: value}).log == cfg.log
  with pytest.warns(DeprecationWarning, match=warning):
    assert getattr(cfg, old) == value


def test_a_deprecated_flat_binding_applies_over_the_log_config_bindings():
  with pytest.warns(DeprecationWarning, match="FinetuneConfig.progress is deprecated"):
    cfg = resolve_config((), ["LogConfig.progress_bar = True", "LogConfig.curves = False",
                              "FinetuneConfig.progress = False"], **FLAGS)
  assert cfg.log == LogConfig(log_every=10, progress_bar=False, curves=False)


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
    ("LogConfig.wandb_mode = 'sync'",
     "LogConfig.wandb_mode='sync'; expected one of ('online', 'offline')"),
    ("log_every = 5", "did you mean 'LogConfig.log_every = 5'?"),
    ("FinetuneConfig.log = 5", "nested configs are bound through their own class"),
    ("LogConfig.profile_steps = (1, 2)",
     "LogConfig.profile_steps=(1, 2): fine-tuning writes no profiler trace"),
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
