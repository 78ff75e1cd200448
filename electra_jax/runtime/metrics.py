"""Training metrics out: console progress bar, WORKDIR/metrics.jsonl, TensorBoard events.

Only process 0 writes; on every other process each method is a no-op, so callers need no
`if jax.process_index() == 0` of their own.

Files:
  WORKDIR/metrics.jsonl       one JSON object per logged training step ({"step": s, ...});
                              string values (e.g. "health") go to the jsonl files only
  WORKDIR/eval_metrics.jsonl  one JSON object per evaluation ({"step": s, "eval_loss": ...})
  WORKDIR/tensorboard/{train,eval}/events.*   the same scalars as TensorBoard summaries
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

from tqdm.auto import tqdm

# Shown next to the progress bar, in this order, when present.
_POSTFIX_KEYS = ("loss", "gen_accuracy", "disc_auc", "tokens_per_sec")


def itstime(step: int, every: int, last: int) -> bool:
  """The one periodic predicate of both training loops: after step `step` (steps completed),
  is it time for what happens every `every` steps (0: never) and always after the `last`?"""
  return step == last or (every > 0 and step % every == 0)


def _truncate_jsonl(path: Path, last_step: int) -> None:
  """Drops records with step > last_step (left by a run that was stopped after them) and a last
  line that is not JSON (a record cut short by a kill). The new file replaces the old by a
  rename, so a run killed meanwhile leaves one or the other whole."""
  if not path.exists():
    return
  text = path.read_text()
  lines = [l for l in text.splitlines() if l.strip()]
  if lines:
    try:
      json.loads(lines[-1])
    except ValueError:
      lines.pop()
  kept = "".join(l + "\n" for l in lines if json.loads(l)["step"] <= last_step)
  if kept != text:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(kept)
    os.replace(tmp, path)


def _jsonable(value: float) -> Optional[float]:
  value = float(value)
  return value if math.isfinite(value) else None  # JSON has no NaN/inf: write null


def _write_scalars(writer, step: int, metrics: Mapping[str, float]) -> None:
  """TensorBoard scalar summaries through core TF (`tf.summary.scalar` needs the separate
  tensorboard package; this writes the same events: a float32 tensor tagged with the "scalars"
  plugin)."""
  from tensorflow.core.framework import summary_pb2

  from data_pipelines.tf_runtime import tensorflow

  tf = tensorflow()
  metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
  with writer.as_default():
    for k, v in sorted(metrics.items()):
      tf.summary.write(k, tf.constant(float(v), tf.float32), step=int(step), metadata=metadata)
  writer.flush()


class MetricsWriter:
  """Writes scalar metrics of a run whose steps go from `start_step` to `total_steps`.

  Resuming at `start_step` drops records of later steps from the jsonl files, so each step
  appears once, in order, even when the previous run logged past its last checkpoint (or was
  killed while writing a record). TensorBoard events of those steps are not removed.
  """

  def __init__(self, workdir: Path, *, start_step: int, total_steps: int, is_main: bool,
               tensorboard: bool = True, progress_bar: bool = True):
    self.is_main = is_main
    self.workdir = Path(workdir)
    self._tb = {}
    self._bar = None
    if not is_main:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.train_path = self.workdir / "metrics.jsonl"
    self.eval_path = self.workdir / "eval_metrics.jsonl"
    for path in (self.train_path, self.eval_path):
      _truncate_jsonl(path, start_step)
    if tensorboard:
      from data_pipelines.tf_runtime import tensorflow  # TF with accelerators hidden

      tf = tensorflow()
      for split in ("train", "eval"):
        self._tb[split] = tf.summary.create_file_writer(
            str(self.workdir / "tensorboard" / split))
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
    self._write(self.train_path, "train", step, metrics)
    if self._bar is not None:
      self._bar.set_postfix({k: f"{float(metrics[k]):.4g}" for k in _POSTFIX_KEYS
                             if k in metrics}, refresh=False)
    else:
      print(f"step {step}: " + ", ".join(f"{k}={float(metrics[k]):.4g}"
                                         for k in _POSTFIX_KEYS if k in metrics), flush=True)

  def write_eval(self, step: int, metrics: Mapping[str, float]) -> None:
    """One evaluation record; keys are written with an "eval_" prefix."""
    if not self.is_main:
      return
    prefixed = {f"eval_{k}": v for k, v in metrics.items()}
    self._write(self.eval_path, "eval", step, prefixed)
    self.print(f"eval at step {step}: " + ", ".join(
        f"{k}={v}" if isinstance(v, str) else f"{k}={float(v):.4g}"
        for k, v in sorted(metrics.items())))

  def print(self, message: str) -> None:
    """A console line that does not break the progress bar (process 0 only)."""
    if not self.is_main:
      return
    if self._bar is not None:
      self._bar.write(message, file=sys.stderr)
    else:
      print(message, flush=True)

  def _write(self, path: Path, split: str, step: int, metrics: Mapping[str, float]) -> None:
    record = {"step": int(step)}
    record.update({k: v if isinstance(v, str) else _jsonable(v)
                   for k, v in sorted(metrics.items())})
    with path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    writer = self._tb.get(split)
    if writer is not None:
      _write_scalars(writer, step, {k: v for k, v in metrics.items() if not isinstance(v, str)})

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    for writer in self._tb.values():
      writer.close()
    self._tb = {}
