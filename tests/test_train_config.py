"""Pre-training configuration: gin experiments, round trips, and the errors of a bad config."""

import dataclasses
import json

import pytest

from electra_jax import config as model_presets
from electra_jax.train_config import (TrainConfig, list_experiments, load_config_json,
                                      resolve_config, save_config_json, to_gin)
from train_testlib import tiny_bindings


def test_every_experiment_resolves_and_paper_sizes_match_table_6():
  names = list_experiments()
  for required in ("tiny", "small", "base", "large", "small_plus_plus", "ablations/mlm",
                   "ablations/electra_15", "ablations/replace_mlm", "ablations/all_tokens_mlm",
                   "ablations/untied_embeddings", "ablations/gdes",
                   "ablations/uniform_generator", "ablations/generator_size_1_2"):
    assert required in names
  configs = {n: resolve_config(n) for n in names}
  for name, preset, frac, mask, lr, batch, steps in (
      ("small", model_presets.small, 0.25, 0.15, 5e-4, 128, 1_000_000),
      ("base", model_presets.base, 1 / 3, 0.15, 2e-4, 256, 766_000),
      ("large", model_presets.large, 0.25, 0.25, 2e-4, 2048, 400_000)):
    c = configs[name]
    want = preset()
    for field in ("embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "vocab_size"):
      assert getattr(c.model, field) == getattr(want, field), (name, field)
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
