"""CoNLL column files (CoNLL-2000 chunking, CoNLL-2003 NER) and word-piece tagging features.

File format: one token per line, whitespace-separated columns, the word first and the tag in
`tag_column` (default: the last); a blank line ends a sentence; `-DOCSTART-` lines are document
markers and carry no token. Every token line must have as many columns as the file's first one;
otherwise ValueError names `file:line` (or, with `on_malformed="skip"`, the sentence holding it
is left out and reported).

Features: each word is split into word pieces; the word's tag is the label of its first piece
and the other pieces are ignored (label -1). A sentence longer than max_seq_length - 2 pieces is
split at word boundaries into several rows, so that every word is predicted exactly once.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Sequence

import numpy as np

from data_pipelines.glue import MalformedRows
from electra_jax.floor import fs


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
  """Words and their tags; `where`: the row it came from, for messages (own data)."""

  words: tuple[str, ...]
  tags: tuple[str, ...]
  where: str = ""


def read_conll(path: str, tag_column: int = -1, on_malformed: str = "error"
               ) -> list[TaggedSentence]:
  """Sentences of (word, tag) from a CoNLL column file."""
  if not fs.isfile(path):
    raise FileNotFoundError(f"CoNLL file not found: {path}")
  errors = MalformedRows(on_malformed)
  sentences, words, tags = [], [], []
  width, bad = None, False

  def flush():
    nonlocal words, tags, bad
    if words and not bad:
      sentences.append(TaggedSentence(tuple(words), tuple(tags)))
    words, tags, bad = [], [], False

  with io.StringIO(fs.read_text(path, encoding="utf-8-sig")) as f:
    for line_no, line in enumerate(f, start=1):
      fields = line.split()
      if not fields:
        flush()
        continue
      if fields[0] == "-DOCSTART-":
        flush()
        continue
      if width is None:
        width = len(fields)
        if width < 2:
          raise ValueError(f"{path}:{line_no}: expected a word and a tag column, found "
                           f"{width} column")
      if len(fields) != width:
        errors.report(f"{path}:{line_no}", f"expected {width} columns, found {len(fields)}")
        bad = True
        continue
      words.append(fields[0])
      tags.append(fields[tag_column])
  flush()
  if not sentences:
    raise ValueError(f"{path}: no sentences found")
  return sentences


def featurize(sentences: Sequence[TaggedSentence], tokenizer, max_seq_length: int,
              tag_to_id: dict) -> tuple[dict, list[int]]:
  """Arrays input_ids, attention_mask, token_type_ids, labels and word_index [R, L] int32
  (labels/word_index -1 except at a word's first piece), and for each row its sentence index."""
  budget = max_seq_length - 2
  if budget < 1:
    raise ValueError(f"max_seq_length={max_seq_length} is too short")
  for sent in sentences:
    unseen = sorted(set(sent.tags) - set(tag_to_id))
    if unseen:
      where = f"{sent.where}: " if sent.where else ""
      raise ValueError(f"{where}tags {unseen} are not in the task's tag set {sorted(tag_to_id)} "
                       "(the tags of the training split)")
  flat = [w for s in sentences for w in s.words]
  pieces = tokenizer.encode(flat)
  rows, owners, k = [], [], 0
  for s_index, sent in enumerate(sentences):
    current = []
    for w_index, tag in enumerate(sent.tags):
      word_pieces = list(pieces[k]) or [tokenizer.unk_id]
      k += 1
      word_pieces = word_pieces[:budget]
      if sum(len(p) for _, p, _ in current) + len(word_pieces) > budget:
        rows.append(current)
        owners.append(s_index)
        current = []
      current.append((w_index, word_pieces, tag_to_id[tag]))
    if current:
      rows.append(current)
      owners.append(s_index)
  n = len(rows)
  arrays = {"input_ids": np.full((n, max_seq_length), tokenizer.pad_id, np.int32),
            "attention_mask": np.zeros((n, max_seq_length), np.int32),
            "token_type_ids": np.zeros((n, max_seq_length), np.int32),
            "labels": np.full((n, max_seq_length), -1, np.int32),
            "word_index": np.full((n, max_seq_length), -1, np.int32)}
  for r, row in enumerate(rows):
    pos = 1
    arrays["input_ids"][r, 0] = tokenizer.cls_id
    for w_index, word_pieces, label in row:
      arrays["input_ids"][r, pos:pos + len(word_pieces)] = word_pieces
      arrays["labels"][r, pos] = label
      arrays["word_index"][r, pos] = w_index
      pos += len(word_pieces)
    arrays["input_ids"][r, pos] = tokenizer.sep_id
    arrays["attention_mask"][r, :pos + 1] = 1
  return arrays, owners


def assemble(sentences: Sequence[TaggedSentence], owners: Sequence[int], word_index: np.ndarray,
             predicted_ids: np.ndarray, id_to_tag: Sequence[str]) -> list[list[str]]:
  """Per-sentence predicted tags from per-row predictions [R, L] (ids at first pieces)."""
  out = [[None] * len(s.words) for s in sentences]
  for r, s_index in enumerate(owners):
    for pos in np.nonzero(word_index[r] >= 0)[0]:
      out[s_index][word_index[r, pos]] = id_to_tag[int(predicted_ids[r, pos])]
  for s_index, tags in enumerate(out):
    if any(t is None for t in tags):
      raise ValueError(f"sentence {s_index}: some words received no prediction")
  return out
