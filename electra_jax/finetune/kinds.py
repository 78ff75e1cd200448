"""What fine-tuning does differently per kind of task: one `TaskKind` object per kind.

A kind reads a split's examples (native files, TFDS, or a Hugging Face dataset named by an hf:
data_dir), featurises them, builds the task model, gives the training loss and the evaluation
outputs, scores a split and writes its prediction file. electra_jax.finetune.train runs the same
loop for every kind through these methods:

  classification  single sentence / pair classification, GLUE or own data
                  (ElectraForSequenceClassification, softmax cross-entropy)
  regression      STS-B or own data (the same model with one output, mean squared error)
  multilabel      own data, any number of classes per row (one output per class, sigmoid
                  cross-entropy; a class is predicted where its logit > 0)
  span            SQuAD 1.1 / 2.0 (ElectraForQuestionAnswering, start/end logits)
  tagging         CoNLL chunking / NER or own data (ElectraForTokenClassification, first word
                  piece)

Own-data tasks (Task.own_data) read data_pipelines.labelled splits and take their class / tag
set from the training split (sorted; recorded with the fine-tuned model); a dev or test label
training never saw is an error naming its row.

`KINDS[task.kind]` is the object of a `electra_jax.finetune.tasks.Task`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines import glue, hf_source, labelled, squad, tables, tagging
from electra_jax.finetune import squad_eval
from electra_jax.finetune.config import FinetuneConfig, Hparams
from electra_jax.finetune.tasks import Task, class_names, label_ids, tag_set
from electra_jax.floor import fs
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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


def task_file(config: FinetuneConfig, task: Task, split: str) -> Optional[str]:
  """DATA_DIR/<task dir>/<file> or DATA_DIR/<file>; None when neither exists."""
  name = task.files[split]
  for candidate in (fs.join(config.data_dir, task.glue_dir, name), fs.join(config.data_dir, name)):
    if fs.isfile(candidate):
      return candidate
  return None


def _required_file(config: FinetuneConfig, task: Task, split: str) -> str:
  path = task_file(config, task, split)
  if path is None:
    raise FileNotFoundError(
        f"task {task.name}: no {split} file: looked for "
        f"{fs.join(config.data_dir, task.glue_dir, task.files[split])} and "
        f"{fs.join(config.data_dir, task.files[split])}")
  return path


def has_split(task: Task, config: FinetuneConfig, split: str) -> bool:
  """Whether the task's data holds `split` (for the optional test splits; TFDS: every split the
  task names)."""
  if config.tfds:
    return split in task.tfds_splits
  if task.own_data and not config.hf_data:
    return labelled.split_file(config.data_dir, split) is not None
  if config.hf_data:
    source = hf_source.task_source(config.data_dir, task.hf_config)
    return split in task.tfds_splits and task.tfds_splits[split] in (source.splits or ())
  return split in task.files and task_file(config, task, split) is not None


def _hf_split(task: Task, config: FinetuneConfig, split: str):
  """(dataset, where) of one split of the hf: spec config.data_dir: the Hugging Face split that
  task.tfds_splits names (train, validation, test; MNLI validation_matched, ...)."""
  spec = config.data_dir
  source = hf_source.task_source(spec, task.hf_config)
  name = task.tfds_splits[split]
  needed = [task.tfds_splits[s] for s in ("train",) + task.dev_splits]
  tests = [task.tfds_splits[s] for s in task.test_splits]
  reads = f"task {task.name} reads the splits {needed}"
  reads += f" and {tests} when present" if tests else ""
  if source.splits is None:
    raise ValueError(f"{spec} holds one Dataset (saved with Dataset.save_to_disk), not a "
                     f"DatasetDict of splits: {reads} (save them with DatasetDict.save_to_disk)")
  if name not in source.splits:
    hint = f"; name its files with data_files.{name}=PATTERN" if source.builder else ""
    raise ValueError(f"{spec}: no split {name!r} (task {task.name}'s {split} split); the dataset "
                     f"has the splits {source.splits}: {reads}{hint}")
  return source.loaded[name], f"{spec} split {name!r}"


def _own_rows(task: Task, config: FinetuneConfig, split: str):
  """(rows [(where, {column: value})], the label column's ClassLabel names or None) of an
  own-data split: a table file in config.data_dir or a split of an hf: spec."""
  if config.tfds:
    raise ValueError(f"task {task.name} reads your own data: pass --data_dir=DIR or an hf: spec, "
                     "not --tfds")
  if config.hf_data:
    dataset, where = _hf_split(task, config, split)
    label = dataset.features.get(task.columns[2])
    names = getattr(getattr(label, "feature", label), "names", None)
    return ((f"{where} row {i}", row) for i, row in enumerate(dataset)), names
  path = labelled.split_file(config.data_dir, split)
  if path is None:
    raise FileNotFoundError(f"task {task.name}: no {split} file: looked for "
                            f"{labelled.expected_files(config.data_dir, split)}")
  columns, rows = tables.read_table(path)
  text, pair, label = task.columns
  labelled.check_columns(columns, [c for c in (text, pair) if c], path)
  if split != "test":
    labelled.check_columns(columns, [label], path)
  return rows, None


def _own_labels(task: Task, examples: list, labels: tuple, name: str) -> np.ndarray:
  """Class ids [N] int32 (multilabel: 0/1 [N, C] float32) of own-data examples over the
  training split's `labels`; ValueError naming the first row whose label training never saw."""
  index = {label: i for i, label in enumerate(labels)}
  multi = task.kind == "multilabel"
  out = np.zeros((len(examples), len(labels)) if multi else len(examples),
                 np.float32 if multi else np.int32)
  for row, e in enumerate(examples):
    for label in (e.label if multi else (e.label,)):
      if label not in index:
        raise ValueError(f"{e.where}: label {label!r} of the {name} split never occurs in the "
                         f"training split (its labels: {list(labels)})")
      if multi:
        out[row, index[label]] = 1.0
      else:
        out[row] = index[label]
  return out


def _limit(items: list, n: Optional[int]) -> list:
  return items if n is None else items[:n]


def _tfds_split(task: Task, split: str, n: Optional[int]) -> str:
  name = task.tfds_splits[split]
  return name if n is None else f"{name}[:{n}]"


class TaskKind:
  """The per-kind steps of fine-tuning (see the module docstring)."""

  targets: tuple[str, ...] = ("labels",)  # batch keys of the training targets

  def read(self, task: Task, config: FinetuneConfig, split: str, n: Optional[int]) -> list:
    """The first `n` (all: None) examples of one split."""
    raise NotImplementedError

  def label_set(self, task: Task, train_examples: list) -> tuple:
    """Class / tag names in output order (empty: regression, span)."""
    return task.labels

  def featurize(self, task: Task, config: FinetuneConfig, hp: Hparams, tokenizer, name: str,
                examples: list, labels: tuple, training: bool) -> Split:
    raise NotImplementedError

  def num_outputs(self, labels: tuple) -> int:
    """Output width of the head (classes or tags; unused by span models)."""
    return len(labels)

  def model(self, model_config: ModelConfig, num_labels: int, head: str,
            classifier_dropout: Optional[float]) -> nn.Module:
    raise NotImplementedError

  def loss(self, outputs, batch: dict) -> jax.Array:
    """Mean training loss of a batch (float32 scalar), inside the jitted step."""
    raise NotImplementedError

  def eval_outputs(self, outputs):
    """What the predict step returns per row (inside the jitted step)."""
    return outputs

  def references(self, task: Task, labels: tuple, train: Split, dev: Split) -> dict:
    """{metric: [(label, value)]}: the dev scores of a model that learned nothing, drawn on the
    curves (none for this kind)."""
    return {}

  def predictions(self, outputs):
    """Host predictions of test rows from `eval_outputs` (class ids or values)."""
    return np.argmax(outputs, axis=-1)

  def score(self, task: Task, config: FinetuneConfig, labels: tuple, split: Split, outputs
            ) -> tuple[dict, Any]:
    """(metrics in percent, predictions in the form the prediction files use)."""
    raise NotImplementedError

  def write_predictions(self, task: Task, labels: tuple, split: Split, preds, out_dir: str
                        ) -> str:
    """Writes the prediction file of `split` into `out_dir` (created; local or a tf.io.gfile
    URL); returns its path."""
    raise NotImplementedError


class Classification(TaskKind):

  def read(self, task, config, split, n):
    if task.own_data:
      rows, names = _own_rows(task, config, split)
      return _limit(labelled.read_texts(rows, task.kind, task.columns,
                                        labelled=split not in task.test_splits,
                                        class_names=names, on_malformed=config.on_malformed), n)
    if config.tfds:
      return glue.read_tfds(task.tfds_name, _tfds_split(task, split, n), task.name,
                            task.tfds_labels, config.tfds_data_dir)
    if config.hf_data:
      dataset, where = _hf_split(task, config, split)
      return _limit(glue.read_hf(dataset, where, task.name, task.tfds_labels, task.class_names,
                                 labelled=split not in task.test_splits,
                                 on_malformed=config.on_malformed), n)
    return _limit(glue.read_tsv(_required_file(config, task, split), task.name,
                                self._native_labels(task), config.on_malformed,
                                require_label=split not in task.test_splits), n)

  def _native_labels(self, task: Task):
    return task.labels

  def label_set(self, task, train_examples):
    return class_names(e.label for e in train_examples) if task.own_data else task.labels

  def _label_ids(self, task: Task, labels: tuple, examples: list, name: str) -> np.ndarray:
    if task.own_data:
      return _own_labels(task, examples, labels, name)
    return label_ids(task, [e.label for e in examples], f"{task.name} {name}")

  def featurize(self, task, config, hp, tokenizer, name, examples, labels, training):
    arrays = glue.featurize(examples, tokenizer, hp.max_seq_length)
    if examples and examples[0].label is not None:
      arrays["labels"] = self._label_ids(task, labels, examples, name)
    return Split(name, arrays, examples)

  def model(self, model_config, num_labels, head, classifier_dropout):
    return heads.build("ElectraForSequenceClassification", model_config, num_labels, head,
                       classifier_dropout)

  def references(self, task, labels, train, dev):
    """The primary dev metric of always predicting the training split's most frequent class."""
    majority = np.bincount(train.arrays["labels"], minlength=len(labels)).argmax()
    preds = np.full(dev.size, majority)
    return {task.primary: [("majority class", task.score(dev.arrays["labels"], preds)
                            [task.primary])]}

  def loss(self, outputs, batch):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"]).mean()

  def score(self, task, config, labels, split, outputs):
    preds = self.predictions(outputs)
    return task.score(split.arrays["labels"], preds), preds

  def _format(self, labels: tuple, pred) -> str:
    return labels[int(pred)]

  def write_predictions(self, task, labels, split, preds, out_dir):
    """Dev predictions (index, prediction, gold label) or a GLUE test submission file."""
    fs.makedirs(out_dir)
    is_test = split.name in task.submission
    name = f"{task.submission[split.name]}.tsv" if is_test else f"{split.name}_predictions.tsv"
    path = fs.join(out_dir, name)
    lines = ["index\tprediction\n" if is_test else "index\tprediction\tlabel\n"]
    for ex, p in zip(split.examples, preds):
      value = self._format(labels, p)
      lines.append(f"{ex.guid}\t{value}" + ("\n" if is_test else f"\t{ex.label}\n"))
    fs.write_text(path, "".join(lines))
    return path


class Regression(Classification):

  def _native_labels(self, task):
    return None

  def references(self, task, labels, train, dev):
    return {}

  def label_set(self, task, train_examples):
    return ()

  def _label_ids(self, task, labels, examples, name):
    return np.asarray([e.label for e in examples], np.float32)

  def num_outputs(self, labels):
    return 1

  def loss(self, outputs, batch):
    return jnp.mean(jnp.square(outputs[:, 0] - batch["labels"]))

  def eval_outputs(self, outputs):
    return outputs[:, 0]

  def predictions(self, outputs):
    return outputs

  def score(self, task, config, labels, split, outputs):
    return task.score(split.arrays["labels"], outputs), outputs

  def _format(self, labels, pred):
    return f"{float(pred):.3f}"


class MultiLabel(Classification):

  def references(self, task, labels, train, dev):
    """The primary dev metric of predicting each class that most training rows carry."""
    preds = np.broadcast_to(train.arrays["labels"].mean(axis=0) > 0.5, dev.arrays["labels"].shape)
    return {task.primary: [("majority per class", task.score(dev.arrays["labels"], preds)
                            [task.primary])]}

  def label_set(self, task, train_examples):
    return class_names(label for e in train_examples for label in e.label)

  def loss(self, outputs, batch):
    return optax.sigmoid_binary_cross_entropy(outputs, batch["labels"]).mean()

  def predictions(self, outputs):
    return np.asarray(outputs) > 0

  def _format(self, labels, pred):
    return ",".join(label for label, on in zip(labels, pred) if on)


class Span(TaskKind):

  targets = ("start_positions", "end_positions")

  def read(self, task, config, split, n):
    if config.tfds:
      return squad.read_tfds(task.tfds_name, _tfds_split(task, split, n), config.tfds_data_dir)
    if config.hf_data:
      dataset, where = _hf_split(task, config, split)
      return _limit(squad.read_hf(dataset, where, unanswerable=task.squad_version == "v2.0",
                                  check_answers=split == "train",
                                  on_malformed=config.on_malformed), n)
    return _limit(squad.read_json(_required_file(config, task, split),
                                  check_answers=split == "train",
                                  on_malformed=config.on_malformed), n)

  def featurize(self, task, config, hp, tokenizer, name, examples, labels, training):
    arrays, features = squad.featurize(examples, tokenizer, hp.max_seq_length, config.doc_stride,
                                       config.max_query_length, training=training)
    return Split(name, arrays, examples, features)

  def model(self, model_config, num_labels, head, classifier_dropout):
    return heads.build("ElectraForQuestionAnswering", model_config)

  def loss(self, outputs, batch):
    start, end = outputs
    return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(start, batch["start_positions"])
                  + optax.softmax_cross_entropy_with_integer_labels(end, batch["end_positions"])
                  ).mean()

  def score(self, task, config, labels, split, outputs):
    start, end = outputs
    preds, null_diffs = squad.postprocess(split.examples, split.extra, start, end,
                                          config.n_best_size, config.max_answer_length,
                                          task.squad_version, config.squad_null_threshold)
    gold = {e.qid: list(e.answers) for e in split.examples}
    scores = squad_eval.evaluate(gold, preds, task.squad_version,
                                 na_probs=null_diffs if task.squad_version == "v2.0" else None,
                                 na_prob_thresh=config.squad_null_threshold)
    return {k: v for k, v in scores.items() if k in task.metrics}, (preds, null_diffs)

  def write_predictions(self, task, labels, split, preds, out_dir):
    """SPLIT_predictions.json (qid -> answer text), and SPLIT_null_odds.json for SQuAD 2.0."""
    fs.makedirs(out_dir)
    answers, null_diffs = preds
    path = fs.join(out_dir, f"{split.name}_predictions.json")
    fs.write_text(path, json.dumps(answers, indent=1, ensure_ascii=False) + "\n")
    if task.squad_version == "v2.0":
      fs.write_text(fs.join(out_dir, f"{split.name}_null_odds.json"),
                    json.dumps(null_diffs, indent=1) + "\n")
    return path


class Tagging(TaskKind):

  def read(self, task, config, split, n):
    if task.own_data:
      rows, names = _own_rows(task, config, split)
      return _limit(labelled.read_tagged(rows, task.columns, names, config.on_malformed), n)
    if config.tfds or config.hf_data:
      raise ValueError(f"task {task.name}: tagging reads native CoNLL files only; pass "
                       "--data_dir=DIR (not --tfds or an hf: spec)")
    return _limit(tagging.read_conll(_required_file(config, task, split),
                                     on_malformed=config.on_malformed), n)

  def label_set(self, task, train_examples):
    """The task's own tag inventory where it has one (CoNLL-2000), else the training tags."""
    return task.labels or tag_set([s.tags for s in train_examples])

  def featurize(self, task, config, hp, tokenizer, name, examples, labels, training):
    arrays, owners = tagging.featurize(examples, tokenizer, hp.max_seq_length,
                                       {t: i for i, t in enumerate(labels)})
    return Split(name, arrays, examples, owners)

  def model(self, model_config, num_labels, head, classifier_dropout):
    return heads.build("ElectraForTokenClassification", model_config, num_labels,
                       classifier_dropout=classifier_dropout)

  def loss(self, outputs, batch):
    valid = batch["labels"] >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(
        outputs, jnp.where(valid, batch["labels"], 0))
    return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)

  def eval_outputs(self, outputs):
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)

  def score(self, task, config, labels, split, outputs):
    pred_tags = tagging.assemble(split.examples, split.extra, split.arrays["word_index"],
                                 outputs, labels)
    return task.score([list(s.tags) for s in split.examples], pred_tags), pred_tags

  def write_predictions(self, task, labels, split, preds, out_dir):
    """SPLIT_predictions.txt: "word gold predicted" per line, a blank line between sentences
    (conlleval's input)."""
    fs.makedirs(out_dir)
    path = fs.join(out_dir, f"{split.name}_predictions.txt")
    lines = []
    for sent, tags in zip(split.examples, preds):
      lines += [f"{word} {gold} {pred}\n" for word, gold, pred in zip(sent.words, sent.tags, tags)]
      lines.append("\n")
    fs.write_text(path, "".join(lines))
    return path


KINDS = {"classification": Classification(), "regression": Regression(),
         "multilabel": MultiLabel(), "span": Span(), "tagging": Tagging()}
