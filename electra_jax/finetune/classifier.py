"""Score text from Python with a fine-tuned model: two lines in a notebook.

    clf = electra_jax.load_classifier("WORKDIR")      # or WORKDIR/seed_S/final
    clf(["a great film", "dull"])                     # [{"label": "pos", "score": 0.93}, ...]
    clf(["a man sleeps"], text_pairs=["a person rests"])   # sentence pairs
    clf.logits(texts)                                 # np.ndarray [N, C] ([N] regression)

Rows are scored `batch_size` at a time by the fine-tuning predict step (one compilation; the last
batch padded) after the tokenizer's batch call at the model's fine-tuning max sequence length
(longer texts are truncated, pairs longest-first). Results, as transformers' text-classification
pipeline gives them with top_k=1: classification {"label", "score"} (softmax probability) plus
"scores" (every class name -> probability); multi-label {"labels": the classes whose sigmoid
exceeds 0.5, "scores"}; regression {"score": the value}. Class names are the ones the export's
id2label carries (own data: the training split's labels; GLUE: the datasets' class names).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from data_pipelines.glue import TextExample
from electra_jax.finetune.kinds import KINDS
from electra_jax.finetune.predict import (Predictor, finetune_record, load_predictor,
                                          resolve_model_dir)


class Classifier:
  """A fine-tuned classification / regression / multi-label model with its tokenizer."""

  def __init__(self, predictor: Predictor, label_names: Sequence[str]):
    self.predictor = predictor
    self.kind = KINDS[predictor.task.kind]
    self.label_names = tuple(label_names)
    self.tokenizer = predictor.tokenizer

  def logits(self, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None
             ) -> np.ndarray:
    """Raw outputs: logits [N, C] float32 (regression: values [N])."""
    if isinstance(texts, str):
      raise TypeError("pass a list of texts; wrap one text as [text]")
    pairs = [None] * len(texts) if text_pairs is None else list(text_pairs)
    if len(pairs) != len(texts):
      raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
    examples = [TextExample(str(i), a, b, None) for i, (a, b) in enumerate(zip(texts, pairs))]
    return self.predictor.outputs(examples, progress=False)

  def __call__(self, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None
               ) -> list[dict]:
    """One dict per text (see the module docstring)."""
    return self.kind.pipeline_results(self.label_names, self.logits(texts, text_pairs))


def load_classifier(path: str, batch_size: int = 32,
                    max_seq_length: Optional[int] = None) -> Classifier:
  """The Classifier of a fine-tuned model directory or a fine-tuning WORKDIR (its best seed).

  max_seq_length: default the one the model was fine-tuned with. ValueError for a span or
  tagging model (export those to transformers: electra-convert).
  """
  model_dir, _ = resolve_model_dir(path)
  _, record = finetune_record(model_dir)
  predictor = load_predictor(model_dir, batch_size, max_seq_length)
  return Classifier(predictor, record.get("label_names") or record.get("labels") or ())
