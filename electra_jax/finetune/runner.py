"""What runs a fine-tuned model, in training and inference alike: the jitted train and predict
steps of a task model on a mesh (`Runner`) and `load_finetuned`, which reads a fine-tuned model
back. electra_jax.finetune.train builds a Runner with an optimizer; electra_jax.finetune.predict
(inference) uses its predict step alone and imports no training loop."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from electra_jax.finetune.kinds import MODEL_INPUTS, TaskKind
from electra_jax.io.native import load_safetensors, read_finetune_info
from electra_jax.model.init import init_on_dummy
from electra_jax.runtime import mesh as shd
from electra_jax.runtime import state as ts
from electra_jax.runtime.step import make_train_step


def _to_host(x) -> np.ndarray:
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def _local_rows(batch: dict) -> dict:
  """This process's contiguous share of a global host batch."""
  n, p = jax.process_count(), jax.process_index()
  if n == 1:
    return batch
  return {k: v[p * (len(v) // n):(p + 1) * (len(v) // n)] for k, v in batch.items()}


class Runner:
  """The jitted train and predict steps of one task model on one mesh.

  Training runs electra_jax.runtime's step (the pre-training one) with this task's loss:
  one TrainState, parameters and optimizer slots laid out by their logical axis names, batches
  split over the data axes; the predict step is a `mesh.MeshJit` on the same layout. With
  tx=None there is only the predict step (electra_jax.finetune.predict)."""

  def __init__(self, model, kind: TaskKind, mesh, tx, max_seq_length: int):
    self.model, self.mesh = model, mesh
    init_fn = init_on_dummy(model, max_seq_length)
    if tx is None:
      self.param_shardings = shd.param_shardings(jax.eval_shape(init_fn, jax.random.key(0)), mesh)
    else:
      self.shardings = ts.state_shardings(init_fn, tx, mesh)
      self.param_shardings = self.shardings.params
    self.batch_sharding = shd.batch_sharding(mesh)

    def loss_fn(params, batch, rng):
      out = model.apply({"params": params}, *(batch[k] for k in MODEL_INPUTS),
                        deterministic=False, rngs={"dropout": rng})
      return kind.loss(out, batch), {}

    def predict_step(params, batch):
      out = model.apply({"params": params}, *(batch[k] for k in MODEL_INPUTS),
                        deterministic=True)
      return kind.eval_outputs(out)

    # Compiled once and shared by every seed.
    if tx is not None:
      self.init_params = ts.params_initializer(init_fn, self.shardings)
      self.init_state = ts.state_initializer(tx, self.shardings)
      self._train = make_train_step(loss_fn, tx, mesh, self.shardings)
    self._predict = shd.MeshJit(predict_step, mesh,
                                in_shardings=(self.param_shardings, self.batch_sharding),
                                out_shardings=self.batch_sharding)

  def _global(self, batch: dict) -> dict:
    return shd.global_batch(_local_rows(batch), self.mesh)

  def train_step(self, state: ts.TrainState, batch: dict):
    """(new state, metrics: loss, grad_norm, learning_rate) after one step on a host batch."""
    return self._train(state, self._global(batch))

  def predict(self, params, arrays: dict, batch_size: int):
    """Outputs for every row of `arrays`: the last batch is padded to `batch_size` (so each
    split compiles once) and the padding rows are dropped, so each row counts exactly once."""
    n = len(arrays["input_ids"])
    chunks = []
    for start in range(0, n, batch_size):
      rows = {k: arrays[k][start:start + batch_size] for k in MODEL_INPUTS}
      valid = len(rows["input_ids"])
      if valid < batch_size:
        rows = {k: np.concatenate([v, np.zeros((batch_size - valid,) + v.shape[1:], v.dtype)])
                for k, v in rows.items()}
      out = self._predict(params, self._global(rows))
      chunks.append(jax.tree.map(lambda x: _to_host(x)[:valid], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)




def load_finetuned(path: str) -> tuple[nn.Module, dict, dict]:
  """(task model, params, its "finetune" record: task, labels, select, step, scores,
  max_seq_length) from a fine-tuning output WORKDIR/seed_S/{select} (an electra_jax-safetensors
  directory; `electra_jax.load_pretrained` reads it too)."""
  meta = read_finetune_info(path)
  if meta is None:
    raise FileNotFoundError(f"{path} is not a fine-tuned model written by electra_jax.finetune "
                            "(no electra_jax.json with a 'finetune' record)")
  model, params, _ = load_safetensors(path)
  return model, params, meta
