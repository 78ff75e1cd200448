"""The linear probe of frozen encoder features (electra_jax.pretrain.probe) and its place in
pre-training evaluation."""

import numpy as np
import pytest

from data_pipelines import tokenizers
from electra_jax.model.config import ModelConfig
from electra_jax.pretrain import probe as probe_lib
from electra_jax.pretrain.probe import Probe, ProbeConfig


def test_feature_cosine_is_the_mean_over_distinct_pairs():
  x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
  pairs = [(0, 1), (0, 2), (1, 2)]
  cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)
  want = np.mean([cos(x[i], x[j]) for i, j in pairs])
  assert probe_lib.feature_cosine(x) == pytest.approx(want, abs=1e-12)
  assert probe_lib.feature_cosine(np.ones((5, 3))) == pytest.approx(1.0)


def test_probe_accuracy_separates_separable_classes_and_not_noise():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(3, 16)) * 3
  y = rng.integers(0, 3, 600)
  x = centers[y] + rng.normal(size=(600, 16))
  assert probe_lib.probe_accuracy(x[:400], y[:400], x[400:], y[400:], 3) > 0.95
  noise = rng.normal(size=(600, 16))
  assert probe_lib.probe_accuracy(noise[:400], y[:400], noise[400:], y[400:], 3) < 0.5


def _sst_like(directory, n_train=80, n_dev=40):
  """A tiny SST-2 directory whose label is whether the sentence holds 'good' or 'bad'."""
  rng = np.random.default_rng(1)
  filler = "the a film movie story was is quite very and it".split()
  d = directory / "SST-2"
  d.mkdir(parents=True)
  for split, n in (("train", n_train), ("dev", n_dev)):
    lines = ["sentence\tlabel"]
    for i in range(n):
      label = i % 2
      words = list(rng.choice(filler, 6)) + [("good" if label else "bad")]
      rng.shuffle(words)
      lines.append(" ".join(words) + f"\t{label}")
    (d / f"{split}.tsv").write_text("\n".join(lines) + "\n")
  return directory


@pytest.fixture
def word_tokenizer(tmp_path):
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
      set("the a film movie story was is quite very and it good bad".split()))
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(vocab) + "\n")
  return tokenizers.load(f"wordpiece:{path}")


def _model_config(tokenizer):
  return ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=1, intermediate_size=32, embedding_size=16,
                     max_position_embeddings=32)


def _probe_config(data, **kw):
  return ProbeConfig(train_file=str(data / "SST-2" / "train.tsv"),
                     dev_file=str(data / "SST-2" / "dev.tsv"), max_seq_length=16, **kw)


def test_probe_reads_the_task_and_reports_both_poolings(tmp_path, word_tokenizer):
  data = _sst_like(tmp_path / "glue")
  probe = Probe.from_config(_probe_config(data), word_tokenizer, _model_config(word_tokenizer))
  assert probe.train["input_ids"].shape == (80, 16) and probe.num_classes == 2
  assert probe.dev["input_ids"].shape == (40, 16)
  got = probe.random_baseline(seed=0)
  assert set(got) == {"probe_random_cls_accuracy", "probe_random_mean_accuracy",
                      "probe_random_feature_cosine"}
  # one word decides the label: a random network's mean-pooled features carry it
  assert got["probe_random_mean_accuracy"] >= 0.9
  assert 0 < got["probe_random_feature_cosine"] < 1


def test_bag_of_words_marks_the_real_tokens_of_each_row_in_vocabulary_order():
  arrays = {"input_ids": np.array([[2, 7, 9, 7, 3, 0], [2, 11, 3, 0, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])}
  got = probe_lib.bag_of_words(arrays, np.array([0, 3, 7, 9]))
  # padding (id 0 under mask 0) is not a word; 11 is outside the vocabulary; 7 twice is one
  np.testing.assert_array_equal(got, [[0, 1, 1, 1], [0, 1, 0, 0]])


def test_bag_of_words_baseline_finds_the_deciding_word_and_not_noise(tmp_path, word_tokenizer):
  data = _sst_like(tmp_path / "glue")
  probe = Probe.from_config(_probe_config(data), word_tokenizer, _model_config(word_tokenizer))
  assert probe.bag_of_words_baseline()["probe_bow_accuracy"] >= 0.95
  # labels independent of the words: no better than chance
  shuffled = np.random.default_rng(0).permutation(probe.train_labels)
  noise = Probe(probe.config, probe.model_config, probe.train, shuffled, probe.dev,
                probe.dev_labels, probe.num_classes)
  assert noise.bag_of_words_baseline()["probe_bow_accuracy"] <= 0.75


def test_probe_config_and_file_errors(tmp_path, word_tokenizer):
  with pytest.raises(ValueError, match="needs both train_file and dev_file"):
    ProbeConfig(train_file="x.tsv")
  data = _sst_like(tmp_path / "glue")
  with pytest.raises(ValueError, match=r"train.tsv:1: no column \['text'\]"):
    Probe.from_config(_probe_config(data, text_column="text"), word_tokenizer,
                      _model_config(word_tokenizer))
  dev = data / "SST-2" / "dev.tsv"
  dev.write_text(dev.read_text() + "the film good\t7\n")
  with pytest.raises(ValueError, match=r"dev.tsv:42: label '7' is not among the training"):
    Probe.from_config(_probe_config(data), word_tokenizer, _model_config(word_tokenizer))
