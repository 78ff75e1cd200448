"""Convert ELECTRA checkpoints between formats.

  python -m electra_jax.io.convert SRC DST [--from FORMAT] [--to FORMAT] [--which NETWORK]

SRC formats (detected unless --from is given): hf (config.json + model.safetensors), tf1 (an
official google-research/electra checkpoint: prefix or directory with a `checkpoint` file),
electra_jax (a pre-training checkpoint of electra_jax's trainer), electra_jax-safetensors
(including fine-tuned models, WORKDIR/seed_S/final of electra_jax.finetune.train).
DST formats (--to, default hf): hf (a directory transformers loads with from_pretrained),
electra_jax-safetensors (electra_jax.json + params.safetensors).

A source with two networks (tf1, electra_jax) converts both by default, into DST/discriminator
and DST/generator; --which discriminator|generator converts one into DST itself
(--which pretraining keeps the joint model, electra_jax-safetensors only). --architecture
ElectraModel converts the encoder alone, from any source.

A classifier fine-tuned with the default head="official" (dropout + linear on [CLS]) has no
Hugging Face class: fine-tune with `--set "FinetuneConfig.head = 'hf'"` to export the classifier,
or export its encoder alone with --architecture ElectraModel.

The tokenizer saved with SRC (a pre-training or fine-tuning workdir keeps one; an HF directory or
an official release has vocab.txt) is written into every output, with the files transformers'
AutoTokenizer reads; a fine-tuned model's label names become the HF config's id2label.

SRC and DST may be local or tf.io.gfile URLs (gs://bucket/dir; electra_jax.floor.fs); an
electra_jax pre-training SRC only local or gs:// (orbax).

Examples:
  python -m electra_jax.io.convert electra_small/ out/ --from tf1
  python -m electra_jax.io.convert hf_dir/ native/ --to electra_jax-safetensors
  python -m electra_jax.io.convert gs://bucket/runs/small gs://bucket/exports/small
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from data_pipelines import tokenizers
from electra_jax.floor import cli, fs
from electra_jax.io import load as pretrained
from electra_jax.io.common import CheckpointError
from electra_jax.io.formats import FORMATS


class _ProgressLine:
  """A single self-overwriting progress line on stderr."""

  def __init__(self, label: str):
    self.label, self.stream = label, sys.stderr  # the stderr of now, not of import time
    self.last = 0.0
    self.tty = self.stream.isatty()

  def __call__(self, done: int, total: int, name: str) -> None:
    now = time.monotonic()
    if done != total and now - self.last < 0.1:
      return
    self.last = now
    line = f"{self.label}: {done}/{total} tensors  {name}"
    if self.tty:
      self.stream.write("\r\033[K" + line[:150])
      if done == total:
        self.stream.write("\n")
    elif done == total or done == 1:
      self.stream.write(line + "\n")
    self.stream.flush()


def _write(model, params, src: str, dst: str, to: str, tokenizer, finetune) -> dict:
  return FORMATS[to].save(model, params, src, dst, tokenizer, finetune,
                          progress=_ProgressLine(f"writing {dst}"))


def _writable() -> list[str]:
  return [name for name, fmt in FORMATS.items() if fmt.writable]


def convert(src: str, dst: str, src_format=None, to="hf", which=None, force=False,
            num_attention_heads=None, architecture=None, strict=True) -> list[str]:
  """Runs one conversion; returns the summary lines. Raises CheckpointError on bad input.

  A local `dst` is written under a hidden sibling directory (.DST.partial-PID) and moved into
  place when every file is written, so a failure (a full disk, a bad source) leaves no partial
  output, and an existing DST (with `force`) keeps its old files. A remote DST is written in
  place."""
  if to not in _writable():
    raise CheckpointError(f"--to {to!r}; expected one of {_writable()}")
  fmt = src_format or pretrained.detect_format(src)
  if fmt not in FORMATS:
    raise CheckpointError(f"format={fmt!r}; expected one of {tuple(FORMATS)}")
  if fs.exists(dst) and (not fs.isdir(dst) or fs.listdir(dst)) and not force:
    raise CheckpointError(f"{dst} exists and is not empty (pass --force to write into it)")
  if which == "pretraining" and not FORMATS[to].joint_model:
    raise CheckpointError(f"--which pretraining: {FORMATS[to].title} has no joint generator + "
                          "discriminator class; convert 'discriminator' and 'generator' (the "
                          "default 'both' does)")
  two_networks = FORMATS[fmt].two_networks(src)
  if which is None or which == "both":
    targets = [("discriminator", fs.join(dst, "discriminator")),
               ("generator", fs.join(dst, "generator"))] if two_networks else [(None, dst)]
  else:
    targets = [(which, dst)]
  tokenizer = tokenizers.find_saved(src)
  finetune = FORMATS[fmt].finetune_record(src)
  overrides = {}
  if num_attention_heads:
    overrides["num_attention_heads"] = num_attention_heads
  if fs.is_remote(dst):  # an object store writes each file whole; no directory rename there
    return _convert_targets(src, fmt, to, targets, architecture, strict, tokenizer, finetune,
                            overrides)
  staging = Path(dst).absolute().parent / f".{Path(dst).name}.partial-{os.getpid()}"
  staged = [(net, str(staging / Path(out).relative_to(dst))) for net, out in targets]
  try:
    lines = _convert_targets(src, fmt, to, staged, architecture, strict, tokenizer, finetune,
                             overrides)
    _move_into(staging, Path(dst))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return [line.replace(str(staging), dst) for line in lines]


def _move_into(staging: Path, dst: Path) -> None:
  """Moves the files written under `staging` to `dst` (created; a same-named entry in an existing
  `dst` is replaced), each by a rename on the same file system."""
  if not dst.exists():
    os.replace(staging, dst)
    return
  for entry in staging.iterdir():
    target = dst / entry.name
    if target.is_dir() and entry.is_dir():
      _move_into(entry, target)
      continue
    if target.is_dir():
      shutil.rmtree(target)
    os.replace(entry, target)


def _convert_targets(src: str, fmt: str, to: str, targets: list, architecture, strict,
                     tokenizer, finetune, overrides) -> list[str]:
  """Reads each network of `targets` ((network or None, output directory)) from `src` and
  writes it in format `to`; returns the summary lines."""
  lines = []
  for net, out in targets:
    t0 = time.time()
    try:
      model, params, report = pretrained.load_pretrained(
          src, net, format=fmt, architecture=architecture, strict=strict, as_numpy=True,
          return_report=True,
          progress=_ProgressLine(f"reading {fmt}" + (f" {net}" if net else "")), **overrides)
    except CheckpointError as e:
      if len(targets) == 2 and net == "generator" and "no generator" in str(e):
        lines.append(f"skipped the generator: {e}")  # e.g. an MLM-baseline run
        continue
      raise
    if architecture == "ElectraModel":
      finetune = None  # load_pretrained read the encoder alone: no task head, no labels
    info = _write(model, params, src, out, to, tokenizer, finetune)
    what = f" ({net})" if net else ""
    line = (f"converted {fmt} {report.source}{what} -> {to} {info['architecture']} at {out}: "
            f"{info['tensors']} tensors, {info['parameters']:,} parameters "
            f"in {time.time() - t0:.1f}s")
    if report.ignored:
      line += f"; {len(report.ignored)} source entries not converted"
    lines.append(line)
    lines += [f"  note: {n}" for n in report.notes]
    lines.append(f"  tokenizer: {tokenizer.spec} saved with it" if tokenizer is not None else
                 f"  note: {src} carries no tokenizer; the output has none (fine-tuning it needs "
                 "--tokenizer)")
  return lines


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m electra_jax.io.convert", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("src", help="source checkpoint (directory, TF prefix or file)")
  p.add_argument("dst", help="destination directory")
  p.add_argument("--from", dest="src_format", choices=list(FORMATS),
                 help="source format (default: detected)")
  p.add_argument("--to", default="hf", choices=_writable(),
                 help="destination format (default: hf)")
  p.add_argument("--which", choices=["discriminator", "generator", "both", "pretraining"],
                 help="network of a two-network source (default: both, into DST/discriminator "
                      "and DST/generator)")
  p.add_argument("--num-attention-heads", type=int,
                 help="tf1 only: heads of the converted network (default hidden // 64)")
  p.add_argument("--architecture",
                 help="ElectraModel: the encoder alone (any source); hf sources: read as this "
                      "class")
  p.add_argument("--no-strict", dest="strict", action="store_false",
                 help="tf1 only: ignore variables that belong to neither network")
  p.add_argument("--force", action="store_true", help="write into a non-empty DST")
  args = p.parse_args(argv)

  def run():
    print("\n".join(convert(args.src, args.dst, args.src_format, args.to, args.which,
                            args.force, args.num_attention_heads, args.architecture,
                            args.strict)))

  return cli.run_command(run)


if __name__ == "__main__":
  sys.exit(main())
