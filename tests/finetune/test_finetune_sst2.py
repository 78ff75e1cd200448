"""A tiny randomly initialised ELECTRA fine-tuned on a slice of real SST-2 (../shared/data)
with the BERT uncased WordPiece vocab beats the majority class on the full dev set."""

import dataclasses
import json

import pytest

from electra_jax.finetune import train as ft
from electra_jax.finetune.config import FINETUNE_LOG, FinetuneConfig

pytestmark = pytest.mark.slow


def test_tiny_sst2_beats_majority(shared_data, tmp_path):
  glue = shared_data / "glue"
  vocab = shared_data / "vocab" / "bert-uncased-vocab.txt"
  if not (glue / "SST-2" / "train.tsv").is_file() or not vocab.is_file():
    pytest.skip(f"SST-2 or the BERT vocab is missing under {shared_data}")
  cfg = FinetuneConfig(task="sst2", init="random", size="tiny", data_dir=str(glue),
                       tokenizer=f"wordpiece:{vocab}", max_train_examples=2000,
                       max_seq_length=32, num_epochs=4.0, learning_rate=1e-3,
                       layerwise_lr_decay=1.0, save_checkpoint=False,
                       log=dataclasses.replace(FINETUNE_LOG, progress_bar=False))
  results = ft.finetune_and_evaluate(cfg, str(tmp_path))
  dev = (glue / "SST-2" / "dev.tsv").read_text().splitlines()[1:]
  labels = [line.rsplit("\t", 1)[1] for line in dev]
  majority = 100 * max(labels.count("0"), labels.count("1")) / len(labels)
  assert results["dev_rows"] == {"dev": len(labels)} == {"dev": 872}
  acc = results["median"]["accuracy"]
  print(f"SST-2 dev accuracy {acc:.2f} vs majority {majority:.2f}")
  assert acc > majority + 5.0
  assert json.loads((tmp_path / "results.json").read_text())["median"]["accuracy"] == acc
