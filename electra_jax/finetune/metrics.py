"""Evaluation metrics for GLUE and tagging, in NumPy (no scipy/sklearn at run time).

GLUE official metrics: CoLA Matthews correlation, STS-B Pearson and Spearman correlation,
MRPC and QQP accuracy and F1 (positive class 1), the rest accuracy. Tagging: CoNLL span-level
(chunk) precision/recall/F1, with conlleval's rules for where chunks begin and end.

All scores are fractions in [0, 1] (correlations in [-1, 1]), not percentages.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
  """Fraction of positions where `preds` equals `labels` (both shape [N])."""
  labels, preds = _pair(labels, preds)
  return float(np.mean(labels == preds))


def binary_f1(labels: Sequence[int], preds: Sequence[int], positive: int = 1) -> float:
  """F1 of the `positive` class; 0.0 when there are no true positives."""
  labels, preds = _pair(labels, preds)
  tp = float(np.sum((preds == positive) & (labels == positive)))
  fp = float(np.sum((preds == positive) & (labels != positive)))
  fn = float(np.sum((preds != positive) & (labels == positive)))
  return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def macro_f1(labels: Sequence[int], preds: Sequence[int]) -> float:
  """Unweighted mean over the classes present in `labels` or `preds` of each class's F1."""
  labels, preds = _pair(labels, preds)
  classes = np.unique(np.concatenate([labels, preds]))
  return float(np.mean([binary_f1(labels, preds, positive=c) for c in classes]))


def multilabel(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
  """Multi-label scores of 0/1 matrices [N, C]: micro_f1 (over every (row, class) decision),
  macro_f1 (mean over the classes of each class's F1) and exact_match (rows entirely right)."""
  labels, preds = np.asarray(labels, bool), np.asarray(preds, bool)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")

  def f1(gold, pred):
    tp = float(np.sum(gold & pred))
    wrong = float(np.sum(gold != pred))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + wrong)

  return {"micro_f1": f1(labels, preds),
          "macro_f1": float(np.mean([f1(labels[:, c], preds[:, c])
                                     for c in range(labels.shape[1])])),
          "exact_match": float(np.mean(np.all(labels == preds, axis=1)))}


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
  """Fraction of words whose predicted tag equals the gold tag (any tag set, BIO or not)."""
  pairs = [(g, p) for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)]
  return float(np.mean([g == p for g, p in pairs])) if pairs else 0.0


def matthews_corrcoef(labels: Sequence[int], preds: Sequence[int]) -> float:
  """Matthews correlation coefficient (multi-class form); 0.0 when undefined."""
  labels, preds = _pair(labels, preds)
  classes = np.unique(np.concatenate([labels, preds]))
  index = {c: i for i, c in enumerate(classes.tolist())}
  conf = np.zeros((len(classes), len(classes)), np.float64)
  np.add.at(conf, ([index[v] for v in labels.tolist()], [index[v] for v in preds.tolist()]), 1)
  t = conf.sum(axis=1)  # true count per class
  p = conf.sum(axis=0)  # predicted count per class
  c = np.trace(conf)
  s = conf.sum()
  cov_yp = c * s - t @ p
  cov_yy = s * s - t @ t
  cov_pp = s * s - p @ p
  if cov_yy == 0 or cov_pp == 0:
    return 0.0
  return float(cov_yp / np.sqrt(cov_yy * cov_pp))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
  """Pearson correlation of two equal-length vectors; 0.0 if either is constant."""
  x, y = _pair(x, y, np.float64)
  xc, yc = x - x.mean(), y - y.mean()
  denom = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
  return 0.0 if denom == 0 else float(np.sum(xc * yc) / denom)


def rankdata(x: Sequence[float]) -> np.ndarray:
  """1-based ranks, ties given the mean of the ranks they span (scipy's 'average')."""
  x = np.asarray(x, np.float64)
  order = np.argsort(x, kind="mergesort")
  sorted_x = x[order]
  ranks = np.empty(len(x), np.float64)
  start = 0
  while start < len(x):
    end = start
    while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
      end += 1
    ranks[order[start:end + 1]] = (start + end) / 2 + 1
    start = end + 1
  return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman rank correlation: Pearson correlation of the average ranks."""
  x, y = _pair(x, y, np.float64)
  return pearson(rankdata(x), rankdata(y))


def _pair(a, b, dtype=None):
  a, b = np.asarray(a, dtype), np.asarray(b, dtype)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"expected two vectors of equal length, got shapes {a.shape} and {b.shape}")
  if a.size == 0:
    raise ValueError("cannot score an empty set of predictions")
  return a, b


# ---------------------------------------------------------------------------------------------
# Span-level F1 for BIO/IOB tagging (CoNLL-2000 chunking, CoNLL-2003 NER).


def _split_tag(tag: str) -> tuple[str, str]:
  if tag == "O" or "-" not in tag:
    return "O", ""
  prefix, kind = tag.split("-", 1)
  return prefix, kind


def _chunk_ends(prev_prefix, prev_kind, prefix, kind) -> bool:
  """Whether a chunk ended at the previous token (conlleval's rules, BIO/IOB1/IOBES)."""
  if prev_prefix in ("E", "S"):
    return True
  if prev_prefix in ("B", "I"):
    return prefix in ("B", "O", "S") or prev_kind != kind
  return False


def _chunk_starts(prev_prefix, prev_kind, prefix, kind) -> bool:
  """Whether a chunk starts at the current token (conlleval's rules, BIO/IOB1/IOBES)."""
  if prefix in ("B", "S"):
    return True
  if prefix in ("I", "E"):
    return prev_prefix in ("O", "E", "S") or prev_kind != kind
  return False


def extract_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
  """Chunks of one sentence as (type, first, last) token indices (inclusive)."""
  spans = set()
  prev_prefix, prev_kind, start = "O", "", None
  for i, tag in enumerate(list(tags) + ["O"]):
    prefix, kind = _split_tag(tag)
    if start is not None and _chunk_ends(prev_prefix, prev_kind, prefix, kind):
      spans.add((prev_kind, start, i - 1))
      start = None
    if _chunk_starts(prev_prefix, prev_kind, prefix, kind):
      start = i
    prev_prefix, prev_kind = prefix, kind
  return spans


def span_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
  """Micro-averaged span precision, recall and F1 over sentences of tag strings."""
  if len(gold) != len(pred):
    raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
  n_gold = n_pred = n_correct = 0
  for i, (g, p) in enumerate(zip(gold, pred)):
    if len(g) != len(p):
      raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    gs, ps = extract_spans(g), extract_spans(p)
    n_gold += len(gs)
    n_pred += len(ps)
    n_correct += len(gs & ps)
  precision = n_correct / n_pred if n_pred else 0.0
  recall = n_correct / n_gold if n_gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1}
