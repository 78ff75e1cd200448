"""The objective on packed rows: masks per example, and the losses, metrics, outputs and
gradients of a packed batch equal to those of its examples in unpacked rows.

The equivalence runs the real `pretraining_loss` with its two random draws (`mask_tokens`,
`sample_tokens`) replaced by fixed ones: masks drawn for the unpacked rows and the same masks
moved to the examples' places in the packed rows, so both layouts see the same corruption.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from electra_jax.pretrain import objective as ob
from objective_testlib import DISC, FAST, GEN, L, SPECIAL, V

ROWS = ((9, 13, 6), (20, 10))  # example lengths of the two packed rows
KEYS = ("input_ids", "attention_mask", "token_type_ids")


def make_example(n, rs):
  """[CLS] A [SEP] B [SEP] of n tokens ([CLS] A [SEP] under 5): (ids, token types)."""
  ids = rs.randint(5, V, n).astype(np.int32)
  split = n // 2 if n >= 5 else n - 1
  ids[0], ids[split], ids[-1] = SPECIAL.cls, SPECIAL.sep, SPECIAL.sep
  return ids, np.r_[np.zeros(split + 1), np.ones(n - split - 1)].astype(np.int32)


def layouts(rows=ROWS, seed=0):
  """(unpacked batch [E, L], packed batch [len(rows), L], where) with where[e] = (packed row,
  offset) of example e."""
  rs = np.random.RandomState(seed)
  examples = [make_example(n, rs) for row in rows for n in row]
  unpacked = {k: np.zeros((len(examples), L), np.int32) for k in KEYS}
  packed = {k: np.zeros((len(rows), L), np.int32) for k in KEYS + ob.PACKING_KEYS}
  where, e = [], 0
  for r, row in enumerate(rows):
    offset = 0
    for k, n in enumerate(row, 1):
      ids, types = examples[e]
      unpacked["input_ids"][e, :n], unpacked["token_type_ids"][e, :n] = ids, types
      unpacked["attention_mask"][e, :n] = 1
      span = slice(offset, offset + n)
      packed["input_ids"][r, span], packed["token_type_ids"][r, span] = ids, types
      packed["attention_mask"][r, span], packed["example_ids"][r, span] = 1, k
      packed["position_ids"][r, span] = np.arange(n)
      where.append((r, offset))
      offset, e = offset + n, e + 1
  return unpacked, packed, where


def packed_draws(masked, sampled, unpacked, where, rows, p):
  """The unpacked rows' masks and samples moved to the examples' places in the packed rows."""
  out = {"input_ids": np.zeros((len(rows), L), np.int32),
         "is_masked": np.zeros((len(rows), L), bool),
         **{k: np.zeros((len(rows), p), masked[k].dtype) for k in ("positions", "weights",
                                                                   "masked_lm_ids")}}
  samples = np.zeros((len(rows), p), np.int32)
  used = [0] * len(rows)
  for e, (r, offset) in enumerate(where):
    n = int(unpacked["attention_mask"][e].sum())
    out["input_ids"][r, offset:offset + n] = masked["input_ids"][e, :n]
    out["is_masked"][r, offset:offset + n] = masked["is_masked"][e, :n]
    count = int(masked["weights"][e].sum())
    slots = slice(used[r], used[r] + count)
    out["positions"][r, slots] = masked["positions"][e, :count] + offset
    out["weights"][r, slots] = 1.0
    out["masked_lm_ids"][r, slots] = masked["masked_lm_ids"][e, :count]
    samples[r, slots] = sampled[e, :count]
    used[r] += count
  assert max(used) <= p
  return out, samples


@pytest.mark.parametrize("kind", [k if k == "electra" else pytest.param(k, marks=pytest.mark.slow)
                                  for k in ob.KINDS])  # the ablations: 10-30 s each on 2 cores
def test_packed_batch_has_the_losses_outputs_and_gradients_of_its_examples(kind, monkeypatch):
  objective = ob.ObjectiveConfig(kind=kind, mask_prob=0.3, max_predictions=10)
  p = objective.num_predictions(L)
  model = ob.build_pretraining_model(DISC, GEN, "tied", objective)
  ids = jnp.zeros((1, L), jnp.int32)
  params = model.init(jax.random.PRNGKey(1), ids, ids + 1, ids, jnp.zeros((1, p), jnp.int32))
  params = jax.tree.map(lambda x: x.value if hasattr(x, "value") else x, params["params"],
                        is_leaf=lambda x: hasattr(x, "value"))
  unpacked, packed, where = layouts()
  masked = jax.device_get(ob.mask_tokens(jax.random.PRNGKey(5), unpacked["input_ids"],
                                         unpacked["attention_mask"], SPECIAL, objective))
  assert masked["weights"].sum() >= 10
  sampled = np.random.RandomState(3).randint(5, V, (len(where), p)).astype(np.int32)
  sampled[:, 0] = masked["masked_lm_ids"][:, 0]  # some samples equal the original
  masked_p, sampled_p = packed_draws(masked, sampled, unpacked, where, ROWS, p)
  fixed = {len(where): (masked, sampled), len(ROWS): (masked_p, sampled_p)}  # by batch size
  monkeypatch.setattr(ob, "mask_tokens", lambda rng, ids, *a, **k: {
      name: jnp.asarray(v) for name, v in fixed[ids.shape[0]][0].items()})
  monkeypatch.setattr(ob, "sample_tokens", lambda rng, logits, *a, **k: jnp.asarray(
      fixed[logits.shape[0]][1]))

  def loss(params, batch):
    return ob.pretraining_loss(params, batch, jax.random.PRNGKey(0), model=model,
                               objective=objective, special=SPECIAL, deterministic=True)

  grad = jax.jit(jax.grad(loss, has_aux=True), compiler_options=FAST)
  g_u, m_u = grad(params, {k: jnp.asarray(v) for k, v in unpacked.items()})
  g_p, m_p = grad(params, {k: jnp.asarray(v) for k, v in packed.items()})
  assert float(m_p["loss"]) > 0
  for name in ob.METRIC_NAMES:
    if name != "real_token_fraction":
      np.testing.assert_allclose(float(m_p[name]), float(m_u[name]), rtol=2e-5, atol=1e-6,
                                 err_msg=name)
  assert float(m_u["real_token_fraction"]) == pytest.approx(sum(map(sum, ROWS)) / (len(where) * L))
  assert float(m_p["real_token_fraction"]) == pytest.approx(sum(map(sum, ROWS)) / (len(ROWS) * L))
  flat_u, flat_p = jax.tree.leaves(g_u), jax.tree.leaves(g_p)
  scale = max(float(jnp.max(jnp.abs(g))) for g in flat_u)
  assert scale > 0
  for a, b in zip(flat_u, flat_p):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5 * scale)

  # Per-example outputs: generator logits at the masked positions, the big network's logits.
  def outputs(params, batch):
    draws = ob.corrupt(params, batch, jax.random.PRNGKey(0), model=model, objective=objective,
                       special=SPECIAL, deterministic=True)
    if "rtd" in objective.discriminator_heads:
      draws["rtd"] = model.apply({"params": params}, draws["big_input"], batch["attention_mask"],
                                 batch["token_type_ids"], True, method="discriminator_logits",
                                 **ob.packing_inputs(batch))
    return draws

  outputs = jax.jit(outputs, compiler_options=FAST)
  d_u, d_p = (jax.device_get(outputs(params, {k: jnp.asarray(v) for k, v in batch.items()}))
              for batch in (unpacked, packed))
  np.testing.assert_array_equal(d_p["big_input"][packed["attention_mask"] > 0],
                                d_u["big_input"][unpacked["attention_mask"] > 0])
  if objective.has_generator:
    used_u, used_p = masked["weights"] > 0, masked_p["weights"] > 0
    np.testing.assert_allclose(d_p["gen_logits"][used_p], d_u["gen_logits"][used_u],
                               rtol=1e-5, atol=1e-5)
  if "rtd" in objective.discriminator_heads:
    np.testing.assert_allclose(d_p["rtd"][packed["attention_mask"] > 0],
                               d_u["rtd"][unpacked["attention_mask"] > 0], rtol=1e-5, atol=1e-5)


def _counts(masked, example_ids):
  """{(row, example): masks} of a mask_tokens result; asserts slots point at distinct tokens."""
  counts = {}
  for r in range(example_ids.shape[0]):
    chosen = masked["positions"][r][masked["weights"][r] > 0]
    assert len(set(chosen.tolist())) == len(chosen)
    assert masked["is_masked"][r].sum() == len(chosen)
    for position in chosen:
      key = (r, int(example_ids[r, position]))
      counts[key] = counts.get(key, 0) + 1
  return counts


def test_each_example_of_a_packed_row_gets_its_own_official_mask_count():
  """round(n x mask_prob) masks (at least 1) per example of n real tokens, among its own
  candidates, as if alone in a row; more examples than slots: the row keeps P."""
  objective = ob.ObjectiveConfig()  # 15%, P = int(0.155 x 32) = 4
  rows = ((3, 4, 9, 13), (20, 3, 6))  # want 1 + 1 + 1 + 2 = 5 > P, and 3 + 1 + 1 = 5 > P
  _, packed, _ = layouts(rows)
  ex = packed["example_ids"]
  want = {(r, k): max(1, round(n * 0.15)) for r, row in enumerate(rows)
          for k, n in enumerate(row, 1)}
  candidates = (packed["attention_mask"] > 0) & (packed["input_ids"] > SPECIAL.mask)
  totals = {}
  for seed in range(40):
    masked = jax.device_get(ob.mask_tokens(jax.random.PRNGKey(seed), packed["input_ids"],
                                           packed["attention_mask"], SPECIAL, objective, ex))
    counts = _counts(masked, ex)
    assert all(counts.get(key, 0) <= n for key, n in want.items())
    assert [int(masked["weights"][r].sum()) for r in range(len(rows))] == [4, 4]
    assert candidates[masked["is_masked"]].all()
    for key, n in counts.items():
      totals[key] = totals.get(key, 0) + n
  # Every example is masked at its own rate: over 40 draws each gets about want x 4/5.
  for key, n in want.items():
    assert 0.55 * 40 * n <= totals[key] <= 40 * n, (key, totals[key])

  wide = ob.ObjectiveConfig(max_predictions=8)  # room for every example's count
  for seed in range(10):
    masked = jax.device_get(ob.mask_tokens(jax.random.PRNGKey(seed), packed["input_ids"],
                                           packed["attention_mask"], SPECIAL, wide, ex))
    assert _counts(masked, ex) == want


def test_one_example_per_row_masks_as_unpacked_rows_do():
  """example_ids = attention_mask (one example a row) draws exactly the unpacked masks."""
  unpacked, _, _ = layouts()
  objective = ob.ObjectiveConfig(mask_prob=0.3, max_predictions=10)
  args = (unpacked["input_ids"], unpacked["attention_mask"], SPECIAL, objective)
  for seed in range(3):
    a = jax.device_get(ob.mask_tokens(jax.random.PRNGKey(seed), *args))
    b = jax.device_get(ob.mask_tokens(jax.random.PRNGKey(seed), *args,
                                      unpacked["attention_mask"]))
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_batch_with_one_packing_key_is_refused():
  _, packed, _ = layouts()
  with pytest.raises(ValueError, match="needs both .*has only \\['example_ids'\\]"):
    ob.packing_inputs({k: v for k, v in packed.items() if k != "position_ids"})
