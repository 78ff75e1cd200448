"""Linear probe of frozen encoder features: how useful a network's representations are for a
labelled task, measured in seconds, during pre-training or on any checkpoint.

The encoder (the discriminator's, or the MLM baseline's big network) reads every example of a
small labelled set once, without dropout; its last hidden states give two features per
example, the [CLS] state and the mean over the example's real tokens (both [N, H]). A
multinomial logistic regression is fit on the training examples' standardized features (full
batch, L2 penalty, a fixed number of L-BFGS steps: deterministic) and scored on the dev examples.
The same probe on a randomly initialised network of the same shape is the baseline that a useful
pre-training must beat: a random transformer's mean-pooled states are already a bag of random
word features, which a linear classifier uses well on sentiment. A second reference needs no
network: the same classifier on each example's bag of words (which vocabulary entries occur in
it), what the labels teach from word identity alone; a fine-tuned random-init model with a few
thousand labels scores about as well as it (README, "Does pre-training pay?"), so features that
beat it carry knowledge the labels do not.

`feature_cosine` is the mean cosine similarity of the mean-pooled features of different inputs:
near 1 when the network maps every input to nearly one vector (a collapsed encoder).

    probe = Probe.from_config(ProbeConfig(train_file="glue/SST-2/train.tsv",
                                          dev_file="glue/SST-2/dev.tsv"), tokenizer, model_config)
    probe(encoder_params)   # {"probe_cls_accuracy", "probe_mean_accuracy", "probe_feature_cosine"}
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from data_pipelines import glue
from electra_jax.floor import fs
from electra_jax.model.config import ModelConfig
from electra_jax.model.heads import ElectraModel
from electra_jax.model.init import init_on_dummy
from electra_jax.model.pretraining import split_pretraining_params

POOLINGS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """A linear probe on frozen features, run at every pre-training evaluation (off: no
  train_file).

  train_file / dev_file: tab-separated files with a header row (any path data_pipelines' fs
    reads), e.g. GLUE's SST-2/train.tsv and SST-2/dev.tsv; `text_column` (and, for sentence
    pairs, `text_pair_column`) holds the text, `label_column` the class; the classes are those
    of the training file (sorted), and a dev label outside them is an error naming its line.
  train_examples: the first N training rows fit the classifier; eval_examples: the first N dev
    rows score it (None: all).
  max_seq_length: tokens per example ([CLS] text [SEP] (text_pair [SEP]), truncated).
  l2: the penalty on the classifier's weights, added to the mean cross-entropy as
    l2 / 2 * ||W||^2 (features are standardized, so one value suits any network).
  steps: L-BFGS iterations of the fit.
  """

  train_file: Optional[str] = None
  dev_file: Optional[str] = None
  text_column: str = "sentence"
  text_pair_column: Optional[str] = None
  label_column: str = "label"
  train_examples: int = 2000
  eval_examples: Optional[int] = None
  max_seq_length: int = 64
  l2: float = 1e-2
  steps: int = 100

  def __post_init__(self):
    if (self.train_file is None) != (self.dev_file is None):
      raise ValueError("ProbeConfig needs both train_file and dev_file (or neither: no probe)")
    if self.train_examples < 2:
      raise ValueError(f"ProbeConfig.train_examples={self.train_examples} must be >= 2")
    if self.max_seq_length < 3:
      raise ValueError(f"ProbeConfig.max_seq_length={self.max_seq_length} must be >= 3")

  @property
  def enabled(self) -> bool:
    return self.train_file is not None


def read_labelled_tsv(config: ProbeConfig, path: str, limit: Optional[int]) -> list:
  """The first `limit` rows of a probe file as glue.TextExample (label: the class string)."""
  lines = fs.read_text(path, encoding="utf-8-sig").splitlines()
  header = lines[0].split("\t") if lines else []
  wanted = [c for c in (config.text_column, config.text_pair_column, config.label_column) if c]
  missing = [c for c in wanted if c not in header]
  if missing:
    raise ValueError(f"{path}:1: no column {missing} for the probe (header {header}); set "
                     "ProbeConfig.text_column / text_pair_column / label_column")
  col = {name: header.index(name) for name in wanted}
  examples = []
  for line_no, line in enumerate(lines[1:], start=2):
    if limit is not None and len(examples) >= limit:
      break
    row = line.split("\t")
    if len(row) != len(header):
      raise ValueError(f"{path}:{line_no}: {len(row)} tab-separated fields, the header has "
                       f"{len(header)}")
    pair = row[col[config.text_pair_column]] if config.text_pair_column else None
    examples.append(glue.TextExample(str(line_no), row[col[config.text_column]], pair,
                                     row[col[config.label_column]]))
  if not examples:
    raise ValueError(f"{path}: no rows for the probe")
  return examples


def read_split(config: ProbeConfig, path: str, limit: Optional[int], tokenizer,
               classes: Optional[Sequence[str]] = None):
  """(token arrays {input_ids, attention_mask, token_type_ids} [N, max_seq_length] int32,
  label ids [N] int32, the classes in id order) of the first `limit` rows of `path`; the
  classes are the file's own (sorted) unless given."""
  examples = read_labelled_tsv(config, path, limit)
  classes = tuple(classes) if classes is not None else tuple(sorted({e.label for e in examples}))
  index = {name: i for i, name in enumerate(classes)}
  for e in examples:
    if e.label not in index:
      raise ValueError(f"{path}:{e.guid}: label {e.label!r} is not among the training file's "
                       f"classes {list(classes)}")
  labels = np.array([index[e.label] for e in examples], np.int32)
  return glue.featurize(examples, tokenizer, config.max_seq_length), labels, classes


def encoder_params(params: dict, embedding_sharing: str) -> dict:
  """The encoder ("electra" tree) of the big network of joint pre-training params (the
  discriminator, or the MLM baseline's network), as host numpy arrays on every process."""
  _, big = split_pretraining_params(params, embedding_sharing)
  return jax.tree.map(_to_host, big["electra"])


def _to_host(x) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


@functools.partial(jax.jit, static_argnames=("model",))
def _pooled(model, params, input_ids, attention_mask, token_type_ids):
  h = model.apply(params, input_ids, attention_mask, token_type_ids, deterministic=True)
  h = h.astype(jnp.float32)
  mask = attention_mask.astype(jnp.float32)[..., None]
  mean = (h * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
  return h[:, 0], mean


def encoder_features(model_config: ModelConfig, encoder_params: dict, arrays: dict,
                     batch_size: int = 256) -> dict:
  """{"cls": [N, H], "mean": [N, H]} float32 numpy features of the encoder `encoder_params`
  (the {"embeddings", "encoder", ...} tree of an ElectraModel's "electra")."""
  model = ElectraModel(model_config.replace(hidden_dropout_prob=0.0,
                                            attention_probs_dropout_prob=0.0))
  params = {"params": {"electra": encoder_params}}
  n = len(arrays["input_ids"])
  parts = {"cls": [], "mean": []}
  for start in range(0, n, batch_size):
    # every batch padded to batch_size rows: one compiled shape
    batch = [np.zeros((batch_size,) + arrays[k].shape[1:], np.int32) for k in
             ("input_ids", "attention_mask", "token_type_ids")]
    rows = min(batch_size, n - start)
    for b, k in zip(batch, ("input_ids", "attention_mask", "token_type_ids")):
      b[:rows] = arrays[k][start:start + rows]
    cls, mean = _pooled(model, params, *batch)
    parts["cls"].append(np.asarray(cls)[:rows])
    parts["mean"].append(np.asarray(mean)[:rows])
  return {k: np.concatenate(v) for k, v in parts.items()}


def feature_cosine(features: np.ndarray) -> float:
  """Mean cosine similarity of the rows of `features` [N, H] over all pairs of distinct rows."""
  x = np.asarray(features, np.float64)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  s = x.sum(0)
  n = len(x)
  return float((s @ s - n) / (n * (n - 1)))


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, num_classes: int, l2: float, steps: int):
  """Weights [H+1, C] of an L2-penalised multinomial logistic regression (bias unpenalised)."""
  x1 = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)

  def loss(w):
    ce = optax.softmax_cross_entropy_with_integer_labels(x1 @ w, y).mean()
    return ce + 0.5 * l2 * jnp.sum(w[:-1] ** 2)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def body(carry, _):
    w, state = carry
    value, grad = value_and_grad(w, state=state)
    updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(w, updates), state), None

  w0 = jnp.zeros((x1.shape[1], num_classes), x.dtype)
  (w, _), _ = jax.lax.scan(body, (w0, solver.init(w0)), None, length=steps)
  return w


def bag_of_words(arrays: dict, vocabulary: np.ndarray) -> np.ndarray:
  """[N, len(vocabulary)] float32: 1 where the example's real tokens hold that vocabulary id."""
  column = np.full(int(max(vocabulary.max(), arrays["input_ids"].max())) + 1, -1, np.int64)
  column[vocabulary] = np.arange(len(vocabulary))
  out = np.zeros((len(arrays["input_ids"]), len(vocabulary)), np.float32)
  rows, positions = np.nonzero(arrays["attention_mask"])
  columns = column[arrays["input_ids"][rows, positions]]
  seen = columns >= 0
  out[rows[seen], columns[seen]] = 1.0
  return out


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, dev_x: np.ndarray,
                   dev_y: np.ndarray, num_classes: int, l2: float = 1e-2,
                   steps: int = 100) -> float:
  """Dev accuracy (fraction) of a logistic regression fit on standardized training features."""
  mu, sigma = train_x.mean(0), train_x.std(0) + 1e-6
  standard = lambda a: jnp.asarray((a - mu) / sigma, jnp.float32)
  w = np.asarray(_fit(standard(train_x), jnp.asarray(train_y), num_classes, l2, steps))
  dev = np.asarray(standard(dev_x))
  logits = dev @ w[:-1] + w[-1]
  return float((logits.argmax(1) == dev_y).mean())


@dataclasses.dataclass
class Probe:
  """A probe with its task's data tokenized once; call it on encoder params."""

  config: ProbeConfig
  model_config: ModelConfig
  train: dict
  train_labels: np.ndarray
  dev: dict
  dev_labels: np.ndarray
  num_classes: int

  @classmethod
  def from_config(cls, config: ProbeConfig, tokenizer, model_config: ModelConfig) -> "Probe":
    train, train_labels, classes = read_split(config, config.train_file,
                                              config.train_examples, tokenizer)
    if len(classes) < 2:
      raise ValueError(f"{config.train_file}: the probe needs two classes or more, found "
                       f"{list(classes)}")
    dev, dev_labels, _ = read_split(config, config.dev_file, config.eval_examples, tokenizer,
                                    classes)
    return cls(config, model_config, train, train_labels, dev, dev_labels, len(classes))

  def __call__(self, encoder_params: dict, prefix: str = "probe_") -> dict:
    """{prefix+"cls_accuracy", prefix+"mean_accuracy" (dev accuracy, fraction),
    prefix+"feature_cosine"} of the encoder `encoder_params`."""
    train = encoder_features(self.model_config, encoder_params, self.train)
    dev = encoder_features(self.model_config, encoder_params, self.dev)
    out = {f"{prefix}{pool}_accuracy": probe_accuracy(
        train[pool], self.train_labels, dev[pool], self.dev_labels, self.num_classes,
        self.config.l2, self.config.steps) for pool in POOLINGS}
    out[f"{prefix}feature_cosine"] = feature_cosine(dev["mean"])
    return out

  def random_baseline(self, seed: int = 0) -> dict:
    """The probe on a randomly initialised encoder of the same shape ("probe_random_*")."""
    model = ElectraModel(self.model_config)
    params = init_on_dummy(model, self.config.max_seq_length)(jax.random.key(seed))
    encoder = jax.tree.map(np.asarray, nn.meta.unbox(params)["electra"])
    return self(encoder, prefix="probe_random_")

  def bag_of_words_baseline(self) -> dict:
    """{"probe_bow_accuracy"}: the same classifier on bag-of-words features (bag_of_words over
    the ids the training examples use: no network, word identity only)."""
    train_ids = self.train["input_ids"][self.train["attention_mask"].astype(bool)]
    vocabulary = np.unique(train_ids)
    return {"probe_bow_accuracy": probe_accuracy(
        bag_of_words(self.train, vocabulary), self.train_labels,
        bag_of_words(self.dev, vocabulary), self.dev_labels, self.num_classes, self.config.l2,
        self.config.steps)}

