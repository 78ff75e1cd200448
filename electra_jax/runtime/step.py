"""The one train step shared by pre-training and fine-tuning, around a loss function the caller
gives: `loss_fn(params, batch, rng) -> (loss, metrics)`; pre-training passes the ELECTRA objective
(electra_jax.pretrain.objective), fine-tuning its task loss (electra_jax.finetune.kinds).

The step is one `jax.jit` with explicit in/out shardings over a ("data", "fsdp", "tensor") mesh and
a donated state, traced under that mesh and the logical-axis rules (`mesh.MeshJit`), so the
model's activation constraints are real sharding constraints; XLA propagates the rest.
Randomness of step s is fold_in(state.rng, s), so a run resumed from a checkpoint at step s
replays exactly the steps an uninterrupted run would have taken. Matmuls run in
ModelConfig.dtype; layers are rematerialised when ModelConfig.remat is set.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from electra_jax.runtime import mesh as shd
from electra_jax.runtime.state import TrainState

LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, mesh,
                    shardings: TrainState) -> shd.MeshJit:
  """(state, batch) -> (new_state, metrics), a `mesh.MeshJit` (call it or `.lower` it).

  batch: global arrays [B, ...] split over the data axes (mesh.global_batch); the input state
  is donated. metrics: loss_fn's metrics plus `loss`, `grad_norm` (global L2 norm before
  clipping) and `learning_rate` (the rate this update used), float32 scalars, replicated. The
  optimizer must expose its rate as a 'learning_rate' state entry (electra_jax.runtime.optim)."""

  def step(state: TrainState, batch: dict):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "loss": loss.astype(jnp.float32),
               "grad_norm": optax.global_norm(grads).astype(jnp.float32),
               "learning_rate": optax.tree_utils.tree_get(opt_state, "learning_rate")}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  probe = jax.eval_shape(optimizer.init, jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct((), jnp.float32), shardings.params))
  if optax.tree_utils.tree_get(probe, "learning_rate") is None:
    raise ValueError("the optimizer's state has no 'learning_rate' entry; build it with "
                     "electra_jax.runtime.optim.make_optimizer")
  return shd.MeshJit(step, mesh, in_shardings=(shardings, shd.batch_sharding(mesh)),
                     out_shardings=(shardings, shd.replicated(mesh)), donate_argnums=0)
