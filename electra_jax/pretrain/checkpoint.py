"""Pre-training checkpoints with orbax-checkpoint, and preemption (SIGTERM, Ctrl-C) handling.

Layout: WORKDIR/checkpoints/<step>/ with three items:
  state   the TrainState pytree (step, params, opt_state, rng), saved sharded;
  config  the resolved TrainConfig as JSON (`TrainConfig.to_dict()`: "model", "generator",
          "embedding_sharing", ...);
  data    the data position {"step", "seed", "global_batch_size"}: data order is a pure
          function of (seed, step), so the step alone says where reading resumes.

Restoring takes an abstract state (jax.ShapeDtypeStruct leaves carrying the *new* shardings), so
a checkpoint written on one mesh restores onto another.

Where: WORKDIR may be local or gs:// (`checkpoint_dir`, io.native.orbax_path); orbax writes the
arrays of a gs:// workdir with TensorStore's gcs driver and marks a complete step with a
commit_success.txt file instead of a rename. Other tf.io.gfile schemes (ram://, hdfs://) are
refused: TensorStore cannot write there.

Faults. Orbax writes step s into checkpoints/<s>.orbax-checkpoint-tmp/ and renames it to <s>/
once every item is written, so a process killed mid-save leaves only the tmp directory, which no
step listing counts and which the next Checkpointer deletes. A save that fails because the disk is
full (or a file size limit or quota is hit) raises one CheckpointWriteError; the previous
checkpoints stay as they were. A complete step that was damaged afterwards (a file deleted or cut,
an empty step directory) is named when it fails to restore (`Checkpointer.restore_newest`), set
aside as <step>.damaged, and the newest intact step is restored instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from electra_jax.floor import fs
from electra_jax.io.load import detect_format, load_pretrained
from electra_jax.io.native import orbax_path, step_problem
from electra_jax.pretrain.config import CheckpointConfig
from electra_jax.runtime.metrics import itstime, note
from electra_jax.runtime.state import warm_start

ITEMS = ("state", "config", "data")
# Orbax's suffix of a step directory being written (renamed away when the step is complete).
TMP_SUFFIX = ocp.path.step.TMP_DIR_SUFFIX
# Errors of a write that found no room: the disk is full, a file size limit or a quota is hit.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
MIB = 2**20
DAMAGED_SUFFIX = ".damaged"  # a step directory that failed to restore, kept for inspection


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written for lack of room; the message names the step, the
  directory, the OS reason, the last complete checkpoint and what to do."""


def disk_full_reason(err: Optional[BaseException]) -> Optional[str]:
  """The OS reason (e.g. "No space left on device") when `err`, or an exception it was raised
  from, is a write that found no room (DISK_FULL_ERRNOS); else None. Python writes raise OSError;
  orbax's array writes (TensorStore) raise ValueError with "[os_error_code='28']" in the text."""
  seen = set()
  while err is not None and id(err) not in seen:
    seen.add(id(err))
    code = err.errno if isinstance(err, OSError) else None
    if code is None:
      match = re.search(r"os_error_code='?(\d+)", str(err))
      code = int(match.group(1)) if match else None
    if code in DISK_FULL_ERRNOS:
      return os.strerror(code)
    err = err.__cause__ or err.__context__
  return None


class _DropDiskFullTracebacks(logging.Filter):
  """Drops log records that carry the traceback of a write that found no room (orbax logs one
  per background thread it passed through, asyncio one per abandoned write task)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and disk_full_reason(record.exc_info[1]))


_quiet_installed = False


def _quiet_failed_writes() -> None:
  """Keeps a failed save to the one error that reports it (CheckpointWriteError, or orbax's own
  for other causes): when one array write fails, orbax closes its event loop while TensorStore
  still completes the save's other writes, whose callbacks then raise "Event loop is closed"
  (printed as unraisable tracebacks, before and after the error surfaces), and the abandoned
  tasks are reported at exit. Installed once per process; everything else passes through."""
  global _quiet_installed
  if _quiet_installed:
    return
  _quiet_installed = True
  for name in ("absl", "asyncio"):
    logging.getLogger(name).addFilter(_DropDiskFullTracebacks())
  warnings.filterwarnings("ignore", message=r"coroutine '.*write_fragment' was never awaited",
                          category=RuntimeWarning)
  previous = sys.unraisablehook

  def hook(unraisable):
    err = unraisable.exc_value
    frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
    if not (isinstance(err, RuntimeError) and str(err) == "Event loop is closed"
            and any(f.name == "call_soon_threadsafe" for f in frames)):
      previous(unraisable)

  sys.unraisablehook = hook


def checkpoint_nbytes(abstract_state: Any) -> int:
  """Bytes of the arrays of one checkpoint: every leaf of the TrainState (params and optimizer
  slots; step and rng add a few bytes), from shapes and dtypes (jax.ShapeDtypeStruct leaves)."""
  return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(abstract_state))


def checkpoint_dir(workdir) -> str:
  """WORKDIR/checkpoints as orbax reads and writes it: absolute for a local workdir, the URL for
  gs://; ValueError for another scheme (io.native.orbax_path)."""
  return fs.join(orbax_path(workdir), "checkpoints")


def saved_steps(workdir) -> list[int]:
  """The steps of the complete checkpoints in WORKDIR/checkpoints (unsorted; [] when none)."""
  return ocp.path.step.checkpoint_steps(checkpoint_dir(workdir))


def stored_config(workdir) -> Optional[tuple[int, dict]]:
  """(step, resolved config dict) of the newest checkpoint step in WORKDIR/checkpoints whose
  config item reads as JSON; None when no step has one."""
  for step in sorted(saved_steps(workdir), reverse=True):
    path = fs.join(checkpoint_dir(workdir), str(step), "config", "metadata")
    try:
      return step, json.loads(fs.read_text(path))
    except (OSError, ValueError, UnicodeDecodeError):
      continue
  return None


def _first_line(err: BaseException) -> str:
  """`err` as one line: its type and the first line of its message."""
  lines = str(err).strip().splitlines()
  return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _tree_bytes(path: Path) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def check_free_space(directory: str, cfg: CheckpointConfig, abstract_state: Any) -> Optional[str]:
  """ValueError, before training, when the disk of `directory` (WORKDIR/checkpoints) cannot hold
  the checkpoints the run keeps.

  Needed: (keep_latest + 1) x `checkpoint_nbytes` (orbax writes a new checkpoint before it
  deletes the oldest). Available: the free bytes (`shutil.disk_usage`) plus the bytes of the
  latest keep_latest existing step directories, which the run replaces. Checkpoints kept by
  keep_every add one each beyond this. The message gives the numbers in MiB and what to do.
  A remote `directory` (gs://) has no free space to ask for: nothing is checked and the
  returned one-line note says so (None after a check).
  """
  if fs.is_remote(directory):
    return (f"note: {directory} is not on a local disk: its free space is not checked before "
            "training")
  directory = Path(directory)
  one = checkpoint_nbytes(abstract_state)
  need = one * (cfg.keep_latest + 1)
  steps = sorted(int(p.name) for p in directory.iterdir()
                 if p.is_dir() and p.name.isdigit()) if directory.is_dir() else []
  reusable = sum(_tree_bytes(directory / str(s)) for s in steps[-cfg.keep_latest:])
  free = shutil.disk_usage(directory if directory.is_dir() else directory.parent).free
  if free + reusable >= need:
    return None
  held = f" plus {reusable / MIB:.1f} MiB held by the checkpoints it replaces" if reusable else ""
  raise ValueError(
      f"not enough disk space for checkpoints in {directory}: {free / MIB:.1f} MiB free{held}, "
      f"but the run needs about {need / MIB:.1f} MiB ({cfg.keep_latest} kept + 1 being written, "
      f"{one / MIB:.1f} MiB each: params and optimizer state); free space on that disk, lower "
      f"CheckpointConfig.keep_latest (now {cfg.keep_latest}), or give another --workdir")


class Checkpointer:
  """Saves and restores TrainStates under WORKDIR/checkpoints (every process calls every method).

  Keeps the latest `cfg.keep_latest` checkpoints plus every step that is a multiple of
  `cfg.keep_every`. Saves are asynchronous when `cfg.async_save`: `save` returns once the
  arrays are copied off the device, and writing continues in the background.

  Step directories that a killed process left unfinished (<step>.orbax-checkpoint-tmp) are
  deleted on creation, before anything is saved (one trainer holds a workdir at a time, see
  train.lock_workdir; orbax's own cleanup option runs in the background, unawaited). A save that
  finds no room raises CheckpointWriteError from `save` (synchronous, or the previous
  asynchronous save), `wait` or `close`.
  """

  def __init__(self, workdir: str, cfg: CheckpointConfig):
    self.cfg = cfg
    self.directory = checkpoint_dir(workdir)
    keep: list = [policies.LatestN(n=cfg.keep_latest)]
    if cfg.keep_every:
      keep.append(policies.EveryNSteps(interval_steps=cfg.keep_every))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        enable_async_checkpointing=cfg.async_save, create=True)
    _quiet_failed_writes()
    if jax.process_index() == 0 and fs.isdir(self.directory):
      for name in fs.listdir(self.directory):
        if TMP_SUFFIX in name:
          fs.rmtree(fs.join(self.directory, name))
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
    self._writing: Optional[int] = None  # the step of the last save, maybe still in flight

  def should_save(self, step: int, last_step: int) -> bool:
    """Periodic saves every `save_every` steps, and always the last step."""
    return itstime(step, self.cfg.save_every, last_step)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  @contextlib.contextmanager
  def _write_errors(self, step: Optional[int]):
    """Turns an error of writing `step` that found no room into CheckpointWriteError."""
    try:
      yield
    except Exception as err:
      reason = disk_full_reason(err)
      if reason is None:
        raise
      latest = self.manager.latest_step()
      kept = (f"the last complete checkpoint, step {latest} "
              f"({fs.join(self.directory, str(latest))}), is intact: the next run resumes from it"
              if latest is not None
              else "no checkpoint was completed before it: the next run starts over")
      raise CheckpointWriteError(
          f"could not write checkpoint step {step} to {self.directory}: {reason}; {kept}, "
          "deleting the unfinished step. Free space on that disk (or raise the file size limit "
          f"or quota), lower CheckpointConfig.keep_latest (now {self.cfg.keep_latest}), or give "
          "another --workdir") from err

  def save(self, step: int, state: Any, config_dict: dict, data_position: dict) -> bool:
    """Saves `state` at `step` unless that step is already saved; returns whether it saved.
    Waits for the previous asynchronous save first (CheckpointWriteError names its step)."""
    self.wait()
    if step in self.manager.all_steps():
      return False
    self._writing = step
    with self._write_errors(step):
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

  def restore_newest(self, abstract_state: Any, say=note) -> Optional[tuple[int, Any, dict,
                                                                           dict]]:
    """(step, state, config_dict, data_position) of the newest step that restores; None when
    there is no step.

    A newer step that fails (its files per `step_problem`, or its restore) while an older one
    restores is damaged: `say` names it and what is wrong, and process 0 renames it to
    <step>.damaged (no step listing counts it; a later save may write that step again). When no
    step restores, the newest one's error is raised as a ValueError naming its directory and
    nothing is renamed (the config, not the checkpoints, may be what is wrong).
    """
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      step_dir = fs.join(self.directory, str(step))
      problem = step_problem(step_dir)
      if problem is None:
        try:
          state, config, position = self.restore(abstract_state, step)
        except Exception as err:  # orbax and TensorStore raise many types for damaged files
          problem = _first_line(err)
      if problem is not None:
        damaged.append((step, problem))
        continue
      for bad, why in damaged:
        aside = self._set_aside(bad)
        say(f"warning: checkpoint step {bad} is damaged: {why}; moved it to {aside} and "
            f"restored step {step}, the newest intact one")
      if damaged:
        self.manager.reload()
      return step, state, config, position
    if damaged:
      step, why = damaged[0]
      raise ValueError(f"cannot restore checkpoint step {step} in {self.directory}: {why}"
                       + (f"; no older step restores either ({len(damaged) - 1} tried)"
                          if len(damaged) > 1 else "")
                       + "; fix or delete the damaged step directories, or pass --overwrite "
                       "to start over")
    return None

  def _set_aside(self, step: int) -> str:
    """Renames step directory `step` to <step>.damaged (a free name); returns the new path."""
    source = fs.join(self.directory, str(step))
    target, n = source + DAMAGED_SUFFIX, 1
    while fs.exists(target):
      n += 1
      target = f"{source}{DAMAGED_SUFFIX}{n}"
    if jax.process_index() == 0:
      fs.replace(source, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"electra_jax checkpoint {step} set aside")
    return target

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are written."""
    with self._write_errors(self._writing):
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves (raising their error, once) and releases the manager."""
    try:
      self.wait()
    finally:
      self.manager.close()


class PreemptionWatcher:
  """Says, consistently on every process, when a run should save and stop.

  Single process: SIGTERM and SIGINT (Ctrl-C) set a flag (the handlers are installed from the
  main thread only); a second SIGINT exits at once (status 130) with one line, without saving:
  the last complete checkpoint stays, an unfinished save is deleted by the next run.
  Several processes (jax.distributed): JAX's preemption sync manager, which catches SIGTERM on
  any process and makes all processes agree on the step at which to stop (SIGINT keeps Python's
  KeyboardInterrupt there).
  Use as a context manager; leaving restores the previous handlers.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._previous = {}

  def __enter__(self) -> "PreemptionWatcher":
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _on_signal(self, signum, frame) -> None:
    if signum == signal.SIGINT:
      if self._flag.is_set():
        print("interrupted again: exiting now without saving (the last complete checkpoint is "
              "kept)", file=sys.stderr, flush=True)
        os._exit(130)
      print("interrupted: saving the current step, then exiting (Ctrl-C again to exit at once)",
            file=sys.stderr, flush=True)
    self._flag.set()

  def reached(self, step: int) -> bool:
    """True when a SIGTERM or SIGINT has arrived and the run should save `step` and exit."""
    if jax.process_count() == 1:
      return self._flag.is_set()
    try:
      return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # preemption service disabled: no coordinated preemption
      return False


# ---------------------------------------------------------------------------------------------
# Continued pre-training: weights from a pre-trained checkpoint, fresh optimizer slots.


def _joint_from_networks(disc: dict, gen: Optional[dict], sharing: str) -> dict:
  """Standalone ElectraForPreTraining / ElectraForMaskedLM params -> the joint model's layout
  (the inverse of `pretraining.split_pretraining_params` for tied and untied sharing; under "gdes"
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


def load_init_params(config, fresh_params: dict, param_shardings: dict, say=note) -> dict:
  """Params for continued pre-training from `config.init_from` (and `init_generator_from`).

  Every tensor of the joint model that the source provides replaces the fresh one (shapes must
  agree); the rest keep their fresh initialisation, and the message lists them. The
  discriminator backbone must come from the source. Returns arrays placed on
  `param_shardings` (works with several processes: each holds the whole source on the host).
  """
  path = config.init_from
  fmt = detect_format(path)
  _, disc = load_pretrained(path, "discriminator", format=fmt, as_numpy=True)
  gen_path = config.init_generator_from or (path if fmt != "hf" else None)
  gen = None
  if gen_path is not None:
    _, gen = load_pretrained(gen_path, "generator", as_numpy=True)
  source = _joint_from_networks(disc, gen, config.embedding_sharing)
  start = warm_start(fresh_params, source, param_shardings)
  if start.mismatched:
    raise ValueError(f"init_from {path}: {next(iter(start.mismatched.values()))}: set "
                     "ModelConfig / generator fractions to the checkpoint's sizes")
  backbone = [k for k in start.fresh if k.startswith("discriminator/electra/") or
              k.startswith("embeddings/")]
  if backbone:
    raise ValueError(f"init_from {path}: the source lacks discriminator tensors "
                     f"{backbone[:5]}{' ...' if len(backbone) > 5 else ''}")
  total = len(start.taken) + len(start.fresh)
  say(f"initialised {len(start.taken)} of {total} tensors from {path} ({fmt})"
      + (f"; fresh: {', '.join(start.fresh)}" if start.fresh else "")
      + (f"; unused from the source: {', '.join(start.unused)}" if start.unused else ""))
  return start.params
