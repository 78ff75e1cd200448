"""The optimizer equals a NumPy transcription of the official AdamWeightDecayOptimizer."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from electra_jax.runtime import optim


def make_params(rs):
  return {
      "embeddings": {"word_embeddings": {"embedding": rs.randn(6, 4)},
                     "LayerNorm": {"scale": 1 + 0.1 * rs.randn(4), "bias": 0.1 * rs.randn(4)}},
      "layer_0": {"intermediate": {"kernel": rs.randn(4, 8), "bias": rs.randn(8)},
                  "output_LayerNorm": {"scale": rs.randn(4)}},
      "generator_predictions": {"output_bias": rs.randn(6)},
  }


def flat_names(tree):
  return {"/".join(str(k.key) for k in path): np.asarray(v, np.float64)
          for path, v in jax.tree_util.tree_leaves_with_path(tree)}


def official_lr(step, cfg):
  """tf.train.polynomial_decay(power) x min(1, step / warmup), as create_optimizer."""
  decayed = cfg.learning_rate * (1 - min(step, cfg.total_steps) / cfg.total_steps) \
      ** cfg.lr_decay_power
  return decayed * min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else decayed


def official_run(params, grads_per_step, cfg, multipliers=None):
  """NumPy transcription of model/optimization.py (+ optional bias correction)."""
  p = flat_names(params)
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  for step, grads in enumerate(grads_per_step):
    g = flat_names(grads)
    if cfg.clip_norm is not None:
      norm = np.sqrt(sum(np.sum(x ** 2) for x in g.values()))
      g = {k: x * cfg.clip_norm / max(norm, cfg.clip_norm) for k, x in g.items()}
    lr = official_lr(step, cfg)
    for name in p:
      m[name] = cfg.b1 * m[name] + (1 - cfg.b1) * g[name]
      v[name] = cfg.b2 * v[name] + (1 - cfg.b2) * g[name] ** 2
      if cfg.bias_correction:
        t = step + 1
        update = (m[name] / (1 - cfg.b1 ** t)) / (np.sqrt(v[name] / (1 - cfg.b2 ** t)) + cfg.eps)
      else:
        update = m[name] / (np.sqrt(v[name]) + cfg.eps)
      if not any(re.search(r, name) for r in ("LayerNorm", "layer_norm", "bias")):
        update = update + cfg.weight_decay * p[name]
      scale = 1.0 if multipliers is None else multipliers[name]
      p[name] = p[name] - lr * scale * update
  return p


def run_optax(params, grads_per_step, tx):
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = tx.init(params)
  update = jax.jit(tx.update)
  lrs = []
  for grads in grads_per_step:
    grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    lrs.append(float(optax.tree_utils.tree_get(state, "learning_rate")))
  return flat_names(params), lrs


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("grad_scale", [0.01, 10.0])  # clip inactive / active
def test_matches_official_update_rule(bias_correction, grad_scale):
  cfg = optim.OptimizerConfig(learning_rate=1e-2, warmup_steps=3, total_steps=10,
                              weight_decay=0.1, bias_correction=bias_correction)
  rs = np.random.RandomState(0)
  params = make_params(rs)
  grads = [jax.tree.map(lambda x: grad_scale * rs.randn(*np.shape(x)), params) for _ in range(6)]
  got, lrs = run_optax(params, grads, optim.make_optimizer(cfg))
  want = official_run(params, grads, cfg)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-6, err_msg=name)
  np.testing.assert_allclose(lrs, [official_lr(s, cfg) for s in range(6)], rtol=1e-6)
  assert lrs[0] == 0.0  # the official first update has learning rate 0
  moved = {k: not np.allclose(got[k], flat_names(params)[k]) for k in got}
  assert all(moved.values())


def test_lr_multipliers_scale_each_leaf():
  cfg = optim.OptimizerConfig(learning_rate=1e-2, warmup_steps=0, total_steps=10,
                              weight_decay=0.1)
  rs = np.random.RandomState(1)
  params = make_params(rs)
  mult = jax.tree_util.tree_map_with_path(
      lambda path, _: 0.5 if "layer_0" in str(path) else 2.0, params)
  grads = [jax.tree.map(lambda x: rs.randn(*np.shape(x)), params) for _ in range(3)]
  got, _ = run_optax(params, grads, optim.make_optimizer(cfg, params, mult))
  want = official_run(params, grads, cfg, flat_names(mult))
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-6, err_msg=name)
  with pytest.raises(ValueError, match="lr_multipliers does not match the params tree"):
    optim.make_optimizer(cfg, params, {"layer_0": 1.0})


def test_decay_mask_excludes_layernorm_and_biases():
  mask = flat_names(optim.decay_mask(make_params(np.random.RandomState(0))))
  assert {k for k, v in mask.items() if v} == {"embeddings/word_embeddings/embedding",
                                               "layer_0/intermediate/kernel"}


def test_schedule_values():
  cfg = optim.OptimizerConfig(learning_rate=5e-4, warmup_steps=10000, total_steps=1000000)
  lr = optim.learning_rate_schedule(cfg)
  for step, want in [(0, 0.0), (5000, 5e-4 * 0.995 * 0.5), (10000, 5e-4 * 0.99),
                     (500000, 2.5e-4), (1000000, 0.0), (2000000, 0.0)]:
    np.testing.assert_allclose(float(lr(step)), want, rtol=1e-6, atol=1e-12)
  offset = optim.learning_rate_schedule(
      optim.OptimizerConfig(learning_rate=5e-4, warmup_steps=10000, total_steps=1000000,
                            schedule_offset=10000))
  np.testing.assert_allclose(float(offset(0)), 5e-4 * 0.99, rtol=1e-6)
  no_warmup = optim.learning_rate_schedule(optim.OptimizerConfig(warmup_steps=0, total_steps=4))
  np.testing.assert_allclose(float(no_warmup(1)), 5e-4 * 0.75, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(total_steps=0), "total_steps=0 must be >= 1"),
    (dict(warmup_steps=-1), "warmup_steps=-1 must be >= 0"),
    (dict(b2=1.0), "b2=1.0 must be in [0, 1)"),
    (dict(eps=0.0), "eps=0.0 must be > 0"),
    (dict(clip_norm=0.0), "clip_norm=0.0 must be > 0 or None"),
    (dict(weight_decay=-0.1), "weight_decay=-0.1 must be >= 0"),
])
def test_config_errors(kwargs, message):
  with pytest.raises(ValueError) as err:
    optim.OptimizerConfig(**kwargs)
  assert message in str(err.value)


def brute_force_amplification(cfg, steps):
  ratios = [official_lr(t, cfg) / cfg.learning_rate * (1 - cfg.b1 ** (t + 1))
            / np.sqrt(1 - cfg.b2 ** (t + 1)) for t in range(steps)]
  return max(ratios), int(np.argmax(ratios))


@pytest.mark.parametrize("warmup, factor, step", [(0, 6.57, 11), (100, 3.23, 100),
                                                  (150, 2.67, 150), (1000, 1.26, 1000),
                                                  (10000, 1.0, 10000)])
def test_uncorrected_amplification(warmup, factor, step):
  """Adam without bias correction = the corrected update x (1 - b1^t) / sqrt(1 - b2^t)."""
  from electra_jax.runtime.optim import uncorrected_amplification

  cfg = optim.OptimizerConfig(learning_rate=1e-3, warmup_steps=warmup, total_steps=1_000_000)
  got_factor, got_step = uncorrected_amplification(cfg)
  want_factor, want_step = brute_force_amplification(cfg, 40000)
  assert got_factor == pytest.approx(want_factor, rel=1e-9) and got_step == want_step
  assert got_factor == pytest.approx(factor, abs=0.01) and abs(got_step - step) <= 1


def test_bias_correction_is_the_default():
  assert optim.OptimizerConfig().bias_correction
