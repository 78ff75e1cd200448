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

A kind also says how its metrics are computed (`metric_fns`), whether it reads sentence pairs,
how electra-predict and load_classifier present its outputs (sequence-level kinds only) and which
transformers pipeline runs its export. `KINDS[task.kind]` is the object of a
`electra_jax.finetune.tasks.Task`; nothing else in fine-tuning asks a kind's name.

Adding a kind: subclass TaskKind (or a kind below), give it a new `name`, `register` an
instance and name it in a Task; tests/finetune/test_finetune_kinds.py fine-tunes and predicts
with a toy kind added so.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines import glue, hf_source, labelled, squad, tables, tagging
from electra_jax.finetune import metrics as gm
from electra_jax.finetune import squad_eval
from electra_jax.floor import fs
from electra_jax.floor.registry import Registry
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig

if TYPE_CHECKING:  # electra_jax.finetune.tasks and .config import this module
  from electra_jax.finetune.config import FinetuneConfig, Hparams
  from electra_jax.finetune.tasks import Task

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


def class_names(labels: Sequence) -> tuple[str, ...]:
  """The sorted label set of a training split (numbers in numeric order: "2" before "10")."""
  names = {str(label) for label in labels}
  numeric = all(n.lstrip("-").isdigit() for n in names)
  return tuple(sorted(names, key=int if numeric else None))


def tag_set(train_tags: Sequence[Sequence[str]]) -> tuple[str, ...]:
  """Sorted tag vocabulary of a tagging training set, "O" first when present."""
  tags = sorted({t for sent in train_tags for t in sent})
  if "O" in tags:
    tags.remove("O")
    tags.insert(0, "O")
  if not tags:
    raise ValueError("the tagging training set has no tags")
  return tuple(tags)


def _unseen(label, example, labels: tuple, name: str) -> ValueError:
  return ValueError(f"{example.where}: label {label!r} of the {name} split never occurs in the "
                    f"training split (its labels: {list(labels)})")


def _limit(items: list, n: Optional[int]) -> list:
  return items if n is None else items[:n]


def _tfds_split(task: Task, split: str, n: Optional[int]) -> str:
  name = task.tfds_splits[split]
  return name if n is None else f"{name}[:{n}]"


class TaskKind:
  """The per-kind steps of fine-tuning (see the module docstring)."""

  name = ""  # Task.kind of the tasks of this kind
  targets: tuple[str, ...] = ("labels",)  # batch keys of the training targets
  # {metric name: fn(labels, predictions) -> fraction} of the metrics Task.metrics may name
  metric_fns: dict[str, Callable] = {}
  text_pairs = False  # own data may name a second text column (text_pair_column)
  unordered_pairs = False  # Task.unordered_pair may apply (FinetuneConfig.double_unordered)
  sequence_level = False  # one prediction per text: electra-predict and load_classifier score it
  pipeline = ""  # the transformers pipeline that runs its Hugging Face export

  def metric_values(self, task: Task, labels: Sequence, predictions: Sequence) -> dict:
    """Task.metrics of one split as fractions (Task.score gives them in percent)."""
    out = {}
    for metric in task.metrics:
      if metric not in self.metric_fns:
        raise ValueError(f"task {task.name}: no rule for metric {metric!r}")
      out[metric] = self.metric_fns[metric](labels, predictions)
    return out

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

  # Sequence-level kinds only: how electra-predict and load_classifier present the predict
  # step's outputs of new text.

  def output_columns(self, labels: tuple) -> list[str]:
    """The columns electra-predict adds to each input row."""
    raise NotImplementedError

  def table_fields(self, labels: tuple, outputs: np.ndarray) -> list[dict]:
    """Per row {output column: value} from the predict step's outputs."""
    raise NotImplementedError

  def pipeline_results(self, names: tuple, outputs: np.ndarray) -> list[dict]:
    """Per row what transformers' text-classification pipeline gives (top_k=1), class names
    `names`: electra_jax.finetune.classifier."""
    raise NotImplementedError


def _softmax(logits: np.ndarray) -> np.ndarray:
  probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return probs / probs.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
  return 1 / (1 + np.exp(-logits))


# Metrics any kind with class ids or values per row may name.
_ROW_METRICS = {"macro_f1": gm.macro_f1, "mcc": gm.matthews_corrcoef, "pearson": gm.pearson,
                "spearman": gm.spearman}


class Classification(TaskKind):

  name = "classification"
  label_of = staticmethod(labelled.class_label)  # an own-data row's label
  metric_fns = {**_ROW_METRICS, "accuracy": gm.accuracy, "f1": gm.binary_f1}
  text_pairs = unordered_pairs = sequence_level = True
  pipeline = "text-classification"

  def read(self, task, config, split, n):
    if task.own_data:
      rows, names = _own_rows(task, config, split)
      return _limit(labelled.read_texts(rows, self.label_of, task.columns,
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
    """Class ids [N] int32 over `labels`: own data, ValueError naming the first row whose label
    training never saw; a built-in task, naming the labels outside its label set."""
    index = {label: i for i, label in enumerate(labels)}
    if task.own_data:
      unseen = next((e for e in examples if e.label not in index), None)
      if unseen is not None:
        raise _unseen(unseen.label, unseen, labels, name)
    else:
      bad = sorted({str(e.label) for e in examples if e.label not in index})
      if bad:
        raise ValueError(f"{task.name} {name}: labels {bad} are not in the label set of task "
                         f"{task.name} {list(task.labels)}")
    return np.asarray([index[e.label] for e in examples], np.int32)

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

  def output_columns(self, labels):
    return ["prediction"] + [f"probability_{label}" for label in labels]

  def table_fields(self, labels, outputs):
    """The label name and the softmax probabilities of the logits [N, C]."""
    return [{"prediction": labels[int(np.argmax(row))],
             **{f"probability_{label}": float(p) for label, p in zip(labels, row)}}
            for row in _softmax(np.asarray(outputs, np.float64))]

  def pipeline_results(self, names, outputs):
    """{"label", "score": its softmax probability, "scores": every class name -> probability}."""
    return [{"label": names[int(np.argmax(row))], "score": float(row.max()),
             "scores": dict(zip(names, map(float, row)))}
            for row in _softmax(np.asarray(outputs, np.float64))]

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

  name = "regression"
  label_of = staticmethod(labelled.number_label)
  metric_fns = _ROW_METRICS

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

  def output_columns(self, labels):
    return ["prediction"]

  def table_fields(self, labels, outputs):
    return [{"prediction": float(v)} for v in np.asarray(outputs, np.float64)]

  def pipeline_results(self, names, outputs):
    return [{"score": float(v)} for v in np.asarray(outputs, np.float64)]


class MultiLabel(Classification):

  name = "multilabel"
  label_of = staticmethod(labelled.class_list_label)
  unordered_pairs = False

  def metric_values(self, task, labels, predictions):
    scores = gm.multilabel(labels, predictions)
    return {metric: scores[metric] for metric in task.metrics}

  def _label_ids(self, task, labels, examples, name):
    """0/1 [N, C] float32 over `labels`; ValueError naming the first row whose label training
    never saw."""
    index = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(examples), len(labels)), np.float32)
    for row, e in enumerate(examples):
      for label in e.label:
        if label not in index:
          raise _unseen(label, e, labels, name)
        out[row, index[label]] = 1.0
    return out

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

  def table_fields(self, labels, outputs):
    """The comma-joined names of the classes whose sigmoid exceeds 0.5, and every sigmoid."""
    return [{"prediction": ",".join(l for l, p in zip(labels, row) if p > 0.5),
             **{f"probability_{label}": float(p) for label, p in zip(labels, row)}}
            for row in _sigmoid(np.asarray(outputs, np.float64))]

  def pipeline_results(self, names, outputs):
    return [{"labels": [n for n, p in zip(names, row) if p > 0.5],
             "scores": dict(zip(names, map(float, row)))}
            for row in _sigmoid(np.asarray(outputs, np.float64))]


class Span(TaskKind):

  name = "span"
  targets = ("start_positions", "end_positions")
  pipeline = "question-answering"

  def metric_values(self, task, labels, predictions):
    raise ValueError(f"task {task.name} is scored with electra_jax.finetune.squad_eval")

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


def _span_metric(name: str) -> Callable:
  """One of the chunk-level metrics of gm.span_f1 (tag lists per sentence)."""
  return lambda labels, predictions: gm.span_f1(labels, predictions)[name]


class Tagging(TaskKind):

  name = "tagging"
  metric_fns = {**_ROW_METRICS, "accuracy": gm.token_accuracy, "f1": _span_metric("f1"),
                "precision": _span_metric("precision"), "recall": _span_metric("recall")}
  pipeline = "token-classification"

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


KINDS: Registry = Registry("task kind")
# register(kind) makes `kind` available as Task.kind = kind.name; a taken name is refused
register = KINDS.register


for built_in in (Classification(), Regression(), MultiLabel(), Span(), Tagging()):
  register(built_in)
