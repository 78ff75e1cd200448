"""The quick-start pre-training data: the built-in smoke-test corpus, tokenized and sharded.

`ensure_default_pretraining_data(cache_dir)` builds, once, under
CACHE_DIR/builtin_py3XX_sp{vocab_size}/:
  corpus.txt            the standard library's docstrings (builtin_corpus), one unit a line,
                        a blank line after each source file
  spm.model, spm.vocab  a unigram SentencePiece tokenizer trained on corpus.txt
  data_len{seq_len}_packed/  8 shards (1 of them eval) of packed rows + manifest.json
                        (data_len{seq_len}/ with layout="unpacked": one example per row)
and returns that directory. Later calls find manifest.json and return at once;
a file lock makes concurrent callers on one machine wait for the first. Everything is
deterministic for a given Python, so every host that builds it gets the same data. It takes
well under a minute on 2 CPU cores. It is a smoke test: about 0.4M tokens of technical prose.
"""

import fcntl
import os
import sys

from data_pipelines import build_pretraining_data as builder
from data_pipelines import corpora, manifest as manifest_lib, text_io, train_tokenizer

NUM_SHARDS = 8
EVAL_SHARDS = 1


def _write_builtin_corpus(path):
  """Write the builtin corpus as text: one unit per line, a blank line after each document."""
  if os.path.isfile(path):
    return
  temp = f"{path}.tmp-{os.getpid()}"
  with open(temp, "w", encoding="utf-8") as f:
    for unit in corpora.load("builtin").iter_units([0], 1, text_io.InputStats()):
      f.write(f"{unit}\n")
  os.replace(temp, path)


def ensure_default_pretraining_data(cache_dir: str, seq_len: int = 128, vocab_size: int = 8000,
                                    layout: str = "packed") -> str:
  """Return a pre-training data dir built from the builtin corpus (built on the first call) with
  rows of `layout` ("packed" or "unpacked", build_pretraining_data)."""
  root = os.path.join(cache_dir, f"builtin_py{sys.version_info[0]}{sys.version_info[1]}_sp{vocab_size}")
  data_dir = os.path.join(root, f"data_len{seq_len}" + ("_packed" if layout == "packed" else ""))
  if os.path.isfile(os.path.join(data_dir, manifest_lib.MANIFEST_NAME)):
    return data_dir
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.isfile(os.path.join(data_dir, manifest_lib.MANIFEST_NAME)):
      return data_dir
    print(f"building the default smoke-test pre-training data in {data_dir}", file=sys.stderr)
    corpus_path = os.path.join(root, "corpus.txt")
    _write_builtin_corpus(corpus_path)
    model_path = os.path.join(root, "spm.model")
    if not os.path.isfile(model_path):
      try:
        train_tokenizer.train_sentencepiece(corpus_path, os.path.join(root, "spm"),
                                            vocab_size=vocab_size)
      except ValueError as err:
        raise ValueError(
            f"the built-in smoke-test corpus cannot serve a {vocab_size}-token vocabulary "
            f"({err}). Real-size models (small/base/large use the 30522-token BERT "
            "WordPiece vocabulary) need real data: build shards with "
            "python -m data_pipelines.build_pretraining_data and set "
            "DataConfig.data_dir, or lower ModelConfig.vocab_size") from None
    manifest = builder.build_pretraining_data(
        corpus_path, f"sentencepiece:{model_path}", data_dir, seq_len=seq_len,
        num_shards=NUM_SHARDS, eval_shards=EVAL_SHARDS, num_workers=1, layout=layout,
    )
    for line in builder.format_summary(manifest):
      print(line, file=sys.stderr)
  return data_dir
