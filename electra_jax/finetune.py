"""Fine-tune ELECTRA on GLUE, SQuAD or CoNLL tagging and evaluate it, over several seeds.

    python -m electra_jax.finetune --task=sst2 --init=PATH --data_dir=DIR --workdir=DIR \
        [--seeds=1,2,3] [--tokenizer=wordpiece:PATH/vocab.txt] [--tfds] [--gin_bindings ...]

Without --tokenizer, the tokenizer saved with --init is used (a pre-training workdir keeps its own
in WORKDIR/tokenizer; an HF directory has vocab.txt); it is saved again in WORKDIR/tokenizer.

Library entry point: `finetune_and_evaluate(config, workdir) -> results dict`.

Protocol (ELECTRA paper §3.3, Table 7; DESIGN.md §3): the encoder comes from `config.init`
(electra_jax.pretrained.load_pretrained: a Hugging Face directory, an official TF checkpoint or
an electra_jax pre-training checkpoint's discriminator) or is random; a fresh task head
(ElectraForSequenceClassification / ForTokenClassification / ForQuestionAnswering) goes on top,
unless the checkpoint already holds a head of the same shape (HF fine-tuned models). AdamW
(electra_jax.optim) with linear warmup over `warmup_fraction` of the steps then linear decay to 0,
layer-wise learning-rate decay, dropout. Each step is one `jax.jit` over the mesh from
electra_jax.sharding with explicit shardings (batch split over the data axes). The dev set is
scored `evals_per_epoch` times per epoch and at the last step. Each seed reports one of these
evaluations, chosen by `FinetuneConfig.select`: "final" (default, the paper's protocol: the
model at the last step) or "best" (the highest primary metric; dev-selected, optimistic). Its
model goes to WORKDIR/seed_S/{select}/ (electra_jax.json + params.safetensors, the format
`electra_jax.load_pretrained` and `python -m electra_jax.convert` read; `load_finetuned` adds the
task record) and its predictions to prediction files;
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
import os
import sys
from pathlib import Path
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from electra_jax import modeling, squad_eval
from electra_jax import sharding as shd
from electra_jax.config import ModelConfig
from electra_jax.finetune_config import FinetuneConfig, Hparams, resolve_config, resolve_hparams
from electra_jax.layerwise_lr import layerwise_lr_multipliers
from electra_jax.pretrained import (load_pretrained, load_safetensors, read_finetune_info,
                                    save_safetensors)
from electra_jax.tasks import Task, get_task, label_ids, tag_set

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_TARGETS = {"classification": ("labels",), "regression": ("labels",), "tagging": ("labels",),
            "span": ("start_positions", "end_positions")}
SELECTION = {"final": "dev score of the final checkpoint",
             "best": "best dev score over the evaluations"}
_SHAPE_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size", "max_position_embeddings",
                 "type_vocab_size")


# ---------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Split:
  """One split ready for the model. arrays: MODEL_INPUTS (+ targets for training), [N, ...];
  examples: the source examples (for scoring and prediction files); extra: SQuAD window
  bookkeeping or tagging row owners / word indices."""

  name: str
  arrays: dict
  examples: list
  extra: Any = None

  @property
  def size(self) -> int:
    return len(self.arrays["input_ids"])


@dataclasses.dataclass
class TaskData:
  labels: tuple  # class / tag names in output order (empty: regression, span)
  train: Split
  dev: list
  test: list


def _task_file(config: FinetuneConfig, task: Task, split: str) -> Optional[str]:
  """DATA_DIR/<task dir>/<file> or DATA_DIR/<file>; None when neither exists."""
  name = task.files[split]
  for candidate in (os.path.join(config.data_dir, task.glue_dir, name),
                    os.path.join(config.data_dir, name)):
    if os.path.isfile(candidate):
      return candidate
  return None


def _required_file(config, task, split) -> str:
  path = _task_file(config, task, split)
  if path is None:
    raise FileNotFoundError(
        f"task {task.name}: no {split} file: looked for "
        f"{os.path.join(config.data_dir, task.glue_dir, task.files[split])} and "
        f"{os.path.join(config.data_dir, task.files[split])}")
  return path


def _limit(items: list, n: Optional[int]) -> list:
  return items if n is None else items[:n]


def _tfds_split(task: Task, split: str, n: Optional[int]) -> str:
  name = task.tfds_splits[split]
  return name if n is None else f"{name}[:{n}]"


def _read_examples(task: Task, config: FinetuneConfig, split: str, n: Optional[int]) -> list:
  """Examples of one split (TextExample, SquadExample or TaggedSentence)."""
  if task.kind in ("classification", "regression"):
    from data_pipelines import glue
    if config.tfds:
      return glue.read_tfds(task.tfds_name, _tfds_split(task, split, n), task.name,
                            task.tfds_labels, config.tfds_data_dir)
    labels = task.labels if task.kind == "classification" else None
    return _limit(glue.read_tsv(_required_file(config, task, split), task.name, labels,
                                config.on_malformed,
                                require_label=split not in task.test_splits), n)
  if task.kind == "span":
    from data_pipelines import squad
    if config.tfds:
      return squad.read_tfds(task.tfds_name, _tfds_split(task, split, n), config.tfds_data_dir)
    return _limit(squad.read_json(_required_file(config, task, split),
                                  check_answers=split == "train",
                                  on_malformed=config.on_malformed), n)
  from data_pipelines import tagging
  if config.tfds:
    raise ValueError(f"task {task.name}: tagging reads native CoNLL files only; pass --data_dir")
  return _limit(tagging.read_conll(_required_file(config, task, split),
                                   on_malformed=config.on_malformed), n)


def _featurize(task: Task, config: FinetuneConfig, hp: Hparams, tokenizer, name: str,
               examples: list, labels: tuple, training: bool) -> Split:
  if task.kind in ("classification", "regression"):
    from data_pipelines import glue
    arrays = glue.featurize(examples, tokenizer, hp.max_seq_length)
    if examples and examples[0].label is not None:
      arrays["labels"] = label_ids(task, [e.label for e in examples], f"{task.name} {name}")
    return Split(name, arrays, examples)
  if task.kind == "span":
    from data_pipelines import squad
    arrays, features = squad.featurize(examples, tokenizer, hp.max_seq_length, config.doc_stride,
                                       config.max_query_length, training=training)
    return Split(name, arrays, examples, features)
  from data_pipelines import tagging
  arrays, owners = tagging.featurize(examples, tokenizer, hp.max_seq_length,
                                     {t: i for i, t in enumerate(labels)})
  return Split(name, arrays, examples, owners)


def _train_examples(task: Task, config: FinetuneConfig) -> list:
  """The training examples: capped at max_train_examples (the first N, or a random N with
  train_sample_seed), then doubled with swapped pairs when config.double_unordered applies."""
  n = config.max_train_examples
  sample = n is not None and config.train_sample_seed is not None
  examples = _read_examples(task, config, "train", None if sample else n)
  if sample and n < len(examples):
    keep = np.random.default_rng(config.train_sample_seed).choice(len(examples), n, replace=False)
    examples = [examples[i] for i in np.sort(keep)]
  if config.double_unordered and task.unordered_pair:
    from data_pipelines import glue
    examples = glue.double_unordered(examples)
  return examples


def load_task_data(task: Task, config: FinetuneConfig, hp: Hparams, tokenizer) -> TaskData:
  """Reads and featurises the train split, every dev split and the test splits on disk."""
  def have(split):
    return config.tfds or _task_file(config, task, split) is not None

  train_ex = _train_examples(task, config)
  labels = task.labels
  if task.kind == "tagging":
    labels = tag_set([s.tags for s in train_ex])
  if not train_ex:
    raise ValueError(f"task {task.name}: the training split is empty")
  train = _featurize(task, config, hp, tokenizer, "train", train_ex, labels, True)
  dev = []
  for s in task.dev_splits:
    examples = _read_examples(task, config, s, config.max_eval_examples)
    if not examples:
      raise ValueError(f"task {task.name}: the {s} split is empty")
    dev.append(_featurize(task, config, hp, tokenizer, s, examples, labels, False))
  test = []
  if config.write_predictions:
    for s in task.test_splits:
      if have(s) and s in task.files:
        examples = _read_examples(task, config, s, config.max_eval_examples)
        if examples:
          test.append(_featurize(task, config, hp, tokenizer, s, examples, labels, False))
  return TaskData(labels, train, dev, test)


# ---------------------------------------------------------------------------------------------
# Model


def build_task_model(task: Task, model_config: ModelConfig, num_labels: int,
                     head: str = "official", classifier_dropout: Optional[float] = None
                     ) -> nn.Module:
  """The electra_jax.modeling head model for the task's kind."""
  if task.kind in ("classification", "regression"):
    return modeling.ElectraForSequenceClassification(
        model_config, num_labels=num_labels, head=head, classifier_dropout=classifier_dropout)
  if task.kind == "tagging":
    return modeling.ElectraForTokenClassification(model_config, num_labels=num_labels,
                                                  classifier_dropout=classifier_dropout)
  return modeling.ElectraForQuestionAnswering(model_config)


def load_initial(config: FinetuneConfig, vocab_size: int) -> tuple[ModelConfig, Optional[dict]]:
  """(architecture, params of the initial model as host arrays; None for random init)."""
  overrides = dict(config.model_overrides)
  if config.dtype != "float32":
    overrides["dtype"] = config.dtype
  if config.init == "random":
    return config.random_init_config(vocab_size).replace(**overrides), None
  if not os.path.exists(config.init):
    raise FileNotFoundError(f"--init {config.init} does not exist (a Hugging Face directory, "
                            "an official TF checkpoint, an electra_jax pre-training checkpoint, "
                            "or 'random')")
  model, params = load_pretrained(config.init, as_numpy=True)  # the discriminator, if two
  if "electra" not in params:
    raise ValueError(f"{config.init}: the loaded {type(model).__name__} has no 'electra' "
                     f"encoder parameters (top-level keys {sorted(params)})")
  shape_changes = [k for k in overrides if k in _SHAPE_FIELDS]
  if shape_changes:
    raise ValueError(f"model_overrides {shape_changes} change the shape of the loaded model "
                     f"from {config.init}; only dropout/dtype/remat may be overridden")
  model_config = model.config.replace(**overrides)
  if model_config.vocab_size != vocab_size:
    print(f"note: tokenizer has {vocab_size} ids, the model {model_config.vocab_size}",
          file=sys.stderr)
  return model_config, params


def _merge_initial(params: dict, initial: Optional[dict], shardings: dict) -> tuple[dict, list]:
  """Replaces the fresh encoder (and any head whose shapes match) by the initial weights."""
  if initial is None:
    return params, []
  taken = []
  merged = dict(params)
  for key in params:
    if key not in initial:
      continue
    fresh_shapes = jax.tree.map(lambda x: x.shape, params[key])
    init_shapes = jax.tree.map(lambda x: tuple(np.shape(x)), initial[key])
    if jax.tree.structure(fresh_shapes) != jax.tree.structure(init_shapes) or \
        jax.tree.leaves(fresh_shapes) != jax.tree.leaves(init_shapes):
      if key == "electra":
        raise ValueError("the initial encoder's parameters do not match the task model's "
                         "(structure or shapes differ)")
      continue
    merged[key] = jax.device_put(
        jax.tree.map(lambda x: np.asarray(x, np.float32), initial[key]), shardings[key])
    taken.append(key)
  return merged, taken


# ---------------------------------------------------------------------------------------------
# Steps


def _loss(kind: str, outputs, batch) -> jax.Array:
  if kind == "classification":
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"]).mean()
  if kind == "regression":
    return jnp.mean(jnp.square(outputs[:, 0] - batch["labels"]))
  if kind == "tagging":
    valid = batch["labels"] >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(
        outputs, jnp.where(valid, batch["labels"], 0))
    return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)
  start, end = outputs
  return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(start, batch["start_positions"])
                + optax.softmax_cross_entropy_with_integer_labels(end, batch["end_positions"])
                ).mean()


def _eval_outputs(kind: str, outputs):
  if kind == "tagging":
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
  if kind == "regression":
    return outputs[:, 0]
  return outputs


def _batch_shards(sharding) -> int:
  """How many ways a batch is split along its leading dimension."""
  spec = sharding.spec[0] if len(sharding.spec) else None
  names = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
  return int(np.prod([sharding.mesh.shape[n] for n in names])) if names else 1


def _to_host(x) -> np.ndarray:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def _local_rows(batch: dict) -> dict:
  """This process's contiguous share of a global host batch."""
  n, p = jax.process_count(), jax.process_index()
  if n == 1:
    return batch
  return {k: v[p * (len(v) // n):(p + 1) * (len(v) // n)] for k, v in batch.items()}


class Runner:
  """Jitted train and predict steps for one task model on one mesh.

  Parameters and optimizer slots are laid out as electra_jax.sharding.param_shardings says and
  batches split over the data axes at the jit boundaries; the steps are `sharding.MeshJit`s, so
  the model's activation constraints pin the activations and XLA propagates the rest."""

  def __init__(self, model, kind: str, mesh, tx, param_shardings, max_seq_length: int):
    self.model, self.kind, self.mesh, self.tx = model, kind, mesh, tx
    self.batch_sharding = shd.batch_sharding(mesh)
    self.param_shardings = param_shardings
    self.replicated = shd.replicated(mesh)

    def train_step(state, batch):
      key = jax.random.fold_in(state["dropout_key"], state["step"])

      def loss_fn(params):
        out = model.apply({"params": params}, *(batch[k] for k in MODEL_INPUTS),
                          deterministic=False, rngs={"dropout": key})
        return _loss(kind, out, batch)

      loss, grads = jax.value_and_grad(loss_fn)(state["params"])
      updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
      new = dict(state, params=optax.apply_updates(state["params"], updates),
                 opt_state=opt_state, step=state["step"] + 1)
      return new, loss

    def predict_step(params, batch):
      out = model.apply({"params": params}, *(batch[k] for k in MODEL_INPUTS),
                        deterministic=True)
      return _eval_outputs(kind, out)

    def init_params(key):
      dummy = jnp.zeros((1, max_seq_length), jnp.int32)
      return nn.unbox(model.init(key, dummy, dummy, dummy)["params"])

    # One compiled initialiser for every seed (a fresh jit per seed compiles it again).
    self.init_params = jax.jit(init_params, out_shardings=param_shardings)
    self._train_fn = train_step
    self._predict = shd.MeshJit(predict_step, mesh,
                                in_shardings=(param_shardings, self.batch_sharding),
                                out_shardings=self.batch_sharding)
    self._train = None

  def init_state(self, params: dict, dropout_key: jax.Array) -> dict:
    """Training state {params, opt_state, step, dropout_key}, placed on the mesh."""
    if self._train is None:
      opt_abstract = jax.eval_shape(self.tx.init, params)
      self._opt_shardings = optax.tree_map_params(
          self.tx, lambda _, s: s, opt_abstract, self.param_shardings,
          transform_non_params=lambda _: self.replicated)
      state_shardings = {"params": self.param_shardings, "opt_state": self._opt_shardings,
                         "step": self.replicated, "dropout_key": self.replicated}
      self._opt_init = jax.jit(self.tx.init, out_shardings=self._opt_shardings)
      self._train = shd.MeshJit(self._train_fn, self.mesh,
                                in_shardings=(state_shardings, self.batch_sharding),
                                out_shardings=(state_shardings, self.replicated),
                                donate_argnums=(0,))
    return {"params": params, "opt_state": self._opt_init(params),
            "step": jax.device_put(jnp.zeros((), jnp.int32), self.replicated),
            "dropout_key": jax.device_put(dropout_key, self.replicated)}

  def _global(self, batch: dict) -> dict:
    return shd.global_batch(_local_rows(batch), self.mesh)

  def train_step(self, state, batch: dict):
    return self._train(state, self._global(batch))

  def predict(self, params, arrays: dict, batch_size: int):
    """Outputs for every row of `arrays`: the last batch is padded to `batch_size` (so each
    split compiles once) and the padding rows are dropped, so each row counts exactly once."""
    n = len(arrays["input_ids"])
    chunks = []
    for start in range(0, n, batch_size):
      rows = {k: arrays[k][start:start + batch_size] for k in MODEL_INPUTS}
      valid = len(rows["input_ids"])
      if valid < batch_size:
        rows = {k: np.concatenate([v, np.zeros((batch_size - valid,) + v.shape[1:], v.dtype)])
                for k, v in rows.items()}
      out = self._predict(params, self._global(rows))
      chunks.append(jax.tree.map(lambda x: _to_host(x)[:valid], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)


# ---------------------------------------------------------------------------------------------
# Scoring and prediction files


def score_split(task: Task, config: FinetuneConfig, labels: tuple, split: Split, outputs
                ) -> tuple[dict, Any]:
  """(metrics in percent, predictions in the form the prediction files use)."""
  if task.kind == "classification":
    preds = np.argmax(outputs, axis=-1)
    gold = label_ids(task, [e.label for e in split.examples], f"{task.name} {split.name}")
    return task.score(gold, preds), preds
  if task.kind == "regression":
    gold = np.asarray([e.label for e in split.examples], np.float32)
    return task.score(gold, outputs), outputs
  if task.kind == "tagging":
    from data_pipelines import tagging
    pred_tags = tagging.assemble(split.examples, split.extra, split.arrays["word_index"],
                                 outputs, labels)
    return task.score([list(s.tags) for s in split.examples], pred_tags), pred_tags
  from data_pipelines import squad
  start, end = outputs
  preds, null_diffs = squad.postprocess(split.examples, split.extra, start, end,
                                        config.n_best_size, config.max_answer_length,
                                        task.squad_version, config.squad_null_threshold)
  gold = {e.qid: list(e.answers) for e in split.examples}
  scores = squad_eval.evaluate(gold, preds, task.squad_version,
                               na_probs=null_diffs if task.squad_version == "v2.0" else None,
                               na_prob_thresh=config.squad_null_threshold)
  return {k: v for k, v in scores.items() if k in task.metrics}, (preds, null_diffs)


def _suffixed(task: Task, split_name: str, scores: dict) -> dict:
  if split_name == task.dev_splits[0]:
    return scores
  suffix = split_name.removeprefix("dev_")
  return {f"{k}_{suffix}": v for k, v in scores.items()}


def write_predictions(task: Task, labels: tuple, split: Split, preds, out_dir: Path) -> Path:
  """Dev predictions (TSV with gold, CoNLL columns or SQuAD JSON) or a GLUE test submission."""
  out_dir.mkdir(parents=True, exist_ok=True)
  if task.kind == "span":
    answers, null_diffs = preds
    path = out_dir / f"{split.name}_predictions.json"
    path.write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n")
    if task.squad_version == "v2.0":
      (out_dir / f"{split.name}_null_odds.json").write_text(json.dumps(null_diffs, indent=1) + "\n")
    return path
  if task.kind == "tagging":
    path = out_dir / f"{split.name}_predictions.txt"
    with open(path, "w") as f:
      for sent, tags in zip(split.examples, preds):
        for word, gold, pred in zip(sent.words, sent.tags, tags):
          f.write(f"{word} {gold} {pred}\n")
        f.write("\n")
    return path
  is_test = split.name in task.submission
  name = f"{task.submission[split.name]}.tsv" if is_test else f"{split.name}_predictions.tsv"
  path = out_dir / name
  with open(path, "w") as f:
    f.write("index\tprediction\n" if is_test else "index\tprediction\tlabel\n")
    for ex, p in zip(split.examples, preds):
      value = f"{float(p):.3f}" if task.kind == "regression" else labels[int(p)]
      f.write(f"{ex.guid}\t{value}" + ("\n" if is_test else f"\t{ex.label}\n"))
  return path


# ---------------------------------------------------------------------------------------------
# Checkpoints (safetensors, never pickle)


def load_finetuned(path: str) -> tuple[nn.Module, dict, dict]:
  """(task model, params, its "finetune" record) from a fine-tuning output WORKDIR/seed_S/{select}
  (an electra_jax-safetensors directory; `electra_jax.load_pretrained` reads it too)."""
  meta = read_finetune_info(path)
  if meta is None:
    raise FileNotFoundError(f"{path} is not a fine-tuned model written by electra_jax.finetune "
                            "(no electra_jax.json with a 'finetune' record)")
  model, params, _ = load_safetensors(path)
  return model, params, meta


# ---------------------------------------------------------------------------------------------
# One seed, then all seeds


def _progress(total: int, desc: str, enabled: bool):
  from tqdm.auto import tqdm
  return tqdm(total=total, desc=desc, disable=not enabled or jax.process_index() != 0,
              dynamic_ncols=True, file=sys.stderr)


def _log(message: str) -> None:
  if jax.process_index() == 0:
    from tqdm.auto import tqdm
    tqdm.write(message, file=sys.stderr)


def build_runner(task: Task, config: FinetuneConfig, hp: Hparams, model_config: ModelConfig,
                 num_labels: int, n_train: int, mesh) -> tuple["Runner", int]:
  """The task model, optimizer and jitted steps, shared by every seed; and the step count."""
  from electra_jax.optim import OptimizerConfig, make_optimizer

  model = build_task_model(task, model_config, num_labels, config.head, config.classifier_dropout)
  dummy = jnp.zeros((1, hp.max_seq_length), jnp.int32)
  abstract = jax.eval_shape(lambda k: model.init(k, dummy, dummy, dummy)["params"],
                            jax.random.key(0))
  p_shardings = shd.param_shardings(abstract, mesh)
  total_steps = max(1, math.ceil(hp.num_epochs * n_train / config.batch_size))
  multipliers = layerwise_lr_multipliers(abstract, hp.layerwise_lr_decay,
                                         model_config.num_hidden_layers, config.layerwise_lr_mode)
  opt_config = OptimizerConfig(learning_rate=hp.learning_rate,
                               warmup_steps=int(config.warmup_fraction * total_steps),
                               total_steps=total_steps, weight_decay=config.weight_decay,
                               clip_norm=config.clip_norm, bias_correction=config.bias_correction)
  tx = make_optimizer(opt_config, params=nn.unbox(abstract), lr_multipliers=multipliers)
  return Runner(model, task.kind, mesh, tx, p_shardings, hp.max_seq_length), total_steps


def run_seed(seed: int, runner: "Runner", total_steps: int, task: Task, config: FinetuneConfig,
             data: TaskData, initial: Optional[dict], workdir: Path) -> dict:
  """Fine-tunes once; returns {"scores": the selected evaluation's dev metrics, "step": its step,
  "history": [{"step", **metrics} per evaluation]} (selection: `config.select`)."""
  init_key, dropout_key = jax.random.split(jax.random.key(seed))
  params = runner.init_params(init_key)
  params, taken = _merge_initial(params, initial, runner.param_shardings)
  if taken and seed == config.seeds[0]:
    _log(f"initialised {taken} from {config.init}")
  state = runner.init_state(params, dropout_key)
  n_train = data.train.size
  eval_every = max(1, math.ceil(n_train / config.batch_size) // config.evals_per_epoch)

  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(n_train)
                          for _ in range(math.ceil(total_steps * config.batch_size / n_train))])
  keys = MODEL_INPUTS + _TARGETS[task.kind]
  chosen = {"primary": -math.inf, "scores": None, "step": 0, "params": None, "preds": None}
  history = []
  bar = _progress(total_steps, f"{task.name} seed {seed}", config.progress)
  for step in range(total_steps):
    idx = order[step * config.batch_size:(step + 1) * config.batch_size]
    state, loss = runner.train_step(state, {k: data.train.arrays[k][idx] for k in keys})
    bar.update(1)
    if step % 10 == 0:
      bar.set_postfix(loss=f"{float(loss):.4f}")
    if (step + 1) % eval_every == 0 or step + 1 == total_steps:
      scores, preds = {}, []
      for split in data.dev:
        out = runner.predict(state["params"], split.arrays, config.eval_batch_size)
        s, p = score_split(task, config, data.labels, split, out)
        scores.update(_suffixed(task, split.name, s))
        preds.append(p)
      _log(f"{task.name} seed {seed} step {step + 1}/{total_steps}: "
           + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
      history.append({"step": step + 1, **scores})
      keep = (step + 1 == total_steps if config.select == "final"
              else scores[task.primary] > chosen["primary"])
      if keep:
        chosen = {"primary": scores[task.primary], "scores": scores, "step": step + 1,
                  "params": jax.device_get(state["params"]), "preds": preds}
  bar.close()

  seed_dir = workdir / f"seed_{seed}"
  if jax.process_index() == 0:
    seed_dir.mkdir(parents=True, exist_ok=True)
    if config.save_checkpoint:
      record = {"task": task.name, "labels": list(data.labels), "select": config.select,
                "step": chosen["step"], "scores": chosen["scores"]}
      save_safetensors(runner.model, chosen["params"], str(seed_dir / config.select),
                       finetune=record)
    if config.write_predictions:
      for split, preds in zip(data.dev, chosen["preds"]):
        write_predictions(task, data.labels, split, preds, seed_dir)
  if config.write_predictions and data.test:
    chosen_params = jax.device_put(chosen["params"], runner.param_shardings)
    for split in data.test:
      out = runner.predict(chosen_params, split.arrays, config.eval_batch_size)
      preds = out if task.kind == "regression" else np.argmax(out, axis=-1)
      if jax.process_index() == 0:
        write_predictions(task, data.labels, split, preds, seed_dir)
  return {"scores": chosen["scores"], "step": chosen["step"], "history": history}


def _stats(values: list) -> dict:
  v = np.asarray(values, np.float64)
  return {"median": float(np.median(v)), "mean": float(v.mean()), "std": float(v.std())}


def resolve_tokenizer(config: FinetuneConfig):
  """`config.tokenizer`'s tokenizer, else the one saved with `config.init` (ValueError if none)."""
  from data_pipelines import tokenizers

  if config.tokenizer is not None:
    return tokenizers.load(config.tokenizer)
  tokenizer = None if config.init == "random" else tokenizers.find_saved(config.init)
  if tokenizer is None:
    raise ValueError(f"no tokenizer saved with --init={config.init} (pre-training workdirs, "
                     "their exports and Hugging Face directories with vocab.txt have one): "
                     "pass --tokenizer SPEC (e.g. wordpiece:PATH/vocab.txt)")
  return tokenizer


def finetune_and_evaluate(config: FinetuneConfig, workdir: str) -> dict:
  """Fine-tunes `config.init` on `config.task` once per seed; writes WORKDIR/results.json.

  Returns the results dict: task, metric_names, primary_metric, select, seeds, per_seed
  (metric -> [value per seed], of the evaluation `config.select` picks), median / mean / std
  (metric -> value), selected_step per seed, eval_history per seed (every evaluation), hparams,
  train/dev sizes. Raises ValueError / FileNotFoundError for unknown tasks (with close
  matches), missing files and labels outside the task's label set.
  """
  from data_pipelines import tokenizers

  task = get_task(config.task)
  workdir = Path(workdir)
  tokenizer = resolve_tokenizer(config)
  if jax.process_index() == 0:  # the fine-tuned models in WORKDIR/seed_S find it here
    tokenizer.save(workdir / tokenizers.SAVED_DIR)
  model_config, initial = load_initial(config, tokenizer.vocab_size)
  hp = resolve_hparams(config, task, model_config)
  data = load_task_data(task, config, hp, tokenizer)
  mesh = shd.make_mesh(shd.MeshConfig(data=-1, fsdp=config.mesh_fsdp, tensor=config.mesh_tensor))
  shards = _batch_shards(shd.batch_sharding(mesh))
  for name in ("batch_size", "eval_batch_size"):
    if getattr(config, name) % shards:
      raise ValueError(f"{name}={getattr(config, name)} is not divisible by the {shards} "
                       "data-parallel shards of the mesh")
  _log(f"{task.name}: {data.train.size} train rows, "
       + ", ".join(f"{s.name} {s.size}" for s in data.dev) + f"; {hp}")

  num_labels = 1 if task.kind == "regression" else len(data.labels)
  runner, total_steps = build_runner(task, config, hp, model_config, num_labels, data.train.size,
                                     mesh)
  per_seed, steps, history = {}, [], []
  for seed in config.seeds:
    out = run_seed(seed, runner, total_steps, task, config, data, initial, workdir)
    for k, v in out["scores"].items():
      per_seed.setdefault(k, []).append(v)
    steps.append(out["step"])
    history.append(out["history"])
  stats = {k: _stats(v) for k, v in per_seed.items()}
  results = {
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
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
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


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m electra_jax.finetune", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--task", required=True, help="e.g. sst2, cola, mnli, squad1.1, squad2.0, chunk")
  p.add_argument("--init", required=True,
                 help="HF dir, official TF checkpoint, electra_jax pre-training checkpoint, "
                      "or 'random'")
  src = p.add_mutually_exclusive_group()
  src.add_argument("--data_dir", help="directory with the task's native files")
  src.add_argument("--tfds", action="store_true", help="read the task from TFDS by name")
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", help="comma-separated, e.g. 1,2,3")
  p.add_argument("--tokenizer", help="wordpiece:PATH/vocab.txt or sentencepiece:PATH/model")
  p.add_argument("--size", help="tiny/small/base/large (random init architecture; defaults)")
  p.add_argument("--gin_file", action="append", default=[])
  p.add_argument("--gin_bindings", action="append", default=[],
                 help="e.g. 'FinetuneConfig.learning_rate = 1e-4' (repeatable)")
  return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
  seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
  return resolve_config(args.gin_file, args.gin_bindings, task=args.task, init=args.init,
                        data_dir=args.data_dir, tfds=True if args.tfds else None, seeds=seeds,
                        tokenizer=args.tokenizer, size=args.size)


def main(argv=None) -> int:
  args = parse_args(argv)
  shd.set_cpu_xla_flags()  # before JAX starts its backend; CPU-only flags
  try:
    config = config_from_args(args)
    results = finetune_and_evaluate(config, args.workdir)
  except (ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  if jax.process_index() == 0:
    print(format_results(results))
    print(f"results: {Path(args.workdir) / 'results.json'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
