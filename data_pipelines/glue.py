"""GLUE readers (native TSV directories, TFDS, Hugging Face datasets) and sentence(-pair)
featurisation.

Native layout: `DATA_DIR/<TASK>/{train,dev,test}.tsv` as distributed by GLUE (MNLI:
dev_matched.tsv, dev_mismatched.tsv, test_matched.tsv, test_mismatched.tsv). Columns are found
by header name; CoLA's train/dev files have no header (source, label, original label,
sentence). Fields are split on tabs with no quote processing (GLUE texts contain bare quotes).
A UTF-8 byte-order mark (the official MRPC files start with one) and CRLF line ends are accepted.

Every row is either read or reported: a row with the wrong number of fields, an empty text or a
label outside the task's label set raises ValueError naming `file:line`; with
`on_malformed="skip"` such rows are left out and each one is printed with its file and line.

TFDS (`read_tfds`) and Hugging Face datasets (`read_hf`: the layout of nyu-mll/glue, the TFDS
columns plus `label` and `idx`) give class ids, mapped to the task's labels by Task.tfds_labels;
a Hugging Face row is named by its dataset, split and row number in errors.

Features (`featurize`): [CLS] a [SEP] (b [SEP]), token types 0 for a and 1 for b, padded to
`max_seq_length` with the pad id; pairs are truncated longest-first, as BERT does.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Optional, Sequence


from data_pipelines import hf_source
from electra_jax.floor import fs


@dataclasses.dataclass(frozen=True)
class TextExample:
  """One sentence(-pair) example. `label`: class string, float (regression), tuple of class
  strings (multi-label) or None (test split); `where`: its row for messages (own data)."""

  guid: str
  text_a: str
  text_b: Optional[str]
  label: object
  where: str = ""


@dataclasses.dataclass(frozen=True)
class TsvFormat:
  """Header names of the text, label and id columns in a task's TSV files."""

  text_a: str
  text_b: Optional[str]
  label: Optional[str]
  guid: str = "index"


FORMATS = {
    "cola": TsvFormat("sentence", None, "label"),
    "sst2": TsvFormat("sentence", None, "label"),
    "mrpc": TsvFormat("#1 String", "#2 String", "Quality"),
    "stsb": TsvFormat("sentence1", "sentence2", "score"),
    "qqp": TsvFormat("question1", "question2", "is_duplicate", guid="id"),
    "mnli": TsvFormat("sentence1", "sentence2", "gold_label"),
    "qnli": TsvFormat("question", "sentence", "label"),
    "rte": TsvFormat("sentence1", "sentence2", "label"),
    "wnli": TsvFormat("sentence1", "sentence2", "label"),
}

# The text columns of each task in TFDS glue/<task> and in the Hugging Face GLUE layout
# (nyu-mll/glue)
TFDS_TEXT_KEYS = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}

_COLA_NO_HEADER = {"source": 0, "label": 1, "sentence": 3}


class MalformedRows:
  """Collects or raises on malformed rows (where: reason; where is file:line, or the dataset,
  split and row of a Hugging Face dataset)."""

  def __init__(self, on_malformed: str):
    if on_malformed not in ("error", "skip"):
      raise ValueError(f"on_malformed={on_malformed!r}; expected 'error' or 'skip'")
    self.on_malformed = on_malformed
    self.skipped: list[str] = []

  def report(self, where: str, reason: str) -> None:
    message = f"{where}: {reason}"
    if self.on_malformed == "error":
      raise ValueError(message + " (pass on_malformed='skip' to leave such rows out, reported)")
    self.skipped.append(message)
    print(f"skipping malformed row {message}", file=sys.stderr)


def read_tsv(path: str, task_name: str, labels: Optional[Sequence[str]],
             on_malformed: str = "error", require_label: bool = False) -> list[TextExample]:
  """Reads one GLUE TSV file of task `task_name` (a key of FORMATS).

  labels: the task's class names (None for regression). A file without the label column
  (a test split) gives examples with label None, or, with `require_label` (train and dev
  splits), a ValueError naming the file, the columns found and the columns expected.
  """
  if task_name not in FORMATS:
    raise ValueError(f"no GLUE TSV format for task {task_name!r}; known: {sorted(FORMATS)}")
  if not fs.isfile(path):
    raise FileNotFoundError(f"GLUE file not found: {path}")
  fmt = FORMATS[task_name]
  errors = MalformedRows(on_malformed)
  text = io.StringIO(fs.read_text(path, encoding="utf-8-sig"), newline="")
  rows = [line.rstrip("\r\n").split("\t") for line in text]
  if not rows:
    raise ValueError(f"{path}: empty file")
  header = rows[0]
  if task_name == "cola" and "sentence" not in header:
    columns, first, width = _COLA_NO_HEADER, 0, None
  else:
    columns = {name: i for i, name in enumerate(header)}
    first, width = 1, len(header)
    if fmt.text_a not in columns or (fmt.text_b and fmt.text_b not in columns):
      want = [c for c in (fmt.text_a, fmt.text_b) if c]
      raise ValueError(f"{path}:1: header {header} lacks the {task_name} text columns {want}")
  has_label = fmt.label in columns
  if require_label and not has_label:
    want = [c for c in (fmt.text_a, fmt.text_b, fmt.label) if c]
    raise ValueError(f"{path}: no {task_name} label column {fmt.label!r}: found columns {header}, "
                     f"expected {want} (train and dev files need their labels)")
  examples = []
  for line_no, row in enumerate(rows[first:], start=first + 1):
    if width is not None and len(row) != width:
      errors.report(f"{path}:{line_no}", f"expected {width} tab-separated fields, found {len(row)}")
      continue
    if width is None and len(row) < 4:
      errors.report(f"{path}:{line_no}", f"expected 4 tab-separated fields, found {len(row)}")
      continue
    text_a = row[columns[fmt.text_a]]
    text_b = row[columns[fmt.text_b]] if fmt.text_b else None
    if not text_a.strip() or (fmt.text_b and not text_b.strip()):
      errors.report(f"{path}:{line_no}", "empty text field")
      continue
    label = None
    if has_label:
      raw = row[columns[fmt.label]]
      if labels is None:
        try:
          label = float(raw)
        except ValueError:
          errors.report(f"{path}:{line_no}", f"label {raw!r} is not a number")
          continue
      elif raw not in labels:
        errors.report(f"{path}:{line_no}",
                      f"label {raw!r} is not one of the {task_name} labels {list(labels)}")
        continue
      else:
        label = raw
    guid = row[columns[fmt.guid]] if fmt.guid in columns else str(line_no - first)
    examples.append(TextExample(guid, text_a, text_b, label))
  return examples


def read_tfds(tfds_name: str, split: str, task_name: str, tfds_labels: Sequence[str],
              data_dir: Optional[str] = None) -> list[TextExample]:
  """Reads a GLUE split from TFDS (e.g. "glue/sst2", "validation").

  tfds_labels[i] is the task label string for TFDS class id i (empty for regression); TFDS
  label -1 (test splits) gives label None; guid is the TFDS `idx`.
  """
  from electra_jax.floor.tf_runtime import tensorflow
  tensorflow()
  import tensorflow_datasets as tfds

  key_a, key_b = TFDS_TEXT_KEYS[task_name]
  ds = tfds.load(tfds_name, split=split, data_dir=data_dir, shuffle_files=False)
  examples = []
  for ex in tfds.as_numpy(ds):
    raw = ex["label"]
    if not tfds_labels:
      label = float(raw)
    elif int(raw) < 0:
      label = None
    elif int(raw) >= len(tfds_labels):
      raise ValueError(f"TFDS {tfds_name}[{split}] idx {ex['idx']}: label id {int(raw)} is "
                       f"outside the task's {len(tfds_labels)} labels {list(tfds_labels)}")
    else:
      label = tfds_labels[int(raw)]
    text_b = ex[key_b].decode("utf-8") if key_b else None
    examples.append(TextExample(str(int(ex["idx"])), ex[key_a].decode("utf-8"), text_b, label))
  return examples


def read_hf(dataset, where: str, task_name: str, tfds_labels: Sequence[str],
            class_names: Sequence[str], labelled: bool, on_malformed: str = "error"
            ) -> list[TextExample]:
  """Reads a GLUE split from a Hugging Face dataset in the GLUE layout (nyu-mll/glue): the text
  columns TFDS_TEXT_KEYS[task_name], `label` and `idx` (the guid).

  where: the dataset and split, for messages. Class ids map to task labels as in read_tfds (id i
  -> tfds_labels[i]; regression, empty tfds_labels: the number); a ClassLabel column must name
  its classes `class_names` (the GLUE datasets' names) or `tfds_labels`, else ValueError.
  labelled (train and dev splits): `label` is required, and a row without one (label -1, as in
  the GLUE test splits), with a class id outside tfds_labels or with an empty text is malformed
  (ValueError naming where and the row; on_malformed="skip" leaves it out). Unlabelled (test)
  splits are read without labels (None), as the GLUE test files have none.
  """
  datasets = hf_source.import_datasets("hf: task data reads")
  key_a, key_b = TFDS_TEXT_KEYS[task_name]
  need = [key_a] + ([key_b] if key_b else []) + ["idx"] + (["label"] if labelled else [])
  missing = [c for c in need if c not in dataset.features]
  if missing:
    raise ValueError(f"{where}: no column {missing[0]!r}: the columns are "
                     f"{list(dataset.features)}; task {task_name} reads the columns {need} (the GLUE layout of nyu-mll/glue)")
  if labelled:
    _check_hf_labels(datasets, dataset.features["label"], where, task_name, tfds_labels,
                     class_names)
  errors = MalformedRows(on_malformed)
  examples = []
  columns = ["idx", key_a, key_b, "label" if labelled else None]
  for row, (guid, text_a, text_b, raw) in enumerate(hf_source.rows(dataset, columns)):
    at = f"{where} row {row}"
    if not _is_text(text_a) or (key_b and not _is_text(text_b)):
      errors.report(at, "empty text field")
      continue
    label = None
    if labelled:
      if raw is None or raw == -1:
        errors.report(at, f"no label (label {raw}, as in the GLUE test splits): train and dev "
                          "splits need their labels")
        continue
      if not tfds_labels:
        label = float(raw)
      elif not 0 <= raw < len(tfds_labels):
        errors.report(at, f"label id {raw} is outside the {task_name} class ids "
                          f"0..{len(tfds_labels) - 1} (labels {list(tfds_labels)})")
        continue
      else:
        label = tfds_labels[raw]
    examples.append(TextExample(str(guid), text_a, text_b, label))
  return examples


def _is_text(value) -> bool:
  return isinstance(value, str) and bool(value.strip())


def _check_hf_labels(datasets, feature, where: str, task_name: str, tfds_labels: Sequence[str],
                     class_names: Sequence[str]) -> None:
  """The label column holds what the task reads: class ids named as the task's (ClassLabel
  names class_names or tfds_labels) or plain integers; numbers for regression."""
  if isinstance(feature, datasets.ClassLabel) and tfds_labels:
    if list(feature.names) not in (list(class_names), list(tfds_labels)):
      raise ValueError(
          f"{where}: the label column's classes are {feature.names}, not task {task_name}'s: its "
          f"class ids 0..{len(tfds_labels) - 1} are the classes {list(class_names)}, read as the "
          f"labels {list(tfds_labels)} (relabel the column, e.g. with Dataset.cast_column)")
    return
  numbers = ("int", "uint") if tfds_labels else ("int", "uint", "float")
  if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(numbers)):
    want = "class ids (integers or a ClassLabel)" if tfds_labels else "numbers (a regression)"
    raise ValueError(f"{where}: the label column holds {feature}; task {task_name} reads {want}")


def double_unordered(examples: Sequence[TextExample]) -> list[TextExample]:
  """The examples followed by a copy of each with text_a and text_b swapped (guid + "-swapped").

  The official `double_unordered` augmentation for pairs whose order does not matter
  (google-research/electra finetune/classification/classification_tasks.py, MRPC and STS
  `_create_examples`: the training split is read twice, the second time with swap=True).
  Raises ValueError if an example has no second sentence.
  """
  single = [e.guid for e in examples if e.text_b is None]
  if single:
    raise ValueError(f"double_unordered needs sentence pairs; examples {single[:5]} have one "
                     "sentence")
  swapped = [dataclasses.replace(e, guid=f"{e.guid}-swapped", text_a=e.text_b, text_b=e.text_a)
             for e in examples]
  return list(examples) + swapped


def featurize(examples: Sequence[TextExample], tokenizer, max_seq_length: int) -> dict:
  """Token features for a list of examples (the tokenizer's batch call, padded to
  max_seq_length): input_ids, attention_mask, token_type_ids, each [N, max_seq_length] int32."""
  return tokenizer([e.text_a for e in examples], [e.text_b for e in examples],
                   max_length=max_seq_length, padding="max_length")
