"""Packed rows in the model: several examples in one row, each seeing only itself.

A packed row carries example_ids (k on the k-th example's tokens, 0 on padding) and position_ids
(positions from 0 in each example). Its per-example outputs equal those of the examples run
alone in unpacked rows (within float tolerance), no attention crosses examples (bitwise), and a
row of one example is the unpacked model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import electra_fixtures as F
from electra_jax.model import config as C
from electra_jax.model import layers, pretraining
from electra_jax.model.config import ModelConfig

CLS, SEP = 2, 3
LENGTH = 32
LENGTHS = (9, 13, 6)  # three examples, 28 real tokens, 4 padding slots in the packed row


def make_example(n, seed):
  """[CLS] A [SEP] B [SEP] of n tokens: (ids, token types), int32 [n]."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 99, n).astype(np.int32)
  split = n // 2
  ids[0], ids[split], ids[-1] = CLS, SEP, SEP
  types = np.r_[np.zeros(split + 1), np.ones(n - split - 1)].astype(np.int32)
  return ids, types


def pack(examples, length=LENGTH):
  """One packed row (batch of 1) of `examples`: the model's five [1, length] inputs."""
  row = {k: np.zeros(length, np.int32) for k in ("input_ids", "attention_mask", "token_type_ids",
                                                  "example_ids", "position_ids")}
  start = 0
  for k, (ids, types) in enumerate(examples, 1):
    end = start + len(ids)
    row["input_ids"][start:end], row["token_type_ids"][start:end] = ids, types
    row["attention_mask"][start:end], row["example_ids"][start:end] = 1, k
    row["position_ids"][start:end] = np.arange(len(ids))
    start = end
  return {k: v[None] for k, v in row.items()}


def unpack(examples, length=LENGTH):
  """The same examples one per row, padded: [len(examples), length] inputs (no packing keys)."""
  rows = [pack([e], length) for e in examples]
  return {k: np.concatenate([r[k] for r in rows]) for k in ("input_ids", "attention_mask",
                                                             "token_type_ids")}


def offsets():
  return np.cumsum((0,) + LENGTHS)


@pytest.fixture(scope="module")
def model_and_params():
  """A joint model with factorised embeddings (E 16 != H 32), both big-network heads, and
  random weights (biases and LayerNorms included)."""
  disc = ModelConfig(**F.SHAPES["small"])
  gen = C.generator_config(disc, 0.5).replace(num_attention_heads=2)
  model = pretraining.ElectraPretrainingModel(disc, gen, discriminator_heads=("rtd", "mlm"))
  ids = jnp.ones((1, LENGTH), jnp.int32)
  params = F.random_params(model, ids, ids, ids, ids[:, :2], seed=3)
  return model, params


def run(model, params, batch, positions, dropout_rng=None):
  """(generator logits [B,P,V] at positions, rtd logits [B,L], big-network MLM logits [B,L,V])."""
  packing = {k: jnp.asarray(batch[k]) for k in ("example_ids", "position_ids") if k in batch}
  args = (jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"]),
          jnp.asarray(batch["token_type_ids"]))
  kw = dict(deterministic=dropout_rng is None, **packing)
  rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
  gen = model.apply({"params": params}, *args, jnp.asarray(positions), method="generator_logits",
                    rngs=rngs, **kw)
  disc = model.apply({"params": params}, *args, None, method="discriminator_outputs", rngs=rngs,
                     **kw)
  return np.asarray(gen), np.asarray(disc["rtd"]), np.asarray(disc["mlm"])


def test_packed_row_gives_each_example_its_unpacked_outputs(model_and_params):
  model, params = model_and_params
  examples = [make_example(n, seed) for seed, n in enumerate(LENGTHS)]
  local = np.array([[1, n - 2] for n in LENGTHS], np.int32)  # two predicted positions each
  gen_u, rtd_u, mlm_u = run(model, params, unpack(examples), local)
  packed_positions = (local + offsets()[:-1, None]).reshape(1, -1)
  gen_p, rtd_p, mlm_p = run(model, params, pack(examples), packed_positions)
  np.testing.assert_allclose(gen_p[0], gen_u.reshape(-1, gen_u.shape[-1]), atol=2e-5, rtol=1e-5)
  for k, n in enumerate(LENGTHS):
    start = offsets()[k]
    np.testing.assert_allclose(rtd_p[0, start:start + n], rtd_u[k, :n], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(mlm_p[0, start:start + n], mlm_u[k, :n], atol=2e-5, rtol=1e-5)
  # The comparison has teeth: the same row read as one example (no packing keys) differs.
  whole = {k: v for k, v in pack(examples).items() if k not in ("example_ids", "position_ids")}
  _, rtd_whole, _ = run(model, params, whole, packed_positions)
  assert np.max(np.abs(rtd_whole[0, :sum(LENGTHS)] - rtd_p[0, :sum(LENGTHS)])) > 1e-2


@pytest.mark.parametrize("dropout", [False, True], ids=["deterministic", "dropout"])
def test_no_attention_crosses_examples(model_and_params, dropout):
  """Changing examples 2 and 3 (ids and token types) and the padding leaves example 1's outputs
  bit for bit the same, also with dropout on (masks depend on the key and the index only)."""
  model, params = model_and_params
  examples = [make_example(n, seed) for seed, n in enumerate(LENGTHS)]
  others = [examples[0]] + [make_example(n, 100 + seed) for seed, n in enumerate(LENGTHS[1:])]
  others[1] = (others[1][0], 1 - others[1][1])
  batch, changed = pack(examples), pack(others)
  changed["input_ids"][0, sum(LENGTHS):] = 50  # padding ids, too
  rng = jax.random.key(7) if dropout else None
  first = slice(0, LENGTHS[0])
  positions = np.array([[1, 4]], np.int32)  # both in example 1
  a, b = run(model, params, batch, positions, rng), run(model, params, changed, positions, rng)
  assert np.array_equal(a[0], b[0])
  assert np.array_equal(a[1][0, first], b[1][0, first])
  assert np.array_equal(a[2][0, first], b[2][0, first])
  assert not np.allclose(a[1][0, LENGTHS[0]:], b[1][0, LENGTHS[0]:])  # the others did change
  # and example 1's outputs do depend on its own tokens:
  mine = pack([make_example(LENGTHS[0], 200)] + others[1:])
  c = run(model, params, mine, positions, rng)
  assert not np.allclose(a[1][0, first], c[1][0, first])


def test_a_row_of_one_example_is_the_unpacked_model(model_and_params):
  """example_ids = attention_mask and position_ids = 0..L-1 give the outputs without them."""
  model, params = model_and_params
  ids, mask, types = F.batch(b=3, length=LENGTH)
  batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
  packed = dict(batch, example_ids=mask,
                position_ids=np.broadcast_to(np.arange(LENGTH, dtype=np.int32), ids.shape))
  positions = np.array([[0, 3]] * 3, np.int32)
  for a, b in zip(run(model, params, batch, positions), run(model, params, packed, positions)):
    real = mask.astype(bool) if a.shape[:2] == ids.shape else np.ones(a.shape[:2], bool)
    np.testing.assert_allclose(a[real], b[real], atol=1e-6, rtol=1e-6)


def test_attention_keep_and_argument_errors():
  mask = np.array([[1, 1, 1, 1, 0]])
  keep = np.asarray(layers.attention_keep(jnp.asarray(mask), jnp.asarray([[1, 1, 2, 2, 0]])))
  assert keep.shape == (1, 1, 5, 5)
  assert keep[0, 0].astype(int).tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0],
                                             [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]
  assert np.asarray(layers.attention_keep(jnp.asarray(mask))).shape == (1, 1, 1, 5)
  backbone = layers.Backbone(ModelConfig(**F.SHAPES["small"]))
  ids = jnp.ones((1, 5), jnp.int32)
  with pytest.raises(ValueError, match="both example_ids and position_ids"):
    jax.eval_shape(lambda: backbone.init(jax.random.key(0), ids, example_ids=ids))
