"""Logical sharding constraints on activations, for model code (electra_jax.model.layers): the
model names each activation's axes ("batch", "length", "embed", ...) and `logical_constraint`
turns the names into a sharding constraint through the logical-axis rules and the mesh in effect
at trace time. The rules table and the mesh are the runtime's (electra_jax.runtime.mesh:
LOGICAL_AXIS_RULES, `activation_sharding`); without them every constraint is a no-op, so the model
runs unchanged on one device.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, PartitionSpec


def fit_spec(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
  """Drops the mesh axes that do not evenly divide their dimension."""
  out = []
  for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = () if entry is None else ((entry,) if isinstance(entry, str) else tuple(entry))
    kept, size = [], 1
    for name in names:
      if dim % (size * mesh.shape[name]) == 0:
        kept.append(name)
        size *= mesh.shape[name]
    out.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
  return PartitionSpec(*out)


def logical_constraint(x: jax.Array, logical_axes: Sequence[Optional[str]]) -> jax.Array:
  """`x` constrained to the sharding the active logical-axis rules give `logical_axes` (one name
  or None per dimension of x), without the mesh axes that do not evenly divide their dimension
  (e.g. 1 generator head over tensor=2 stays replicated rather than padded). Like
  `nn.with_logical_constraint`, a no-op unless traced with rules and a global mesh in effect
  (see electra_jax.runtime.mesh's `activation_sharding`)."""
  rules = nn.get_logical_axis_rules()
  mesh = jax.sharding.get_abstract_mesh()
  if not rules or mesh.empty:
    return x
  if len(logical_axes) != x.ndim:
    raise ValueError(f"logical axes {tuple(logical_axes)} name {len(logical_axes)} dimensions "
                     f"but the array has shape {x.shape}")
  spec = nn.logical_to_mesh_axes(tuple(logical_axes), rules)
  return jax.lax.with_sharding_constraint(x, fit_spec(spec, x.shape, mesh))
