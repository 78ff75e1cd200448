"""SQuAD 1.1 / 2.0: readers (official JSON, TFDS, Hugging Face datasets), windowed features,
answer extraction.

Features follow BERT/ELECTRA: [CLS] question [SEP] context-window [SEP], the question cut to
`max_query_length` tokens, the context split into windows of at most
max_seq_length - len(question) - 3 tokens that start `doc_stride` tokens apart. Each context
token keeps its (start, end) character span in the context (the tokenizer's offset mapping), so
answers are cut from the original text. A token is scored only in the window where it has the
most context on both sides ("max context"). Training targets are the first and last token of
the answer; an answer outside the window, or no answer (2.0), targets [CLS] (position 0).

Malformed entries (missing fields, an answer whose text is not at its `answer_start`) raise
ValueError naming the file and the JSON path (`data[i].paragraphs[j].qas[k]`), or with
`on_malformed="skip"` are left out and each one is printed. The Hugging Face reader checks each
row so too, naming the dataset, split and row.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Optional, Sequence

import numpy as np

from data_pipelines import hf_source
from data_pipelines.glue import MalformedRows
from electra_jax.floor import fs

HF_COLUMNS = ("id", "question", "context", "answers")  # rajpurkar/squad(_v2); `title` unused


@dataclasses.dataclass(frozen=True)
class SquadExample:
  """One question. answers/answer_starts: gold texts and their character starts in context."""

  qid: str
  question: str
  context: str
  answers: tuple[str, ...]
  answer_starts: tuple[int, ...]
  is_impossible: bool


@dataclasses.dataclass(frozen=True)
class SquadFeature:
  """Host-side bookkeeping for one window: which example, and per sequence position the
  context character span (None outside the context) and whether it is the max-context window."""

  example_index: int
  offsets: tuple
  max_context: tuple


def read_json(path: str, check_answers: bool = True, on_malformed: str = "error"
              ) -> list[SquadExample]:
  """Reads an official SQuAD JSON file (v1.1 or v2.0).

  check_answers: require every answer text to equal context[answer_start:+len(text)] (use for
  training files; dev files are scored on texts only).
  """
  if not fs.isfile(path):
    raise FileNotFoundError(f"SQuAD file not found: {path}")
  try:
    data = json.loads(fs.read_text(path, encoding="utf-8-sig"))
  except json.JSONDecodeError as err:
    raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
  if not isinstance(data, dict) or not isinstance(data.get("data"), list):
    raise ValueError(f"{path}: expected a JSON object with a 'data' list (SQuAD format)")
  errors = MalformedRows(on_malformed)
  examples = []
  for i, article in enumerate(data["data"]):
    for j, para in enumerate(article.get("paragraphs", [])):
      context = para.get("context")
      for k, qa in enumerate(para.get("qas", [])):
        where = f"data[{i}].paragraphs[{j}].qas[{k}]"
        try:
          examples.append(_example(qa, context, check_answers))
        except ValueError as err:
          errors.report(f"{path}:{where}", str(err))
  if not examples:
    raise ValueError(f"{path}: no questions found")
  return examples


def _example(qa: dict, context, check_answers: bool) -> SquadExample:
  if not isinstance(context, str) or not context:
    raise ValueError("paragraph has no context text")
  for key in ("id", "question"):
    if not isinstance(qa.get(key), str):
      raise ValueError(f"missing string field {key!r}")
  impossible = bool(qa.get("is_impossible", False))
  answers = qa.get("answers", [])
  texts, starts = [], []
  for a in answers:
    if not isinstance(a.get("text"), str) or not isinstance(a.get("answer_start"), int):
      raise ValueError(f"answer {a!r} lacks text/answer_start")
    if check_answers and context[a["answer_start"]:a["answer_start"] + len(a["text"])] != a["text"]:
      raise ValueError(f"answer {a['text']!r} is not at answer_start={a['answer_start']}")
    texts.append(a["text"])
    starts.append(a["answer_start"])
  if not impossible and not texts:
    raise ValueError("answerable question without answers")
  return SquadExample(qa["id"], qa["question"], context, tuple(texts), tuple(starts), impossible)


def read_tfds(tfds_name: str, split: str, data_dir: Optional[str] = None) -> list[SquadExample]:
  """Reads `squad/v1.1` or `squad/v2.0` from TFDS (v2.0's `is_impossible` when present)."""
  from electra_jax.floor.tf_runtime import tensorflow
  tensorflow()
  import tensorflow_datasets as tfds

  ds = tfds.load(tfds_name, split=split, data_dir=data_dir, shuffle_files=False)
  out = []
  for ex in tfds.as_numpy(ds):
    texts = tuple(t.decode("utf-8") for t in ex["answers"]["text"])
    starts = tuple(int(s) for s in ex["answers"]["answer_start"])[:len(texts)]
    impossible = bool(ex.get("is_impossible", False))
    out.append(SquadExample(ex["id"].decode("utf-8"), ex["question"].decode("utf-8"),
                            ex["context"].decode("utf-8"), () if impossible else texts,
                            () if impossible else starts, impossible))
  return out


def read_hf(dataset, where: str, unanswerable: bool, check_answers: bool = True,
            on_malformed: str = "error") -> list[SquadExample]:
  """Reads a SQuAD split from a Hugging Face dataset in the layout of rajpurkar/squad and
  rajpurkar/squad_v2: HF_COLUMNS, `answers` holding {text: [...], answer_start: [...]}.

  where: the dataset and split, for messages. unanswerable (SQuAD 2.0): a question without
  answers is unanswerable (is_impossible); in SQuAD 1.1 it is malformed. Rows are checked as
  read_json checks questions (check_answers: each answer text at its answer_start).
  """
  missing = [c for c in HF_COLUMNS if c not in dataset.features]
  if missing:
    raise ValueError(f"{where}: no column {missing[0]!r}: the columns are "
                     f"{list(dataset.features)}; SQuAD reads the columns {list(HF_COLUMNS)} (the layout of rajpurkar/squad)")
  answers = dataset.features["answers"]
  if not (isinstance(answers, dict) and {"text", "answer_start"} <= set(answers)):
    raise ValueError(f"{where}: the answers column holds {answers}; SQuAD reads "
                     "{'text': [...], 'answer_start': [...]} per question (the layout of "
                     "rajpurkar/squad)")
  errors = MalformedRows(on_malformed)
  examples = []
  for row, (qid, question, context, answer) in enumerate(hf_source.rows(dataset, HF_COLUMNS)):
    qa = {"id": qid, "question": question,
          "answers": [{"text": t, "answer_start": s}
                      for t, s in zip(answer["text"], answer["answer_start"])],
          "is_impossible": unanswerable and not answer["text"]}
    try:
      examples.append(_example(qa, context, check_answers))
    except ValueError as err:
      errors.report(f"{where} row {row}", str(err))
  if not examples:
    raise ValueError(f"{where}: no questions found")
  return examples


def featurize(examples: Sequence[SquadExample], tokenizer, max_seq_length: int = 384,
              doc_stride: int = 128, max_query_length: int = 64, training: bool = False
              ) -> tuple[dict, list[SquadFeature]]:
  """Windowed features: arrays input_ids, attention_mask, token_type_ids [F, max_seq_length]
  int32 (training: also start_positions, end_positions [F] int32, the first answer), and one
  SquadFeature per window."""
  questions = tokenizer.encode([e.question for e in examples])
  contexts = tokenizer.encode_with_offsets([e.context for e in examples])
  rows, features = [], []
  for ex_index, (ex, q_ids, (c_ids, c_spans)) in enumerate(zip(examples, questions, contexts)):
    q_ids = list(q_ids)[:max_query_length]
    budget = max_seq_length - len(q_ids) - 3
    if budget < 1:
      raise ValueError(f"max_seq_length={max_seq_length} leaves no room for context after a "
                       f"{len(q_ids)}-token question")
    if not c_ids:
      raise ValueError(f"question {ex.qid}: the context has no tokens")
    windows = _windows(len(c_ids), budget, doc_stride)
    answer = _answer_tokens(ex, c_spans) if training else None
    for w_start, w_len in windows:
      seq = [tokenizer.cls_id] + q_ids + [tokenizer.sep_id]
      first = len(seq)
      seq += list(c_ids[w_start:w_start + w_len]) + [tokenizer.sep_id]
      offsets = [None] * max_seq_length
      max_ctx = [False] * max_seq_length
      for t in range(w_len):
        offsets[first + t] = tuple(c_spans[w_start + t])
        max_ctx[first + t] = _is_max_context(windows, (w_start, w_len), w_start + t)
      start = end = 0
      if answer is not None and w_start <= answer[0] and answer[1] < w_start + w_len:
        start, end = answer[0] - w_start + first, answer[1] - w_start + first
      rows.append((seq, first, start, end))
      features.append(SquadFeature(ex_index, tuple(offsets), tuple(max_ctx)))
  n = len(rows)
  arrays = {"input_ids": np.full((n, max_seq_length), tokenizer.pad_id, np.int32),
            "attention_mask": np.zeros((n, max_seq_length), np.int32),
            "token_type_ids": np.zeros((n, max_seq_length), np.int32)}
  if training:
    arrays["start_positions"] = np.array([r[2] for r in rows], np.int32).reshape(n)
    arrays["end_positions"] = np.array([r[3] for r in rows], np.int32).reshape(n)
  for i, (seq, first, _, _) in enumerate(rows):
    arrays["input_ids"][i, :len(seq)] = seq
    arrays["attention_mask"][i, :len(seq)] = 1
    arrays["token_type_ids"][i, first:len(seq)] = 1
  return arrays, features


def _windows(n_tokens: int, budget: int, stride: int) -> list[tuple[int, int]]:
  out, start = [], 0
  while True:
    length = min(n_tokens - start, budget)
    out.append((start, length))
    if start + length >= n_tokens:
      return out
    start += min(length, stride)


def _is_max_context(windows, window, position) -> bool:
  """Whether `window` gives `position` the most context: min(left, right) + 0.01 x length."""
  def score(w):
    start, length = w
    if not start <= position < start + length:
      return -1.0
    return min(position - start, start + length - 1 - position) + 0.01 * length
  best = max(windows, key=score)
  return best == window


def _answer_tokens(ex: SquadExample, spans) -> Optional[tuple[int, int]]:
  """First and last context token of the first gold answer; None when unanswerable."""
  if ex.is_impossible or not ex.answers:
    return None
  lo = ex.answer_starts[0]
  hi = lo + len(ex.answers[0])
  inside = [t for t, (s, e) in enumerate(spans) if e > lo and s < hi]
  if not inside:
    raise ValueError(f"question {ex.qid}: answer {ex.answers[0]!r} covers no context token")
  return inside[0], inside[-1]


def postprocess(examples: Sequence[SquadExample], features: Sequence[SquadFeature],
                start_logits: np.ndarray, end_logits: np.ndarray, n_best_size: int = 20,
                max_answer_length: int = 30, version: str = "v1.1",
                null_threshold: float = 0.0) -> tuple[dict, dict]:
  """Answers from span logits [F, L] of every feature.

  A candidate span starts and ends in the context of one window, start <= end, is at most
  `max_answer_length` tokens, starts at a max-context token, and has both ends among that
  window's `n_best_size` highest logits; its score is start + end logit. The null score is the
  smallest [CLS] start + end over the example's windows.
  Returns (predictions qid -> text, null_diffs qid -> null score - best span score); for v2.0
  the prediction is "" when the difference exceeds `null_threshold`.
  """
  by_example = collections.defaultdict(list)
  for f_index, feat in enumerate(features):
    by_example[feat.example_index].append(f_index)
  predictions, null_diffs = {}, {}
  for ex_index, ex in enumerate(examples):
    best_score, best_text, null_score = -np.inf, "", np.inf
    for f_index in by_example.get(ex_index, []):
      feat = features[f_index]
      s_log, e_log = start_logits[f_index], end_logits[f_index]
      null_score = min(null_score, float(s_log[0] + e_log[0]))
      top_s = np.argsort(-s_log)[:n_best_size]
      top_e = np.argsort(-e_log)[:n_best_size]
      for s in top_s:
        if feat.offsets[s] is None or not feat.max_context[s]:
          continue
        for e in top_e:
          if feat.offsets[e] is None or e < s or e - s + 1 > max_answer_length:
            continue
          score = float(s_log[s] + e_log[e])
          if score > best_score:
            best_score = score
            best_text = ex.context[feat.offsets[s][0]:feat.offsets[e][1]]
    if not np.isfinite(null_score):
      raise ValueError(f"question {ex.qid} has no features")
    diff = null_score - best_score if np.isfinite(best_score) else float("inf")
    null_diffs[ex.qid] = diff
    if version == "v2.0" and diff > null_threshold:
      predictions[ex.qid] = ""
    else:
      predictions[ex.qid] = best_text
  return predictions, null_diffs
