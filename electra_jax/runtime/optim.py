"""The official ELECTRA optimizer in optax: global-norm clip, then AdamW without bias correction.

google-research/electra `model/optimization.py`, per step t (t = 0, 1, ...):
  g      <- g x clip / max(||g||_global, clip)
  m      <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
  update <- m / (sqrt(v) + eps) + weight_decay x param     (decay skipped for LayerNorm and biases)
  param  <- param - lr(t) x multiplier x update
  lr(t)  =  peak x (1 - min(t, T) / T)^power x min(1, t / warmup)   (warmup and decay overlap)
so the first update (t = 0) has learning rate 0, exactly as the official code.

Bias correction (on by default; `OptimizerConfig.bias_correction = False` is the official update).
Without it the first moments are shrunk by 1 - b1^t and the second by 1 - b2^t, so every
update is the bias-corrected one times (1 - b1^t) / sqrt(1 - b2^t): x3.2 at the first step,
x6.6 at step 12, still x1.26 at step 1,000 (b1 = 0.9, b2 = 0.999). Under the paper's 10k-step
warmup the schedule's own ramp hides this (the effective rate never exceeds the peak); under a
short warmup the effective rate reaches several times the peak, and measured on the shared
corpus (4 layers x 128, lr 1e-3, 150-step warmup) the discriminator then sits at its prior loss
for the whole run. `uncorrected_amplification` gives the worst factor of a config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

_NO_DECAY = ("LayerNorm", "layer_norm", "bias")  # official exclude_from_weight_decay patterns


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW + schedule hyper-parameters; defaults are ELECTRA-Small pre-training (Table 6),
  except bias_correction (True here; the official code has none; see the module docstring).

  schedule_offset is added to the optimizer's own step count when evaluating the schedule (e.g.
  continued pre-training with fresh optimizer slots that resumes the schedule at a given step).
  """

  learning_rate: float = 5e-4
  warmup_steps: int = 10000
  total_steps: int = 1000000
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-6
  clip_norm: Optional[float] = 1.0
  bias_correction: bool = True
  lr_decay_power: float = 1.0
  schedule_offset: int = 0

  def __post_init__(self):
    if self.learning_rate < 0:
      raise ValueError(f"OptimizerConfig.learning_rate={self.learning_rate} must be >= 0")
    if self.total_steps < 1:
      raise ValueError(f"OptimizerConfig.total_steps={self.total_steps} must be >= 1")
    if self.warmup_steps < 0:
      raise ValueError(f"OptimizerConfig.warmup_steps={self.warmup_steps} must be >= 0")
    if self.weight_decay < 0:
      raise ValueError(f"OptimizerConfig.weight_decay={self.weight_decay} must be >= 0")
    for name in ("b1", "b2"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"OptimizerConfig.{name}={getattr(self, name)} must be in [0, 1)")
    if self.eps <= 0:
      raise ValueError(f"OptimizerConfig.eps={self.eps} must be > 0")
    if self.clip_norm is not None and self.clip_norm <= 0:
      raise ValueError(f"OptimizerConfig.clip_norm={self.clip_norm} must be > 0 or None")
    if self.lr_decay_power <= 0:
      raise ValueError(f"OptimizerConfig.lr_decay_power={self.lr_decay_power} must be > 0")
    if self.schedule_offset < 0:
      raise ValueError(f"OptimizerConfig.schedule_offset={self.schedule_offset} must be >= 0")


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
  """step -> learning rate (float32): peak x linear (power) decay to 0 at total_steps x warmup."""

  def schedule(step):
    t = jnp.asarray(step, jnp.float32) + cfg.schedule_offset
    frac = jnp.minimum(t, cfg.total_steps) / cfg.total_steps
    lr = cfg.learning_rate * (1.0 - frac) ** cfg.lr_decay_power
    if cfg.warmup_steps > 0:
      lr = lr * jnp.minimum(1.0, t / cfg.warmup_steps)
    return lr.astype(jnp.float32)

  return schedule


def uncorrected_amplification(cfg: OptimizerConfig) -> tuple[float, int]:
  """(factor, step): the largest effective learning rate of Adam WITHOUT bias correction under
  `cfg`'s schedule, as a multiple of the peak learning_rate, and the (0-based) update where it
  occurs. Update t uses lr(t) x (1 - b1^(t+1)) / sqrt(1 - b2^(t+1)) against a bias-corrected
  update's lr(t) <= peak, so a factor above 1 means steps larger than the configured peak."""
  if cfg.learning_rate == 0:
    return 0.0, 0
  horizon = min(cfg.total_steps, max(cfg.warmup_steps, 0) + int(20 / (1.0 - cfg.b2)))
  t = np.arange(horizon, dtype=np.float64)
  shifted = t + cfg.schedule_offset
  lr = (1.0 - np.minimum(shifted, cfg.total_steps) / cfg.total_steps) ** cfg.lr_decay_power
  if cfg.warmup_steps > 0:
    lr = lr * np.minimum(1.0, shifted / cfg.warmup_steps)
  ratio = lr * (1.0 - cfg.b1 ** (t + 1)) / np.sqrt(1.0 - cfg.b2 ** (t + 1))
  worst = int(np.argmax(ratio))
  return float(ratio[worst]), worst


def _path_name(path) -> str:
  parts = []
  for key in path:
    name = getattr(key, "key", None)
    if name is None:
      name = getattr(key, "name", None)
    if name is None:
      name = getattr(key, "idx", key)
    parts.append(str(name))
  return "/".join(parts)


def decay_mask(params) -> Any:
  """Pytree of bools like `params`: False for LayerNorm parameters and every bias (any path
  containing "LayerNorm", "layer_norm" or "bias", as the official regexes), True otherwise."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any(p in _path_name(path) for p in _NO_DECAY), params)


class AdamState(NamedTuple):
  count: jax.Array  # int32 scalar: updates applied so far
  mu: Any
  nu: Any


def scale_by_adam_official(b1: float, b2: float, eps: float,
                           bias_correction: bool = False) -> optax.GradientTransformation:
  """m / (sqrt(v) + eps), moments in float32; with bias_correction, m_hat / (sqrt(v_hat) + eps)."""

  def init(params):
    zeros = lambda p: jnp.zeros(jnp.shape(p), jnp.float32)
    return AdamState(count=jnp.zeros((), jnp.int32), mu=jax.tree_util.tree_map(zeros, params),
                     nu=jax.tree_util.tree_map(zeros, params))

  def update(updates, state, params=None):
    del params
    mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
    nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu,
                                updates)
    count = state.count + 1
    if bias_correction:
      t = count.astype(jnp.float32)
      c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
      out = jax.tree_util.tree_map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
    else:
      out = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
    return out, AdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)


def scale_by_multipliers(multipliers) -> optax.GradientTransformation:
  """Multiplies each leaf's update by the matching float in `multipliers` (same tree as params)."""

  def update(updates, state, params=None):
    del params
    return jax.tree_util.tree_map(lambda u, k: u * k, updates, multipliers), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class LearningRateState(NamedTuple):
  count: jax.Array  # int32 scalar: updates applied so far
  learning_rate: jax.Array  # float32 scalar: the rate of the latest update


def scale_by_learning_rate_logged(schedule: optax.Schedule) -> optax.GradientTransformation:
  """update -> -schedule(count) x update; the rate used is kept in the state as
  `learning_rate` (read it with `optax.tree_utils.tree_get(opt_state, "learning_rate")`)."""

  def init(params):
    del params
    return LearningRateState(count=jnp.zeros((), jnp.int32),
                             learning_rate=jnp.asarray(schedule(0), jnp.float32))

  def update(updates, state, params=None):
    del params
    lr = jnp.asarray(schedule(state.count), jnp.float32)
    updates = jax.tree_util.tree_map(lambda u: -lr * u, updates)
    return updates, LearningRateState(count=state.count + 1, learning_rate=lr)

  return optax.GradientTransformation(init, update)


def make_optimizer(cfg: OptimizerConfig, params=None, lr_multipliers=None
                   ) -> optax.GradientTransformation:
  """Global-norm clip -> Adam (bias-corrected unless cfg.bias_correction=False) -> decoupled weight decay
  (masked by `decay_mask`) -> optional per-leaf `lr_multipliers` -> -lr(t).

  `params` (optional) only checks that `lr_multipliers` has the same tree structure.
  """
  if lr_multipliers is not None and params is not None:
    want, got = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(lr_multipliers)
    if want != got:
      raise ValueError(f"lr_multipliers does not match the params tree: {got} vs {want}")
  parts = []
  if cfg.clip_norm is not None:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(scale_by_adam_official(cfg.b1, cfg.b2, cfg.eps, cfg.bias_correction))
  if cfg.weight_decay > 0:
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
  if lr_multipliers is not None:
    parts.append(scale_by_multipliers(lr_multipliers))
  parts.append(scale_by_learning_rate_logged(learning_rate_schedule(cfg)))
  return optax.chain(*parts)
