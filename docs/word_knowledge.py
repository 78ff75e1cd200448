"""How much can unlabelled text add to a few-label SST-2 classifier through word knowledge alone?

README, "Does pre-training pay?": a fine-tuned random-init model with 2,000 SST-2 labels scores
about what a bag-of-words classifier of the same labels scores, so a pre-trained init must bring
knowledge of the words the labels never showed. This script measures how much of that the
distributional statistics of a corpus hold, with a classical method that needs no training run:
positive-PMI word co-occurrence counts (window +-WINDOW words) reduced by SVD to 128 dimensions
(word vectors); a sentence is the mean of its words' vectors. Each feature set is scored with the
probe's classifier (electra_jax.pretrain.probe.probe_accuracy: standardized features, L2 0.01,
100 L-BFGS steps; nothing tuned on dev) on SST-2 dev, trained on the N examples the CPU protocol
samples (FinetuneConfig.train_sample_seed = 0):

  bag of words            binary word-presence features of the training words
  word vectors            the mean word vector (128 features)
  bag of words + vectors  both

    python docs/word_knowledge.py --glue_dir=../shared/data/glue --labels=2000 \
        --corpus=../shared/data/wikitext103/wiki.train.tokens.prefix [--corpus=FILE ...] \
        [--task_text] [--window=5]

--task_text adds SST-2's training sentences without labels to the corpus (the protocol's
in-domain text). Lines starting with "<" (WikiExtractor's <doc> tags) are skipped. Words: lower-
cased runs of letters, digits and apostrophes, and single punctuation marks; the vocabulary is
the corpus's 30,000 most frequent words seen 3 times or more.
"""

from __future__ import annotations

import argparse
import collections
import re

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from electra_jax.pretrain.probe import ProbeConfig, probe_accuracy, read_labelled_tsv

WORD = re.compile(r"[a-z0-9']+|[^a-z0-9'\s]")


def words(text: str) -> list:
  return WORD.findall(text.lower())


def read_sst2(glue_dir: str, split: str) -> tuple:
  """(sentences, labels [N] int) of GLUE_DIR/SST-2/SPLIT.tsv, read as the probe reads it."""
  files = ProbeConfig(train_file=f"{glue_dir}/SST-2/train.tsv",
                      dev_file=f"{glue_dir}/SST-2/dev.tsv")
  examples = read_labelled_tsv(files, getattr(files, f"{split}_file"), None)
  return [e.text_a for e in examples], np.array([int(e.label) for e in examples])


def word_vectors(lines: list, window: int, dims: int = 128, max_vocab: int = 30000) -> tuple:
  """({word: row}, [V, dims] unit-norm PPMI-SVD vectors) of the words of `lines`."""
  tokens = [words(line) for line in lines]
  counts = collections.Counter(w for t in tokens for w in t)
  vocab = [w for w, c in counts.most_common(max_vocab) if c >= 3]
  index = {w: i for i, w in enumerate(vocab)}
  ids = np.concatenate([np.array([index.get(w, -1) for w in t] + [-1] * window, np.int64)
                        for t in tokens])  # -1 padding: no pair crosses a line
  v = len(vocab)
  cooc = sp.csr_matrix((v, v), dtype=np.float64)
  for d in range(1, window + 1):
    a, b = ids[:-d], ids[d:]
    ok = (a >= 0) & (b >= 0)
    pairs = sp.csr_matrix((np.ones(ok.sum()), (a[ok], b[ok])), shape=(v, v))
    cooc = cooc + pairs + pairs.T
  cooc = cooc.tocoo()
  total = cooc.data.sum()
  rows = np.bincount(cooc.row, cooc.data, v)
  cols = np.bincount(cooc.col, cooc.data, v) ** 0.75  # context distribution smoothing
  cols = cols / cols.sum() * total
  pmi = np.log(cooc.data * total / (rows[cooc.row] * cols[cooc.col]))
  keep = pmi > 0
  ppmi = sp.csr_matrix((pmi[keep], (cooc.row[keep], cooc.col[keep])), shape=(v, v))
  u, s, _ = svds(ppmi, k=dims, v0=np.ones(v) / np.sqrt(v))
  vectors = u * np.sqrt(s)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
  return index, vectors


def mean_vectors(sentences: list, index: dict, vectors: np.ndarray) -> np.ndarray:
  out = np.zeros((len(sentences), vectors.shape[1]), np.float32)
  for i, sentence in enumerate(sentences):
    rows = [index[w] for w in words(sentence) if w in index]
    if rows:
      out[i] = vectors[rows].mean(0)
  return out


def bag_of_words(sentences: list, vocab: dict) -> np.ndarray:
  out = np.zeros((len(sentences), len(vocab)), np.float32)
  for i, sentence in enumerate(sentences):
    out[i, [vocab[w] for w in set(words(sentence)) if w in vocab]] = 1.0
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--glue_dir", required=True)
  p.add_argument("--labels", type=int, default=2000)
  p.add_argument("--corpus", action="append", default=[])
  p.add_argument("--task_text", action="store_true")
  p.add_argument("--window", type=int, default=5)
  args = p.parse_args(argv)
  train_x, train_y = read_sst2(args.glue_dir, "train")
  dev_x, dev_y = read_sst2(args.glue_dir, "dev")
  keep = np.sort(np.random.default_rng(0).choice(len(train_x), args.labels, replace=False))
  x, y = [train_x[i] for i in keep], train_y[keep]
  score = lambda a, b: 100 * probe_accuracy(a, y, b, dev_y, 2)
  vocab = {w: i for i, w in enumerate(sorted({w for s in x for w in words(s)}))}
  bow, bow_dev = bag_of_words(x, vocab), bag_of_words(dev_x, vocab)
  print(f"{args.labels} labels; bag of words: {score(bow, bow_dev):.2f}")
  if not args.corpus and not args.task_text:
    return
  lines = [l for f in args.corpus for l in open(f, encoding="utf-8", errors="ignore")
           if l.strip() and not l.startswith("<")]
  lines += train_x if args.task_text else []
  index, vectors = word_vectors(lines, args.window)
  vec, vec_dev = mean_vectors(x, index, vectors), mean_vectors(dev_x, index, vectors)
  n_words = sum(len(words(l)) for l in lines)
  print(f"corpus {n_words / 1e6:.2f}M words, {len(index)} word vectors (window {args.window}); "
        f"word vectors: {score(vec, vec_dev):.2f}; bag of words + vectors: "
        f"{score(np.hstack([bow, vec]), np.hstack([bow_dev, vec_dev])):.2f}")


if __name__ == "__main__":
  main()
