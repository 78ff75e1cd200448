"""Train state created sharded from the start, and the jit-compiled sharded train / eval steps.

The step is one `jax.jit` with explicit in/out shardings over a ("data", "fsdp", "tensor") mesh and
a donated state, traced under that mesh and the logical-axis rules (`sharding.MeshJit`), so the
model's activation constraints are real sharding constraints; XLA propagates the rest.
Randomness of step s is fold_in(state.rng, s), so a run resumed from a checkpoint
at step s replays exactly the steps an uninterrupted run would have taken. Parameters, optimizer
slots, sampling and losses are float32; matmuls run in ModelConfig.dtype (e.g. bfloat16); layers
are rematerialised when ModelConfig.remat is set.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from electra_jax import sharding as shd
from electra_jax.objective import ObjectiveConfig, SpecialIds, pretraining_loss


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar (updates applied); params: unboxed float32 tree; opt_state: optax state;
  rng: raw uint32[2] PRNG key data, the root of every step's randomness."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def _init_inputs(seq_len: int):
  ids = jnp.zeros((1, seq_len), jnp.int32)
  return ids, jnp.ones_like(ids), jnp.zeros_like(ids), jnp.zeros((1, 1), jnp.int32)


def _boxed_init(model: nn.Module, seq_len: int, key: jax.Array):
  return model.init({"params": key}, *_init_inputs(seq_len), deterministic=True)["params"]


def _box_aware_shardings(tree, mesh):
  is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
  return jax.tree_util.tree_map(
      lambda x: (shd.logical_sharding(x.names, x.value.shape, mesh) if is_box(x)
                 else shd.replicated(mesh)), tree, is_leaf=is_box)


def _keys(seed: int):
  root = jax.random.PRNGKey(seed)
  return jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)


def _state_shardings(model, optimizer, mesh, seq_len):
  """Shardings of the TrainState: params and optimizer slots by their logical axis names."""
  boxed = jax.eval_shape(lambda k: _boxed_init(model, seq_len, k), jax.random.PRNGKey(0))
  boxed_opt = jax.eval_shape(optimizer.init, boxed)  # slots keep their parameter's boxes
  rep = shd.replicated(mesh)
  return TrainState(step=rep, params=shd.param_shardings(boxed, mesh),
                    opt_state=_box_aware_shardings(boxed_opt, mesh), rng=rep)


def _check_batch(mesh, global_batch_size):
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if global_batch_size % shards:
    raise ValueError(f"global_batch_size={global_batch_size} is not divisible by "
                     f"data x fsdp = {shards} devices")


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation, mesh,
                       *, seq_len: int, global_batch_size: int, seed: int
                       ) -> tuple[TrainState, TrainState]:
  """(state, state_shardings): a fresh TrainState at step 0, initialised by a jit whose
  out_shardings place every parameter and slot on its devices directly (nothing is materialised
  unsharded). Parameters come from fold_in(PRNGKey(seed), 0), the step rng root from ..., 1).
  The init is traced without the activation rules: its dummy batch of 1 row would not split over
  the batch axes, and its output shardings are fixed by out_shardings anyway."""
  _check_batch(mesh, global_batch_size)
  shardings = _state_shardings(model, optimizer, mesh, seq_len)

  def init(seed_value):
    k_params, k_rng = _keys(seed_value)
    params = nn.unbox(_boxed_init(model, seq_len, k_params))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), rng=k_rng)

  state = jax.jit(init, static_argnums=0, out_shardings=shardings)(seed)
  return state, shardings


def abstract_train_state(model: nn.Module, optimizer: optax.GradientTransformation, mesh,
                         *, seq_len: int) -> tuple[TrainState, TrainState]:
  """(abstract_state, state_shardings): the TrainState as jax.ShapeDtypeStructs carrying their
  shardings on `mesh` (an orbax restore target for any mesh), and the shardings."""
  shardings = _state_shardings(model, optimizer, mesh, seq_len)

  def init():
    k_params, k_rng = _keys(0)
    params = nn.unbox(_boxed_init(model, seq_len, k_params))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), rng=k_rng)

  shapes = jax.eval_shape(init)
  abstract = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
  return abstract, shardings


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation,
                    objective: ObjectiveConfig, special: SpecialIds, mesh,
                    state_shardings: TrainState) -> shd.MeshJit:
  """(state, batch) -> (new_state, metrics), a `sharding.MeshJit` (call it or `.lower` it).
  batch: global int32 arrays `input_ids`, `input_mask`, `segment_ids` [B,L] (see
  sharding.global_batch). The input state is donated. Metrics: those of
  `objective.pretraining_loss` plus `grad_norm` (global L2 norm before clipping) and
  `learning_rate` (the rate this update used), float32 scalars, replicated."""

  def loss_fn(params, batch, rng):
    return pretraining_loss(params, batch, rng, model=model, objective=objective,
                            special=special, deterministic=False)

  def step(state: TrainState, batch: dict):
    rng = jax.random.fold_in(state.rng, state.step)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics)
    metrics["grad_norm"] = optax.global_norm(grads).astype(jnp.float32)
    metrics["learning_rate"] = optax.tree_utils.tree_get(opt_state, "learning_rate")
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  probe = jax.eval_shape(optimizer.init, jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct((), jnp.float32), state_shardings.params))
  if optax.tree_utils.tree_get(probe, "learning_rate") is None:
    raise ValueError("the optimizer's state has no 'learning_rate' entry; build it with "
                     "electra_jax.optim.make_optimizer")
  return shd.MeshJit(step, mesh, in_shardings=(state_shardings, shd.batch_sharding(mesh)),
                     out_shardings=(state_shardings, shd.replicated(mesh)), donate_argnums=0)


def make_eval_step(model: nn.Module, objective: ObjectiveConfig, special: SpecialIds, mesh,
                   state_shardings: TrainState, seed: int = 0) -> shd.MeshJit:
  """(state, batch) -> metrics of `pretraining_loss` with dropout off and a fixed rng
  (PRNGKey(seed)), so an eval batch always gets the same masks and samples; a
  `sharding.MeshJit` like the train step."""

  def evaluate(state: TrainState, batch: dict):
    _, metrics = pretraining_loss(state.params, batch, jax.random.PRNGKey(seed), model=model,
                                  objective=objective, special=special, deterministic=True)
    return metrics

  return shd.MeshJit(evaluate, mesh, in_shardings=(state_shardings, shd.batch_sharding(mesh)),
                     out_shardings=shd.replicated(mesh))
