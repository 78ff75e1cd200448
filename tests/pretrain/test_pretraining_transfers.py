"""Pre-training pays downstream, in a minute: the probe of a short ELECTRA run beats the same
probe on a random network of the same shape, and does not when the learning rate is 0.

The corpus has two classes of words that never appear together: every sentence holds a marker
word ("north" or "south") and words of that marker's class only. Nothing but co-occurrence tells
the classes apart. The probe task labels a sentence of filler words and one class word with the
word's class; the probe trains on half of each class's words and is scored on sentences whose
class word it never saw with a label. A random network's features of an unseen word carry no
class (the probe is at chance); a network whose embeddings learned the co-occurrence carries it
over. This is the transfer that pre-training is for, in miniature.
"""

import numpy as np
import pytest

from data_pipelines import tokenizers
from data_pipelines.build_pretraining_data import build_pretraining_data
from electra_jax.pretrain.config import resolve_config
from electra_jax.pretrain.train import train_and_evaluate
from tests.train_testlib import read_jsonl

CLASS_WORDS = 24  # per class; the probe trains on the first half, scores on the second
FILLER = [f"f{i}" for i in range(16)]
VOCAB = 5 + 2 * CLASS_WORDS + len(FILLER) + 2  # specials, class words, filler, markers
CLASSES = {"north": [f"n{i}" for i in range(CLASS_WORDS)],
           "south": [f"s{i}" for i in range(CLASS_WORDS)]}


def _write_data(root):
  """(shard directory, probe train file, probe dev file) under `root`."""
  rng = np.random.default_rng(0)
  vocab = root / "vocab.txt"
  words = [w for ws in CLASSES.values() for w in ws] + FILLER + list(CLASSES)
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
  docs = []
  for _ in range(3000):
    marker = rng.choice(list(CLASSES))
    sentence = [marker] + list(rng.choice(CLASSES[marker], 4)) + list(rng.choice(FILLER, 3))
    rng.shuffle(sentence)
    docs.append(" ".join(sentence))
  (root / "corpus.txt").write_text("\n\n".join(docs) + "\n")
  shards = root / "shards"
  build_pretraining_data(str(root / "corpus.txt"), tokenizers.load(f"wordpiece:{vocab}"),
                         str(shards), seq_len=32, num_shards=2, eval_shards=1, progress=False)
  half = CLASS_WORDS // 2
  for split, words in (("train", slice(0, half)), ("dev", slice(half, None))):
    rows = ["sentence\tlabel"]
    for i in range(200):
      label = i % 2
      word = rng.choice(list(CLASSES.values())[label][words])
      sentence = list(rng.choice(FILLER, 4)) + [word]
      rng.shuffle(sentence)
      rows.append(f"{' '.join(sentence)}\t{label}")
    (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")
  return shards, root / "train.tsv", root / "dev.tsv"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return _write_data(tmp_path_factory.mktemp("transfer"))


def _run(workdir, data, learning_rate):
  shards, train, dev = data
  config = resolve_config(None, gin_bindings=[
      "ModelConfig.size = 'tiny'", f"ModelConfig.vocab_size = {VOCAB}",
      "ModelConfig.hidden_dropout_prob = 0.0", "ModelConfig.attention_probs_dropout_prob = 0.0",
      f"OptimizerConfig.learning_rate = {learning_rate}", "OptimizerConfig.warmup_steps = 20",
      "OptimizerConfig.total_steps = 300", f"DataConfig.data_dir = '{shards}'",
      "DataConfig.seq_len = 32", "DataConfig.global_batch_size = 16",
      "DataConfig.eval_every = 300", "DataConfig.eval_batches = 2",
      "CheckpointConfig.save_every = 0", "CheckpointConfig.async_save = False",
      "LogConfig.log_every = 50", "LogConfig.tensorboard = False",
      "LogConfig.progress_bar = False", "LogConfig.curves = False",
      f"ProbeConfig.train_file = '{train}'", f"ProbeConfig.dev_file = '{dev}'",
      "ProbeConfig.max_seq_length = 8"])
  train_and_evaluate(config, str(workdir))
  (record,) = read_jsonl(workdir / "eval_metrics.jsonl")
  return record


def test_electra_features_transfer_to_unseen_words(tmp_path, data):
  got = _run(tmp_path / "lr", data, 3e-3)
  # The default suite's guard of learning itself: both losses below their context-free priors.
  # measured at step 300: disc_loss 0.290 against the prior 0.382, AUC 0.822; gen_loss 3.41
  # against the unigram 3.99
  assert got["eval_disc_loss"] <= 0.9 * got["eval_disc_prior_loss"], got
  assert got["eval_disc_auc"] >= 0.7, got
  assert got["eval_gen_loss"] <= 0.95 * got["eval_unigram_loss"], got
  # measured: pre-trained 1.00, random network 0.52 (mean-pooled); a bag of words cannot score
  # a word it never saw labelled
  assert got["eval_probe_random_mean_accuracy"] < 0.65
  assert got["eval_probe_bow_accuracy"] < 0.65, got
  assert got["eval_probe_mean_accuracy"] >= got["eval_probe_random_mean_accuracy"] + 0.2


@pytest.mark.slow
def test_no_transfer_without_learning(tmp_path, data):
  got = _run(tmp_path / "lr0", data, 0.0)
  assert got["eval_probe_mean_accuracy"] < got["eval_probe_random_mean_accuracy"] + 0.1
