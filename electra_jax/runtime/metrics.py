"""Training metrics out: console progress bar, WORKDIR/metrics.jsonl, TensorBoard events,
optionally Weights & Biases, and a plot of the curves at the end. `LogConfig` says which, for
both pipelines (TrainConfig.log, FinetuneConfig.log).

Only process 0 writes; on every other process each method is a no-op, so callers need no
`if jax.process_index() == 0` of their own.

Files:
  WORKDIR/metrics.jsonl       one JSON object per logged training step ({"step": s, ...});
                              string values (e.g. "health") go to the jsonl files only
  WORKDIR/eval_metrics.jsonl  one JSON object per evaluation ({"step": s, "eval_loss": ...})
  WORKDIR/tensorboard/{train,eval}/events.*   the same scalars as TensorBoard summaries, under
                              the same tags in both runs (eval's without the "eval_" prefix), so
                              TensorBoard draws train and eval of a metric on one chart
  WORKDIR/curves.png          written by `close` when `curves` names metrics: one panel per
                              metric, its training and evaluation values against the step
  WORKDIR/wandb/              with `wandb` (a WandbRun): the W&B run's local files; the run logs
                              the jsonl records' numbers under the jsonl keys, by step. With
                              $WANDB_DIR set they go to $WANDB_DIR/wandb/ instead, as wandb's
                              own convention says (wandb writes local files only: for a remote
                              WORKDIR without $WANDB_DIR they go to ./wandb/, and the writer
                              says so)

WORKDIR may be local or a tf.io.gfile URL (gs://bucket/run; electra_jax.floor.fs).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO

import jax
from tqdm.auto import tqdm

from electra_jax.floor import fs
from electra_jax.floor.tf_runtime import tensorflow  # TF with accelerators hidden

# Shown next to the progress bar, in this order, when present.
_POSTFIX_KEYS = ("loss", "gen_accuracy", "disc_auc", "tokens_per_sec")
WANDB_MODES = ("online", "offline")
CURVES_FILE = "curves.png"


@dataclasses.dataclass(frozen=True)
class LogConfig:
  """How a training run reports itself, in both pipelines (RUN below is the run's directory: a
  pre-training WORKDIR, a fine-tuning WORKDIR/seed_S).

  log_every: steps between training-metric records (RUN/metrics.jsonl, TensorBoard, W&B, the
    progress bar's numbers). LogConfig's default, 100, is pre-training's; fine-tuning's default
    instance (electra_jax.finetune.config.FINETUNE_LOG) has 10.
  tensorboard: the same records as TensorBoard events in RUN/tensorboard/{train,eval}.
  progress_bar: a console progress bar (process 0).
  curves: RUN/curves.png at the end, training and evaluation values against the step
    (pre-training: loss, disc_auc, gen_accuracy; fine-tuning: loss and the task's primary dev
    metric).
  profile_steps: (first, last) step of a JAX profiler trace written to RUN/profile; None: off.
    Pre-training only: fine-tuning refuses it (ValueError).
  wandb_project: also log to this Weights & Biases project (the metrics.jsonl and
    eval_metrics.jsonl numbers by step, and the resolved config; needs
    `pip install "electra_jax[wandb]"`; fine-tuning logs one run per seed, grouped by the
    workdir's name); None: $WANDB_PROJECT when set, else off.
  wandb_mode: "online" or "offline" (the run stays in RUN/wandb/ until `wandb sync`); None:
    $WANDB_MODE, else online. $WANDB_DIR moves the run's files (WandbRun).
  """

  log_every: int = 100
  tensorboard: bool = True
  progress_bar: bool = True
  curves: bool = True
  profile_steps: Optional[tuple] = None
  wandb_project: Optional[str] = None
  wandb_mode: Optional[str] = None

  def __post_init__(self):
    if self.log_every <= 0:
      raise ValueError(f"LogConfig.log_every={self.log_every} must be positive")
    if self.wandb_mode is not None and self.wandb_mode not in WANDB_MODES:
      raise ValueError(f"LogConfig.wandb_mode={self.wandb_mode!r}; expected one of {WANDB_MODES}")
    if self.profile_steps is not None:
      if len(self.profile_steps) != 2 or not 0 < self.profile_steps[0] <= self.profile_steps[1]:
        raise ValueError(f"LogConfig.profile_steps={self.profile_steps}: expected (first, last) "
                         "with 0 < first <= last")


@dataclasses.dataclass(frozen=True)
class WandbRun:
  """A Weights & Biases run that mirrors a MetricsWriter's records (wandb.init's arguments).

  project: the W&B project; mode: "online" (uploads as it goes) or "offline" (local files in
  WORKDIR/wandb/, uploaded later by `wandb sync`); None: wandb's environment decides
  (WANDB_PROJECT, WANDB_MODE; unset: wandb's defaults, online); name, group: shown in the W&B
  interface; config: the resolved run configuration, logged once at the start (JSON-able dict).
  """

  project: Optional[str] = None
  mode: Optional[str] = None
  name: Optional[str] = None
  group: Optional[str] = None
  config: Optional[dict] = None


def itstime(step: int, every: int, last: int) -> bool:
  """The one periodic predicate of both training loops: after step `step` (steps completed),
  is it time for what happens every `every` steps (0: never) and always after the `last`?"""
  return step == last or (every > 0 and step % every == 0)


def note(message: str, file: Optional[TextIO] = None) -> None:
  """The process-0 note of both pipelines: one console line on `file` (default stderr) from
  process 0 only, written through tqdm so that an open progress bar is redrawn below it, not
  broken by it."""
  if jax.process_index() != 0:
    return
  file = sys.stderr if file is None else file
  tqdm.write(message, file=file)
  file.flush()


class LaggedMetrics:
  """The device metrics of the last dispatched step, read one step late (as MaxText does): `push`
  hands step s's metrics over and reads step s - 1's, which the device has finished by then
  while it runs step s, so the host never waits on the device; `flush` reads what is held (before
  a checkpoint, an evaluation or the end). `read(step, device_metrics)` does the reading."""

  def __init__(self, read: Callable[[int, Any], Any]):
    self._read = read
    self._held: Optional[tuple] = None

  def push(self, step: int, device_metrics: Any) -> None:
    """Reads the metrics held (if any), then holds step `step`'s."""
    self.flush()
    self._held = (step, device_metrics)

  def flush(self) -> None:
    """Reads the metrics held, if any; nothing is held afterwards."""
    if self._held is not None:
      held, self._held = self._held, None
      self._read(*held)


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records with step > last_step (left by a run that was stopped after them) and a last
  line that is not JSON (a record cut short by a kill). The new file replaces the old by a
  rename (fs.write_atomically), so a run killed meanwhile leaves one or the other whole."""
  if not fs.exists(path):
    return
  text = fs.read_text(path)
  lines = text.splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  if lines:
    try:
      json.loads(lines[-1])
    except ValueError:
      lines.pop()
  kept = "".join(l + "\n" for l, record in zip(lines, read_records(path, lines))
                 if record is not None and record["step"] <= last_step)
  if kept != text:
    fs.write_atomically(path, kept)


def read_records(path: str, lines: Optional[Sequence[str]] = None) -> list[Optional[dict]]:
  """The JSON records of the jsonl file `path` (or of its `lines`), None for blank lines.
  ValueError naming the file and line of a line that is not a JSON record with a "step"."""
  if lines is None:
    lines = fs.read_text(path).splitlines() if fs.exists(path) else []
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      records.append(None)
      continue
    try:
      record = json.loads(line)
      record["step"] = int(record["step"])
    except (ValueError, KeyError, TypeError) as err:
      raise ValueError(f"{path}:{number}: not a metrics record ({type(err).__name__}: {err}): "
                       f"{line[:80]!r}; delete or repair that line (or pass --overwrite to start "
                       "over)") from None
    records.append(record)
  return records


def _jsonable(value: float) -> Optional[float]:
  value = float(value)
  return value if math.isfinite(value) else None  # JSON has no NaN/inf: write null


def _numbers(metrics: Mapping[str, float]) -> dict:
  """The numeric entries of `metrics` as floats (strings such as "health" left out)."""
  return {k: float(v) for k, v in metrics.items() if not isinstance(v, str)}


def wandb_enabled(project: Optional[str]) -> bool:
  """Whether a run logs to W&B: a project is configured, or $WANDB_PROJECT names one."""
  return project is not None or bool(os.environ.get("WANDB_PROJECT"))


def _start_wandb(run: WandbRun, directory: str):
  """wandb.init for `run`, its files under $WANDB_DIR/wandb when set, else directory/wandb (a
  remote directory: ./wandb, wandb writes local files only); ValueError when wandb is
  missing."""
  try:
    import wandb
  except ImportError:
    raise ValueError(f"Weights & Biases logging (project {run.project!r}) needs the wandb "
                     'package: pip install "electra_jax[wandb]", or unset the wandb_project '
                     "option") from None
  if os.environ.get("WANDB_DIR"):
    directory = os.environ["WANDB_DIR"]
  elif fs.is_remote(directory):
    local = os.getcwd()
    print(f"note: {directory} is not local and wandb writes local files only: the W&B run's "
          f"files go to {os.path.join(local, 'wandb')}", file=sys.stderr, flush=True)
    directory = local
  return wandb.init(project=run.project, mode=run.mode, name=run.name, group=run.group,
                    config=run.config, dir=directory)


def reference_values(train: Sequence[dict], evals: Sequence[dict],
                     references: Mapping[str, Sequence[tuple]]) -> dict[str, list]:
  """{panel: [(label, value)]} of the reference lines a run's curves get.

  references: {panel: [(label, value or metric name)]}; a metric name takes its mean over the
  `train` records that hold it, else over the "eval_"-prefixed values in `evals` (e.g. the
  discriminator's prior loss, the unigram accuracy); a name in neither is left out.
  """
  out = {}
  for panel, lines in references.items():
    for label, ref in lines:
      if not isinstance(ref, str):
        out.setdefault(panel, []).append((label, float(ref)))
        continue
      for records, key in ((train, ref), (evals, f"eval_{ref}")):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
          out.setdefault(panel, []).append((label, sum(values) / len(values)))
          break
  return out


def write_curves(path: str, train: Sequence[dict], evals: Sequence[dict],
                 names: Sequence[str],
                 references: Optional[Mapping[str, Sequence[tuple]]] = None) -> bool:
  """Plots each of `names` against the step into the PNG `path`: one panel per name with its
  values in the `train` records ("train") and the "eval_"-prefixed ones in `evals` ("eval"),
  and dashed horizontal lines at its `references` (`reference_values`: what a model that
  learned nothing scores). Records are jsonl records ({"step": s, ...}; null values are gaps).
  Names found in neither are left out; with none found, no file is written. Returns whether a
  file was written; without matplotlib, says so in one line on stderr and returns False."""
  refs = reference_values(train, evals, references or {})
  panels = []
  for name in names:
    lines = [(label, [(r["step"], r[key]) for r in records if key in r])
             for label, records, key in (("train", train, name), ("eval", evals, f"eval_{name}"))]
    lines = [(label, points) for label, points in lines if points]
    if lines:
      panels.append((name, lines))
  if not panels:
    return False
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
  except ImportError:
    print(f"warning: matplotlib is not installed; no {path} (pip install matplotlib)",
          file=sys.stderr, flush=True)
    return False
  figure = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
  FigureCanvasAgg(figure)
  for ax, (name, lines) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
    for label, points in lines:
      steps, values = zip(*points)
      values = [math.nan if v is None else v for v in values]
      ax.plot(steps, values, marker="o" if len(points) <= 20 else None, markersize=3,
              label=label)
    for label, value in refs.get(name, []):
      ax.axhline(value, linestyle="--", color="gray", linewidth=1, label=f"{label} {value:.4g}")
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
  png = io.BytesIO()
  figure.savefig(png, format="png", dpi=100)
  fs.write_bytes(path, png.getvalue())
  return True


class MetricsWriter:
  """Writes scalar metrics of a run whose steps go from `start_step` to `total_steps`.

  Resuming at `start_step` drops records of later steps from the jsonl files, so each step
  appears once, in order, even when the previous run logged past its last checkpoint (or was
  killed while writing a record). TensorBoard events of those steps are not removed.

  `curves`: the metrics `close` plots into WORKDIR/curves.png (`write_curves`; none: no plot),
  with the reference lines `references` ({panel: [(label, value or metric name)]}).
  `wandb`: also log every record to this Weights & Biases run (ValueError here when the wandb
  package is missing).
  """

  def __init__(self, workdir: str, *, start_step: int, total_steps: int, is_main: bool,
               tensorboard: bool = True, progress_bar: bool = True,
               curves: Sequence[str] = (), wandb: Optional[WandbRun] = None,
               references: Optional[Mapping[str, Sequence[tuple]]] = None):
    self.is_main = is_main
    self.workdir = os.fspath(workdir)
    self.curves = tuple(curves)
    self.references = dict(references or {})
    self._tb = {}
    self._bar = None
    self._wandb = None
    if not is_main:
      return
    fs.makedirs(self.workdir)
    self.train_path = fs.join(self.workdir, "metrics.jsonl")
    self.eval_path = fs.join(self.workdir, "eval_metrics.jsonl")
    for path in (self.train_path, self.eval_path):
      _truncate_jsonl(path, start_step)
    if wandb is not None:
      self._wandb = _start_wandb(wandb, self.workdir)
    if tensorboard:
      tf = tensorflow()
      for split in ("train", "eval"):
        self._tb[split] = tf.summary.create_file_writer(
            fs.join(self.workdir, "tensorboard", split))
    if progress_bar:
      self._bar = tqdm(total=total_steps, initial=start_step, unit="step", file=sys.stderr,
                       dynamic_ncols=True, smoothing=0.1)

  def advance(self, step: int) -> None:
    """Moves the progress bar to `step` (steps completed)."""
    if self._bar is not None and step > self._bar.n:
      self._bar.update(step - self._bar.n)

  def write_train(self, step: int, metrics: Mapping[str, float]) -> None:
    """One record of training metrics at `step` (the number of steps completed)."""
    if not self.is_main:
      return
    self._write(self.train_path, "train", step, metrics, metrics)
    if self._bar is not None:
      self._bar.set_postfix({k: f"{float(metrics[k]):.4g}" for k in _POSTFIX_KEYS
                             if k in metrics}, refresh=False)
    else:
      print(f"step {step}: " + ", ".join(f"{k}={float(metrics[k]):.4g}"
                                         for k in _POSTFIX_KEYS if k in metrics), flush=True)

  def write_eval(self, step: int, metrics: Mapping[str, float]) -> None:
    """One evaluation record; its keys get an "eval_" prefix in the jsonl file and in W&B, not
    in TensorBoard (the eval run's tags are the train run's, so their charts overlay)."""
    if not self.is_main:
      return
    prefixed = {f"eval_{k}": v for k, v in metrics.items()}
    self._write(self.eval_path, "eval", step, prefixed, metrics)
    note(f"eval at step {step}: " + ", ".join(
        f"{k}={v}" if isinstance(v, str) else f"{k}={float(v):.4g}"
        for k, v in sorted(metrics.items())), sys.stderr if self._bar is not None else sys.stdout)

  def has_eval(self, step: int) -> bool:
    """Whether eval_metrics.jsonl holds a record of `step` (True on processes other than 0)."""
    if not self.is_main:
      return True
    return any(r is not None and r["step"] == step for r in read_records(self.eval_path))

  def last_records(self) -> tuple[dict, dict]:
    """(the last training record, the last evaluation record) in the jsonl files, without their
    "step" and the "eval_" prefix ({} where there is none; {} on processes other than 0)."""
    if not self.is_main:
      return {}, {}
    last = lambda path: next((r for r in reversed(read_records(path)) if r is not None), {})
    train = {k: v for k, v in last(self.train_path).items() if k != "step"}
    evals = {k.removeprefix("eval_"): v for k, v in last(self.eval_path).items() if k != "step"}
    return train, evals

  def _write(self, path: str, split: str, step: int, metrics: Mapping[str, float],
             tags: Mapping[str, float]) -> None:
    """`metrics` to the jsonl file `path` and W&B; `tags`, the same values, to TensorBoard."""
    record = {"step": int(step)}
    record.update({k: v if isinstance(v, str) else _jsonable(v)
                   for k, v in sorted(metrics.items())})
    fs.append_text(path, json.dumps(record) + "\n")
    if self._wandb is not None:
      self._wandb.log(_numbers(metrics), step=int(step))
    writer = self._tb.get(split)
    if writer is not None:
      tf = tensorflow()
      with writer.as_default():
        for k, v in sorted(_numbers(tags).items()):
          tf.summary.scalar(k, v, step=int(step))
      writer.flush()

  def close(self) -> None:
    """Ends the run's outputs: progress bar, TensorBoard writers, the W&B run, and plots
    WORKDIR/curves.png from the jsonl files (the whole run, earlier resumed parts included)."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    for writer in self._tb.values():
      writer.close()
    self._tb = {}
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None
    if self.is_main and self.curves:
      read = lambda path: [r for r in read_records(path) if r is not None]
      write_curves(fs.join(self.workdir, CURVES_FILE), read(self.train_path),
                   read(self.eval_path), self.curves, self.references)
