"""The training state shared by pre-training and fine-tuning: one TrainState, created sharded
from the start (abstract shapes first, then a jitted init with out_shardings) or restored onto the
same shardings, so a checkpoint restores onto any mesh.

A model enters through `init_fn(key) -> params boxed with logical axis names` (what
`model.init(key, *dummy_inputs)["params"]` returns); parameter and optimizer-slot shardings come
from those names (`electra_jax.runtime.mesh`). Parameters and optimizer slots are float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from electra_jax.runtime import mesh as shd

InitFn = Callable[[jax.Array], Any]


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar (updates applied); params: unboxed float32 tree; opt_state: optax state;
  rng: a PRNG key (raw uint32[2] data or a typed key), the root of every step's randomness."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def _trace(init_fn: InitFn, optimizer: optax.GradientTransformation) -> tuple[Any, TrainState]:
  """One abstract trace of `init_fn`: (params boxed with logical axis names, the abstract
  TrainState of `init_train_state` as jax.ShapeDtypeStructs)."""
  boxed = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  params = nn.unbox(boxed)
  state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                     opt_state=jax.eval_shape(optimizer.init, params),
                     rng=jax.eval_shape(jax.random.PRNGKey, 0))
  return boxed, state


def _shardings(optimizer: optax.GradientTransformation, boxed: Any, abstract: TrainState,
               mesh) -> TrainState:
  params = shd.param_shardings(boxed, mesh)
  rep = shd.replicated(mesh)
  opt_state = optax.tree_map_params(optimizer, lambda _, s: s, abstract.opt_state, params,
                                    transform_non_params=lambda _: rep)
  return TrainState(step=rep, params=params, opt_state=opt_state, rng=rep)


def state_shardings(init_fn: InitFn, optimizer: optax.GradientTransformation, mesh) -> TrainState:
  """Shardings of the TrainState: parameters by their logical axis names, each optimizer slot
  as its parameter (`optax.tree_map_params`), every other leaf (counts, rates, rng) replicated."""
  return _shardings(optimizer, *_trace(init_fn, optimizer), mesh)


def params_initializer(init_fn: InitFn, shardings: TrainState):
  """A jitted key -> unboxed parameters of `init_fn(key)`, each created directly on its devices
  (out_shardings; nothing is materialised unsharded). Traced without the activation rules: the
  dummy init batch of 1 row would not split over the batch axes. Compiles once for all keys."""
  return jax.jit(lambda key: nn.unbox(init_fn(key)), out_shardings=shardings.params)


def state_initializer(optimizer: optax.GradientTransformation, shardings: TrainState):
  """A jitted (params, rng) -> TrainState at step 0 with fresh optimizer slots created on their
  devices and `rng` as the root of the steps' randomness."""
  make = lambda params, rng: TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                        opt_state=optimizer.init(params), rng=rng)
  return jax.jit(make, out_shardings=shardings)


def init_train_state(init_fn: InitFn, optimizer: optax.GradientTransformation,
                     shardings: TrainState, *, seed: int) -> TrainState:
  """A fresh TrainState at step 0, laid out as `shardings` (`state_shardings`). Parameters come
  from fold_in(PRNGKey(seed), 0), the step rng root is fold_in(PRNGKey(seed), 1)."""
  root = jax.random.PRNGKey(seed)
  params = params_initializer(init_fn, shardings)(jax.random.fold_in(root, 0))
  return state_initializer(optimizer, shardings)(params, jax.random.fold_in(root, 1))


def create_train_state(init_fn: InitFn, optimizer: optax.GradientTransformation, mesh, *,
                       seed: int) -> tuple[TrainState, TrainState]:
  """(state, state_shardings): `init_train_state` with the shardings derived on `mesh`."""
  shardings = state_shardings(init_fn, optimizer, mesh)
  return init_train_state(init_fn, optimizer, shardings, seed=seed), shardings


def abstract_train_state(init_fn: InitFn, optimizer: optax.GradientTransformation, mesh
                         ) -> tuple[TrainState, TrainState]:
  """(abstract_state, state_shardings): the TrainState of `create_train_state` as
  jax.ShapeDtypeStructs carrying their shardings on `mesh` (an orbax restore target for any
  mesh), and the shardings; `init_fn` is traced once."""
  boxed, abstract = _trace(init_fn, optimizer)
  shardings = _shardings(optimizer, boxed, abstract, mesh)
  abstract = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract, shardings)
  return abstract, shardings


@dataclasses.dataclass
class WarmStart:
  """What `warm_start` did. Groups and tensors are named by their "/"-joined parameter paths.

  params: the fresh params with each taken group replaced by the source's arrays;
  taken: groups that came from the source; fresh: groups the source has no tensor of (kept
  fresh); mismatched: {group: why} for groups the source holds with other shapes or tensors
  (kept fresh; the caller decides whether that is an error); unused: source tensors that no
  group took."""

  params: Any
  taken: list
  fresh: list
  mismatched: dict
  unused: list


def warm_start(fresh_params: Any, source: dict, param_shardings: Any,
               depth: Optional[int] = None) -> WarmStart:
  """The one warm start of both pipelines: params that take the host arrays of `source` (a
  nested dict of numpy arrays, e.g. a loaded checkpoint) where they fit `fresh_params`, placed
  on `param_shardings` (the params' shardings tree; works with several processes, each holding
  the whole source on the host), in the fresh params' dtype.

  A group is the subtree at the first `depth` keys of a parameter path (None: each tensor on
  its own); it is taken whole when the source holds exactly its tensors with the same shapes.
  """
  flat_fresh = traverse_util.flatten_dict(fresh_params)
  flat_source = traverse_util.flatten_dict(source)
  flat_shardings = traverse_util.flatten_dict(param_shardings)
  group_of = lambda key: key if depth is None else key[:depth]
  groups: dict = {}
  for key in flat_fresh:
    groups.setdefault(group_of(key), []).append(key)
  source_groups: dict = {}
  for key in flat_source:
    source_groups.setdefault(group_of(key), []).append(key)
  out, report = dict(flat_fresh), WarmStart(None, [], [], {}, [])
  for group, keys in groups.items():
    name = "/".join(group)
    offered = source_groups.get(group, [])
    if not offered:
      report.fresh.append(name)
      continue
    why = _mismatch(keys, offered, flat_fresh, flat_source)
    if why is not None:
      report.mismatched[name] = why
      continue
    for key in keys:
      array = np.asarray(flat_source[key], dtype=flat_fresh[key].dtype)
      out[key] = jax.make_array_from_callback(array.shape, flat_shardings[key],
                                              lambda index, a=array: a[index])
    report.taken.append(name)
  report.unused = sorted("/".join(k) for k in set(flat_source) - set(flat_fresh))
  report.params = traverse_util.unflatten_dict(out)
  return report


def _mismatch(keys: list, offered: list, fresh: dict, source: dict) -> Optional[str]:
  """Why the source's tensors `offered` cannot replace the fresh tensors `keys` of one group
  (None when they can)."""
  for key in keys:
    if key not in source:
      return f"{'/'.join(key)} is missing from the source"
    if tuple(np.shape(source[key])) != tuple(fresh[key].shape):
      return (f"{'/'.join(key)} has shape {tuple(np.shape(source[key]))}, the configured model "
              f"needs {tuple(fresh[key].shape)}")
  extra = sorted(set(offered) - set(keys))
  return f"the source has {'/'.join(extra[0])}, which the model lacks" if extra else None
