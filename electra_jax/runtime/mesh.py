"""Device mesh, logical-axis rules, shardings, and the context that makes activation
constraints real.

One mesh with axes ("data", "fsdp", "tensor"), all of type Auto (compiler-propagated shardings):
- the batch is split over data x fsdp;
- parameters and optimizer slots are split over fsdp along their embedding / hidden axis (ZeRO-3
  style; XLA all-gathers them for the matmuls) and over tensor along vocab / FFN / heads
  (Megatron style);
- a dimension that a mesh axis does not divide stays replicated over that axis.

Model code names axes logically (see `electra_jax.model`); `LOGICAL_AXIS_RULES` is the one
table mapping them to mesh axes, for parameters (`param_shardings`) and activations alike. Rules
are tried in order and a mesh axis is used at most once per array, so "batch" (first) takes fsdp
from "embed"/"hidden" in activations.

Parameters, optimizer slots and batches get their shardings at the `jax.jit` boundary. Activations
are pinned by the model's logical constraints (electra_jax.floor.sharding's `logical_constraint`,
called in electra_jax.model.layers).
Those are no-ops unless the function is traced with a global mesh (`jax.set_mesh`) and the rules
(`nn.logical_axis_rules`) in effect: `activation_sharding(mesh)` enters both, and `MeshJit` jits a
function so that every trace (a call or `.lower`) happens inside it. The train and eval steps are
`MeshJit`s, so their lowered StableHLO carries one `sdy.sharding_constraint` per annotation (and its
transpose in the backward pass); XLA propagates the rest. `logical_constraint` is the rules-driven
constraint that also drops mesh axes not dividing their dimension (flax's `with_logical_constraint`
keeps them, asking XLA for a padded, uneven split, e.g. 1 generator head over tensor=2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from electra_jax.floor import sharding as floor_sharding

MESH_AXES = ("data", "fsdp", "tensor")

# XLA:CPU options that made the ELECTRA-Small step ~20-30% faster on a 2-core CPU: XNNPACK kernels
# and a scheduler that runs independent ops concurrently. Harmless on GPU/TPU (CPU-only flags).
CPU_XLA_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=true",
                 "--xla_cpu_use_xnnpack=true")


def set_cpu_xla_flags() -> None:
  """Appends CPU_XLA_FLAGS to $XLA_FLAGS (flags already named there win). Call it before the
  first JAX computation in the process; later calls have no effect on the running backend."""
  current = os.environ.get("XLA_FLAGS", "")
  names = {f.split("=")[0] for f in current.split()}
  extra = [f for f in CPU_XLA_FLAGS if f.split("=")[0] not in names]
  os.environ["XLA_FLAGS"] = " ".join([current] + extra).strip()

LOGICAL_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("hidden_out", "tensor"),
    ("embed", "fsdp"),
    ("hidden", "fsdp"),
    ("length", None),
    ("kv", None),
    ("position", None),
    ("type", None),
    ("classes", None),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh axis sizes; at most one may be -1, meaning all the devices the others leave."""

  data: int = -1
  fsdp: int = 1
  tensor: int = 1

  def __post_init__(self):
    sizes = self.sizes()
    if any(s == 0 or s < -1 for s in sizes):
      raise ValueError(f"MeshConfig sizes must be positive or -1 (fill): {self}")
    if sizes.count(-1) > 1:
      raise ValueError(f"MeshConfig: at most one axis may be -1 (fill): {self}")

  def sizes(self) -> tuple:
    return (self.data, self.fsdp, self.tensor)

  def resolve(self, num_devices: int) -> tuple:
    """The concrete (data, fsdp, tensor) sizes for `num_devices` devices."""
    sizes = list(self.sizes())
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
      if num_devices % fixed:
        raise ValueError(f"MeshConfig {self}: {num_devices} devices are not divisible by the "
                         f"fixed axes' product {fixed}")
      sizes[sizes.index(-1)] = num_devices // fixed
    elif fixed != num_devices:
      raise ValueError(f"MeshConfig {self}: data x fsdp x tensor = {fixed} but there are "
                       f"{num_devices} devices")
    return tuple(sizes)


def make_mesh(cfg: MeshConfig, devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A Mesh over `devices` (default: all, every process) with axes ("data", "fsdp", "tensor")."""
  devices = list(jax.devices() if devices is None else devices)
  shape = cfg.resolve(len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def logical_sharding(logical_axes: Optional[Sequence[Optional[str]]], shape: Sequence[int],
                     mesh: Mesh) -> NamedSharding:
  """The NamedSharding of an array of `shape` whose axes have these logical names."""
  if logical_axes is None:
    return NamedSharding(mesh, PartitionSpec())
  spec = nn.logical_to_mesh_axes(tuple(logical_axes), LOGICAL_AXIS_RULES)
  return NamedSharding(mesh, floor_sharding.fit_spec(spec, shape, mesh))


def param_shardings(abstract_boxed_params, mesh: Mesh):
  """Shardings (a tree like the unboxed params) for params boxed with logical axis names
  (`nn.LogicallyPartitioned`, e.g. from `jax.eval_shape(model.init, ...)`); unboxed leaves are
  replicated."""

  def one(leaf):
    if isinstance(leaf, nn.LogicallyPartitioned):
      return logical_sharding(leaf.names, leaf.value.shape, mesh)
    return NamedSharding(mesh, PartitionSpec())

  return jax.tree_util.tree_map(one, abstract_boxed_params,
                                is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


@contextlib.contextmanager
def activation_sharding(mesh: Mesh):
  """Context in which tracing model code turns its logical activation constraints into real
  sharding constraints: `mesh` is the global mesh (`jax.set_mesh`; allowed only outside a jit
  trace) and LOGICAL_AXIS_RULES the logical-axis rules (`nn.logical_axis_rules`)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
    yield


class MeshJit:
  """`jax.jit(fun, **jit_kwargs)` traced under `activation_sharding(mesh)` when called or lowered.

  `jitted` is the plain jitted function: called or lowered directly it traces without the mesh
  and rules, so the model's activation constraints vanish from it (kept for comparisons). The
  rules are read while tracing, so a `.lower(...).compile()`d step keeps its constraints wherever
  it is later called."""

  def __init__(self, fun: Callable, mesh: Mesh, **jit_kwargs):
    self.mesh = mesh
    self.jitted = jax.jit(fun, **jit_kwargs)

  def __call__(self, *args, **kwargs):
    with activation_sharding(self.mesh):
      return self.jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with activation_sharding(self.mesh):
      return self.jitted.lower(*args, **kwargs)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of [B, ...] batch arrays: B split over data x fsdp."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch(mesh: Mesh, batch_size: int, name: str = "global_batch_size") -> None:
  """ValueError unless `batch_size` rows split evenly over the data x fsdp devices."""
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if batch_size % shards:
    raise ValueError(f"{name}={batch_size} is not divisible by data x fsdp = {shards} devices")


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """This process's rows {name: np.ndarray [B_local, ...]} -> global jax.Arrays [B, ...] sharded
  by `batch_sharding` (B = B_local x process count). B must divide by data x fsdp."""
  sharding = batch_sharding(mesh)
  out = {}
  for name, value in local_batch.items():
    value = np.asarray(value)
    global_rows = value.shape[0] * jax.process_count()
    check_batch(mesh, global_rows, f"the global batch of field {name!r}")
    out[name] = jax.make_array_from_process_local_data(sharding, value,
                                                      (global_rows,) + value.shape[1:])
  return out


def __getattr__(name: str):
  """`logical_constraint` moved to electra_jax.floor.sharding (issue 22): the old name still
  works, with a DeprecationWarning, for one release."""
  if name == "logical_constraint":
    warnings.warn("electra_jax.runtime.mesh.logical_constraint moved to "
                  "electra_jax.floor.sharding.logical_constraint; the old name goes in the next "
                  "release", DeprecationWarning, stacklevel=2)
    return floor_sharding.logical_constraint
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
