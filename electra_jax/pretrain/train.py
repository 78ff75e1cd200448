"""ELECTRA pre-training: `python -m electra_jax.train --experiment=NAME --workdir=DIR`.

    python -m electra_jax.train --experiment=tiny --workdir=/tmp/electra_tiny
    python -m electra_jax.train --experiment=small --workdir=gs://... \
        --gin_bindings='DataConfig.data_dir = "/data/owt_len128"'

`main` is a thin command line over `train_and_evaluate(config, workdir)`, which runs the whole
pipeline: mesh, data, model, shardings, state (fresh, restored from WORKDIR/checkpoints, or
initialised from a pre-trained checkpoint), then the loop of sharded train steps with logging,
periodic evaluation, checkpointing and preemption handling. Every process of a multi-host job
runs the same program; saving, evaluating and stopping are decided from the step number (or,
for preemption, by JAX's cross-process sync point), and only process 0 writes logs. One trainer
at a time holds a workdir (WORKDIR/train.lock); resuming with a changed model or objective is
refused, and --overwrite starts over.

WORKDIR and DataConfig.data_dir may be local or gs:// URLs (the data dir any tf.io.gfile path,
electra_jax.floor.fs; the workdir local or gs://, where orbax writes checkpoints). A gs:// workdir
has no train.lock (flock needs a local file system) and no free-space check; each is skipped
with a one-line note.

Metrics of step s are read from the device after step s + 1 is dispatched (runtime.metrics.
LaggedMetrics), so the host never waits on the device except when it has to (before a
checkpoint, an evaluation or the end). `_train` reads in sections: mesh, model and shardings;
data; state (restore or init); evaluation, health and metrics; the step and the loop.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import json
import math
import operator
import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from data_pipelines import tokenizers
from data_pipelines.default_data import ensure_default_pretraining_data
from data_pipelines.pretraining_reader import PretrainingData
from electra_jax.floor import fs
from electra_jax.model.config import ARCHITECTURE_FIELDS
from electra_jax.pretrain import health
from electra_jax.pretrain import flops as flops_lib
from electra_jax.pretrain.checkpoint import (CheckpointWriteError, Checkpointer, PreemptionWatcher,
                                             check_free_space, checkpoint_dir, load_init_params,
                                             saved_steps, stored_config)
from electra_jax.pretrain.config import config_json, list_experiments, resolve_config, to_gin
from electra_jax.pretrain.probe import Probe, encoder_params
from electra_jax.pretrain.objective import (SpecialIds, build_pretraining_model, init_fn, loss_fn,
                                            make_eval_step)
from electra_jax.runtime.closing import Closing
from electra_jax.runtime.launch import add_distributed_flags, run_pipeline
from electra_jax.runtime.mesh import check_batch, global_batch, make_mesh
from electra_jax.runtime.metrics import (CURVES_FILE, LaggedMetrics, MetricsWriter, WandbRun,
                                         itstime, note, wandb_enabled)
from electra_jax.runtime.optim import make_optimizer
from electra_jax.runtime.state import abstract_train_state, init_train_state
from electra_jax.runtime.step import make_train_step

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "electra_jax")
LOCK_FILE = "train.lock"
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "eval_metrics.jsonl", "tensorboard", "profile",
               "tokenizer", CURVES_FILE, "config.until_step_*")
CURVES = ("loss", "disc_loss", "disc_auc", "gen_accuracy")  # the panels of WORKDIR/curves.png
# Where a model that learned nothing sits: the best constant discriminator's loss, the
# generator that always predicts the most frequent token (electra_jax.pretrain.health).
REFERENCES = {"disc_loss": [("prior", "disc_prior_loss")],
              "disc_auc": [("chance", 0.5)], "gen_accuracy": [("unigram", "unigram_accuracy")]}

# What a resumed run must keep of WORKDIR/config.json: {gin name: its path in the JSON}.
RESUME_FIXED = {
    **{f"ModelConfig.{f}": ("model", f) for f in ARCHITECTURE_FIELDS},
    "TrainConfig.generator_hidden_fraction": ("generator_hidden_fraction",),
    "TrainConfig.generator_layer_fraction": ("generator_layer_fraction",),
    "TrainConfig.embedding_sharing": ("embedding_sharing",),
    "ObjectiveConfig.kind": ("objective", "kind"),
    "ObjectiveConfig.uniform_generator": ("objective", "uniform_generator"),
    "DataConfig.seq_len": ("data", "seq_len"),
    "OptimizerConfig.clip_norm": ("optimizer", "clip_norm"),
    "OptimizerConfig.weight_decay": ("optimizer", "weight_decay"),
}
# Compared only as on or off: the optimizer state has their slot only when they are on.
_ON_OFF = {"OptimizerConfig.clip_norm": lambda v: v is not None,
           "OptimizerConfig.weight_decay": lambda v: v > 0}


class NonFiniteError(RuntimeError):
  """A training metric became NaN or infinite; the message names the step and the metric."""


# ---------------------------------------------------------------------------------------------
# Pieces of the pipeline.


def open_data(config):
  """(train data, eval data or None, SpecialIds, data_dir) for `config`, checked against it.

  Without DataConfig.data_dir, the built-in default data is built (once) under cache_dir with
  the model's vocabulary size, in DataConfig.layout (None: packed). Raises ValueError if the
  shards' seq_len, vocabulary size or layout (when DataConfig.layout is set) disagree with the
  config.
  """
  data_cfg = config.data
  data_dir = data_cfg.data_dir
  if data_dir is None:
    data_dir = ensure_default_pretraining_data(data_cfg.cache_dir or DEFAULT_CACHE_DIR,
                                               data_cfg.seq_len, config.model.vocab_size,
                                               data_cfg.layout or "packed")
  train = PretrainingData(data_dir, global_batch_size=data_cfg.global_batch_size,
                          seed=data_cfg.seed, split="train", seq_len=data_cfg.seq_len,
                          on_corrupt_shard=data_cfg.on_corrupt_shard)
  if data_cfg.layout not in (None, train.layout):
    raise ValueError(f"layout mismatch: DataConfig.layout = {data_cfg.layout!r} but the shards in "
                     f"{data_dir} have {train.layout} rows; build them with "
                     f"`python -m data_pipelines.build_pretraining_data ... --layout "
                     f"{data_cfg.layout}` or unset DataConfig.layout")
  tok = train.manifest["tokenizer"]
  if tok["vocab_size"] != config.model.vocab_size:
    raise ValueError(f"vocabulary mismatch: ModelConfig.vocab_size={config.model.vocab_size} but "
                     f"the shards in {data_dir} use a {tok['vocab_size']}-token vocabulary "
                     f"({tok['spec']}); set ModelConfig.vocab_size = {tok['vocab_size']}")
  special = SpecialIds(pad=tok["pad_id"], cls=tok["cls_id"], sep=tok["sep_id"],
                       mask=tok["mask_id"], vocab_size=tok["vocab_size"])
  evaluation = None
  if data_cfg.eval_every:
    evaluation = PretrainingData(data_dir, global_batch_size=data_cfg.global_batch_size,
                                 seed=data_cfg.seed, split=data_cfg.eval_split,
                                 seq_len=data_cfg.seq_len,
                                 on_corrupt_shard=data_cfg.on_corrupt_shard)
  return train, evaluation, special, data_dir


def _memory_report(compiled) -> str:
  """One line of the compiled step's memory use (MiB), or why there is none."""
  try:
    stats = compiled.memory_analysis()
  except Exception as err:  # platforms without memory analysis raise various errors
    return f"memory analysis unavailable: {type(err).__name__}: {err}"
  if stats is None:
    return "memory analysis unavailable on this platform"
  mib = lambda b: f"{b / 2**20:.1f}"
  return (f"compiled train step memory per device (MiB): arguments "
          f"{mib(stats.argument_size_in_bytes)}, outputs {mib(stats.output_size_in_bytes)}, "
          f"aliased {mib(stats.alias_size_in_bytes)}, temporaries {mib(stats.temp_size_in_bytes)}, "
          f"code {mib(stats.generated_code_size_in_bytes)}")


def _first_nonfinite(metrics: dict) -> Optional[str]:
  for name in ("loss", "grad_norm"):
    if name in metrics and not math.isfinite(float(metrics[name])):
      return name
  for name, value in sorted(metrics.items()):
    if not math.isfinite(float(value)):
      return name
  return None


def _data_position(config, step: int) -> dict:
  return {"step": int(step), "seed": config.data.seed,
          "global_batch_size": config.data.global_batch_size}


def _evaluate(eval_step, state, eval_data, mesh, num_batches: int) -> dict:
  """Mean metrics over eval batches 0..num_batches-1 (the same batches every time)."""
  totals = None
  for i in range(num_batches):
    metrics = eval_step(state, global_batch(eval_data.batch(i), mesh))
    totals = metrics if totals is None else jax.tree.map(lambda a, b: a + b, totals, metrics)
  return {k: float(np.asarray(v)) / num_batches for k, v in jax.device_get(totals).items()}


def _make_probe(config, tokenizer) -> Optional[Probe]:
  """The linear probe of `config.probe` (None when off); ValueError when it cannot run."""
  if not config.probe.enabled:
    return None
  if tokenizer is None:
    raise ValueError(f"the probe on {config.probe.train_file} needs the shards' tokenizer, and "
                     "this run has none")
  return Probe.from_config(config.probe, tokenizer, config.model)


def _eval_missing(writer: MetricsWriter, step: int) -> bool:
  """Whether eval_metrics.jsonl lacks the evaluation of `step`, as process 0 reads it (broadcast,
  so that every process runs the evaluation or none does)."""
  missing = not writer.has_eval(step)
  if jax.process_count() > 1:
    missing = bool(multihost_utils.broadcast_one_to_all(np.asarray(missing)))
  return missing


def _flops_and_peak(config) -> tuple:
  """(analytic matmul FLOPs of one train step, peak FLOP/s of all devices together) for MFU;
  the peak is None on devices without a known peak (CPUs), and then no MFU is logged."""
  step_flops = flops_lib.training_flops_per_step(config.model, config.generator,
                                                 config.objective, config.data.global_batch_size,
                                                 config.data.seq_len)
  per_device = flops_lib.peak_flops(jax.devices()[0].device_kind, config.model.dtype)
  return step_flops, (per_device * jax.device_count() if per_device else None)


class _StepTimer:
  """Seconds per step and tokens per second between consecutive log records."""

  def __init__(self, step: int, tokens_per_step: int):
    self.tokens_per_step = tokens_per_step
    self.reset(step)

  def reset(self, step: int) -> None:
    self.step, self.time = step, time.perf_counter()

  def rates(self, step: int) -> dict:
    now = time.perf_counter()
    steps = max(step - self.step, 1)
    step_time = (now - self.time) / steps
    self.reset(step)
    return {"step_time": step_time, "tokens_per_sec": self.tokens_per_step / step_time}


@contextlib.contextmanager
def lock_workdir(workdir):
  """Creates `workdir` and holds WORKDIR/train.lock (an exclusive flock) while the block runs.

  ValueError when the workdir cannot be written, or when another process holds the lock (naming
  the workdir and the holder's pid, which the holder writes into the file). The lock goes with
  its holder: the kernel releases a flock when its process dies, so a file left by a killed run
  does not block. The file stays (deleting it would let two processes lock different files).
  A remote workdir (gs://) is only created: an object store has no flock, so nothing stops a
  second trainer there, and a one-line note on stderr says so.
  """
  if fs.is_remote(workdir):
    try:
      fs.makedirs(workdir)
    except OSError as err:
      raise ValueError(f"cannot write to workdir {workdir} ({err.strerror or err}); give a "
                       "writable --workdir") from None
    note(f"note: workdir {workdir} is not on a local file system: no {LOCK_FILE} (flock) "
         "guards it, so make sure no other trainer uses it")
    yield
    return
  workdir = Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    problem = None if os.access(workdir, os.W_OK) else "permission denied"
  except OSError as err:
    problem = err.strerror or str(err)
  if problem:
    raise ValueError(f"cannot write to workdir {workdir} ({problem}); give a writable "
                     "--workdir")
  path = workdir / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
      raise ValueError(f"workdir {workdir} is in use by another trainer (pid {holder}, which "
                       f"holds {path}); wait for it to end or stop it, or use another "
                       "--workdir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    yield
  finally:
    os.close(fd)  # releases the lock


def check_resume_config(config, workdir: str) -> list[str]:
  """ValueError naming each field of RESUME_FIXED (old -> new) in which `config` differs from
  the config of the run to resume, when WORKDIR/checkpoints holds a step; see train_and_evaluate.

  The old config is WORKDIR/config.json, or, when that file is gone, the one the newest
  checkpoint stores. Fields missing from an older config are not compared. Returns warnings to
  print: a changed DataConfig.data_dir (the run goes on with other data).
  """
  steps = saved_steps(workdir)
  if not steps:
    return []
  way_out = ("resume with the old values, use another --workdir, or pass --overwrite to delete "
             "its checkpoints and metrics and start over")
  path = fs.join(workdir, "config.json")
  if fs.isfile(path):
    try:
      old = json.loads(fs.read_text(path))
    except (ValueError, UnicodeDecodeError) as err:
      raise ValueError(f"{path} (the config of the checkpoints to resume) is not valid JSON "
                       f"({err}); {way_out}") from None
  else:
    stored = stored_config(workdir)
    if stored is None:
      return []
    path = fs.join(checkpoint_dir(workdir), str(stored[0]), "config", "metadata")
    old = stored[1]
  new = config.to_dict()
  changed = []
  for name, keys in RESUME_FIXED.items():
    try:
      before = functools.reduce(operator.getitem, keys, old)
    except (KeyError, TypeError):
      continue
    after = functools.reduce(operator.getitem, keys, new)
    same = _ON_OFF[name](before) == _ON_OFF[name](after) if name in _ON_OFF else before == after
    if not same:
      changed.append(f"  {name}: {before!r} -> {after!r}")
  if changed:
    raise ValueError("\n".join([
        f"workdir {workdir} holds checkpoints (latest step {max(steps)}) of a run whose model or "
        "objective this config changes; resuming them would fail or mix two runs:",
        *changed, f"Old config: {path}; {way_out}"]))
  before = old.get("data", {}).get("data_dir")
  if "data" in old and before != new["data"]["data_dir"]:
    return [f"warning: DataConfig.data_dir changes on resume: {before!r} -> "
            f"{new['data']['data_dir']!r}; from step {max(steps)} on the run reads other data "
            f"(the earlier config is kept as config.until_step_{max(steps)}.json)"]
  return []


def keep_config_history(workdir: str, new_json: str) -> None:
  """Keeps WORKDIR/config.json and config.gin of the run's earlier segment, when `new_json`
  differs from it, as config.until_step_S.json / .gin (S: the newest checkpoint step)."""
  path = fs.join(workdir, "config.json")
  steps = saved_steps(workdir)
  if not steps or not fs.isfile(path) or fs.read_text(path) == new_json:
    return
  for ext in ("json", "gin"):
    old = fs.join(workdir, f"config.{ext}")
    if fs.isfile(old):
      fs.copy(old, fs.join(workdir, f"config.until_step_{max(steps)}.{ext}"))


def _start_over(workdir: str) -> None:
  """Deletes the outputs of an earlier run in `workdir` (RUN_OUTPUTS)."""
  for name in RUN_OUTPUTS:
    for path in fs.glob(fs.join(workdir, name)):
      if fs.isdir(path):
        fs.rmtree(path)
      else:
        fs.remove(path)


# ---------------------------------------------------------------------------------------------
# The run.


def train_and_evaluate(config, workdir, overwrite: bool = False) -> dict:
  """Pre-trains per `config` (a TrainConfig) in `workdir`; resumes from its latest checkpoint.

  Writes WORKDIR/config.json and config.gin (the resolved config), tokenizer/ (the shards'
  tokenizer, data_pipelines.tokenizers.Tokenizer.save), metrics.jsonl, eval_metrics.jsonl,
  tensorboard/, curves.png, checkpoints/ (and profile/ with LogConfig.profile_steps, wandb/ with
  LogConfig.wandb_project).
  Returns {"step": last completed step, "preempted": bool, "train": last logged training
  metrics (with "health": "warmup" | "ok" | "at_prior", see electra_jax.pretrain.health),
  "eval": last evaluation metrics with the context-free baselines unigram_accuracy/unigram_loss (or {})}.
  Raises NonFiniteError naming the step and metric when a loss or gradient is NaN/inf, and
  checkpointing.CheckpointWriteError when a checkpoint finds no room on the disk (the previous
  checkpoints stay restorable). Before the first step, a ValueError when the disk of
  WORKDIR/checkpoints has less free space than the checkpoints the run keeps
  (checkpointing.check_free_space).

  Before anything else, process 0 claims the workdir (`lock_workdir`: ValueError when it is not
  writable or another trainer holds it). With checkpoints to resume, a config that changes the
  model's shapes or the objective is refused with a ValueError naming each field (old -> new),
  before the checkpoints are read: ModelConfig's architecture (vocab_size, embedding_size,
  hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
  max_position_embeddings, type_vocab_size), the generator fractions, embedding_sharing,
  ObjectiveConfig.kind and uniform_generator, DataConfig.seq_len, and whether gradient clipping
  and weight decay are on (their optimizer state). Everything else may change on resume, e.g.
  num_train_steps / OptimizerConfig.total_steps (extending a run), the learning rate and its
  schedule, loss weights, mask_prob, dropout, dtype, remat, the mesh, data seed, batch size and
  directory, and the log, eval and checkpoint settings. `overwrite`: start over instead,
  deleting the earlier run's checkpoints and metrics (RUN_OUTPUTS).

  Resuming: the newest checkpoint step that restores is used (a damaged newer one is named and
  set aside, Checkpointer.restore_newest); an evaluation due at the restored step that
  eval_metrics.jsonl lacks (the run stopped between the save and the evaluation) is done first,
  so a run stopped any number of times writes the evaluations of an uninterrupted one; the health
  monitor continues from the state the checkpoint stores. A finished run called again returns
  its last logged training and evaluation records. A changed DataConfig.data_dir is warned, and
  the earlier config.json / config.gin are kept as config.until_step_S.*.

  `workdir`: a local path or gs:// (a ValueError first for another scheme, where orbax cannot
  write checkpoints); DataConfig.data_dir: any path electra_jax.floor.fs serves. config.json and
  config.gin are replaced by a rename (fs.write_atomically): a run killed meanwhile leaves the
  old file whole (a truncated config.json would stop the next run from resuming).
  """
  workdir = os.fspath(workdir)
  checkpoint_dir(workdir)  # ValueError for a workdir where orbax cannot write (ram://, hdfs://)
  with contextlib.ExitStack() as stack:
    if jax.process_index() == 0:
      stack.enter_context(lock_workdir(workdir))
      if overwrite:
        _start_over(workdir)
      else:
        for warning in check_resume_config(config, workdir):
          note(warning)
        keep_config_history(workdir, config_json(config))
      fs.write_atomically(fs.join(workdir, "config.json"), config_json(config))
      fs.write_atomically(fs.join(workdir, "config.gin"), to_gin(config))
    if jax.process_count() > 1:  # the other processes read the workdir after process 0 claims it

      multihost_utils.sync_global_devices("electra_jax.pretrain.train: workdir claimed")
    return _train(config, workdir)


def _train(config, workdir: str) -> dict:
  """The run of `train_and_evaluate` in a claimed workdir, section by section."""
  # ---- Mesh, model and shardings: the state's layout, before any array exists.
  mesh = make_mesh(config.mesh)
  model = build_pretraining_model(config.model, config.generator, config.embedding_sharing,
                                  config.objective)
  optimizer = make_optimizer(config.optimizer)
  check_batch(mesh, config.data.global_batch_size)
  init = init_fn(model, config.data.seq_len, config.objective)
  abstract, shardings = abstract_train_state(init, optimizer, mesh)
  space = check_free_space(checkpoint_dir(workdir), config.checkpoint, abstract)
  if space:
    note(space)

  # ---- Data, its tokenizer, and the probe that needs it.
  train_data, eval_data, special, data_dir = open_data(config)
  checkpointer = Checkpointer(workdir, config.checkpoint)
  probe = _make_probe(config, _save_tokenizer(workdir, data_dir, train_data))
  note(f"devices: {jax.device_count()} x {jax.devices()[0].platform} over "
       f"{jax.process_count()} process(es); mesh {dict(mesh.shape)}; data {data_dir} "
       f"({train_data.layout} rows, real-token fraction {train_data.real_token_fraction:.3f})")

  # ---- State: restored from WORKDIR/checkpoints, else fresh (and maybe warm-started).
  state, position = _restore_or_init(config, checkpointer, abstract, init, optimizer, shardings)
  start_step = int(jax.device_get(state.step))

  # ---- Evaluation, health and metrics out.
  eval_step = (make_eval_step(model, config.objective, special, mesh, shardings,
                              seed=config.data.seed) if eval_data is not None else None)
  warning = health.amplification_warning(config.optimizer)
  if warning and start_step < config.train_steps:
    note(warning)
  priors, monitor = _health(config, train_data, eval_data, special, probe, start_step, position)
  run = _Run(config, workdir, mesh, train_data, eval_data, eval_step, probe, priors, monitor,
             checkpointer, _metrics_writer(config, workdir, start_step),
             {"step": start_step, "preempted": False, "train": {}, "eval": {}})

  # ---- The step and the loop (after the evaluation a restored step may lack).
  try:
    if _catch_up(run, state, start_step):
      return run.result
    train_step = make_train_step(loss_fn(model, config.objective, special), optimizer, mesh,
                                 shardings)
    _loop(run, train_step, state, start_step)
  finally:
    run.writer.close()
    checkpointer.close()
  return run.result


def _save_tokenizer(workdir: str, data_dir: str, train_data: PretrainingData):
  """The shards' tokenizer, saved (by process 0) to WORKDIR/tokenizer, where fine-tuning and
  electra-convert find it; None, with a warning, when the shards name none that loads."""
  try:
    tokenizer = tokenizers.of_shards(data_dir, train_data.manifest["tokenizer"])
  except ValueError as err:
    note(f"warning: {err}; this run's checkpoints carry no tokenizer")
    return None
  if jax.process_index() == 0:
    tokenizer.save(fs.join(workdir, tokenizers.SAVED_DIR))
  return tokenizer


def _restore_or_init(config, checkpointer: Checkpointer, abstract, init, optimizer,
                     shardings) -> tuple:
  """(state, its data position; {} for a fresh state): the newest intact checkpoint, else a
  fresh state from DataConfig.seed whose params come from TrainConfig.init_from when set."""
  restored = checkpointer.restore_newest(abstract)
  if restored is None:
    state = init_train_state(init, optimizer, shardings, seed=config.data.seed)
    if config.init_from:
      state = state.replace(params=load_init_params(config, state.params, shardings.params))
    return state, {}
  step, state, _, position = restored
  batch_size = config.data.global_batch_size
  if position["seed"] != config.data.seed or position["global_batch_size"] != batch_size:
    note(f"warning: checkpoint data position {position} differs from this run's data seed "
         f"{config.data.seed} / batch {batch_size}; the data order changes from here")
  note(f"restored step {step} from {checkpointer.directory}")
  return state, position


def _health(config, train_data, eval_data, special: SpecialIds, probe: Optional[Probe],
            start_step: int, position: dict) -> tuple:
  """(the no-learning baselines: unigram prior, the probe on a random network and on bags of
  words; the HealthMonitor, with the state a restored checkpoint saved)."""
  prior_batches = ([eval_data.batch(i) for i in range(config.data.eval_batches)] if eval_data
                   else [train_data.batch(start_step + i) for i in range(4)])
  priors = health.unigram_prior(prior_batches, special)
  if probe is not None:  # the same probe on a random network of the same shape: the baseline
    priors.update(probe.random_baseline(config.data.seed))
    priors.update(probe.bag_of_words_baseline())
  monitor = health.HealthMonitor(config.optimizer, config.objective, priors["unigram_accuracy"])
  if position.get("health"):
    monitor.load_state(position["health"])
  return priors, monitor


def _metrics_writer(config, workdir: str, start_step: int) -> MetricsWriter:
  """The run's MetricsWriter: jsonl, TensorBoard, progress bar, curves, W&B as LogConfig says."""
  wandb_run = (WandbRun(config.log.wandb_project, config.log.wandb_mode,
                        name=fs.basename(fs.abspath(workdir)), config=config.to_dict())
               if wandb_enabled(config.log.wandb_project) else None)
  return MetricsWriter(workdir, start_step=start_step, total_steps=config.train_steps,
                       is_main=jax.process_index() == 0, tensorboard=config.log.tensorboard,
                       progress_bar=config.log.progress_bar,
                       curves=CURVES if config.log.curves else (), wandb=wandb_run,
                       references=REFERENCES)


@dataclasses.dataclass
class _Run:
  """What the loop of one run works with (assembled by `_train`), and its result so far."""

  config: Any
  workdir: str
  mesh: Any
  train_data: PretrainingData
  eval_data: Optional[PretrainingData]
  eval_step: Optional[Callable]  # (state, batch) -> metrics; None: no evaluation
  probe: Optional[Probe]
  priors: dict
  monitor: health.HealthMonitor
  checkpointer: Checkpointer
  writer: MetricsWriter
  result: dict  # what train_and_evaluate returns

  def evaluates_at(self, step: int) -> bool:
    return self.eval_step is not None and itstime(step, self.config.data.eval_every,
                                                  self.config.train_steps)

  def evaluate(self, state, step: int) -> None:
    """Held-out metrics of `state`, the no-learning baselines beside them, and the probe: into
    the result and eval_metrics.jsonl as step `step`'s."""
    data = self.config.data
    metrics = {**_evaluate(self.eval_step, state, self.eval_data, self.mesh, data.eval_batches),
               **self.priors}
    if self.probe is not None:
      metrics.update(self.probe(encoder_params(state.params, self.config.embedding_sharing)))
    self.result["eval"] = metrics
    self.writer.write_eval(step, metrics)


def _catch_up(run: _Run, state, start_step: int) -> bool:
  """Evaluates `start_step` when its checkpoint was saved but the run stopped before that
  evaluation was recorded; True, with the final metrics in the result, when no step is left."""
  if run.evaluates_at(start_step) and start_step > 0 and _eval_missing(run.writer, start_step):
    note(f"evaluating step {start_step}: its checkpoint was saved but the run stopped before "
         "its evaluation was recorded")
    run.evaluate(state, start_step)
  if start_step < run.config.train_steps:
    return False
  note(f"nothing to do: step {start_step} >= num_train_steps {run.config.train_steps}; these "
       f"are its final metrics (from {fs.join(run.workdir, 'metrics.jsonl')} and "
       "eval_metrics.jsonl)")
  run.result["train"], last_eval = run.writer.last_records()
  run.result["eval"] = run.result["eval"] or last_eval
  return True


class _Recorder:
  """Reads one step's metrics on the host (LaggedMetrics's `read`): stops the run on a
  non-finite one, feeds the health monitor, and every log_every steps writes them with the step
  rates and the MFU."""

  def __init__(self, run: _Run, start_step: int):
    self.run = run
    self.timer = _StepTimer(start_step, run.config.data.global_batch_size
                            * run.config.data.seq_len)
    self.step_flops, self.peak = _flops_and_peak(run.config)

  def __call__(self, step: int, device_metrics) -> None:
    run = self.run
    metrics = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    bad = _first_nonfinite(metrics)
    if bad is not None:
      run.checkpointer.wait()
      saved = run.checkpointer.latest_step()
      where = (f"the last checkpoint (step {saved}) in {run.checkpointer.directory} is intact"
               if saved is not None else "no checkpoint was saved")
      raise NonFiniteError(f"non-finite {bad} = {metrics[bad]} at step {step} "
                           f"(loss={metrics.get('loss')}, grad_norm={metrics.get('grad_norm')}); "
                           f"the run stopped without saving the corrupted state; {where}")
    message = run.monitor.update(step, metrics)
    if message:
      note(message)
    if itstime(step, run.config.log.log_every, run.config.train_steps):
      metrics.update(self.timer.rates(step))
      metrics["real_tokens_per_sec"] = metrics["tokens_per_sec"] * metrics["real_token_fraction"]
      metrics["health"] = run.monitor.status
      if self.peak:
        metrics["mfu"] = flops_lib.mfu(self.step_flops, metrics["step_time"], self.peak)
      run.writer.write_train(step, metrics)
      run.result["train"] = metrics


def _loop(run: _Run, train_step, state, start_step: int) -> None:
  """Steps start_step + 1 .. TrainConfig.train_steps, each step's metrics read one step late
  (LaggedMetrics), with the checkpoints, evaluations, profile and preemption stop they call for;
  the result goes to run.result. A step's metrics are read before its checkpoint (a non-finite
  one is never saved) and its evaluation; the last step, and a preempted one, always save, so
  nothing is left unread when the loop ends."""
  config, last_step, data = run.config, run.config.train_steps, run.train_data
  first_batch = global_batch(data.batch(start_step), run.mesh)
  compiled = train_step.lower(state, first_batch).compile()
  note(_memory_report(compiled))
  recorder = _Recorder(run, start_step)
  lagged = LaggedMetrics(recorder)
  profile = config.log.profile_steps
  with PreemptionWatcher() as preemption, contextlib.ExitStack() as profiling:
    for step in range(start_step, last_step):
      if profile and step + 1 == profile[0]:
        jax.profiler.start_trace(fs.join(run.workdir, "profile"))
        profiling.callback(jax.profiler.stop_trace)
      batch = first_batch if step == start_step else global_batch(data.batch(step), run.mesh)
      state, metrics = compiled(state, batch)
      done = step + 1
      lagged.push(done, metrics)
      run.writer.advance(done)
      if profile and done == profile[1]:
        jax.block_until_ready(state)
        profiling.close()
        note(f"profiler trace of steps {profile[0]}..{profile[1]} in "
             f"{fs.join(run.workdir, 'profile')}")
      preempted = preemption.reached(done)
      if preempted or run.checkpointer.should_save(done, last_step):
        lagged.flush()
        run.checkpointer.save(done, state, config.to_dict(),
                              {**_data_position(config, done), "health": run.monitor.state_dict()})
      if run.evaluates_at(done):
        lagged.flush()
        run.evaluate(state, done)
        recorder.timer.reset(done)  # keep evaluation time out of the next step_time
      run.result["step"] = done
      if preempted:
        run.result["preempted"] = True
        note(f"preempted: saved step {done} to {run.checkpointer.directory}; exiting")
        break


# ---------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m electra_jax.train", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="experiments: " + ", ".join(list_experiments()))
  p.add_argument("--experiment", help="experiments/NAME.gin (e.g. tiny, small, base, "
                 "ablations/mlm); omit to use only --gin_file/--gin_bindings")
  p.add_argument("--workdir", required=True, help="run directory: config, metrics, "
                 "checkpoints; an existing run there is resumed")
  p.add_argument("--gin_file", action="append", default=[], help="extra gin file (repeatable)")
  p.add_argument("--gin_bindings", "--set", action="append", default=[], dest="gin_bindings",
                 help="a gin binding such as 'ModelConfig.hidden_size = 64' (repeatable)")
  p.add_argument("--overwrite", action="store_true", help="start over: delete the checkpoints "
                 "and metrics of an earlier run in WORKDIR instead of resuming it")
  p.add_argument("--profile_steps", help="FIRST,LAST: write a JAX profiler trace of these steps "
                 "to WORKDIR/profile")
  add_distributed_flags(p)
  args = p.parse_args(argv)
  if args.experiment is None and not args.gin_file and not args.gin_bindings:
    p.error("give --experiment (or --gin_file / --gin_bindings)")
  return args


def closing_message(workdir: str) -> str:
  """Where a finished run's outputs are in `workdir` (those that exist) and the commands that
  use them next: fine-tuning and export."""
  q = shlex.quote
  closing = Closing(workdir)
  steps = saved_steps(workdir)
  if steps:
    closing.output("checkpoints", f"{fs.join(workdir, 'checkpoints')} (latest step {max(steps)})")
  for name, what in (("metrics.jsonl", "training metrics"),
                     ("eval_metrics.jsonl", "evaluation metrics"), (CURVES_FILE, "curves"),
                     (tokenizers.SAVED_DIR, "tokenizer"), ("wandb", "Weights & Biases runs")):
    closing.output_if_exists(what, fs.join(workdir, name))
  closing.tensorboard(fs.join(workdir, "tensorboard"), runs=fs.join(workdir, "tensorboard"))
  closing.wandb_offline(fs.join(workdir, "wandb"), "offline-run-*")
  if steps:  # the fine-tuning workdir goes beside the run (local or remote)
    here = workdir.rstrip("/") if fs.is_remote(workdir) else str(Path(workdir).resolve())
    closing.then("fine-tune", f"electra-finetune --task=sst2 --init={q(workdir)} "
                 f"--data_dir=GLUE_DIR --workdir={q(here + '_sst2')}")
    closing.then("export to Hugging Face", f"electra-convert {q(workdir)} OUT_DIR")
  return str(closing)


def _summary(result: dict) -> str:
  """The JSON line a finished run prints on stdout: its step, whether it was preempted, its last
  training metrics and evaluation."""
  return json.dumps({"step": result["step"], "preempted": result["preempted"],
                     **{k: result["train"].get(k)
                        for k in ("loss", "disc_auc", "gen_accuracy", "health")},
                     **{f"eval_{k}": v for k, v in result["eval"].items()
                        if k in ("loss", "disc_auc")}})


def _config(args: argparse.Namespace):
  """The run's config: the experiment and gin of the command line, with --profile_steps."""
  config = resolve_config(args.experiment, args.gin_file, args.gin_bindings)
  if args.profile_steps:
    first, last = (int(x) for x in args.profile_steps.split(","))
    config = config.replace(log=dataclasses.replace(config.log, profile_steps=(first, last)))
  return config


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line (runtime.launch.run_pipeline); every failure is one `error:` line: status 2
  for bad input or configuration, 1 for a failed run (non-finite loss, a full disk), 130 for
  Ctrl-C outside the training loop (inside it, Ctrl-C saves and stops like SIGTERM)."""
  args = parse_args(argv)
  return run_pipeline(
      args, lambda: _config(args),
      lambda config: train_and_evaluate(config, args.workdir, overwrite=args.overwrite),
      summary=_summary, closing=lambda _: closing_message(args.workdir),
      interrupted=" outside the training loop: nothing was saved for it; checkpoints written "
                  "earlier are kept",
      failures=(NonFiniteError, CheckpointWriteError))
