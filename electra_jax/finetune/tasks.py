"""Fine-tuning task registry: your own labelled data, GLUE, SQuAD 1.1/2.0, CoNLL chunking and NER.

Own-data tasks ("classification", "regression", "multilabel", "tagging") read any table
(data_pipelines.labelled: DATA_DIR/{train,dev,test}.{tsv,csv,jsonl,parquet} or an hf: spec) whose
text and label columns `Task.columns` names (FinetuneConfig.text_column, text_pair_column,
label_column); the label set comes from the training split (electra_jax.finetune.kinds).

A `Task` names what the fine-tuning loop needs to know about a task: the kind of head, the label
set, the metrics (in percent) and which one selects the best dev checkpoint, where its data
lives (GLUE directory / file names, TFDS name), and the paper's defaults (Table 7 epochs; the
official code's max sequence lengths: 128, SQuAD 512, chunking 256).

    task = get_task("SST-2")          # aliases and case are forgiven
    scores = task.score(labels, predictions)
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Optional, Sequence

from electra_jax.finetune.kinds import KINDS


@dataclasses.dataclass(frozen=True)
class Task:
  """One fine-tuning task.

  labels: class names in output-index order, as they appear in the native files (GLUE TSV
    label column); empty for regression and span tasks; a tagging task's fixed inventory (chunk:
    CoNLL-2000's 23 tags), or empty to take the tag set of the training file (sorted, "O" first).
  dev_splits: names of the evaluation splits (MNLI: matched and mismatched); metric names of
    the second and later splits get the split's suffix (e.g. "accuracy_mismatched").
  files: split name -> file name under `data_dir/glue_dir` (native format).
  tfds_splits: split name -> TFDS split name, also the split's name in the Hugging Face datasets
    (nyu-mll/glue, rajpurkar/squad, rajpurkar/squad_v2 name their splits as TFDS does).
  tfds_labels: the task label of each class id of the TFDS and Hugging Face datasets (id i ->
    tfds_labels[i]; empty for regression).
  class_names: the names those datasets give the class ids (their ClassLabel names, e.g. SST-2's
    negative, positive); an hf: source's ClassLabel column must name its classes so (or as
    tfds_labels) for its ids to map through tfds_labels.
  hf_config: the config of the task in the Hugging Face GLUE dataset (hf:nyu-mll/glue takes it
    unless the spec names another); None: the dataset's default config.
  submission: split name -> GLUE leaderboard submission file stem for its test split.
  unordered_pair: the two sentences of a pair can be swapped without changing the label (what
    FinetuneConfig.double_unordered doubles). True for MRPC and STS-B only, the tasks that the
    official code doubles (google-research/electra finetune/classification/
    classification_tasks.py, MRPC._create_examples and STS._create_examples, lines 358 and 436
    at commit 8a46635); QQP is not among them there.
  columns: (text, text pair or None, label) column names of an own-data task (tagging: the
    words column, None, the tags column, each a list per row); None for the built-in tasks,
    whose readers know their files' layouts.
  """

  name: str
  kind: str  # a registered electra_jax.finetune.kinds.TaskKind's name
  labels: tuple[str, ...]
  metrics: tuple[str, ...]
  primary: str
  glue_dir: str
  files: dict
  tfds_name: Optional[str] = None
  tfds_splits: dict = dataclasses.field(default_factory=dict)
  tfds_labels: tuple[str, ...] = ()
  class_names: tuple[str, ...] = ()
  hf_config: Optional[str] = None
  dev_splits: tuple[str, ...] = ("dev",)
  test_splits: tuple[str, ...] = ("test",)
  submission: dict = dataclasses.field(default_factory=dict)
  epochs: float = 3.0
  max_seq_length: int = 128
  squad_version: Optional[str] = None
  unordered_pair: bool = False
  columns: Optional[tuple] = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"task {self.name}: kind={self.kind!r}; expected one of {tuple(KINDS)}")
    if self.unordered_pair and not KINDS[self.kind].unordered_pairs:
      raise ValueError(f"task {self.name}: unordered_pair needs a sentence-pair GLUE task")

  @property
  def own_data(self) -> bool:
    """A task on the user's own table (columns named), not a built-in benchmark."""
    return self.columns is not None

  def label_names(self, labels: Sequence[str]) -> list[str]:
    """Display names of `labels` (the classes in output order), for id2label: the Hugging Face
    dataset's class names where the task has them (SST-2 "0" -> "negative"), else the labels."""
    if self.class_names and set(labels) <= set(self.tfds_labels):
      return [self.class_names[self.tfds_labels.index(label)] for label in labels]
    return [str(label) for label in labels]

  def metric_names(self) -> list[str]:
    """All reported metric names, with split suffixes for extra dev splits (MNLI)."""
    names = list(self.metrics)
    for split in self.dev_splits[1:]:
      names += [f"{m}_{split.removeprefix('dev_')}" for m in self.metrics]
    return names

  def score(self, labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """Metrics in percent for one split: classification label / prediction ids, regression
    floats, tagging lists of tag strings per sentence (span tasks are scored by squad_eval); the
    task kind computes them."""
    scores = KINDS[self.kind].metric_values(self, labels, predictions)
    return {k: 100.0 * float(v) for k, v in scores.items()}


def _glue(name, glue_dir, labels, metrics, primary, tfds, tfds_labels=None, class_names=None,
          **kw) -> Task:
  files = kw.pop("files", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"})
  tfds_splits = kw.pop("tfds_splits", {"train": "train", "dev": "validation", "test": "test"})
  kind = kw.pop("kind", "classification")
  tfds_labels = tfds_labels if tfds_labels is not None else labels
  class_names = class_names if class_names is not None else tfds_labels
  return Task(name=name, kind=kind, labels=labels, metrics=metrics, primary=primary,
              glue_dir=glue_dir, files=files, tfds_name=tfds, tfds_splits=tfds_splits,
              tfds_labels=tfds_labels, class_names=class_names, hf_config=name,
              submission=kw.pop("submission", {"test": glue_dir}), **kw)


_BINARY = ("0", "1")
_OWN_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_ENTAIL2 = ("entailment", "not_entailment")

# CoNLL-2000's chunk inventory (O, then B-/I- of its 11 phrase types): fixed by the task, not by
# the training file, whose tags miss I-LST (2 of test.txt's tokens carry it).
_CHUNK_TAGS = ("O",) + tuple(f"{p}-{t}" for p in "BI" for t in (
    "ADJP", "ADVP", "CONJP", "INTJ", "LST", "NP", "PP", "PRT", "SBAR", "UCP", "VP"))

TASKS: dict[str, Task] = {t.name: t for t in [
    _glue("cola", "CoLA", _BINARY, ("mcc", "accuracy"), "mcc", "glue/cola",
          class_names=("unacceptable", "acceptable")),
    _glue("sst2", "SST-2", _BINARY, ("accuracy",), "accuracy", "glue/sst2",
          class_names=("negative", "positive")),
    _glue("mrpc", "MRPC", _BINARY, ("accuracy", "f1"), "accuracy", "glue/mrpc",
          class_names=("not_equivalent", "equivalent"), unordered_pair=True),
    _glue("stsb", "STS-B", (), ("spearman", "pearson"), "spearman", "glue/stsb",
          kind="regression", epochs=10.0, unordered_pair=True),
    _glue("qqp", "QQP", _BINARY, ("accuracy", "f1"), "accuracy", "glue/qqp",
          class_names=("not_duplicate", "duplicate")),
    _glue("mnli", "MNLI", ("contradiction", "entailment", "neutral"), ("accuracy",), "accuracy",
          "glue/mnli", tfds_labels=("entailment", "neutral", "contradiction"),
          files={"train": "train.tsv", "dev_matched": "dev_matched.tsv",
                 "dev_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                 "test_mismatched": "test_mismatched.tsv"},
          tfds_splits={"train": "train", "dev_matched": "validation_matched",
                       "dev_mismatched": "validation_mismatched",
                       "test_matched": "test_matched", "test_mismatched": "test_mismatched"},
          dev_splits=("dev_matched", "dev_mismatched"),
          test_splits=("test_matched", "test_mismatched"),
          submission={"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"}),
    _glue("qnli", "QNLI", _ENTAIL2, ("accuracy",), "accuracy", "glue/qnli"),
    _glue("rte", "RTE", _ENTAIL2, ("accuracy",), "accuracy", "glue/rte", epochs=10.0),
    _glue("wnli", "WNLI", _BINARY, ("accuracy",), "accuracy", "glue/wnli",
          class_names=("not_entailment", "entailment")),
    Task("squad1.1", "span", (), ("exact_match", "f1"), "f1", "squad",
         {"train": "train-v1.1.json", "dev": "dev-v1.1.json"}, tfds_name="squad/v1.1",
         tfds_splits={"train": "train", "dev": "validation"}, test_splits=(), epochs=2.0,
         max_seq_length=512, squad_version="v1.1"),
    Task("squad2.0", "span", (), ("exact_match", "f1"), "f1", "squad",
         {"train": "train-v2.0.json", "dev": "dev-v2.0.json"}, tfds_name="squad/v2.0",
         tfds_splits={"train": "train", "dev": "validation"}, test_splits=(), epochs=2.0,
         max_seq_length=512, squad_version="v2.0"),
    Task("classification", "classification", (), ("accuracy", "macro_f1", "mcc"), "accuracy",
         "", {}, tfds_splits=_OWN_SPLITS, columns=("text", None, "label")),
    Task("regression", "regression", (), ("spearman", "pearson"), "spearman", "", {},
         tfds_splits=_OWN_SPLITS, columns=("text", None, "label")),
    Task("multilabel", "multilabel", (), ("micro_f1", "macro_f1", "exact_match"), "micro_f1",
         "", {}, tfds_splits=_OWN_SPLITS, columns=("text", None, "labels")),
    Task("tagging", "tagging", (), ("f1", "precision", "recall", "accuracy"), "f1", "", {},
         tfds_splits=_OWN_SPLITS, test_splits=(), columns=("tokens", None, "tags")),
    Task("chunk", "tagging", _CHUNK_TAGS, ("f1", "precision", "recall"), "f1", "conll2000",
         {"train": "train.txt", "dev": "test.txt"}, test_splits=(), max_seq_length=256),
    Task("ner", "tagging", (), ("f1", "precision", "recall"), "f1", "conll2003",
         {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}, test_splits=()),
]}

_ALIASES = {"sst": "sst2", "sts": "stsb", "squad": "squad1.1", "squad1": "squad1.1",
            "squadv1": "squad1.1", "squadv11": "squad1.1", "squad11": "squad1.1",
            "squad2": "squad2.0", "squadv2": "squad2.0", "squad20": "squad2.0",
            "squadv20": "squad2.0", "conll2000": "chunk", "chunking": "chunk",
            "conll2003": "ner"}


def _key(name: str) -> str:
  return name.lower().replace("-", "").replace("_", "").replace(".", "").replace("/", "")


def get_task(name: str) -> Task:
  """The task called `name` (case, '-', '_', '.' ignored; e.g. "SST-2", "squad/v2.0").

  Raises ValueError listing close matches and every known task.
  """
  key = _key(name)
  by_key = {_key(t): t for t in TASKS}
  by_key.update({_key(a): t for a, t in _ALIASES.items()})
  if key.startswith("glue"):
    key = key[4:]
  if key in by_key:
    return TASKS[by_key[key]]
  close = difflib.get_close_matches(name.lower(), list(TASKS) + list(_ALIASES), n=5, cutoff=0.5)
  close = list(dict.fromkeys(_ALIASES.get(c, c) for c in close))[:3]
  hint = f" Did you mean {', '.join(close)}?" if close else ""
  raise ValueError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}")


def with_columns(task: Task, text: Optional[str], text_pair: Optional[str],
                 label: Optional[str]) -> Task:
  """`task` reading the named columns (None: the task's default); ValueError for a built-in
  task, whose columns are fixed."""
  if (text, text_pair, label) == (None, None, None):
    return task
  if not task.own_data:
    own = [t.name for t in TASKS.values() if t.own_data]
    raise ValueError(f"task {task.name} reads its benchmark's own columns; text_column, "
                     f"text_pair_column and label_column name the columns of your data for the "
                     f"tasks {own}")
  if text_pair is not None and not KINDS[task.kind].text_pairs:
    raise ValueError(f"task {task.name} reads one text column ({task.columns[0]}); "
                     "text_pair_column does not apply")
  default = task.columns
  return dataclasses.replace(task, columns=(text or default[0], text_pair,
                                            label or default[2]))
