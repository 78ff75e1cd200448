"""The ELECTRA objective: masking statistics, label rules, loss terms of every kind, sampling."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import pytest
from sklearn.metrics import roc_auc_score

from electra_jax.pretrain import objective as ob
from objective_testlib import DISC, FAST, GEN, L, SPECIAL, V


def make_batch(batch=4, seed=0, lengths=(32, 20, 9, 32)):
  """[CLS] w ... w [SEP] [PAD]...; word ids in [5, V)."""
  rs = np.random.RandomState(seed)
  ids = rs.randint(5, V, (batch, L)).astype(np.int32)
  mask = np.zeros((batch, L), np.int32)
  for b in range(batch):
    n = lengths[b % len(lengths)]
    mask[b, :n] = 1
    ids[b, 0], ids[b, n - 1] = SPECIAL.cls, SPECIAL.sep
    ids[b, n:] = SPECIAL.pad
  return {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask),
          "token_type_ids": jnp.zeros((batch, L), jnp.int32)}


def init_params(model, objective, seed=1):
  p = objective.num_predictions(L)

  def init():
    ids = jnp.zeros((2, L), jnp.int32)
    variables = model.init(jax.random.PRNGKey(seed), ids, jnp.ones_like(ids),
                           jnp.zeros_like(ids), jnp.zeros((2, p), jnp.int32))
    return nn.unbox(variables["params"])

  return jax.jit(init, compiler_options=FAST)()


@functools.lru_cache(maxsize=None)
def setup(objective, sharing="tied", disc=DISC, gen=GEN):
  model = ob.build_pretraining_model(disc, gen, sharing, objective)
  return model, init_params(model, objective)


@functools.lru_cache(maxsize=None)
def loss_fn(objective, model, deterministic=False):
  return jax.jit(lambda p, b, r: ob.pretraining_loss(
      p, b, r, model=model, objective=objective, special=SPECIAL, deterministic=deterministic),
      compiler_options=FAST)


def grad_fn(objective, model):
  return jax.jit(jax.grad(lambda p, b, r: ob.pretraining_loss(
      p, b, r, model=model, objective=objective, special=SPECIAL, deterministic=False),
      has_aux=True), compiler_options=FAST)


# ------------------------------------------------------------------------------------------
# Masking.

def test_mask_counts_positions_and_candidates():
  objective = ob.ObjectiveConfig()
  lengths = (32, 20, 9, 3, 2, 14, 27, 6)
  batch = make_batch(batch=64, lengths=lengths)
  ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"])
  out = jax.jit(lambda r: ob.mask_tokens(r, batch["input_ids"], batch["attention_mask"], SPECIAL,
                                         objective), compiler_options=FAST)(jax.random.PRNGKey(0))
  out = jax.tree.map(np.asarray, out)
  p = objective.num_predictions(L)
  assert p == int((0.15 + 0.005) * L) == 4
  assert out["positions"].shape == out["weights"].shape == (64, p)
  for b in range(64):
    n = lengths[b % len(lengths)]
    candidates = max(0, n - 2)
    want = min(max(1, min(p, int(np.round(n * 0.15)))), candidates)
    w = out["weights"][b]
    assert w.sum() == want and np.all(w[:want] == 1)
    used = out["positions"][b][w > 0]
    assert len(set(used.tolist())) == len(used)  # without replacement
    assert np.all(out["positions"][b][w == 0] == 0)
    assert np.all(mask[b, used] == 1)
    assert not np.isin(ids[b, used], [SPECIAL.cls, SPECIAL.sep, SPECIAL.pad, SPECIAL.mask]).any()
    np.testing.assert_array_equal(out["masked_lm_ids"][b][w > 0], ids[b, used])
    assert out["is_masked"][b].sum() == want and out["is_masked"][b, used].all()
    changed = out["input_ids"][b] != ids[b]
    assert np.all(out["input_ids"][b][changed] == SPECIAL.mask)  # no random replacement
    assert not np.any(changed & ~out["is_masked"][b])


def test_mask_tokens_takes_numpy_inputs_without_changing_them():
  """A numpy batch (eager call, or closed over under jit) gets the counts of a traced one, and
  its arrays are left as they were (the candidate mask once aliased input_mask and was
  narrowed in place, so counts came from the candidates instead of the real tokens)."""
  objective = ob.ObjectiveConfig(mask_prob=0.15, max_predictions=8)
  batch = make_batch(batch=8, lengths=(17, 20, 9, 32))
  ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"]).astype(bool)
  before = mask.copy()
  rng = jax.random.PRNGKey(3)
  eager = ob.mask_tokens(rng, ids, mask, SPECIAL, objective)
  traced = jax.jit(lambda i, m: ob.mask_tokens(rng, i, m, SPECIAL, objective))(ids, mask)
  np.testing.assert_array_equal(mask, before)
  np.testing.assert_array_equal(np.asarray(eager["weights"]), np.asarray(traced["weights"]))
  assert np.asarray(eager["weights"])[0].sum() == 3  # round(17 x 0.15)


def test_max_predictions_cap_and_round_half_even():
  batch = make_batch(batch=2, lengths=(32,))
  # 32 x 0.5 = 16 tokens wanted, capped at max_predictions = 3.
  cfg = ob.ObjectiveConfig(mask_prob=0.5, max_predictions=3)
  out = ob.mask_tokens(jax.random.PRNGKey(1), batch["input_ids"], batch["attention_mask"], SPECIAL,
                       cfg)
  np.testing.assert_array_equal(np.asarray(out["weights"]).sum(-1), [3, 3])
  # round(10 x 0.25) = round(2.5) = 2 (half to even, as tf.round).
  batch = make_batch(batch=2, lengths=(10,))
  cfg = ob.ObjectiveConfig(mask_prob=0.25, max_predictions=8)
  out = ob.mask_tokens(jax.random.PRNGKey(1), batch["input_ids"], batch["attention_mask"], SPECIAL,
                       cfg)
  np.testing.assert_array_equal(np.asarray(out["weights"]).sum(-1), [2, 2])


def test_mask_statistics_over_many_samples():
  """15% of real tokens chosen, uniform over candidates; 85% [MASK] / 15% kept (ELECTRA) and
  80/10/10 (BERT)."""
  batch = make_batch(batch=256, lengths=(32,))
  ids = np.asarray(batch["input_ids"])
  cfg = ob.ObjectiveConfig(mask_prob=0.25)  # count = round(32 x .25) = 8 <= P = 8
  run = jax.jit(lambda r, c: ob.mask_tokens(r, batch["input_ids"], batch["attention_mask"], SPECIAL,
                                            c), static_argnums=1, compiler_options=FAST)
  shown, chosen = [], np.zeros(L)
  for seed in range(8):
    out = jax.tree.map(np.asarray, run(jax.random.PRNGKey(seed), cfg))
    assert np.all(out["weights"].sum(-1) == 8)
    chosen += out["is_masked"].sum(0)
    pos = out["positions"]
    shown.append(np.take_along_axis(out["input_ids"], pos, 1).ravel())
  shown = np.concatenate(shown)
  frac_mask = np.mean(shown == SPECIAL.mask)
  assert abs(frac_mask - 0.85) < 0.015, frac_mask
  assert chosen[0] == 0 and chosen[-1] == 0  # never [CLS]/[SEP]
  per_position = chosen[1:-1] / chosen[1:-1].sum()
  assert np.all(np.abs(per_position - 1 / 30) < 0.2 / 30), per_position  # uniform

  bert = ob.ObjectiveConfig(kind="mlm", mask_prob=0.25)
  mask_n = rand_n = keep_n = 0
  for seed in range(8):
    out = jax.tree.map(np.asarray, run(jax.random.PRNGKey(100 + seed), bert))
    s = np.take_along_axis(out["input_ids"], out["positions"], 1)
    orig = out["masked_lm_ids"]
    mask_n += np.sum(s == SPECIAL.mask)
    keep_n += np.sum(s == orig)
    rand_n += np.sum((s != SPECIAL.mask) & (s != orig))
  total = mask_n + rand_n + keep_n
  assert abs(mask_n / total - 0.8) < 0.015
  # a random id can equal the original (1/V), so "keep" is slightly above 10%
  assert abs(rand_n / total - 0.1) < 0.012 and abs(keep_n / total - 0.1) < 0.012


def test_rows_without_candidates_have_no_predictions():
  ids = jnp.asarray([[SPECIAL.cls, SPECIAL.sep] + [SPECIAL.pad] * (L - 2)], jnp.int32)
  mask = jnp.asarray([[1, 1] + [0] * (L - 2)], jnp.int32)
  out = ob.mask_tokens(jax.random.PRNGKey(0), ids, mask, SPECIAL, ob.ObjectiveConfig())
  assert float(out["weights"].sum()) == 0.0
  np.testing.assert_array_equal(np.asarray(out["input_ids"]), np.asarray(ids))


# ------------------------------------------------------------------------------------------
# Labels, sampling, AUC.

def test_replaced_labels_rules():
  original = jnp.asarray([[1, 10, 11, 12, 2, 0]], jnp.int32)
  mask = jnp.asarray([[1, 1, 1, 1, 1, 0]], jnp.int32)
  positions = jnp.asarray([[1, 2, 0]], jnp.int32)
  weights = jnp.asarray([[1.0, 1.0, 0.0]])
  sampled = jnp.asarray([[10, 50, 77]], jnp.int32)  # slot 0 samples the original token
  corrupted = ob.scatter_positions(original, positions, weights, sampled)
  np.testing.assert_array_equal(np.asarray(corrupted), [[1, 10, 50, 12, 2, 0]])  # unused slot: no-op
  labels = ob.replaced_labels(original, corrupted, mask)
  np.testing.assert_array_equal(np.asarray(labels), [[0, 0, 1, 0, 0, 0]])
  # a pad position that differs is still not a positive
  labels = ob.replaced_labels(original, corrupted.at[0, 5].set(9), mask)
  assert int(labels[0, 5]) == 0


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel"])
def test_sample_tokens_follows_softmax_and_temperature(method):
  logits = jnp.log(jnp.asarray([0.5, 0.3, 0.15, 0.05]))
  tiled = jnp.broadcast_to(logits, (20000, 4))
  sample = jax.jit(ob.sample_tokens, static_argnums=(2, 4), compiler_options=FAST)
  for temp in (1.0, 2.0):
    ids = np.asarray(sample(jax.random.PRNGKey(3), tiled, temp, None, method))
    freq = np.bincount(ids, minlength=4) / len(ids)
    want = np.asarray(jax.nn.softmax(logits / temp))
    np.testing.assert_allclose(freq, want, atol=0.012)
  ids = np.asarray(sample(jax.random.PRNGKey(4), tiled, 1.0, jnp.zeros((20000,), jnp.int32),
                          method))
  assert not np.any(ids == 0)
  # V = 37 (not a square: padded blocks), peaked and flat regions, [2, 20000] leading shape
  rs = np.random.RandomState(0)
  logits = jnp.asarray(rs.randn(37) * 2, jnp.float32)
  ids = np.asarray(sample(jax.random.PRNGKey(5), jnp.broadcast_to(logits, (2, 20000, 37)), 1.0,
                          None, method))
  assert ids.shape == (2, 20000) and ids.min() >= 0 and ids.max() < 37
  freq = np.bincount(ids.ravel(), minlength=37) / ids.size
  np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits)), atol=0.006)


def test_first_argmax_is_argmax_with_ties():
  """The first index of the maximum, like np.argmax, also where many values tie."""
  x = np.round(np.random.RandomState(0).randn(6, 5, 301) * 2).astype(np.float32) / 2
  x[0, 0] = 1.0  # a row that is all ties
  got = np.asarray(jax.jit(ob.first_argmax)(jnp.asarray(x)))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, x.argmax(-1))
  assert got[0, 0] == 0


def test_cross_entropy_accuracy_is_first_argmax_with_ties():
  """weighted_cross_entropy's accuracy counts a position when np.argmax (the first index of the
  maximum) is its label, also where the label ties the maximum after or before the first one."""
  rs = np.random.RandomState(1)
  logits = np.round(rs.randn(4, 50, 97)).astype(np.float32)  # many ties below the maximum
  labels = rs.randint(0, 97, (4, 50))
  labels[:, :10] = logits[:, :10].argmax(-1)  # right
  logits[:, 10:30, 40] = logits[:, 10:30, 60] = 9.0  # two tied maxima
  labels[:, 10:20], labels[:, 20:30] = 60, 40  # the later one: wrong; the first: right
  logits[:, 30] = 1.0  # a row of ties
  labels[:, 30] = [0, 5, 0, 96]
  weights = (rs.rand(4, 50) < 0.8).astype(np.float32)
  _, accuracy = jax.jit(ob.weighted_cross_entropy)(jnp.asarray(logits), jnp.asarray(labels),
                                                   jnp.asarray(weights))
  want = ((logits.argmax(-1) == labels) * weights).sum() / weights.sum()
  assert 0.3 < want < 0.7
  assert float(accuracy) == pytest.approx(want, abs=1e-6)


def test_binary_auc_matches_sklearn_with_ties_and_weights():
  rs = np.random.RandomState(0)
  scores = np.round(rs.randn(8, 16), 1).astype(np.float32)  # many ties
  labels = (rs.rand(8, 16) < 0.3).astype(np.int32)
  weights = (rs.rand(8, 16) < 0.8).astype(np.float32)
  got = float(ob.binary_auc(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(weights)))
  keep = weights.ravel() > 0
  want = roc_auc_score(labels.ravel()[keep], scores.ravel()[keep])
  assert abs(got - want) < 1e-6
  assert float(ob.binary_auc(jnp.ones((4,)), jnp.zeros((4,)), jnp.ones((4,)))) == 0.5


# ------------------------------------------------------------------------------------------
# Losses.

def _sigmoid_ce(x, z):
  return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def reference_electra(params, batch, rng, model, objective):
  """The ELECTRA loss recomputed step by step from the public pieces, in NumPy."""
  k_mask, k_gen, k_sample, k_disc = jax.random.split(rng, 4)
  masked = ob.mask_tokens(k_mask, batch["input_ids"], batch["attention_mask"], SPECIAL, objective)
  gen_logits = model.apply({"params": params}, masked["input_ids"], batch["attention_mask"],
                           batch["token_type_ids"], masked["positions"], False,
                           method="generator_logits", rngs={"dropout": k_gen})
  sampled = ob.sample_tokens(k_sample, gen_logits, method=objective.sampler)
  corrupted = ob.scatter_positions(batch["input_ids"], masked["positions"], masked["weights"],
                                   sampled)
  disc_logits = np.asarray(model.apply({"params": params}, corrupted, batch["attention_mask"],
                                       batch["token_type_ids"], False,
                                       method="discriminator_logits", rngs={"dropout": k_disc}),
                           np.float64)
  g = np.asarray(gen_logits, np.float64)
  logp = g - g.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  w = np.asarray(masked["weights"], np.float64)
  tgt = np.asarray(masked["masked_lm_ids"])
  nll = -np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
  gen_loss = (nll * w).sum() / (w.sum() + 1e-6)
  ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"], np.float64)
  labels = (np.asarray(corrupted) != ids).astype(np.float64) * mask
  if objective.kind == "electra":
    dw = mask  # every non-pad token, [CLS]/[SEP] included
  else:
    dw = np.asarray(masked["is_masked"], np.float64)
  disc_loss = (_sigmoid_ce(disc_logits, labels) * dw).sum() / (dw.sum() + 1e-6)
  return gen_loss, disc_loss, labels, dw


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["electra", "electra_15"])
def test_electra_losses_match_reference(kind):
  objective = ob.ObjectiveConfig(kind=kind, mask_prob=0.3, max_predictions=8)
  model, params = setup(objective)
  batch = make_batch()
  rng = jax.random.PRNGKey(7)
  loss, m = loss_fn(objective, model)(params, batch, rng)
  gen_loss, disc_loss, labels, dw = reference_electra(params, batch, rng, model, objective)
  np.testing.assert_allclose(float(m["gen_loss"]), gen_loss, rtol=1e-5)
  np.testing.assert_allclose(float(m["disc_loss"]), disc_loss, rtol=1e-5)
  np.testing.assert_allclose(float(loss), gen_loss + 50.0 * disc_loss, rtol=1e-5)
  mask = np.asarray(batch["attention_mask"])
  np.testing.assert_allclose(float(m["replaced_fraction"]), labels.sum() / mask.sum(), rtol=1e-6)
  assert labels.sum() > 0
  frac = (labels * dw).sum() / dw.sum()  # over the positions the disc loss weighs
  entropy = -(scipy.special.xlogy(frac, frac) + scipy.special.xlogy(1 - frac, 1 - frac))
  np.testing.assert_allclose(float(m["disc_prior_loss"]), entropy, rtol=1e-5)
  for name in ob.METRIC_NAMES:
    assert m[name].dtype == jnp.float32 and m[name].shape == ()


def test_binary_entropy():
  got = ob.binary_entropy(jnp.asarray([0.0, 0.5, 0.15, 1.0]))
  want = [0.0, np.log(2.0), -(0.15 * np.log(0.15) + 0.85 * np.log(0.85)), 0.0]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_dropout_is_on_in_both_networks_during_training():
  objective = ob.ObjectiveConfig()
  drop = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
  model, params = setup(objective, disc=DISC.replace(**drop), gen=GEN.replace(**drop))
  batch, rng = make_batch(), jax.random.PRNGKey(2)
  _, m = loss_fn(objective, model)(params, batch, rng)
  _, m_det = loss_fn(objective, model, deterministic=True)(params, batch, rng)
  # same rng, so same masks; only dropout differs (at init the generator is near uniform, so its
  # loss moves little, but it moves)
  assert float(m_det["gen_loss"]) != float(m["gen_loss"])
  assert float(m_det["disc_loss"]) != float(m["disc_loss"])


@pytest.mark.slow
def test_no_gradient_through_sampling_and_loss_weights():
  """With gen_weight = 0 the generator tower gets exactly zero gradient: the discriminator loss
  reaches it only through the sampled ids, which are discrete and under stop_gradient."""
  objective = ob.ObjectiveConfig(gen_weight=0.0, disc_weight=3.0)
  model, params = setup(objective)
  grads, m = grad_fn(objective, model)(params, make_batch(), jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(m["loss"]), 3.0 * float(m["disc_loss"]), rtol=1e-6)
  assert float(m["gen_loss"]) > 0
  gen_leaves = jax.tree.leaves(grads["generator"])
  assert gen_leaves and all(float(jnp.abs(g).max()) == 0.0 for g in gen_leaves)
  assert float(jnp.abs(grads["discriminator"]["discriminator_predictions"]["dense"]["kernel"])
               .max()) > 0
  # shared embeddings get the discriminator's gradient
  assert float(jnp.abs(grads["embeddings"]["word_embeddings"]["embedding"]).max()) > 0


@pytest.mark.slow
def test_ablation_kinds_build_the_right_towers_and_terms():
  batch, rng = make_batch(), jax.random.PRNGKey(5)
  results = {}
  for kind in ("replace_mlm", "all_tokens_mlm", "mlm"):
    objective = ob.ObjectiveConfig(kind=kind)
    model, params = setup(objective)
    loss, m = loss_fn(objective, model)(params, batch, rng)
    results[kind] = (params, m)
    assert float(m["disc_loss"]) == 0.0 and float(m["mlm_loss"]) > 0
    want = float(m["gen_loss"]) + float(m["mlm_loss"])
    np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  p, m = results["replace_mlm"]
  assert set(p["discriminator"]) == {"electra", "generator_predictions"} and "generator" in p
  assert float(m["gen_loss"]) > 0
  p, m = results["all_tokens_mlm"]
  assert set(p["discriminator"]) == {"electra", "generator_predictions",
                                     "discriminator_predictions"}
  assert 0 < float(m["disc_auc"]) < 1  # the copy gate is scored as a detector
  p, m = results["mlm"]
  assert "generator" not in p and float(m["gen_loss"]) == 0.0
  assert float(m["replaced_fraction"]) > 0  # [MASK]ed / random tokens in the input


def test_replace_mlm_big_network_predicts_originals_from_samples():
  """The big network sees generator samples at the masked positions; its loss is the CE of its
  logits there against the original ids."""
  objective = ob.ObjectiveConfig(kind="replace_mlm")
  model, params = setup(objective)
  batch, rng = make_batch(), jax.random.PRNGKey(5)
  _, m = loss_fn(objective, model)(params, batch, rng)
  k_mask, _, k_sample, _ = jax.random.split(rng, 4)
  masked = ob.mask_tokens(k_mask, batch["input_ids"], batch["attention_mask"], SPECIAL, objective)
  g = model.apply({"params": params}, masked["input_ids"], batch["attention_mask"],
                  batch["token_type_ids"], masked["positions"], True, method="generator_logits")
  sampled = ob.sample_tokens(k_sample, g, method=objective.sampler)
  corrupted = ob.scatter_positions(batch["input_ids"], masked["positions"], masked["weights"],
                                   sampled)
  w = np.asarray(masked["weights"]) > 0
  got = np.take_along_axis(np.asarray(corrupted), np.asarray(masked["positions"]), 1)
  np.testing.assert_array_equal(got[w], np.asarray(sampled)[w])
  out = model.apply({"params": params}, corrupted, batch["attention_mask"], batch["token_type_ids"],
                    masked["positions"], True, method="discriminator_outputs")
  want, _ = ob.weighted_cross_entropy(out["mlm"], masked["masked_lm_ids"], masked["weights"])
  np.testing.assert_allclose(float(m["mlm_loss"]), float(want), rtol=1e-5)


def test_copy_mechanism_loss_matches_numpy():
  rs = np.random.RandomState(0)
  logits = rs.randn(2, 5, 7).astype(np.float32)
  rtd = rs.randn(2, 5).astype(np.float32)
  inputs = rs.randint(0, 7, (2, 5))
  originals = np.where(rs.rand(2, 5) < 0.5, inputs, rs.randint(0, 7, (2, 5)))
  weights = np.ones((2, 5), np.float32)
  weights[1, 4] = 0
  loss, acc = ob._copy_mlm_loss(jnp.asarray(logits), jnp.asarray(rtd), jnp.asarray(inputs),
                                jnp.asarray(originals), jnp.asarray(weights))
  soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  d = 1 / (1 + np.exp(rtd))  # copy probability = sigmoid(-logit)
  mix = (1 - d)[..., None] * soft
  np.put_along_axis(mix, inputs[..., None],
                    np.take_along_axis(mix, inputs[..., None], -1) + d[..., None], -1)
  p = np.take_along_axis(mix, originals[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(loss), -(np.log(p) * weights).sum() / (weights.sum() + 1e-6),
                             rtol=1e-5)
  want_acc = ((mix.argmax(-1) == originals) * weights).sum() / weights.sum()
  np.testing.assert_allclose(float(acc), want_acc, rtol=1e-6)


def test_uniform_generator_has_no_generator_and_constant_gen_loss():
  objective = ob.ObjectiveConfig(uniform_generator=True)
  model, params = setup(objective)
  assert "generator" not in params
  loss, m = loss_fn(objective, model)(params, make_batch(), jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(m["gen_loss"]), math.log(V), rtol=1e-6)
  np.testing.assert_allclose(float(loss), math.log(V) + 50 * float(m["disc_loss"]), rtol=1e-6)
  assert float(m["replaced_fraction"]) > 0


def test_untied_embeddings_layout():
  objective = ob.ObjectiveConfig()
  model = ob.build_pretraining_model(DISC, GEN, "untied", objective)
  ids = jnp.zeros((1, L), jnp.int32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids, ids, ids,
                          jnp.zeros((1, 2), jnp.int32))["params"]
  assert "embeddings" not in shapes
  assert "embeddings" in shapes["generator"]["electra"]
  assert "embeddings" in shapes["discriminator"]["electra"]


@pytest.mark.slow
def test_gdes_discriminator_moves_only_its_delta():
  objective = ob.ObjectiveConfig(gen_weight=0.0)
  model, params = setup(objective, "gdes")
  grads, _ = grad_fn(objective, model)(params, make_batch(), jax.random.PRNGKey(0))
  assert float(jnp.abs(grads["embeddings"]["word_embeddings"]["embedding"]).max()) == 0.0
  assert float(jnp.abs(grads["discriminator"]["word_embeddings_delta"]).max()) > 0


# ------------------------------------------------------------------------------------------
# Configuration errors.

@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="electra15"), "ObjectiveConfig.kind='electra15'"),
    (dict(mask_prob=0.0), "mask_prob=0.0 must be in (0, 1)"),
    (dict(max_predictions=0), "max_predictions=0 must be >= 1"),
    (dict(disc_weight=-1.0), "disc_weight=-1.0 must be >= 0"),
    (dict(temperature=0.0), "temperature=0.0 must be > 0"),
    (dict(sampler="multinomial"), "ObjectiveConfig.sampler='multinomial'"),
    (dict(kind="mlm", uniform_generator=True), "kind 'mlm' has no generator"),
    (dict(mask_token_prob=0.9, random_token_prob=0.2), "with a sum <= 1"),
])
def test_objective_config_errors(kwargs, message):
  with pytest.raises(ValueError, match=None) as err:
    ob.ObjectiveConfig(**kwargs)
  assert message in str(err.value)


def test_build_and_special_errors(tmp_path):
  with pytest.raises(ValueError, match="embedding_sharing='gdes' needs a trained generator"):
    ob.build_pretraining_model(DISC, GEN, "gdes", ob.ObjectiveConfig(kind="replace_mlm"))
  with pytest.raises(ValueError, match="embedding_sharing='shared'"):
    ob.build_pretraining_model(DISC, GEN, "shared", ob.ObjectiveConfig())
  with pytest.raises(ValueError, match="max_predictions=40 exceeds the sequence length 32"):
    ob.ObjectiveConfig(max_predictions=40).num_predictions(32)
  with pytest.raises(ValueError, match=r"SpecialIds.mask=300 is outside the vocabulary \[0, 200\)"):
    ob.SpecialIds(pad=0, cls=1, sep=2, mask=300, vocab_size=200)
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("[PAD]\n[unused0]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
  assert ob.SpecialIds.from_vocab_file(vocab) == ob.SpecialIds(0, 2, 3, 4, 6)
  vocab.write_text("[PAD]\n[CLS]\n")
  with pytest.raises(ValueError, match=r"lacks the special tokens \['\[SEP\]', '\[MASK\]'\]"):
    ob.SpecialIds.from_vocab_file(vocab)


@pytest.mark.parametrize("prior_bias", [True, False])
def test_prior_bias_starts_the_replaced_token_head_at_the_prior(prior_bias):
  objective = ob.ObjectiveConfig(mask_prob=0.2, prior_bias=prior_bias)
  model = ob.build_pretraining_model(DISC, GEN, "tied", objective)
  params = nn.unbox(ob.init_fn(model, L, objective)(jax.random.key(0)))
  bias = np.asarray(params["discriminator"]["discriminator_predictions"]["dense_prediction"]["bias"])
  want = math.log(0.2 / 0.8) if prior_bias else 0.0
  np.testing.assert_allclose(bias, [want], rtol=1e-6)
  # everything else is the init of the official bias: same key, same values
  official = nn.unbox(ob.init_fn(model, L, ob.ObjectiveConfig(prior_bias=False))(jax.random.key(0)))
  same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params, official)
  same["discriminator"]["discriminator_predictions"]["dense_prediction"]["bias"] = True
  assert all(jax.tree.leaves(same))


def test_prior_bias_leaves_a_model_without_the_head_alone():
  objective = ob.ObjectiveConfig(kind="mlm", prior_bias=True)
  model = ob.build_pretraining_model(DISC, GEN, "tied", objective)
  params = ob.init_fn(model, L, objective)(jax.random.key(0))
  assert "discriminator_predictions" not in params["discriminator"]
