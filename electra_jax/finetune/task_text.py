"""The text of a fine-tuning task's training split without its labels: in-domain pre-training
text (what a practitioner has for free beside a small labelled set).

    write_task_text(get_task("sst2"), config, "corpus/sst2.txt")

Every training example becomes one document of the corpus format that data_pipelines.corpora
reads (its text units on lines of their own, a blank line after each document): a sentence pair
is one document of two units, a tagged sentence its words joined by spaces, a SQuAD example its
context and question. Only the training split is read: dev and test text never reaches
pre-training.
"""

from __future__ import annotations

from electra_jax.finetune.config import FinetuneConfig
from electra_jax.finetune.kinds import KINDS
from electra_jax.finetune.tasks import Task
from electra_jax.floor import fs


def example_units(example) -> list[str]:
  """The text units of one example of any task kind (no label)."""
  words = getattr(example, "words", None)
  if words is not None:
    return [" ".join(words)]
  units = [getattr(example, name, None) for name in ("text_a", "text_b", "context", "question")]
  return [" ".join(u.split()) for u in units if isinstance(u, str) and u.strip()]


def write_task_text(task: Task, config: FinetuneConfig, path: str) -> int:
  """Writes the training examples' text to `path` (one document per example); returns the
  number of documents. ValueError when the training split holds no text."""
  examples = KINDS[task.kind].read(task, config, "train", None)
  documents = ["\n".join(units) for units in map(example_units, examples) if units]
  if not documents:
    raise ValueError(f"task {task.name}: the training split of {config.data_dir} holds no text")
  fs.write_atomically(path, "\n\n".join(documents) + "\n")
  return len(documents)
