"""Dev score against pre-training steps: fine-tune every checkpoint matched by a glob.

    python -m electra_jax.finetune.sweep --checkpoints='runs/small/checkpoints/*' --task=sst2 \
        --data_dir=DIR --tokenizer=SPEC --workdir=DIR [--seeds=1,2,3] [--flops_per_step=F]

Each matched path (a pre-training step directory, or any checkpoint load_pretrained reads) is
fine-tuned with `finetune_and_evaluate`; its pre-training step is the last integer in the path.
Writes WORKDIR/sweep.tsv (step, FLOPs when --flops_per_step is given, median and per-seed dev
score of the task's primary metric, path) and WORKDIR/sweep.png (median dev score against
steps, or against pre-training FLOPs = step x flops_per_step) — the paper's Figure 1 / Table 1
curve for your own model. The glob and WORKDIR may be local or tf.io.gfile URLs (gs://...).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from typing import Optional

from electra_jax.finetune.config import FinetuneConfig, resolve_config
from electra_jax.finetune.train import finetune_and_evaluate
from electra_jax.floor import fs


def checkpoint_step(path: str) -> int:
  """The pre-training step of a checkpoint path: its last integer (e.g. .../checkpoints/5000)."""
  numbers = re.findall(r"\d+", path)
  if not numbers:
    raise ValueError(f"cannot read a step number from checkpoint path {path}")
  return int(numbers[-1])


def sweep(config: FinetuneConfig, pattern: str, workdir: str,
          flops_per_step: Optional[float] = None) -> list[dict]:
  """Fine-tunes every checkpoint matching `pattern` (sorted by step); writes the table and plot.
  Returns rows {"step", "flops", "median", "values", "metric", "path"}."""
  paths = sorted(fs.glob(pattern), key=checkpoint_step)
  if not paths:
    raise FileNotFoundError(f"no checkpoints match {pattern}")
  rows = []
  for path in paths:
    step = checkpoint_step(path)
    results = finetune_and_evaluate(config.replace(init=path), fs.join(workdir, f"step_{step}"))
    metric = results["primary_metric"]
    rows.append({"step": step, "flops": None if flops_per_step is None else step * flops_per_step,
                 "median": results["median"][metric], "values": results["per_seed"][metric],
                 "metric": metric, "path": path})
    print(f"step {step}: {metric} median {rows[-1]['median']:.2f}", file=sys.stderr)
  write_sweep(rows, workdir, config.task)
  return rows


def write_sweep(rows: list[dict], out_dir: str, task: str) -> tuple[str, str]:
  """WORKDIR/sweep.tsv and WORKDIR/sweep.png from sweep rows; returns their paths."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fs.makedirs(out_dir)
  tsv = fs.join(out_dir, "sweep.tsv")
  lines = ["step\tflops\tmedian\tper_seed\tpath\n"]
  for r in rows:
    flops = "" if r["flops"] is None else f"{r['flops']:.4g}"
    seeds = ",".join(f"{v:.2f}" for v in r["values"])
    lines.append(f"{r['step']}\t{flops}\t{r['median']:.2f}\t{seeds}\t{r['path']}\n")
  fs.write_text(tsv, "".join(lines))
  use_flops = all(r["flops"] is not None for r in rows)
  xs = [r["flops"] if use_flops else r["step"] for r in rows]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(xs, [r["median"] for r in rows], marker="o")
  ax.set_xlabel("pre-training FLOPs" if use_flops else "pre-training steps")
  ax.set_ylabel(f"{task} dev {rows[0]['metric']} (median over seeds)")
  ax.grid(True, alpha=0.3)
  fig.tight_layout()
  png = fs.join(out_dir, "sweep.png")
  image = io.BytesIO()
  fig.savefig(image, format="png", dpi=100)
  plt.close(fig)
  fs.write_bytes(png, image.getvalue())
  return tsv, png


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m electra_jax.finetune.sweep", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--checkpoints", required=True, help="glob of checkpoint paths (quote it)")
  p.add_argument("--task", required=True)
  p.add_argument("--data_dir")
  p.add_argument("--tfds", action="store_true")
  p.add_argument("--tokenizer")
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", default="1")
  p.add_argument("--flops_per_step", type=float)
  p.add_argument("--gin_bindings", action="append", default=[])
  args = p.parse_args(argv)
  try:
    config = resolve_config([], args.gin_bindings, task=args.task, init="random",
                            data_dir=args.data_dir, tfds=True if args.tfds else None,
                            tokenizer=args.tokenizer,
                            seeds=tuple(int(s) for s in args.seeds.split(",")))
    rows = sweep(config, args.checkpoints, args.workdir, args.flops_per_step)
  except (ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  for r in rows:
    print(f"{r['step']}\t{r['median']:.2f}")
  print(f"table: {fs.join(args.workdir, 'sweep.tsv')}  plot: {fs.join(args.workdir, 'sweep.png')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
