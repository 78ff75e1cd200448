"""Your own labelled data: rows of a table (data_pipelines.tables) or a Hugging Face dataset
split, read into the examples fine-tuning featurises.

    path = split_file("data/", "dev")                          # data/dev.csv, validation.jsonl ...
    examples = read_texts(rows, class_label, ("review", None, "stars"), labelled=True)

Splits: DATA_DIR/<stem>.<suffix> with the stems of SPLIT_STEMS (train; dev or validation; test)
and a table suffix (.tsv .csv .jsonl .json .parquet). Kinds of label, each read by its function:
  class_label       one class per row: a string or an integer (kept as its name, "3")
  number_label      a number (a numeric string in TSV/CSV)
  class_list_label  a list of class names (JSON, Parquet, a Hugging Face Sequence), or in TSV/CSV
                    a string of names separated by commas ("" for none)
  tagging         the words column and the tags column each hold a list per row, of equal length
A Hugging Face ClassLabel column (or a Sequence of them) gives its class names, not the ids.
A missing column, an empty text or a label of the wrong type is a ValueError naming the row
(with on_malformed="skip" the row is left out and reported instead).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

from data_pipelines.glue import MalformedRows, TextExample
from data_pipelines.tables import SUFFIXES
from data_pipelines.tagging import TaggedSentence
from electra_jax.floor import fs

SPLIT_STEMS = {"train": ("train",), "dev": ("dev", "validation", "valid"), "test": ("test",)}


def split_file(data_dir: str, split: str) -> Optional[str]:
  """The file of `split` in data_dir (the first stem and suffix found), or None."""
  for stem in SPLIT_STEMS[split]:
    for suffix in SUFFIXES:
      path = fs.join(data_dir, stem + suffix)
      if fs.isfile(path):
        return path
  return None


def expected_files(data_dir: str, split: str) -> str:
  """How split_file names the files it looks for, for messages."""
  stems = "|".join(SPLIT_STEMS[split])
  return f"{fs.join(data_dir, '{' + stems + '}')}.{{{'|'.join(s[1:] for s in SUFFIXES)}}}"


def check_columns(columns: Sequence[str], needed: Sequence[str], where: str) -> None:
  """ValueError naming the first of `needed` not in `columns`."""
  missing = [c for c in needed if c not in columns]
  if missing:
    raise ValueError(f"{where}: no column {missing[0]!r}: the columns are {list(columns)} "
                     "(name yours with --text_column, --text_pair_column, --label_column)")


def _name(value) -> str:
  """A class label as its name: strings as they are, integers (and whole floats) as digits."""
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  return str(value)


def class_label(raw, names: Optional[Sequence[str]] = None) -> str:
  """One class per row: a string or an integer (kept as its name, "3"); names: the class names of
  Hugging Face ClassLabel ids (-1: no label, as in GLUE's test splits). ValueError with the
  reason when the label has the wrong type."""
  if raw is None or raw == "":
    raise ValueError("no label")
  if names is not None:
    if raw < 0:
      raise ValueError("no label (class id -1)")
    return names[raw]
  if isinstance(raw, (list, tuple, dict)):
    raise ValueError(f"label {raw!r} is not one class (a multilabel task reads lists)")
  return _name(raw)


def number_label(raw, names: Optional[Sequence[str]] = None) -> float:
  """A number (a numeric string in TSV/CSV); ValueError when it is none."""
  if raw is None or raw == "":
    raise ValueError("no label")
  if names is not None:  # a ClassLabel column, as class_label reads it
    return class_label(raw, names)
  if isinstance(raw, bool):
    raise ValueError(f"label {raw!r} is not a number")
  try:
    return float(raw)
  except (TypeError, ValueError):
    raise ValueError(f"label {raw!r} is not a number") from None


def class_list_label(raw, names: Optional[Sequence[str]] = None) -> tuple[str, ...]:
  """The sorted class names of a row: a list, or in TSV/CSV names separated by commas ("" and a
  missing value: none)."""
  if raw is None or raw == "":
    return ()
  if names is not None:
    return tuple(names[i] for i in raw)
  items = raw.split(",") if isinstance(raw, str) else raw
  if not isinstance(items, (list, tuple)):
    raise ValueError(f"label {raw!r} is not a list of class names")
  return tuple(sorted({_name(i).strip() for i in items if _name(i).strip()}))


def _is_text(value) -> bool:
  return isinstance(value, str) and bool(value.strip())


def read_texts(rows: Iterable[tuple[str, dict]], label_of: Callable, columns: tuple,
               labelled: bool, class_names: Optional[Sequence[str]] = None,
               on_malformed: str = "error") -> list[TextExample]:
  """TextExamples (guid: the row's index) of classification / regression / multilabel rows
  [(where, {column: value})]; label_of(raw, class_names): a row's label (class_label,
  number_label, class_list_label); columns: (text, text pair or None, label). class_names: the
  names of a ClassLabel label column's ids (Hugging Face), else None."""
  text, pair, label = columns
  errors = MalformedRows(on_malformed)
  examples = []
  for i, (where, row) in enumerate(rows):
    needed = [text] + ([pair] if pair else []) + ([label] if labelled else [])
    check_columns(list(row), needed, where)
    if not _is_text(row[text]) or (pair and not _is_text(row[pair])):
      column = text if not _is_text(row[text]) else pair
      errors.report(where, f"empty text in column {column!r}")
      continue
    value = None
    if labelled:
      try:
        value = label_of(row[label], class_names)
      except ValueError as e:
        errors.report(where, f"column {label!r}: {e}")
        continue
    examples.append(TextExample(str(i), row[text], row[pair] if pair else None, value, where))
  return examples


def read_tagged(rows: Iterable[tuple[str, dict]], columns: tuple,
                tag_names: Optional[Sequence[str]] = None, on_malformed: str = "error"
                ) -> list[TaggedSentence]:
  """TaggedSentences of rows whose words and tags columns hold lists of equal length;
  tag_names: the names of ClassLabel tag ids (Hugging Face), else None."""
  words_column, _, tags_column = columns
  errors = MalformedRows(on_malformed)
  sentences = []
  for where, row in rows:
    check_columns(list(row), [words_column, tags_column], where)
    words, tags = row[words_column], row[tags_column]
    if not isinstance(words, (list, tuple)) or not isinstance(tags, (list, tuple)):
      errors.report(where, f"columns {words_column!r} and {tags_column!r} must hold lists (one "
                           "word and one tag per token)")
      continue
    if not words or len(words) != len(tags):
      errors.report(where, f"{len(words)} words and {len(tags)} tags")
      continue
    if not all(_is_text(w) for w in words):
      errors.report(where, f"an empty word in column {words_column!r}")
      continue
    tags = [tag_names[t] for t in tags] if tag_names is not None else [_name(t) for t in tags]
    sentences.append(TaggedSentence(tuple(words), tuple(tags), where))
  return sentences
