"""Pre-training configuration: gin experiments, round trips, and the errors of a bad config
(fine-tuning bindings go through the same checks)."""

import dataclasses
import json

import pytest

from electra_jax.model import config as model_presets
from electra_jax.pretrain.config import (TrainConfig, list_experiments, load_config_json,
                                         resolve_config, save_config_json, to_gin)
from train_testlib import tiny_bindings, train_subprocess


def test_every_experiment_resolves_and_paper_sizes_match_table_6():
  names = list_experiments()
  for required in ("tiny", "small", "base", "large", "small_plus_plus", "ablations/mlm",
                   "ablations/electra_15", "ablations/replace_mlm", "ablations/all_tokens_mlm",
                   "ablations/untied_embeddings", "ablations/gdes",
                   "ablations/uniform_generator", "ablations/generator_size_1_2"):
    assert required in names
  configs = {n: resolve_config(n) for n in names}
  for name, shape, frac, mask, lr, batch, steps in (  # paper Table 6
      ("small", (12, 256, 1024, 4, 128), 0.25, 0.15, 5e-4, 128, 1_000_000),
      ("base", (12, 768, 3072, 12, 768), 1 / 3, 0.15, 2e-4, 256, 766_000),
      ("large", (24, 1024, 4096, 16, 1024), 0.25, 0.25, 2e-4, 2048, 400_000)):
    c = configs[name]
    assert c.model.replace(dtype="float32") == model_presets.PRESETS[name].model.replace(
        vocab_size=30522)
    assert (c.model.num_hidden_layers, c.model.hidden_size, c.model.intermediate_size,
            c.model.num_attention_heads, c.model.embedding_size) == shape
    assert c.generator_hidden_fraction == pytest.approx(frac)
    assert (c.objective.mask_prob, c.optimizer.learning_rate) == (mask, lr)
    assert (c.data.global_batch_size, c.optimizer.total_steps, c.data.seq_len) == (batch, steps, 128)
    assert c.optimizer.warmup_steps == 10000 and c.objective.disc_weight == 50.0
  assert configs["small"].generator.hidden_size == 64
  assert configs["base"].generator.hidden_size == 256
  assert configs["large"].generator.hidden_size == 256
  spp = configs["small_plus_plus"]
  assert spp.generator == dataclasses.replace(spp.model)  # full-size generator
  assert spp.data.seq_len == 512
  assert configs["ablations/mlm"].objective.kind == "mlm"
  assert configs["ablations/mlm"].model == configs["base"].model  # ablations include base.gin
  assert configs["ablations/uniform_generator"].objective.uniform_generator
  assert configs["ablations/gdes"].embedding_sharing == "gdes"
  assert configs["ablations/generator_size_1_2"].generator.hidden_size == 384


def test_bindings_override_experiment_and_later_bindings_win():
  c = resolve_config("tiny", gin_bindings=["ModelConfig.hidden_size = 32",
                                          "ModelConfig.num_attention_heads = 1",
                                          "DataConfig.seq_len = 64",
                                          "DataConfig.seq_len = 32"])
  assert (c.model.hidden_size, c.model.num_attention_heads, c.data.seq_len) == (32, 1, 32)
  assert c.model.num_hidden_layers == 2  # from tiny.gin


def test_gin_and_json_round_trips_rebuild_the_same_config(tmp_path):
  c = resolve_config("small_plus_plus", gin_bindings=['TrainConfig.init_from = "/x/y"',
                                                      "LogConfig.profile_steps = (3, 5)"])
  gin_file = tmp_path / "resolved.gin"
  gin_file.write_text(to_gin(c))
  assert resolve_config(None, [str(gin_file)]) == c
  save_config_json(c, tmp_path / "config.json")
  stored = json.loads((tmp_path / "config.json").read_text())
  assert stored["generator"]["hidden_size"] == 256 and stored["model"]["hidden_size"] == 256
  assert stored["embedding_sharing"] == "tied"
  assert load_config_json(tmp_path / "config.json") == c


def test_unknown_experiment_names_close_matches():
  with pytest.raises(ValueError, match=r"unknown experiment 'smal'\. Did you mean small"):
    resolve_config("smal")


def test_unknown_field_names_close_matches():
  with pytest.raises(ValueError, match=r"unknown gin binding ModelConfig\.hiden_size\. "
                                       r"Did you mean hidden_size"):
    resolve_config("tiny", gin_bindings=["ModelConfig.hiden_size = 64"])
  with pytest.raises(ValueError, match=r"unknown gin binding OptimizerConfig\.learning_rte\. "
                                       r"Did you mean learning_rate"):
    resolve_config("tiny", gin_bindings=["OptimizerConfig.learning_rte = 1e-3"])


def test_unknown_target_names_close_matches():
  with pytest.raises(ValueError, match=r"unknown gin binding target 'ModelConfg'\. "
                                       r"Did you mean ModelConfig"):
    resolve_config("tiny", gin_bindings=["ModelConfg.hidden_size = 64"])


def test_nested_config_bound_on_train_config_says_how():
  with pytest.raises(ValueError, match=r"nested configs are bound through their own class"):
    resolve_config("tiny", gin_bindings=["TrainConfig.model = 3"])


def test_invalid_values_name_the_field():
  with pytest.raises(ValueError, match=r"TrainConfig\.embedding_sharing='shared'"):
    resolve_config("tiny", gin_bindings=['TrainConfig.embedding_sharing = "shared"'])
  with pytest.raises(ValueError, match=r"DataConfig\.seq_len=1024 exceeds "
                                       r"ModelConfig\.max_position_embeddings=128"):
    resolve_config("tiny", gin_bindings=["DataConfig.seq_len = 1024"])
  with pytest.raises(ValueError, match=r"LogConfig\.wandb_mode='sync'; expected one of "
                                       r"\('online', 'offline'\)"):
    resolve_config("tiny", gin_bindings=['LogConfig.wandb_mode = "sync"'])
  with pytest.raises(FileNotFoundError, match="nope.gin"):
    resolve_config("tiny", gin_files=["/nonexistent/nope.gin"])


def test_gin_state_does_not_leak_between_resolutions():
  resolve_config("tiny", gin_bindings=["ModelConfig.hidden_size = 32",
                                      "ModelConfig.num_attention_heads = 1"])
  assert resolve_config("small").model.hidden_size == 256
  assert TrainConfig().model.hidden_size == 256  # library defaults untouched by gin


def test_tiny_test_bindings_build_the_intended_model():
  c = resolve_config(None, gin_bindings=tiny_bindings(7))
  assert (c.model.hidden_size, c.generator.hidden_size, c.train_steps) == (32, 16, 7)


def test_bare_field_binding_is_refused_with_its_selector():
  with pytest.raises(ValueError, match=r"gin binding 'hidden_size=64' names no config, so gin "
                                       r"would read it as an unused macro and ignore it; "
                                       r"did you mean 'ModelConfig\.hidden_size = 64'\?$"):
    resolve_config("tiny", gin_bindings=["hidden_size=64"])
  with pytest.raises(ValueError, match=r"did you mean 'DataConfig\.seed = 3'\?$"):
    resolve_config("tiny", gin_bindings=["seed = 3"])
  with pytest.raises(ValueError, match=r"no config has a field 'hiden_size'; "
                                       r"did you mean 'ModelConfig\.hidden_size = 64'"):
    resolve_config("tiny", gin_bindings=["hiden_size = 64"])
  with pytest.raises(ValueError, match=r"no config has a field 'x'; bindings look like "
                                       r"SELECTOR\.FIELD = VALUE with SELECTOR one of "
                                       r"ModelConfig, ObjectiveConfig"):
    resolve_config("tiny", gin_bindings=["x = 5"])


def test_scoped_and_import_bindings_are_refused():
  with pytest.raises(ValueError, match=r"gin binding 'train/ModelConfig\.hidden_size = 64': no "
                                       r"config is built in scope 'train', so gin would ignore "
                                       r"it; write 'ModelConfig\.hidden_size = 64'"):
    resolve_config("tiny", gin_bindings=["train/ModelConfig.hidden_size = 64"])
  with pytest.raises(ValueError, match=r"gin binding 'import os': only SELECTOR\.FIELD = VALUE "
                                       r"bindings and include 'FILE\.gin' are accepted"):
    resolve_config("tiny", gin_bindings=["import os"])


def test_binding_syntax_error_names_the_binding_and_shows_the_quoting():
  with pytest.raises(ValueError, match=r"cannot parse gin binding 'DataConfig\.data_dir = /path' "
                                       r"\(Unable to parse value\.\); values are Python literals, "
                                       r"so a string needs quotes inside the shell's: "
                                       r"'DataConfig\.data_dir = \"/path\"'$"):
    resolve_config("tiny", gin_bindings=["DataConfig.data_dir = /path"])
  with pytest.raises(ValueError, match=r"\(Failed to parse token 'mlm'\); .*"
                                       r"'ObjectiveConfig\.kind = \"mlm\"'$"):
    resolve_config("tiny", gin_bindings=["ObjectiveConfig.kind = mlm"])
  with pytest.raises(ValueError, match=r"'DataConfig\.data_dir = \"/path\"'$"):
    resolve_config("tiny", gin_bindings=["data_dir=/path"])  # bare and unquoted: both fixed
  with pytest.raises(ValueError, match=r"cannot parse gin binding 'ModelConfig\.hidden_size 64' "
                                       r"\(Couldn't parse statement, expected ':' or '='\.\); "
                                       r"bindings look like SELECTOR\.FIELD = VALUE"):
    resolve_config("tiny", gin_bindings=["ModelConfig.hidden_size 64"])


def test_gin_file_syntax_error_names_the_file_and_line(tmp_path):
  path = tmp_path / "bad.gin"
  path.write_text("ModelConfig.hidden_size = 64\nDataConfig.data_dir = /x/y\n")
  with pytest.raises(ValueError, match=r"cannot parse gin file .*bad\.gin, line 2 \(Unable to "
                                       r"parse value\.\):\n  DataConfig\.data_dir = /x/y\n"
                                       r"Values are Python literals, so a string needs quotes: "
                                       r"DataConfig\.data_dir = \"/x/y\"$"):
    resolve_config(None, [str(path)])


def test_values_of_the_wrong_type_are_refused():
  for binding, message in (
      ('ModelConfig.hidden_size = "64"', r"ModelConfig\.hidden_size = '64': expected int; "
                                         r"without the quotes: ModelConfig\.hidden_size = 64$"),
      ("ModelConfig.hidden_size = 64.0", r"ModelConfig\.hidden_size = 64\.0: expected int$"),
      ('LogConfig.tensorboard = "no"', r"LogConfig\.tensorboard = 'no': expected bool$"),
      ("DataConfig.eval_every = None", r"DataConfig\.eval_every = None: expected int$"),
      ("TrainConfig.num_train_steps = 1.5",
       r"TrainConfig\.num_train_steps = 1\.5: expected int or None$")):
    with pytest.raises(ValueError, match=message):
      resolve_config("tiny", gin_bindings=[binding])
  c = resolve_config("tiny", gin_bindings=["OptimizerConfig.learning_rate = 1",
                                          "TrainConfig.num_train_steps = None"])
  assert (c.optimizer.learning_rate, c.num_train_steps) == (1, None)  # an int fits a float


def test_undefined_macro_and_validation_errors_read_as_one_line():
  with pytest.raises(ValueError, match=r"^gin macro %STEPS is used but never defined; define it "
                                       r"in a gin file \(STEPS = VALUE\) or bind the field "
                                       r"directly$"):
    resolve_config("tiny", gin_bindings=["OptimizerConfig.total_steps = %STEPS"])
  with pytest.raises(ValueError, match=r"^DataConfig\.seq_len=0 must be positive$"):
    resolve_config("tiny", gin_bindings=["DataConfig.seq_len = 0"])


def test_field_bound_on_the_wrong_selector_names_the_right_one():
  with pytest.raises(ValueError, match=r"unknown gin binding ModelConfig\.seq_len\. "
                                       r"Did you mean DataConfig\.seq_len\?"):
    resolve_config("tiny", gin_bindings=["ModelConfig.seq_len = 64"])
  with pytest.raises(ValueError, match=r"unknown gin binding target 'data'\. "
                                       r"Did you mean DataConfig\?"):
    resolve_config("tiny", gin_bindings=["data.seq_len = 64"])


def test_cli_refuses_a_bare_set_with_exit_2(tmp_path):
  proc = train_subprocess(tmp_path / "run", tiny_bindings(1) + ["hidden_size=64"])
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 2, out
  assert out.strip() == ("error: gin binding 'hidden_size=64' names no config, so gin would read "
                         "it as an unused macro and ignore it; did you mean "
                         "'ModelConfig.hidden_size = 64'?")
  assert not (tmp_path / "run").exists()


def test_finetune_bindings_are_checked_the_same_way(tmp_path):
  from electra_jax.finetune.config import resolve_config as resolve_finetune

  flags = dict(task="sst2", init="random", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match=r"did you mean 'FinetuneConfig\.learning_rate = 1e-4'\?$"):
    resolve_finetune([], ["learning_rate=1e-4"], **flags)
  with pytest.raises(ValueError, match=r"'FinetuneConfig\.tokenizer = \"wordpiece:/v\"'$"):
    resolve_finetune([], ["FinetuneConfig.tokenizer = wordpiece:/v"], **flags)
  with pytest.raises(ValueError, match=r"FinetuneConfig\.batch_size = '16': expected int; "
                                       r"without the quotes: FinetuneConfig\.batch_size = 16$"):
    resolve_finetune([], ['FinetuneConfig.batch_size = "16"'], **flags)
  path = tmp_path / "ft.gin"
  path.write_text("FinetuneConfig.tokenizer = wordpiece:/v\n")
  with pytest.raises(ValueError, match=r"cannot parse gin file .*ft\.gin, line 1 .*\n.*\n.*"
                                       r"FinetuneConfig\.tokenizer = \"wordpiece:/v\"$"):
    resolve_finetune([str(path)], [], **flags)
  assert resolve_finetune([], ["FinetuneConfig.seeds = [1, 2]"], **flags).seeds == (1, 2)


def test_model_size_selects_a_preset_that_bindings_change():
  c = resolve_config(None, gin_bindings=["ModelConfig.size = 'base'",
                                         "ModelConfig.num_hidden_layers = 4"])
  assert c.model == model_presets.PRESETS["base"].model.replace(num_hidden_layers=4)
  assert c.generator_hidden_fraction == pytest.approx(1 / 3)  # the preset's
  c = resolve_config(None, gin_bindings=["ModelConfig.size = 'base'",
                                         "TrainConfig.generator_hidden_fraction = 0.5"])
  assert c.generator_hidden_fraction == 0.5
  assert resolve_config("tiny").model.hidden_size == model_presets.PRESETS["tiny"].model.hidden_size
  with pytest.raises(ValueError, match=r"unknown model size 'huge'; expected one of "
                     r"\['base', 'large', 'small', 'tiny'\]"):
    resolve_config(None, gin_bindings=["ModelConfig.size = 'huge'"])
  with pytest.raises(ValueError, match=r"did you mean 'ModelConfig.size = \"base\"'"):
    resolve_config(None, gin_bindings=['size = "base"'])
  with pytest.raises(ValueError, match=r"a string needs quotes .*'ModelConfig.size = \"base\"'"):
    resolve_config(None, gin_bindings=["size = base"])
