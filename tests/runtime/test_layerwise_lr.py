"""Layer-wise LR multipliers per layer, both modes, exact values (official `_get_layer_lrs`)."""

import jax
import jax.numpy as jnp
import pytest

from electra_jax.model import heads
from electra_jax.model import config as cfgs
from electra_jax.runtime.layerwise_lr import layer_exponent, layerwise_lr_multipliers

N = 3
CFG = cfgs.ModelConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=N,
                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)


@pytest.fixture(scope="module")
def params():
  model = heads.ElectraForSequenceClassification(CFG, num_labels=2)
  ids = jnp.zeros((1, 8), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), ids))["params"]


@pytest.mark.parametrize("mode,expected", [
    # path -> exponent; d = 0.8
    ("correct", {"embeddings": 4, "embeddings_project": 4, "layer_0": 3, "layer_1": 2,
                 "layer_2": 1, "classifier": 0}),
    ("official", {"embeddings": 5, "embeddings_project": 5, "layer_0": 4, "layer_1": 3,
                  "layer_2": 2, "classifier": 0}),
])
def test_multipliers_per_layer(params, mode, expected):
  mult = layerwise_lr_multipliers(params, 0.8, N, mode)
  e = mult["electra"]
  seen = {
      "embeddings": {v for v in jax.tree.leaves(e["embeddings"])},
      "embeddings_project": {v for v in jax.tree.leaves(e["embeddings_project"])},
      "classifier": {v for v in jax.tree.leaves(mult["classifier"])},
  }
  for i in range(N):
    seen[f"layer_{i}"] = set(jax.tree.leaves(e["encoder"][f"layer_{i}"]))
  for name, exponent in expected.items():
    assert seen[name] == {0.8 ** exponent}, name


def test_official_is_correct_times_decay_except_head():
  for path in [("electra", "embeddings", "LayerNorm", "scale"),
               ("electra", "encoder", "layer_2", "attention", "query", "kernel")]:
    assert layer_exponent(path, N, "official") == layer_exponent(path, N, "correct") + 1
  assert layer_exponent(("classifier", "kernel"), N, "official") == 0


def test_decay_one_is_identity(params):
  assert set(jax.tree.leaves(layerwise_lr_multipliers(params, 1.0, N))) == {1.0}


def test_errors():
  with pytest.raises(ValueError, match="mode 'bert'"):
    layer_exponent(("electra", "embeddings"), N, "bert")
  with pytest.raises(ValueError, match="layer 7 but the model has 3 layers"):
    layer_exponent(("electra", "encoder", "layer_7", "x"), N)
