"""Fine-tune one checkpoint on several GLUE tasks with several seeds; print the medians table.

    python -m electra_jax.quality --init=PATH --tasks=sst2,cola --seeds=1,2,3 \
        --data_dir=../shared/data/glue [--tokenizer=SPEC] [--random_baseline] [--workdir=DIR]
    python -m electra_jax.quality --init=random --size=small --tasks=sst2,cola ...

`--random_baseline` also fine-tunes the same architecture from random initialisation (the
paper's "no pre-training" control). Each (init, task) run is `finetune_and_evaluate` under
WORKDIR/<init name>/<task>; the table shows every seed's primary metric and the median, and the
last row the mean of the medians over the tasks. `--gin_bindings` apply to every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from data_pipelines import tokenizers
from electra_jax.finetune import finetune_and_evaluate, load_initial
from electra_jax.finetune_config import resolve_config, size_of
from electra_jax.tasks import get_task


def run_quality(base_config, tasks: list[str], workdir: str, random_baseline: bool = False
                ) -> list[dict]:
  """One row per (init, task): {"init", "task", "metric", "values", "median"}."""
  inits = [base_config.init] + (["random"] if random_baseline and base_config.init != "random"
                                else [])
  rows = []
  for init in inits:
    for name in tasks:
      task = get_task(name)
      cfg = base_config.replace(task=task.name, init=init)
      if init == "random" and base_config.init != "random":
        cfg = _random_like(cfg, base_config)
      label = "random" if init == "random" else Path(init).name
      results = finetune_and_evaluate(cfg, str(Path(workdir) / label / task.name))
      metric = results["primary_metric"]
      rows.append({"init": label, "task": task.name, "metric": metric,
                   "values": results["per_seed"][metric], "median": results["median"][metric]})
  return rows


def _random_like(cfg, base_config):
  """Random init with the architecture of the checkpoint in `base_config.init`."""
  spec = base_config.tokenizer or f"wordpiece:{Path(base_config.init) / 'vocab.txt'}"
  model_config, _ = load_initial(base_config, tokenizers.load(spec).vocab_size)
  shape = {f.name: getattr(model_config, f.name) for f in dataclasses.fields(model_config)
           if f.name not in ("dtype", "remat")}
  size = base_config.size or size_of(model_config)
  return cfg.replace(tokenizer=spec, size=size, model_overrides=tuple(shape.items()))


def format_table(rows: list[dict]) -> str:
  """Markdown table of per-seed values and medians, with a mean-of-medians row per init."""
  out = ["| init | task | metric | seeds | median |", "|---|---|---|---|---|"]
  for r in rows:
    seeds = " ".join(f"{v:.2f}" for v in r["values"])
    out.append(f"| {r['init']} | {r['task']} | {r['metric']} | {seeds} | {r['median']:.2f} |")
  for init in dict.fromkeys(r["init"] for r in rows):
    medians = [r["median"] for r in rows if r["init"] == init]
    out.append(f"| {init} | average | | | {sum(medians) / len(medians):.2f} |")
  return "\n".join(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m electra_jax.quality", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--init", required=True, help="checkpoint path or 'random'")
  p.add_argument("--tasks", default="sst2,cola")
  p.add_argument("--seeds", default="1,2,3")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--tokenizer")
  p.add_argument("--size", help="tiny/small/base/large (random init)")
  p.add_argument("--workdir", default="workdirs/quality")
  p.add_argument("--random_baseline", action="store_true")
  p.add_argument("--gin_bindings", action="append", default=[])
  args = p.parse_args(argv)
  tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
  try:
    base = resolve_config([], args.gin_bindings, task=tasks[0], init=args.init,
                          data_dir=args.data_dir, tokenizer=args.tokenizer, size=args.size,
                          seeds=tuple(int(s) for s in args.seeds.split(",")))
    rows = run_quality(base, tasks, args.workdir, args.random_baseline)
  except (ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  print(format_table(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
