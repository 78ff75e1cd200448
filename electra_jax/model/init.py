"""Model init on dummy ids, the one way both pipelines (and the probe) create parameters: a
batch of one row of `seq_len` zero ids; parameter shapes and their random draws depend only on
the model and the row's length, never on the ids."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.model.pretraining import ElectraPretrainingModel


def dummy_inputs(model: nn.Module, seq_len: int) -> tuple:
  """The positional inputs of `model` for one row of `seq_len` zero ids: (ids, attention mask,
  token types), and one masked position for the joint pre-training model."""
  ids = jnp.zeros((1, seq_len), jnp.int32)
  inputs = (ids, jnp.ones_like(ids), jnp.zeros_like(ids))
  if isinstance(model, ElectraPretrainingModel):
    inputs += (jnp.zeros((1, 1), jnp.int32),)
  return inputs


def init_on_dummy(model: nn.Module, seq_len: int) -> Callable[[jax.Array], Any]:
  """key -> `model`'s parameters boxed with logical axis names (electra_jax.runtime.state's
  `init_fn`), initialised on `dummy_inputs` with dropout off."""
  inputs = dummy_inputs(model, seq_len)
  return lambda key: model.init({"params": key}, *inputs, deterministic=True)["params"]
