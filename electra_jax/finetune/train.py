"""Fine-tune ELECTRA on GLUE, SQuAD or CoNLL tagging and evaluate it, over several seeds.

    python -m electra_jax.finetune --task=sst2 --init=PATH --data_dir=DIR --workdir=DIR \
        [--seeds=1,2,3] [--tokenizer=wordpiece:PATH/vocab.txt] [--tfds] [--gin_bindings ...]

--data_dir (native files) and --workdir may be local paths or tf.io.gfile URLs (gs://...;
electra_jax.floor.fs). Without --tokenizer, the tokenizer saved with --init is used (a pre-training
workdir keeps its own in WORKDIR/tokenizer; an HF directory has vocab.txt); it is saved again in
WORKDIR/tokenizer.

Library entry point: `finetune_and_evaluate(config, workdir) -> results dict`.

Protocol (ELECTRA paper §3.3, Table 7; DESIGN.md §3): the encoder comes from `config.init`
(electra_jax.io.load.load_pretrained: a Hugging Face directory or Hub model id such as
google/electra-small-discriminator, an official TF checkpoint or an electra_jax pre-training
checkpoint's discriminator) or is random; a fresh task head
(ElectraForSequenceClassification / ForTokenClassification / ForQuestionAnswering) goes on top,
unless the checkpoint already holds a head of the same shape (HF fine-tuned models). AdamW
(electra_jax.runtime.optim) with linear warmup over `warmup_fraction` of the steps then linear
decay to 0, layer-wise learning-rate decay, dropout. Each step is one `jax.jit` over the mesh from
electra_jax.runtime.mesh with explicit shardings (batch split over the data axes). The dev set is
scored `evals_per_epoch` times per epoch and at the last step. Each seed reports one of these
evaluations, chosen by `FinetuneConfig.select`: "final" (default, the paper's protocol: the
model at the last step) or "best" (the highest primary metric; dev-selected, optimistic). Its
model goes to WORKDIR/seed_S/{select}/ (electra_jax.json + params.safetensors, the format
`electra_jax.load_pretrained` and `python -m electra_jax.io.convert` read;
electra_jax.finetune.runner.load_finetuned adds the task record) and its predictions to prediction files;
test splits present on disk are predicted with it (GLUE submission TSVs).

WORKDIR/results.json: task, metric names, the selection rule, per-seed values, and their median,
mean and (population) standard deviation, plus every evaluation of every seed. Scores are
percentages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import warnings
from typing import Any, Optional

import flax.linen as nn
import jax
import numpy as np

from data_pipelines import glue, tokenizers
from electra_jax.finetune.config import (DEPRECATED_LOG_FIELDS, FinetuneConfig, Hparams,
                                         resolve_config, resolve_hparams, resolve_task)
from electra_jax.finetune.kinds import KINDS, MODEL_INPUTS, Split, has_split
from electra_jax.finetune.runner import Runner
from electra_jax.finetune.tasks import Task, get_task
from electra_jax.floor import fs
from electra_jax.io.load import load_pretrained, resolve_hub_id
from electra_jax.io.native import save_safetensors
from electra_jax.model.config import ARCHITECTURE_FIELDS, ModelConfig
from electra_jax.model.init import init_on_dummy
from electra_jax.runtime import mesh as shd
from electra_jax.runtime.closing import Closing
from electra_jax.runtime.launch import add_distributed_flags, run_pipeline
from electra_jax.runtime.layerwise_lr import layerwise_lr_multipliers
from electra_jax.runtime.metrics import (CURVES_FILE, MetricsWriter, WandbRun, itstime, note,
                                         wandb_enabled)
from electra_jax.runtime.optim import OptimizerConfig, make_optimizer
from electra_jax.runtime.state import warm_start

RUN_RECORD = "finetune_config.json"  # WORKDIR's config: what its seeds were trained with
SEED_RECORD = "result.json"  # WORKDIR/seed_S's finished result, written last
# FinetuneConfig fields that change only how a run is shown or spread, not its results: a rerun
# may change them and still resume the workdir. The flat logging names are those of records
# written before `log` nested them (a workdir of the last release resumes).
_NOT_COMPARED = ("seeds", "eval_batch_size", "mesh", "log", *DEPRECATED_LOG_FIELDS)
SELECTION = {"final": "dev score of the final checkpoint",
             "best": "best dev score over the evaluations"}


# ---------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class TaskData:
  labels: tuple  # class / tag names in output order (empty: regression, span)
  train: Split
  dev: list
  test: list


def _train_examples(task: Task, config: FinetuneConfig) -> list:
  """The training examples: capped at max_train_examples (the first N, or a random N with
  train_sample_seed), then doubled with swapped pairs when config.double_unordered applies."""
  n = config.max_train_examples
  sample = n is not None and config.train_sample_seed is not None
  examples = KINDS[task.kind].read(task, config, "train", None if sample else n)
  if sample and n < len(examples):
    keep = np.random.default_rng(config.train_sample_seed).choice(len(examples), n, replace=False)
    examples = [examples[i] for i in np.sort(keep)]
  if config.double_unordered and task.unordered_pair:
    examples = glue.double_unordered(examples)
  return examples


def load_task_data(task: Task, config: FinetuneConfig, hp: Hparams, tokenizer) -> TaskData:
  """Reads and featurises the train split, every dev split and the test splits on disk."""
  kind = KINDS[task.kind]
  train_ex = _train_examples(task, config)
  # the classes / tags of the whole training split, also when training on a subset of it (a
  # subset may miss a rare tag that the dev split holds)
  labels = kind.label_set(task, train_ex if config.max_train_examples is None
                          else kind.read(task, config, "train", None))
  if not train_ex:
    raise ValueError(f"task {task.name}: the training split is empty")
  train = kind.featurize(task, config, hp, tokenizer, "train", train_ex, labels, True)
  dev = []
  for s in task.dev_splits:
    examples = kind.read(task, config, s, config.max_eval_examples)
    if not examples:
      raise ValueError(f"task {task.name}: the {s} split is empty")
    dev.append(kind.featurize(task, config, hp, tokenizer, s, examples, labels, False))
  test = []
  if config.write_predictions:
    for s in task.test_splits:
      if has_split(task, config, s):
        examples = kind.read(task, config, s, config.max_eval_examples)
        if examples:
          test.append(kind.featurize(task, config, hp, tokenizer, s, examples, labels, False))
  return TaskData(labels, train, dev, test)


# ---------------------------------------------------------------------------------------------
# Model


def existing_init(config: FinetuneConfig) -> str:
  """The local path of `config.init` (a Hub id's cached snapshot); FileNotFoundError when there
  is no such path."""
  init = resolve_hub_id(config.init)
  if not fs.exists(init):
    raise FileNotFoundError(f"--init {config.init}: no such path (expected a Hugging Face "
                            "directory or Hub model id ORG/NAME, an official TF checkpoint, an "
                            "electra_jax pre-training checkpoint, or 'random')")
  return init


def load_initial(config: FinetuneConfig, vocab_size: int) -> tuple[ModelConfig, Optional[dict]]:
  """(architecture, params of the initial model as host arrays; None for random init)."""
  overrides = dict(config.model_overrides)
  if config.dtype != "float32":
    overrides["dtype"] = config.dtype
  if config.init == "random":
    return config.random_init_config(vocab_size).replace(**overrides), None
  init = existing_init(config)
  model, params = load_pretrained(init, as_numpy=True)  # the discriminator, if two
  if "electra" not in params:
    raise ValueError(f"{config.init}: the loaded {type(model).__name__} has no 'electra' "
                     f"encoder parameters (top-level keys {sorted(params)})")
  changed = [k for k in overrides if k in ARCHITECTURE_FIELDS]
  if changed:
    raise ValueError(f"model_overrides {changed} change the architecture of the loaded model "
                     f"from {config.init}; only dropout/dtype/remat may be overridden")
  model_config = model.config.replace(**overrides)
  if model_config.vocab_size != vocab_size:
    note(f"note: tokenizer has {vocab_size} ids, the model {model_config.vocab_size}")
  return model_config, params


def warm_start_task_model(params: dict, initial: Optional[dict], shardings: dict
                          ) -> tuple[dict, list]:
  """(params, names of the top-level parts taken): the fresh encoder, and any head whose
  tensors and shapes match, replaced by the initial weights (runtime.state.warm_start); an
  encoder that does not match is a ValueError."""
  if initial is None:
    return params, []
  start = warm_start(params, initial, shardings, depth=1)
  if "electra" in start.mismatched:
    raise ValueError("the initial encoder's parameters do not match the task model's "
                     f"({start.mismatched['electra']})")
  return start.params, start.taken


# ---------------------------------------------------------------------------------------------
# Scoring and prediction files


def _suffixed(task: Task, split_name: str, scores: dict) -> dict:
  if split_name == task.dev_splits[0]:
    return scores
  suffix = split_name.removeprefix("dev_")
  return {f"{k}_{suffix}": v for k, v in scores.items()}


# ---------------------------------------------------------------------------------------------
# One seed, then all seeds


def build_runner(task: Task, config: FinetuneConfig, hp: Hparams, model_config: ModelConfig,
                 num_labels: int, n_train: int, mesh) -> tuple["Runner", int]:
  """The task model, optimizer and jitted steps, shared by every seed; and the step count."""
  kind = KINDS[task.kind]
  model = kind.model(model_config, num_labels, config.head, config.classifier_dropout)
  abstract = jax.eval_shape(init_on_dummy(model, hp.max_seq_length), jax.random.key(0))
  total_steps = max(1, math.ceil(hp.num_epochs * n_train / config.batch_size))
  multipliers = layerwise_lr_multipliers(abstract, hp.layerwise_lr_decay,
                                         model_config.num_hidden_layers, config.layerwise_lr_mode)
  opt_config = OptimizerConfig(learning_rate=hp.learning_rate,
                               warmup_steps=int(config.warmup_fraction * total_steps),
                               total_steps=total_steps, weight_decay=config.weight_decay,
                               clip_norm=config.clip_norm, bias_correction=config.bias_correction)
  tx = make_optimizer(opt_config, params=nn.unbox(abstract), lr_multipliers=multipliers)
  return Runner(model, kind, mesh, tx, hp.max_seq_length), total_steps


@dataclasses.dataclass
class _Seed:
  """What one seed's steps, evaluations and outputs share."""
  seed: int
  seed_dir: str  # WORKDIR/seed_S
  runner: Runner
  total_steps: int
  task: Task
  config: FinetuneConfig
  data: TaskData

  @property
  def kind(self):
    """The task's registered TaskKind."""
    return KINDS[self.task.kind]


@dataclasses.dataclass
class _Chosen:
  """The evaluation a seed reports (config.select): its primary metric, dev scores and step, the
  params it scored (host arrays) and its predictions (one per dev split)."""
  primary: float = -math.inf
  scores: Optional[dict] = None
  step: int = 0
  params: Any = None
  preds: Optional[list] = None


def run_seed(seed: int, runner: "Runner", total_steps: int, task: Task, config: FinetuneConfig,
             data: TaskData, initial: Optional[dict], workdir: str, hp: Hparams) -> dict:
  """Fine-tunes once; returns {"scores": the selected evaluation's dev metrics, "step": its step,
  "history": [{"step", **metrics} per evaluation]} (selection: `config.select`). Logs to
  WORKDIR/seed_S as `config.log` says (MetricsWriter: jsonl, TensorBoard, curves.png, W&B) and
  writes that dict last to WORKDIR/seed_S/result.json (SEED_RECORD). A seed whose result.json
  exists finished earlier in this workdir (`claim_workdir` checked its config): its result is
  read back, and nothing is trained or written again."""
  run = _Seed(seed, fs.join(workdir, f"seed_{seed}"), runner, total_steps, task, config, data)
  record_path = fs.join(run.seed_dir, SEED_RECORD)
  if fs.exists(record_path):
    note(f"{task.name} seed {seed}: finished earlier ({record_path}); not run again")
    return json.loads(fs.read_text(record_path))

  # ---- State: fresh task params, warm-started from the initial model where it matches.
  init_key, dropout_key = jax.random.split(jax.random.key(seed))
  params, taken = warm_start_task_model(runner.init_params(init_key), initial,
                                        runner.param_shardings)
  if taken and seed == config.seeds[0]:
    note(f"initialised {taken} from {config.init}")
  state = runner.init_state(params, dropout_key)

  # ---- The steps and their dev evaluations, logged to WORKDIR/seed_S.
  writer = _seed_writer(run, workdir, hp)
  note(f"{task.name} seed {seed}: {total_steps} steps")
  try:
    chosen, history = _steps(run, state, writer)
  finally:
    writer.close()

  # ---- The chosen evaluation's model and predictions, then the seed's record.
  _write_chosen(run, chosen)
  result = {"scores": chosen.scores, "step": chosen.step, "history": history}
  if jax.process_index() == 0:
    fs.write_atomically(record_path, json.dumps(result) + "\n")
  return result


def _seed_writer(run: _Seed, workdir: str, hp: Hparams) -> MetricsWriter:
  """The seed's MetricsWriter on WORKDIR/seed_S, with the W&B run `config.log` asks for (named
  WORKDIR/seed_S, grouped by WORKDIR) and the task kind's reference lines."""
  log, data = run.config.log, run.data
  run_name = fs.basename(fs.abspath(workdir))
  wandb_run = (WandbRun(log.wandb_project, log.wandb_mode,
                        name=f"{run_name}/seed_{run.seed}", group=run_name,
                        config={**dataclasses.asdict(run.config), "seed": run.seed,
                                "hparams": dataclasses.asdict(hp),
                                "total_steps": run.total_steps})
               if wandb_enabled(log.wandb_project) else None)
  return MetricsWriter(run.seed_dir, start_step=0, total_steps=run.total_steps,
                       is_main=jax.process_index() == 0, tensorboard=log.tensorboard,
                       progress_bar=log.progress_bar,
                       curves=("loss", run.task.primary) if log.curves else (), wandb=wandb_run,
                       references=run.kind.references(run.task, data.labels, data.train,
                                                      data.dev[0]))


def _example_order(seed: int, n_train: int, total_steps: int, batch_size: int) -> np.ndarray:
  """The training examples' order: one permutation of range(n_train) per epoch (seeded by
  `seed`), concatenated; step s trains on [s * batch_size, (s + 1) * batch_size)."""
  rng = np.random.default_rng(seed)
  return np.concatenate([rng.permutation(n_train)
                         for _ in range(math.ceil(total_steps * batch_size / n_train))])


def _steps(run: _Seed, state, writer: MetricsWriter) -> tuple[_Chosen, list]:
  """Steps 1 .. total_steps; training metrics every log_every steps, a dev evaluation
  evals_per_epoch times an epoch and at the last step. Returns the chosen evaluation and every
  evaluation's {"step", **scores}."""
  config, data, total_steps = run.config, run.data, run.total_steps
  eval_every = max(1, math.ceil(data.train.size / config.batch_size) // config.evals_per_epoch)
  order = _example_order(run.seed, data.train.size, total_steps, config.batch_size)
  keys = MODEL_INPUTS + run.kind.targets
  chosen, history = _Chosen(), []
  for step in range(total_steps):
    done = step + 1
    idx = order[step * config.batch_size:done * config.batch_size]
    state, metrics = run.runner.train_step(state, {k: data.train.arrays[k][idx] for k in keys})
    writer.advance(done)
    if itstime(done, config.log.log_every, total_steps):
      writer.write_train(done, {k: float(v) for k, v in jax.device_get(metrics).items()})
    if itstime(done, eval_every, total_steps):
      scores, preds = _evaluate(run, state.params)
      writer.write_eval(done, scores)
      history.append({"step": done, **scores})
      primary = scores[run.task.primary]
      keep = done == total_steps if config.select == "final" else primary > chosen.primary
      if keep:
        chosen = _Chosen(primary, scores, done, jax.device_get(state.params), preds)
  return chosen, history


def _evaluate(run: _Seed, params) -> tuple[dict, list]:
  """(the dev splits' scores, suffixed by split after the first; their predictions)."""
  scores, preds = {}, []
  for split in run.data.dev:
    out = run.runner.predict(params, split.arrays, run.config.eval_batch_size)
    s, p = run.kind.score(run.task, run.config, run.data.labels, split, out)
    scores.update(_suffixed(run.task, split.name, s))
    preds.append(p)
  return scores, preds


def _write_chosen(run: _Seed, chosen: _Chosen) -> None:
  """The chosen evaluation's outputs in WORKDIR/seed_S: its model (config.select/, native
  format, with the task record that predict reads) and its dev and test predictions."""
  config, data, task, kind = run.config, run.data, run.task, run.kind
  if jax.process_index() == 0:
    if config.save_checkpoint:
      record = {"task": task.name, "kind": task.kind, "labels": list(data.labels),
                "label_names": task.label_names(data.labels), "columns": task.columns,
                "select": config.select,
                "step": chosen.step, "scores": chosen.scores,
                "max_seq_length": int(data.train.arrays["input_ids"].shape[1])}
      save_safetensors(run.runner.model, chosen.params, fs.join(run.seed_dir, config.select),
                       finetune=record)
    if config.write_predictions:
      for split, preds in zip(data.dev, chosen.preds):
        kind.write_predictions(task, data.labels, split, preds, run.seed_dir)
  if config.write_predictions and data.test:
    chosen_params = jax.device_put(chosen.params, run.runner.param_shardings)
    for split in data.test:
      out = run.runner.predict(chosen_params, split.arrays, config.eval_batch_size)
      preds = kind.predictions(out)
      if jax.process_index() == 0:
        kind.write_predictions(task, data.labels, split, preds, run.seed_dir)


def _stats(values: list) -> dict:
  v = np.asarray(values, np.float64)
  return {"median": float(np.median(v)), "mean": float(v.mean()), "std": float(v.std())}


def resolve_tokenizer(config: FinetuneConfig):
  """`config.tokenizer`'s tokenizer, else the one saved with `config.init` (ValueError if none)."""
  if config.tokenizer is not None:
    return tokenizers.load(config.tokenizer)
  tokenizer = None if config.init == "random" else tokenizers.find_saved(existing_init(config))
  if tokenizer is None:
    raise ValueError(f"no tokenizer saved with --init={config.init} (pre-training workdirs, "
                     "their exports and Hugging Face directories with vocab.txt have one): "
                     "pass --tokenizer SPEC (e.g. wordpiece:PATH/vocab.txt)")
  return tokenizer


def _run_identity(config: FinetuneConfig) -> dict:
  """The fields of `config` that decide a seed's result (all but _NOT_COMPARED), as JSON."""
  fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_COMPARED}
  return json.loads(json.dumps(fields))


def claim_workdir(config: FinetuneConfig, workdir: str, overwrite: bool = False) -> bool:
  """Checks that `workdir` is free for `config` before anything is read or trained; returns
  whether it holds a run of the same config to resume (or whose result to report).

  A workdir whose RUN_RECORD (or, from older versions, results.json) holds another task or
  another config (fields outside _NOT_COMPARED) is a ValueError naming each differing field
  (old -> new) and --overwrite; one holding seed_* directories without either record is refused
  too. `overwrite`: delete the earlier run's results.json, seed_* and record first.
  """
  record = fs.join(workdir, RUN_RECORD)
  results = fs.join(workdir, "results.json")
  if overwrite:
    if jax.process_index() == 0:
      for path in [record, results] + fs.glob(fs.join(workdir, "seed_*")):
        if fs.isdir(path):
          fs.rmtree(path)
        elif fs.exists(path):
          fs.remove(path)
    return False
  way_out = "use another --workdir, or pass --overwrite to delete that run and start over"
  if fs.exists(record):
    old, where = json.loads(fs.read_text(record)), record
  elif fs.exists(results):
    old, where = json.loads(fs.read_text(results)).get("config"), results
  elif fs.glob(fs.join(workdir, "seed_*")):
    raise ValueError(f"workdir {workdir} holds seed_* directories of a fine-tuning run whose "
                     f"config is unknown (no {RUN_RECORD}); {way_out}")
  else:
    return False
  new = _run_identity(config)
  old = {k: v for k, v in (old or {}).items() if k not in _NOT_COMPARED}
  changed = [f"  {k}: {old.get(k)!r} -> {new.get(k)!r}"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  if changed:
    raise ValueError("\n".join([
        f"workdir {workdir} holds a fine-tuning run of task {old.get('task')!r} with another "
        "config (from " + where + "); continuing would mix two runs:", *changed, way_out]))
  return True


def _results(task: Task, config: FinetuneConfig, hp: Hparams, data: TaskData, total_steps: int,
             seed_results: list) -> dict:
  """The results dict of `finetune_and_evaluate` from each seed's `run_seed` result."""
  per_seed, steps, history = {}, [], []
  for out in seed_results:
    for k, v in out["scores"].items():
      per_seed.setdefault(k, []).append(v)
    steps.append(out["step"])
    history.append(out["history"])
  stats = {k: _stats(v) for k, v in per_seed.items()}
  return {
      "task": task.name, "metric_names": list(per_seed), "primary_metric": task.primary,
      "select": config.select, "seeds": list(config.seeds), "per_seed": per_seed,
      "median": {k: s["median"] for k, s in stats.items()},
      "mean": {k: s["mean"] for k, s in stats.items()},
      "std": {k: s["std"] for k, s in stats.items()},
      "selected_step": steps, "eval_history": history, "total_steps": total_steps,
      "train_rows": data.train.size, "dev_rows": {s.name: s.size for s in data.dev},
      "hparams": dataclasses.asdict(hp), "labels": list(data.labels),
      "config": dataclasses.asdict(config),
  }


def finetune_and_evaluate(config: FinetuneConfig, workdir: str, overwrite: bool = False) -> dict:
  """Fine-tunes `config.init` on `config.task` once per seed; writes WORKDIR/results.json.

  The workdir is claimed first (`claim_workdir`): another task or config there is refused
  (ValueError; `overwrite` deletes that run). The same config resumes: seeds that finished
  (WORKDIR/seed_S/result.json) are read back, the others are run (a seed killed midway starts
  over), so the same command re-run after a kill or after the end gives the same results.json.

  Returns the results dict: task, metric_names, primary_metric, select, seeds, per_seed
  (metric -> [value per seed], of the evaluation `config.select` picks), median / mean / std
  (metric -> value), selected_step per seed, eval_history per seed (every evaluation), hparams,
  train/dev sizes. Raises ValueError / FileNotFoundError for unknown tasks (with close
  matches), missing files and labels outside the task's label set.
  """
  task = resolve_task(config)
  if claim_workdir(config, workdir, overwrite):
    note(f"resuming the fine-tuning run in {workdir}: finished seeds are read back")
  tokenizer = resolve_tokenizer(config)
  if jax.process_index() == 0:  # the fine-tuned models in WORKDIR/seed_S find it here
    tokenizer.save(fs.join(workdir, tokenizers.SAVED_DIR))
  model_config, initial = load_initial(config, tokenizer.vocab_size)
  hp = resolve_hparams(config, task, model_config)
  data = load_task_data(task, config, hp, tokenizer)
  mesh = shd.make_mesh(config.mesh)
  for name in ("batch_size", "eval_batch_size"):
    shd.check_batch(mesh, getattr(config, name), f"FinetuneConfig.{name}")
  note(f"devices: {jax.device_count()} x {jax.devices()[0].platform} over "
       f"{jax.process_count()} process(es); mesh {dict(mesh.shape)}")
  note(f"{task.name}: {data.train.size} train rows, "
       + ", ".join(f"{s.name} {s.size}" for s in data.dev) + f"; {hp}")

  num_labels = KINDS[task.kind].num_outputs(data.labels)
  runner, total_steps = build_runner(task, config, hp, model_config, num_labels, data.train.size,
                                     mesh)
  if jax.process_index() == 0:
    fs.makedirs(workdir)
    fs.write_atomically(fs.join(workdir, RUN_RECORD),
                        json.dumps(_run_identity(config), indent=2) + "\n")
  seed_results = [run_seed(seed, runner, total_steps, task, config, data, initial, workdir, hp)
                  for seed in config.seeds]
  results = _results(task, config, hp, data, total_steps, seed_results)
  if jax.process_index() == 0:
    fs.makedirs(workdir)
    fs.write_text(fs.join(workdir, "results.json"), json.dumps(results, indent=2) + "\n")
  return results


def format_results(results: dict) -> str:
  """A short table: one row per metric with each seed's value and the median/mean/std."""
  lines = [f"{results['task']} (seeds {', '.join(map(str, results['seeds']))}; "
           f"{SELECTION[results['select']]})"]
  for k in results["metric_names"]:
    values = " ".join(f"{v:6.2f}" for v in results["per_seed"][k])
    lines.append(f"  {k:<22} {values}   median {results['median'][k]:6.2f}  "
                 f"mean {results['mean'][k]:6.2f}  std {results['std'][k]:5.2f}")
  return "\n".join(lines)


def closing_message(workdir: str, results: dict) -> str:
  """Where a finished run's outputs are in `workdir` (those that exist), per seed, and the
  commands that use a fine-tuned model next."""
  q = shlex.quote
  closing = Closing(workdir)
  closing.output("results", fs.join(workdir, "results.json"))
  models = []
  for seed in results["seeds"]:
    seed_dir = fs.join(workdir, f"seed_{seed}")
    parts = [fs.join(seed_dir, name) for name in (results["select"], "metrics.jsonl",
                                                  "eval_metrics.jsonl", CURVES_FILE, "wandb")
             if fs.exists(fs.join(seed_dir, name))]
    closing.output(f"seed {seed}", ", ".join(parts))
    if fs.isdir(fs.join(seed_dir, results["select"])):
      models.append(fs.join(seed_dir, results["select"]))
  closing.output_if_exists("tokenizer", fs.join(workdir, tokenizers.SAVED_DIR))
  closing.tensorboard(workdir, runs=fs.join(workdir, "seed_*", "tensorboard"),
                      what="TensorBoard (every seed)")
  closing.wandb_offline(workdir, "seed_*/wandb/offline-run-*")
  if models:
    kind = KINDS[get_task(results["task"]).kind]
    if kind.sequence_level and results["config"]["head"] == "official":
      closing.then("export the encoder (the paper's head has no transformers class)",
                   f"electra-convert {q(models[0])} OUT_DIR --architecture ElectraModel")
    else:
      closing.then("export to Hugging Face", f"electra-convert {q(models[0])} OUT_DIR")
      closing.then("then in Python", f"transformers.pipeline({kind.pipeline!r}, model='OUT_DIR')")
    if kind.sequence_level:
      closing.then("score new text", f"electra-predict --model={q(workdir)} --input=FILE.tsv "
                   "--output=predictions.tsv")
  return str(closing)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m electra_jax.finetune", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--task", required=True,
                 help="e.g. sst2, cola, mnli, squad1.1, squad2.0, chunk; your own data: "
                      "classification, regression, multilabel, tagging")
  p.add_argument("--init", required=True,
                 help="HF dir or Hub model id (e.g. google/electra-small-discriminator), "
                      "official TF checkpoint, electra_jax pre-training checkpoint, or 'random'")
  src = p.add_mutually_exclusive_group()
  src.add_argument("--data_dir", help="directory with the task's native files, or an hf: spec "
                                      "(Hugging Face datasets, e.g. hf:nyu-mll/glue)")
  src.add_argument("--tfds", action="store_true", help="read the task from TFDS by name")
  p.add_argument("--text_column", help="own data: the text column (default text; tagging tokens)")
  p.add_argument("--text_pair_column", help="own data: the second text of a pair, if any")
  p.add_argument("--label_column",
                 help="own data: the label column (default label; multilabel labels; tagging tags)")
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", help="comma-separated, e.g. 1,2,3")
  p.add_argument("--tokenizer", help="wordpiece:PATH/vocab.txt or sentencepiece:PATH/model")
  p.add_argument("--size", help="tiny/small/base/large (random init architecture; defaults)")
  p.add_argument("--gin_file", action="append", default=[])
  p.add_argument("--gin_bindings", "--set", action="append", default=[], dest="gin_bindings",
                 help="e.g. 'FinetuneConfig.learning_rate = 1e-4' (repeatable)")
  p.add_argument("--overwrite", action="store_true", help="delete an earlier fine-tuning run in "
                 "WORKDIR (another task or config) and start over; without it such a workdir is "
                 "refused, and the same config resumes")
  add_distributed_flags(p)
  return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
  seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
  return resolve_config(args.gin_file, args.gin_bindings, task=args.task, init=args.init,
                        data_dir=args.data_dir, tfds=True if args.tfds else None, seeds=seeds,
                        tokenizer=args.tokenizer, size=args.size, text_column=args.text_column,
                        text_pair_column=args.text_pair_column, label_column=args.label_column)


def main(argv=None) -> int:
  """The command line (runtime.launch.run_pipeline); every failure is one `error:` line: status 2
  for bad input, configuration or files, 1 for anything else, 130 for Ctrl-C. The seeds' results
  table goes to stdout."""
  args = parse_args(argv)
  return run_pipeline(
      args, lambda: config_from_args(args),
      lambda config: finetune_and_evaluate(config, args.workdir, overwrite=args.overwrite),
      summary=lambda results: (f"{format_results(results)}\n"
                               f"results: {fs.join(args.workdir, 'results.json')}"),
      closing=lambda results: closing_message(args.workdir, results),
      interrupted=f"; the seeds that finished are kept in {args.workdir}/seed_*: run the same "
                  "command to resume")


def __getattr__(name: str):
  """`load_finetuned` moved to electra_jax.finetune.runner (issue 22), which inference imports
  without the training loop: the old name still works, with a DeprecationWarning, for one
  release."""
  if name == "load_finetuned":
    warnings.warn("electra_jax.finetune.train.load_finetuned moved to "
                  "electra_jax.finetune.runner.load_finetuned; the old name goes in the next "
                  "release", DeprecationWarning, stacklevel=2)
    from electra_jax.finetune import runner
    return runner.load_finetuned
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
