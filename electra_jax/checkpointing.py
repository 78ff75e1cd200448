"""Pre-training checkpoints with orbax-checkpoint, and preemption (SIGTERM) handling.

Layout: WORKDIR/checkpoints/<step>/ with three items:
  state   the TrainState pytree (step, params, opt_state, rng), saved sharded;
  config  the resolved TrainConfig as JSON (`TrainConfig.to_dict()`: "model", "generator",
          "embedding_sharing", ...);
  data    the data position {"step", "seed", "global_batch_size"}: data order is a pure
          function of (seed, step), so the step alone says where reading resumes.

Restoring takes an abstract state (jax.ShapeDtypeStruct leaves carrying the *new* shardings), so
a checkpoint written on one mesh restores onto another.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from electra_jax.train_config import CheckpointConfig

ITEMS = ("state", "config", "data")


class Checkpointer:
  """Saves and restores TrainStates under WORKDIR/checkpoints (every process calls every method).

  Keeps the latest `cfg.keep_latest` checkpoints plus every step that is a multiple of
  `cfg.keep_every`. Saves are asynchronous when `cfg.async_save`: `save` returns once the
  arrays are copied off the device, and writing continues in the background.
  """

  def __init__(self, workdir: Path, cfg: CheckpointConfig):
    self.cfg = cfg
    self.directory = Path(workdir).resolve() / "checkpoints"
    keep: list = [policies.LatestN(n=cfg.keep_latest)]
    if cfg.keep_every:
      keep.append(policies.EveryNSteps(interval_steps=cfg.keep_every))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        enable_async_checkpointing=cfg.async_save, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

  def should_save(self, step: int, last_step: int) -> bool:
    """Periodic saves every `save_every` steps, and always the last step."""
    return step == last_step or (self.cfg.save_every > 0 and step % self.cfg.save_every == 0)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, config_dict: dict, data_position: dict) -> bool:
    """Saves `state` at `step` unless that step is already saved; returns whether it saved."""
    if step in self.manager.all_steps():
      return False
    return self.manager.save(
        step, force=True,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                config=ocp.args.JsonSave(config_dict),
                                data=ocp.args.JsonSave(data_position)))

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> tuple[Any, dict, dict]:
    """Restores (state, config_dict, data_position) at `step` (default: latest).

    `abstract_state`: the TrainState structure with jax.ShapeDtypeStruct leaves whose
    `.sharding` says where each restored array goes (any mesh).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      config=ocp.args.JsonRestore(),
                                      data=ocp.args.JsonRestore()))
    return restored.state, restored.config, restored.data

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are written."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


class PreemptionWatcher:
  """Says, consistently on every process, when a run should save and stop.

  Single process: SIGTERM sets a flag (the handler is installed from the main thread only).
  Several processes (jax.distributed): JAX's preemption sync manager, which catches SIGTERM on
  any process and makes all processes agree on the step at which to stop.
  Use as a context manager; leaving restores the previous SIGTERM handler.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None

  def __enter__(self) -> "PreemptionWatcher":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_signal(self, signum, frame) -> None:
    self._flag.set()

  def reached(self, step: int) -> bool:
    """True when a SIGTERM has arrived and the run should save `step` and exit."""
    if jax.process_count() == 1:
      return self._flag.is_set()
    try:
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # preemption service disabled: no coordinated preemption
      return False


def _step_dir(path: Path) -> Path:
  """A step directory from a step dir, a checkpoints dir or a workdir (its latest step)."""
  path = Path(path)
  if (path / "state").is_dir():
    return path
  for root in (path / "checkpoints", path):
    steps = sorted((int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()),
                   reverse=True) if root.is_dir() else []
    for step in steps:
      if (root / str(step) / "state").is_dir():
        return root / str(step)
  raise FileNotFoundError(f"no pre-training checkpoint at {path} (expected a step directory "
                          "with state/, or a workdir or checkpoints directory holding one)")


def read_pretraining_checkpoint(path: Path) -> tuple[dict, dict]:
  """(config_dict, params) from a step dir, or from a workdir / checkpoints dir (latest step).

  config_dict: the stored `TrainConfig.to_dict()`: "model" and "generator" hold ModelConfig
  fields, "embedding_sharing" the sharing mode, plus the rest of the run's config.
  params: the ElectraPretrainingModel params tree (unboxed) as host numpy arrays; the optimizer
  state is not read.
  """
  step_dir = _step_dir(Path(path).resolve())
  config = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
      step_dir / "config", args=ocp.args.JsonRestore())
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(step_dir / "state").item_metadata.tree
  if "params" not in tree:
    raise ValueError(f"{step_dir / 'state'} has no params (keys: {sorted(tree)})")
  params_meta = {"params": tree["params"]}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), params_meta)
  restored = checkpointer.restore(
      step_dir / "state", args=ocp.args.PyTreeRestore(item=params_meta, restore_args=restore_args,
                                                      partial_restore=True))
  return dict(config), restored["params"]


# ---------------------------------------------------------------------------------------------
# Continued pre-training: weights from a pre-trained checkpoint, fresh optimizer slots.


def _joint_from_networks(disc: dict, gen: Optional[dict], sharing: str) -> dict:
  """Standalone ElectraForPreTraining / ElectraForMaskedLM params -> the joint model's layout
  (the inverse of `modeling.split_pretraining_params` for tied and untied sharing; under "gdes"
  the shared table is the discriminator's and the delta is left to its zero init)."""
  joint: dict = {"discriminator": {"electra": dict(disc["electra"])}}
  if "discriminator_predictions" in disc:
    joint["discriminator"]["discriminator_predictions"] = disc["discriminator_predictions"]
  if gen is not None:
    joint["generator"] = {"electra": dict(gen["electra"]),
                          "generator_predictions": gen["generator_predictions"]}
  if sharing != "untied":
    joint["embeddings"] = joint["discriminator"]["electra"].pop("embeddings")
    if gen is not None:
      joint["generator"]["electra"].pop("embeddings", None)
  return joint


def load_init_params(config, fresh_params: dict, param_shardings: dict, say=print) -> dict:
  """Params for continued pre-training from `config.init_from` (and `init_generator_from`).

  Every tensor of the joint model that the source provides replaces the fresh one (shapes must
  agree); the rest keep their fresh initialisation, and the message lists them. The
  discriminator backbone must come from the source. Returns arrays placed on
  `param_shardings` (works with several processes: each holds the whole source on the host).
  """
  from flax import traverse_util

  from electra_jax.pretrained import detect_format, load_pretrained

  path = config.init_from
  fmt = detect_format(path)
  _, disc = load_pretrained(path, "discriminator", format=fmt, as_numpy=True)
  gen_path = config.init_generator_from or (path if fmt != "hf" else None)
  gen = None
  if gen_path is not None:
    _, gen = load_pretrained(gen_path, "generator", as_numpy=True)
  source = traverse_util.flatten_dict(_joint_from_networks(disc, gen, config.embedding_sharing))
  fresh = traverse_util.flatten_dict(fresh_params)
  shardings = traverse_util.flatten_dict(param_shardings)
  out, kept = {}, []
  for key, value in fresh.items():
    if key in source:
      if tuple(source[key].shape) != tuple(value.shape):
        raise ValueError(f"init_from {path}: {'/'.join(key)} has shape {source[key].shape}, the "
                         f"configured model needs {tuple(value.shape)}: set ModelConfig / "
                         "generator fractions to the checkpoint's sizes")
      array = np.asarray(source[key], dtype=value.dtype)
      out[key] = jax.make_array_from_callback(array.shape, shardings[key],
                                              lambda index, a=array: a[index])
    else:
      out[key] = value
      kept.append("/".join(key))
  backbone = [k for k in kept if k.startswith("discriminator/electra/") or
              k.startswith("embeddings/")]
  if backbone:
    raise ValueError(f"init_from {path}: the source lacks discriminator tensors "
                     f"{backbone[:5]}{' ...' if len(backbone) > 5 else ''}")
  unused = sorted("/".join(k) for k in set(source) - set(fresh))
  say(f"initialised {len(fresh) - len(kept)} of {len(fresh)} tensors from {path} ({fmt})"
      + (f"; fresh: {', '.join(kept)}" if kept else "")
      + (f"; unused from the source: {', '.join(unused)}" if unused else ""))
  return traverse_util.unflatten_dict(out)
