"""SQuAD v1.1 and v2.0 scoring with the official evaluation scripts' rules.

Answer normalisation (both versions): lower-case, delete ASCII punctuation, delete the articles
"a", "an", "the" as whole words, collapse whitespace. Exact match compares normalised strings;
F1 is the bag-of-tokens overlap of the normalised strings. A question's score is the maximum over
its gold answers. Scores are percentages (0-100), as the official scripts print them.

Version differences, as in the official scripts:
- v1.1: F1 is 0 when prediction and gold share no token (two empty strings also score 0);
  a question with no prediction scores 0 and is counted.
- v2.0: gold answers that normalise to "" are dropped; a question with none left is unanswerable
  and its only gold answer is "". F1 of an empty prediction or empty gold is 1 when both are
  empty, else 0. Questions with no prediction are left out of the totals. With `na_probs`
  (qid -> probability of no answer), a prediction whose probability exceeds `na_prob_thresh` is
  replaced by "", and the best threshold for EM and F1 is reported.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Optional, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
  """Lower-case, strip punctuation and articles, collapse whitespace."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
  """1.0 if the normalised strings are equal, else 0.0."""
  return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str, version: str = "v2.0") -> float:
  """Token-overlap F1 in [0, 1] of one prediction against one gold answer."""
  pred_tokens = normalize_answer(prediction).split()
  gold_tokens = normalize_answer(gold).split()
  if version == "v2.0" and (not pred_tokens or not gold_tokens):
    return float(pred_tokens == gold_tokens)
  common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
  overlap = sum(common.values())
  if overlap == 0:
    return 0.0
  precision = overlap / len(pred_tokens)
  recall = overlap / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def gold_answers(answers: Sequence[str], version: str) -> list[str]:
  """The gold answers a question is scored against (v2.0: [""] when unanswerable)."""
  if version == "v1.1":
    return list(answers)
  kept = [a for a in answers if normalize_answer(a)]
  return kept or [""]


def evaluate(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
             version: str = "v1.1", na_probs: Optional[Mapping[str, float]] = None,
             na_prob_thresh: float = 1.0) -> dict[str, float]:
  """Scores predictions (qid -> text) against gold answers (qid -> list of answer texts).

  Returns percentages: "exact_match" and "f1" over all scored questions, "total"; for v2.0 also
  "HasAns_*"/"NoAns_*" breakdowns, and with `na_probs` "best_exact", "best_exact_thresh",
  "best_f1", "best_f1_thresh".
  """
  if version not in ("v1.1", "v2.0"):
    raise ValueError(f"version={version!r}; expected 'v1.1' or 'v2.0'")
  if not gold:
    raise ValueError("no gold questions to score")
  unknown = sorted(set(predictions) - set(gold))
  if unknown:
    raise ValueError(f"{len(unknown)} predictions for questions not in the gold set, "
                     f"e.g. {unknown[:3]}")
  exact, f1s, has_answer = {}, {}, {}
  for qid, answers in gold.items():
    golds = gold_answers(answers, version)
    has_answer[qid] = bool(golds and golds != [""])
    if qid not in predictions:
      if version == "v1.1":
        exact[qid] = f1s[qid] = 0.0
      continue
    pred = predictions[qid]
    exact[qid] = max(exact_match(pred, g) for g in golds)
    f1s[qid] = max(f1(pred, g, version) for g in golds)
  if not exact:
    raise ValueError("none of the gold questions has a prediction")
  if version == "v1.1":
    return {"exact_match": 100.0 * sum(exact.values()) / len(exact),
            "f1": 100.0 * sum(f1s.values()) / len(f1s), "total": float(len(exact))}

  if na_probs is not None:
    missing = sorted(set(exact) - set(na_probs))
    if missing:
      raise ValueError(f"na_probs lacks {len(missing)} scored questions, e.g. {missing[:3]}")
    exact_t = _apply_threshold(exact, na_probs, has_answer, na_prob_thresh)
    f1_t = _apply_threshold(f1s, na_probs, has_answer, na_prob_thresh)
  else:
    exact_t, f1_t = exact, f1s
  out = _summary(exact_t, f1_t, list(exact))
  for name, keep in (("HasAns", True), ("NoAns", False)):
    qids = [q for q in exact if has_answer[q] == keep]
    if qids:
      part = _summary(exact_t, f1_t, qids)
      out.update({f"{name}_{k}": v for k, v in part.items()})
  if na_probs is not None:
    for key, scores in (("exact", exact), ("f1", f1s)):
      best, thresh = _best_threshold(scores, na_probs, has_answer, predictions)
      out[f"best_{key}"] = best
      out[f"best_{key}_thresh"] = thresh
  return out


def _summary(exact, f1s, qids) -> dict[str, float]:
  n = len(qids)
  return {"exact_match": 100.0 * sum(exact[q] for q in qids) / n,
          "f1": 100.0 * sum(f1s[q] for q in qids) / n, "total": float(n)}


def _apply_threshold(scores, na_probs, has_answer, thresh):
  return {q: (float(not has_answer[q]) if na_probs[q] > thresh else s)
          for q, s in scores.items()}


def _best_threshold(scores, na_probs, has_answer, predictions) -> tuple[float, float]:
  """Best percentage score when predicting "" for every question with na_prob above a threshold,
  and that threshold (questions sorted by na_prob; start from answering none)."""
  current = sum(1 for q in scores if not has_answer[q])
  best, best_thresh = current, 0.0
  for qid in sorted(scores, key=lambda q: na_probs[q]):
    if has_answer[qid]:
      current += scores[qid]
    elif predictions[qid]:
      current -= 1
    if current > best:
      best, best_thresh = current, na_probs[qid]
  return 100.0 * best / len(scores), float(best_thresh)
