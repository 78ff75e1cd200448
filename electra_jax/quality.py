"""Fine-tune checkpoints on GLUE tasks with several seeds and print the medians table, or first
pre-train ELECTRA and its MLM baseline at equal compute (the paper's claim, measured).

Checkpoint mode: fine-tune one checkpoint (and, with --random_baseline, the same architecture
from random initialisation, the paper's "no pre-training" control):

    python -m electra_jax.quality --init=PATH --tasks=sst2,cola --seeds=1,2,3 \
        --data_dir=../shared/data/glue [--tokenizer=SPEC] [--random_baseline] [--workdir=DIR]
    python -m electra_jax.quality --init=random --size=small --tasks=sst2,cola ...

Pre-training mode on text (--pretrain_text): first builds the shards under WORKDIR/data from
--pretrain_corpus (plain-text files, directories or globs; optional) plus the training text of
every --tasks task without its labels (finetune.task_text; dev and test text never enter), with
a SentencePiece vocabulary of --vocab_size pieces trained on that text and rows of --seq_len
tokens (prepare_text_data; steps whose output exists are reused), then runs as below.
--task_data_dir TASK=DIR gives a task data of its own (e.g. chunk=../shared/data beside GLUE's
--data_dir); --probe TASK turns on the linear probe of electra_jax.pretrain.probe on a GLUE
classification task at every evaluation of both runs (and draws it against a random network
in the curves); --budgets 0.5,1 also fine-tunes each run's checkpoint at those fractions of its
steps (rows "electra@0.5", ...); --objectives mlm (or electra) pre-trains and fine-tunes that run
only, beside random init (the MLM run keeps the steps that match --pretrain_steps ELECTRA steps
in FLOPs, so its numbers are those of the two-run command).

Pre-training mode (--pretrain_data DIR, a shard directory built by
data_pipelines.build_pretraining_data): pre-trains two models with `train.train_and_evaluate`,
both from experiments/EXPERIMENT.gin + the --pretrain_set bindings:

  WORKDIR/electra  the experiment's objective (any kind but "mlm"), --pretrain_steps steps (the
                   learning-rate schedule's length too; default: the experiment's).
  WORKDIR/mlm      the same network and data with ObjectiveConfig.kind = "mlm" (BERT's masked
                   LM, no generator) for round(steps x F_electra / F_mlm) steps, F = the analytic
                   FLOPs of one training step (pretrain.flops.training_flops_per_step), so both runs spend the same compute. Its schedule is the ELECTRA run's stretched
                   by the same factor (warmup, total steps and eval_every), so warmup, decay and
                   evaluations fall at equal FLOPs.

The recipe sets OptimizerConfig.bias_correction = True, and ModelConfig.vocab_size and
DataConfig.seq_len from the shards' manifest, before the --pretrain_set bindings (which may
override them); DataConfig.data_dir is always DIR. A run directory that already holds a run of
the same config is resumed, or reused when finished; one with a different config is an error.
Then ELECTRA, MLM and random init (same architecture) are fine-tuned on every task with every
seed, tokenised with the shards' tokenizer (manifest.json "tokenizer" "spec"; the pre-training
workdir stores none), under WORKDIR/finetune/<init>/<task>. Writes WORKDIR/pretraining_curves.png
(loss, generator / MLM accuracy and discriminator AUC, training and held-out, against analytic
FLOPs or steps: --curve_x) and WORKDIR/quality.json (every number: steps, FLOPs, curves,
per-seed scores, medians, averages).

Both modes print one table: each seed's primary dev metric and the median over seeds for every
(init, task), and per init the mean of its medians over the tasks. Scores are those of the final
checkpoint, as in the paper (FinetuneConfig.select = "final"); `--select best` reports the best
of the dev evaluations instead (optimistic; the table says which). `--gin_bindings` (e.g.
'FinetuneConfig.max_train_examples = 2000', 'LogConfig.progress_bar = False') apply to every
fine-tuning run; `--pretrain_set` bindings to pre-training (a LogConfig binding there is
pre-training's).

The hour-long CPU run (2 otherwise idle cores) on the shared corpus (BERT uncased WordPiece,
seq 128): a 4-layer, hidden-128 model pre-trained for 1500 ELECTRA steps at batch 32 (~0.6 s a
step; the MLM run gets 1601 steps of ~0.55 s: ~31 min for both), then fine-tuned from ELECTRA,
MLM and random init on 4000-example random subsets of SST-2 and CoLA (full dev sets, max length
64, 2 epochs = 250 steps of ~0.15-0.2 s, 3 seeds: ~17 min): ~48 min in all (estimates scaled
from step times measured on a loaded machine; 1200 steps save ~5 min):

    python -m electra_jax.quality --pretrain_data=/work/data/shared128 --experiment=small \
        --pretrain_steps=1500 \
        --pretrain_set='ModelConfig.num_hidden_layers = 4' \
        --pretrain_set='ModelConfig.hidden_size = 128' \
        --pretrain_set='ModelConfig.num_attention_heads = 2' \
        --pretrain_set='ModelConfig.intermediate_size = 512' \
        --pretrain_set='ModelConfig.embedding_size = 128' \
        --pretrain_set='DataConfig.global_batch_size = 32' \
        --pretrain_set='OptimizerConfig.learning_rate = 1e-3' \
        --pretrain_set='OptimizerConfig.warmup_steps = 100' \
        --pretrain_set='DataConfig.eval_every = 250' \
        --pretrain_set='DataConfig.eval_batches = 10' \
        --pretrain_set='CheckpointConfig.save_every = 0' \
        --pretrain_set='LogConfig.log_every = 50' \
        --pretrain_set='LogConfig.progress_bar = False' \
        --tasks=sst2,cola --seeds=1,2,3 --data_dir=../shared/data/glue \
        --gin_bindings='FinetuneConfig.max_train_examples = 4000' \
        --gin_bindings='FinetuneConfig.train_sample_seed = 0' \
        --gin_bindings='FinetuneConfig.max_seq_length = 64' \
        --gin_bindings='FinetuneConfig.num_epochs = 2.0' \
        --gin_bindings='LogConfig.progress_bar = False' \
        --workdir=workdirs/claim_cpu

The in-domain CPU protocol (README, "Does pre-training pay?"): general text plus the unlabelled
training text of SST-2 and CoNLL-2000, an 8,000-piece SentencePiece vocabulary, ELECTRA for
1,000 steps of experiments/quality_cpu.gin against MLM at equal FLOPs, a probe on SST-2 at
every evaluation, then 2,000 labelled examples of each task, 3 seeds:

    python -m electra_jax.quality --pretrain_text --experiment=quality_cpu \
        --pretrain_corpus=../shared/data/wikitext103/wiki.train.tokens.prefix \
        --pretrain_steps=1000 --probe=sst2 --tasks=sst2,chunk --seeds=1,2,3 \
        --data_dir=../shared/data/glue --task_data_dir=chunk=../shared/data \
        --gin_bindings='FinetuneConfig.max_train_examples = 2000' \
        --gin_bindings='FinetuneConfig.train_sample_seed = 0' \
        --gin_bindings='FinetuneConfig.max_seq_length = 64' \
        --gin_bindings='FinetuneConfig.num_epochs = 3.0' \
        --gin_bindings='FinetuneConfig.learning_rate = 1e-3' \
        --gin_bindings='FinetuneConfig.layerwise_lr_decay = 1.0' \
        --gin_bindings='LogConfig.progress_bar = False' \
        --workdir=workdirs/quality_cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from data_pipelines import glue, tokenizers
from data_pipelines.build_pretraining_data import build_pretraining_data
from data_pipelines.manifest import read_manifest
from data_pipelines.train_tokenizer import train_sentencepiece
from electra_jax.finetune.config import resolve_config, size_of
from electra_jax.finetune.kinds import task_file
from electra_jax.finetune.task_text import write_task_text
from electra_jax.finetune.tasks import get_task
from electra_jax.finetune.train import (SELECTION, finetune_and_evaluate, load_initial,
                                        resolve_tokenizer)
from electra_jax.floor import fs
from electra_jax.pretrain import flops
from electra_jax.pretrain.config import load_config_json
from electra_jax.pretrain.config import resolve_config as resolve_train_config
from electra_jax.pretrain.train import train_and_evaluate
from electra_jax.runtime import mesh as sharding

# Curve panels: metric name in metrics.jsonl (held-out: "eval_" + name) -> panel title. A run
# is drawn in a panel only where it has the metric (the objective reports 0 for a term its kind
# lacks).
CURVE_METRICS = {"loss": "loss (each run's own objective)",
                 "gen_accuracy": "generator accuracy at masked positions",
                 "mlm_accuracy": "MLM accuracy at masked positions",
                 "disc_auc": "replaced-token detection AUC",
                 "probe_mean_accuracy": "linear probe, mean-pooled features (dev accuracy)",
                 "probe_cls_accuracy": "linear probe, [CLS] features (dev accuracy)"}
# Metric -> (the eval record's key of a no-learning reference, its label): dotted lines.
BASELINES = {"gen_accuracy": (("eval_unigram_accuracy", "unigram (no context)"),),
             "mlm_accuracy": (("eval_unigram_accuracy", "unigram (no context)"),),
             "probe_mean_accuracy": (("eval_probe_random_mean_accuracy", "random-init network"),
                                     ("eval_probe_bow_accuracy", "bag of words (no network)")),
             "probe_cls_accuracy": (("eval_probe_random_cls_accuracy", "random-init network"),
                                    ("eval_probe_bow_accuracy", "bag of words (no network)"))}


# ---------------------------------------------------------------------------------------------
# Fine-tuning and the table


def run_quality(base_config, tasks: list[str], workdir: str, random_baseline: bool = False,
                inits: Optional[dict] = None, data_dirs: Optional[dict] = None) -> list[dict]:
  """Fine-tunes every init on every task; one row per (init, task):
  {"init", "task", "metric", "select", "values" (primary metric per seed), "median",
  "per_seed" (every metric -> [value per seed])}.

  inits: label -> checkpoint path (or "random"); default {name of base_config.init: it}.
  random_baseline adds "random": the architecture of `base_config.init`, randomly initialised.
  data_dirs: task name -> its data directory, where it is not `base_config.data_dir`.
  Runs go to WORKDIR/<label>/<task>.
  """
  if inits is None:
    label = "random" if base_config.init == "random" else Path(base_config.init).name
    inits = {label: base_config.init}
  inits = dict(inits)
  if random_baseline and "random" not in inits.values():
    inits["random"] = "random"
  rows = []
  for label, init in inits.items():
    for name in tasks:
      task = get_task(name)
      cfg = base_config.replace(task=task.name, init=init,
                                data_dir=_data_dir(base_config, task.name, data_dirs))
      if init == "random" and base_config.init != "random":
        cfg = _random_like(cfg, base_config)
      results = finetune_and_evaluate(cfg, str(Path(workdir) / label / task.name))
      metric = results["primary_metric"]
      rows.append({"init": label, "task": task.name, "metric": metric,
                   "select": results["select"], "values": results["per_seed"][metric],
                   "median": results["median"][metric], "per_seed": results["per_seed"]})
  return rows


def _data_dir(base_config, task: str, data_dirs: Optional[dict]) -> str:
  return (data_dirs or {}).get(task, base_config.data_dir)


def _random_like(cfg, base_config):
  """Random init with the architecture of the checkpoint in `base_config.init`."""
  tokenizer = resolve_tokenizer(base_config)
  model_config, _ = load_initial(base_config, tokenizer.vocab_size)
  shape = {f.name: getattr(model_config, f.name) for f in dataclasses.fields(model_config)
           if f.name not in ("dtype", "remat")}
  size = base_config.size or size_of(model_config)
  return cfg.replace(tokenizer=tokenizer.spec, size=size,
                     model_overrides=tuple(shape.items()))


def averages(rows: list[dict]) -> dict:
  """init -> mean over its tasks of the median-over-seeds primary metric."""
  inits = dict.fromkeys(r["init"] for r in rows)
  return {i: statistics.fmean(r["median"] for r in rows if r["init"] == i) for i in inits}


def format_table(rows: list[dict]) -> str:
  """Markdown table of per-seed values and medians, with a mean-of-medians row per init; the
  first line says which evaluation each seed reports (FinetuneConfig.select)."""
  selects = {r["select"] for r in rows}
  if len(selects) != 1:
    raise ValueError(f"rows mix selection rules {sorted(selects)}; one table needs one")
  select = selects.pop()
  out = [f"Dev scores: {SELECTION[select]} (FinetuneConfig.select = {select!r}); median over "
         "seeds.",
         f"| init | task | metric | seeds ({select}) | median ({select}) |",
         "|---|---|---|---|---|"]
  for r in rows:
    seeds = " ".join(f"{v:.2f}" for v in r["values"])
    out.append(f"| {r['init']} | {r['task']} | {r['metric']} | {seeds} | {r['median']:.2f} |")
  for init, mean in averages(rows).items():
    out.append(f"| {init} | average | | | {mean:.2f} |")
  return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Pre-training at equal FLOPs


def flops_per_step(config) -> float:
  """Analytic matmul FLOPs of one training step of a TrainConfig (forward + backward)."""
  return flops.training_flops_per_step(config.model, config.generator, config.objective,
                                       config.data.global_batch_size, config.data.seq_len)


RUNS = ("electra", "mlm")  # the runs pretraining_configs builds, by name (--objectives)


def pretraining_configs(data_dir: str, experiment: Optional[str], steps: Optional[int],
                        bindings: Sequence[str] = (), budgets: Sequence[float] = (1.0,)) -> dict:
  """{"electra": TrainConfig, "mlm": TrainConfig} at equal analytic FLOPs (module docstring).

  steps: the ELECTRA run's steps and schedule length (None: the experiment's train_steps).
  budgets: fractions of each run whose checkpoints are kept (budget_steps tells which steps).
  Raises ValueError when the ELECTRA run's objective is "mlm".
  """
  manifest = read_manifest(data_dir)
  recipe = [f"ModelConfig.vocab_size = {manifest['tokenizer']['vocab_size']}",
            f"DataConfig.seq_len = {manifest['seq_len']}",
            "OptimizerConfig.bias_correction = True"]
  forced = [f"DataConfig.data_dir = {str(data_dir)!r}"]
  if steps is not None:
    forced += [f"TrainConfig.num_train_steps = {steps}", f"OptimizerConfig.total_steps = {steps}"]
  electra = resolve_train_config(experiment, [], recipe + list(bindings) + forced)
  if not electra.objective.objective_kind.replaces:
    raise ValueError(f"the ELECTRA run's objective is kind {electra.objective.kind!r}, which "
                     "replaces no tokens (from the experiment or the bindings); the MLM baseline "
                     "is the second run: pick an ELECTRA objective")
  mlm = resolve_train_config(experiment, [], recipe + list(bindings) + forced
                             + ['ObjectiveConfig.kind = "mlm"'])
  e_steps = electra.train_steps
  mlm_steps = max(1, round(e_steps * flops_per_step(electra) / flops_per_step(mlm)))
  stretch = lambda n: round(n * mlm_steps / e_steps)
  optimizer = dataclasses.replace(mlm.optimizer, total_steps=max(1, stretch(
      electra.optimizer.total_steps)), warmup_steps=stretch(electra.optimizer.warmup_steps))
  data = dataclasses.replace(mlm.data, eval_every=max(1, stretch(electra.data.eval_every))
                             if electra.data.eval_every else 0)
  mlm = mlm.replace(num_train_steps=mlm_steps, optimizer=optimizer, data=data)
  return {name: _keeping(config, budgets) for name, config in
          (("electra", electra), ("mlm", mlm))}


def budget_steps(config, budgets: Sequence[float]) -> dict:
  """{fraction: the step of `config`'s run at that fraction of its steps}."""
  return {b: max(1, round(b * config.train_steps)) for b in budgets}


def _keeping(config, budgets: Sequence[float]):
  """`config` saving (and keeping) its checkpoints at every budget's step."""
  steps = sorted(set(budget_steps(config, budgets).values()))
  if steps == [config.train_steps]:
    return config
  every = math.gcd(*steps)
  checkpoint = dataclasses.replace(config.checkpoint, save_every=every,
                                   keep_latest=config.train_steps // every + 1)
  return config.replace(checkpoint=checkpoint)


def _check_reusable(workdir: Path, config) -> None:
  """ValueError if `workdir` holds a run of another config (resuming it would mix the two)."""
  path = workdir / "config.json"
  if not path.is_file():
    return
  old, new = load_config_json(path).to_dict(), config.to_dict()
  diffs = [f"{section}.{key}: {old[section].get(key)!r} -> {value!r}"
           for section, fields in new.items() if isinstance(fields, dict)
           for key, value in fields.items() if old.get(section, {}).get(key) != value]
  diffs += [f"{key}: {old.get(key)!r} -> {value!r}" for key, value in new.items()
            if not isinstance(value, dict) and old.get(key) != value]
  if diffs:
    raise ValueError(f"{workdir} holds a pre-training run with another config ("
                     + "; ".join(diffs[:6]) + "); remove it or pick another --workdir")


def _read_jsonl(path: Path) -> list[dict]:
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Preempted(RuntimeError):
  """A pre-training run stopped by a signal: the quality run stops too (a rerun resumes)."""


def pretrain(configs: dict, workdir: str) -> dict:
  """Runs each config with train.train_and_evaluate in WORKDIR/<name>; returns, per name,
  {"workdir", "objective", "steps", "flops_per_step", "total_flops", "seconds" (wall time of
  this call), "train" and "eval" (the metrics.jsonl / eval_metrics.jsonl records)}."""
  summary = {}
  for name, config in configs.items():
    run_dir = Path(workdir) / name
    _check_reusable(run_dir, config)
    print(f"pre-training {name} ({config.objective.kind}) for {config.train_steps} steps in "
          f"{run_dir}", file=sys.stderr)
    start = time.perf_counter()
    if train_and_evaluate(config, str(run_dir))["preempted"]:
      raise Preempted(f"pre-training {name} was stopped (SIGTERM / Ctrl-C) and saved in "
                      f"{run_dir}; run the same command to resume it")
    per_step = flops_per_step(config)
    summary[name] = {"workdir": str(run_dir), "objective": config.objective.kind,
                     "steps": config.train_steps, "flops_per_step": per_step,
                     "total_flops": per_step * config.train_steps,
                     "seconds": time.perf_counter() - start,
                     "train": _read_jsonl(run_dir / "metrics.jsonl"),
                     "eval": _read_jsonl(run_dir / "eval_metrics.jsonl")}
  return summary


def plot_curves(summary: dict, path: Path, x: str = "flops") -> Path:
  """PNG of CURVE_METRICS over analytic FLOPs (x="flops") or steps (x="steps") for every run
  (one colour each): training records as faint lines, held-out evaluations as markers."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  if x not in ("flops", "steps"):
    raise ValueError(f"x={x!r}; expected 'flops' or 'steps'")
  panels = []
  for metric, title in CURVE_METRICS.items():
    series = []
    for color, (name, run) in enumerate(summary.items()):
      scale = run["flops_per_step"] if x == "flops" else 1.0
      for kind, records, key in (("train", run["train"], metric),
                                 ("held-out", run["eval"], f"eval_{metric}")):
        points = [(r["step"] * scale, r[key]) for r in records if r.get(key) is not None]
        if any(v != 0 for _, v in points):
          series.append((f"{name} {kind}", f"C{color}", kind == "train", points))
    if series:
      panels.append((metric, title, series))
  fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.8),
                           squeeze=False)
  for ax, (metric, title, series) in zip(axes[0], panels):
    for label, color, train, points in series:
      xs, ys = zip(*points)
      style = {"alpha": 0.5} if train else {"marker": "o", "linestyle": "--"}
      ax.plot(xs, ys, label=label, color=color, **style)
    for (label, value), color in zip(_baselines(summary, metric), ("gray", "black")):
      ax.axhline(value, color=color, linestyle=":", label=label)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("pre-training FLOPs (analytic)" if x == "flops" else "pre-training steps")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _baselines(summary: dict, metric: str) -> list:
  """[(label, value)] of `metric`'s no-learning references, each from the first run whose evals
  record it: chance for the AUC, the unigram accuracy, the probe on a random network and on bags
  of words."""
  if metric == "disc_auc":
    return [("chance (0.5)", 0.5)]
  found = []
  for key, label in BASELINES.get(metric, ()):
    for run in summary.values():
      values = [r[key] for r in run["eval"] if r.get(key) is not None]
      if values:
        found.append((label, values[-1]))
        break
  return found


def probe_bindings(base_config, task_name: str, data_dirs: Optional[dict] = None) -> list:
  """ProbeConfig bindings for a probe on a GLUE classification task's train and dev files."""
  task = get_task(task_name)
  if task.kind != "classification" or task.name not in glue.FORMATS:
    raise ValueError(f"--probe {task_name}: the probe takes a GLUE classification task "
                     f"(e.g. sst2, cola, mrpc), not {task.kind} task {task.name}")
  config = base_config.replace(task=task.name, data_dir=_data_dir(base_config, task.name,
                                                                  data_dirs))
  fmt = glue.FORMATS[task.name]
  files = {split: task_file(config, task, split) for split in ("train", "dev")}
  for split, path in files.items():
    if path is None:
      raise FileNotFoundError(f"--probe {task.name}: no {split} file {task.files[split]} under "
                              f"{config.data_dir}")
  return [f"ProbeConfig.train_file = {files['train']!r}",
          f"ProbeConfig.dev_file = {files['dev']!r}",
          f"ProbeConfig.text_column = {fmt.text_a!r}",
          f"ProbeConfig.text_pair_column = {fmt.text_b!r}",
          f"ProbeConfig.label_column = {fmt.label!r}"]


def run_pretraining_quality(base_config, tasks: list[str], data_dir: str,
                            experiment: Optional[str], steps: Optional[int],
                            bindings: Sequence[str], workdir: str, curve_x: str = "flops",
                            budgets: Sequence[float] = (1.0,), data_dirs: Optional[dict] = None,
                            objectives: Sequence[str] = RUNS) -> dict:
  """Pre-training mode end to end (module docstring). `base_config`: the FinetuneConfig every
  fine-tuning run starts from (its init and tokenizer are replaced). Each run's checkpoints at
  every fraction in `budgets` are fine-tuned too (as "electra@0.5" etc.; 1.0 is the run
  itself). `objectives`: which of the two runs to pre-train and fine-tune ("mlm" alone still
  gets the steps that match --pretrain_steps ELECTRA steps in FLOPs). Writes
  WORKDIR/pretraining_curves.png and WORKDIR/quality.json; returns the JSON's
  dict: {"pretraining": pretrain()'s summary, "select", "seeds", "tasks", "budgets", "rows",
  "averages", "curves"}."""
  if not objectives or set(objectives) - set(RUNS):
    raise ValueError(f"objectives {list(objectives)}: pick one or both of {list(RUNS)}")
  configs = pretraining_configs(data_dir, experiment, steps, bindings, budgets)
  configs = {name: configs[name] for name in RUNS if name in objectives}
  summary = pretrain(configs, workdir)
  spec = base_config.tokenizer or read_manifest(data_dir)["tokenizer"]["spec"]
  base = base_config.replace(init=next(iter(summary.values()))["workdir"], tokenizer=spec)
  inits = {}
  for name, run in summary.items():
    for budget, step in budget_steps(configs[name], budgets).items():
      inits[name if budget == 1.0 else f"{name}@{budget:g}"] = (
          run["workdir"] if budget == 1.0 else str(Path(run["workdir"]) / "checkpoints" /
                                                   str(step)))
  rows = run_quality(base, tasks, str(Path(workdir) / "finetune"), random_baseline=True,
                     inits=inits, data_dirs=data_dirs)
  png = plot_curves(summary, Path(workdir) / "pretraining_curves.png", curve_x)
  report = {"pretraining": summary, "select": base.select, "seeds": list(base.seeds),
            "tasks": tasks, "budgets": list(budgets), "rows": rows,
            "averages": averages(rows), "curves": str(png)}
  (Path(workdir) / "quality.json").write_text(json.dumps(report, indent=1) + "\n")
  return report


def prepare_text_data(base_config, tasks: list[str], corpus: Optional[str], workdir: str,
                      vocab_size: int, seq_len: int, data_dirs: Optional[dict] = None) -> str:
  """Shards for pre-training from `corpus` (plain-text file patterns, data_pipelines.corpora;
  None: none) plus the training text of every task without its labels (task_text), under
  WORKDIR/data: text/TASK.txt, a SentencePiece tokenizer of `vocab_size` pieces trained on it
  all (spm.model) and the shards (shards/, 1 eval shard of 8). Steps whose output exists are
  reused. Returns the shard directory."""
  data = Path(workdir) / "data"
  (data / "text").mkdir(parents=True, exist_ok=True)
  files = [corpus] if corpus else []
  for name in tasks:
    task = get_task(name)
    path = data / "text" / f"{task.name}.txt"
    if not path.is_file():
      config = base_config.replace(task=task.name, data_dir=_data_dir(base_config, task.name,
                                                                      data_dirs))
      n = write_task_text(task, config, str(path))
      print(f"{task.name}: {n} training texts (labels dropped) -> {path}", file=sys.stderr)
    files.append(str(path))
  spec = ",".join(files)
  model = data / "spm.model"
  if not model.is_file():
    train_sentencepiece(spec, str(data / "spm"), vocab_size=vocab_size)
  shards = data / "shards"
  if not (shards / "manifest.json").is_file():
    build_pretraining_data(spec, tokenizers.load(f"sentencepiece:{model}"), str(shards),
                           seq_len=seq_len, num_shards=8, num_workers=2, eval_shards=1)
  return str(shards)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m electra_jax.quality", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  mode = p.add_mutually_exclusive_group(required=True)
  mode.add_argument("--init", help="checkpoint mode: checkpoint path or 'random'")
  mode.add_argument("--pretrain_data", help="pre-training mode: shard directory (manifest.json)")
  mode.add_argument("--pretrain_text", action="store_true",
                    help="pre-training mode on shards built here (WORKDIR/data) from "
                         "--pretrain_corpus plus the tasks' training text without labels")
  p.add_argument("--pretrain_corpus", help="with --pretrain_text: plain-text files, directories "
                 "or globs (comma-separated) of general text beside the tasks' text")
  p.add_argument("--vocab_size", type=int, default=8000,
                 help="with --pretrain_text: SentencePiece vocabulary size")
  p.add_argument("--seq_len", type=int, default=128, help="with --pretrain_text: shard row length")
  p.add_argument("--budgets", default="1",
                 help="pre-training: fractions of each run to fine-tune (e.g. 0.25,0.5,1)")
  p.add_argument("--task_data_dir", action="append", default=[], metavar="TASK=DIR",
                 help="a task's data directory where it is not --data_dir (repeatable)")
  p.add_argument("--probe", metavar="TASK",
                 help="pre-training: a linear probe of the network on TASK's data at every "
                      "evaluation, beside a random network's (electra_jax.pretrain.probe)")
  p.add_argument("--experiment", default="small", help="pre-training: experiments/NAME.gin")
  p.add_argument("--pretrain_steps", type=int, help="pre-training: ELECTRA steps")
  p.add_argument("--objectives", default=",".join(RUNS),
                 help="pre-training: the runs to pre-train and fine-tune, electra and/or mlm "
                      "(mlm alone keeps the steps of --pretrain_steps ELECTRA steps' FLOPs)")
  p.add_argument("--pretrain_set", action="append", default=[],
                 help="pre-training gin binding for both runs (repeatable)")
  p.add_argument("--curve_x", choices=("flops", "steps"), default="flops")
  p.add_argument("--tasks", default="sst2,cola")
  p.add_argument("--seeds", default="1,2,3")
  p.add_argument("--select", choices=("final", "best"),
                 help="which dev evaluation a seed reports (default: FinetuneConfig's, final)")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--tokenizer", help="default: INIT/vocab.txt, or the shards' tokenizer")
  p.add_argument("--size", help="tiny/small/base/large (random init)")
  p.add_argument("--workdir", default="workdirs/quality")
  p.add_argument("--random_baseline", action="store_true",
                 help="checkpoint mode: also fine-tune the architecture from random init")
  p.add_argument("--gin_bindings", action="append", default=[],
                 help="fine-tuning binding, e.g. 'FinetuneConfig.num_epochs = 2.0'")
  args = p.parse_args(argv)
  pretraining = bool(args.pretrain_data or args.pretrain_text)
  if args.init and (args.pretrain_steps is not None or args.pretrain_set or args.probe):
    p.error("--pretrain_steps / --pretrain_set / --probe need --pretrain_data or --pretrain_text "
            "(pre-training mode)")
  if args.pretrain_corpus and not args.pretrain_text:
    p.error("--pretrain_corpus needs --pretrain_text")
  data_dirs = dict(entry.split("=", 1) for entry in args.task_data_dir if "=" in entry)
  if len(data_dirs) != len(args.task_data_dir):
    p.error(f"--task_data_dir takes TASK=DIR, got {args.task_data_dir}")
  data_dirs = {get_task(name).name: path for name, path in data_dirs.items()}
  objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
  if not objectives or set(objectives) - set(RUNS) or len(set(objectives)) < len(objectives):
    p.error(f"--objectives {args.objectives}: electra, mlm or electra,mlm")
  budgets = tuple(float(b) for b in args.budgets.split(","))
  if any(not 0 < b <= 1 for b in budgets) or 1.0 not in budgets:
    p.error(f"--budgets {args.budgets}: fractions in (0, 1], 1 among them")
  if fs.is_remote(args.workdir):
    p.error(f"--workdir {args.workdir}: electra_jax.quality writes a local workdir only; "
            "give a local path and copy it to cloud storage afterwards")
  sharding.set_cpu_xla_flags()  # before JAX starts its backend; CPU-only flags
  tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
  try:
    base = resolve_config([], args.gin_bindings, task=tasks[0],
                          init=args.init or "random", data_dir=args.data_dir,
                          tokenizer=args.tokenizer, size=args.size, select=args.select,
                          seeds=tuple(int(s) for s in args.seeds.split(",")))
    if pretraining:
      data = args.pretrain_data or prepare_text_data(
          base, tasks, args.pretrain_corpus, args.workdir, args.vocab_size, args.seq_len,
          data_dirs)
      bindings = list(args.pretrain_set)
      if args.probe:
        bindings += probe_bindings(base, args.probe, data_dirs)
      report = run_pretraining_quality(base, tasks, data, args.experiment,
                                       args.pretrain_steps, bindings, args.workdir,
                                       args.curve_x, budgets, data_dirs, objectives)
      rows = report["rows"]
    else:
      rows = run_quality(base, tasks, args.workdir, args.random_baseline, data_dirs=data_dirs)
      (Path(args.workdir) / "quality.json").write_text(json.dumps(
          {"select": base.select, "seeds": list(base.seeds), "tasks": tasks, "rows": rows,
           "averages": averages(rows)}, indent=1) + "\n")
  except (ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  except Preempted as err:
    print(f"stopped: {err}", file=sys.stderr)
    return 1
  print(format_table(rows))
  if pretraining:
    for name, run in report["pretraining"].items():
      print(f"{name}: {run['steps']} steps x {run['flops_per_step']:.4g} FLOPs = "
            f"{run['total_flops']:.4g} FLOPs ({run['seconds']:.0f} s)")
    print(f"curves: {report['curves']}  numbers: {Path(args.workdir) / 'quality.json'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
