"""Fine-tuning test helpers shared by tests in several directories: a tiny WordPiece vocabulary
(fixture `vocab`), a synthetic SST-2 directory whose label is readable from one word, and a tiny
FinetuneConfig."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from electra_jax.finetune.config import FINETUNE_LOG, FinetuneConfig

WORDS = ("good great fine bad awful poor movie film plot the a is was very not what who "
         "where paris france capital city of big red dog ran . ? ,").split()
TINY = (("hidden_size", 32), ("embedding_size", 32), ("intermediate_size", 64),
        ("num_attention_heads", 2), ("num_hidden_layers", 2), ("max_position_embeddings", 64))


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
  return path


def sst2_dir(root: Path, n_train=96, n_dev=40, n_test=10) -> Path:
  rng = np.random.default_rng(0)
  d = root / "SST-2"
  d.mkdir(parents=True)

  def sentence(label):
    pos, neg = ["good", "great", "fine"], ["bad", "awful", "poor"]
    word = rng.choice(pos if label else neg)
    filler = list(rng.choice(["the", "movie", "film", "plot", "was", "very"], 4))
    filler.insert(int(rng.integers(0, 5)), word)
    return " ".join(filler)

  for name, n in (("train", n_train), ("dev", n_dev)):
    labels = rng.integers(0, 2, n)
    rows = ["sentence\tlabel"] + [f"{sentence(y)}\t{y}" for y in labels]
    (d / f"{name}.tsv").write_text("\n".join(rows) + "\n")
  rows = ["index\tsentence"] + [f"{i}\t{sentence(i % 2)}" for i in range(n_test)]
  (d / "test.tsv").write_text("\n".join(rows) + "\n")
  return root


def finetune_config(vocab, data_dir, **kw) -> FinetuneConfig:
  base = dict(task="sst2", init="random", data_dir=str(data_dir), tokenizer=f"wordpiece:{vocab}",
              size="tiny", model_overrides=TINY, max_seq_length=16, batch_size=16,
              eval_batch_size=16, num_epochs=4.0, learning_rate=3e-3, layerwise_lr_decay=1.0,
              log=dataclasses.replace(FINETUNE_LOG, progress_bar=False))
  base.update(kw)
  return FinetuneConfig(**base)
