"""Throughput of the data pipeline, each against a peer measured in the same run.

  python -m data_pipelines.benchmark [--corpus SPEC] [--vocab PATH] [--num_workers 2]

Prints
  tokenizer: our WordPiece `encode` vs transformers' BertTokenizerFast batch encoding of the
             same lines (tokens/s and the ratio; same ids checked);
  builder:   corpus tokens/s per worker (tokenize + pack + serialize + write; packed rows);
  reader:    rows/s from PretrainingData.iterate at global batch 128 x seq_len 128, to
             compare with the rows/s an ELECTRA train step consumes on the same machine.
Defaults use ../shared/data (BERT uncased vocab, the pre-training corpus) when it is present.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from data_pipelines import build_pretraining_data as builder
from data_pipelines import corpora, pretraining_reader, text_io, tokenizers
from data_pipelines import manifest as manifest_lib

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _best_rate(fn, count, repeats):
  """Best of `repeats` timings of fn(): returns count / seconds."""
  best = float("inf")
  for _ in range(repeats):
    started = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - started)
  return count / best


def bench_tokenizer(lines, vocab, repeats=3, batch=1000):
  from transformers import BertTokenizerFast

  ours = tokenizers.load(f"wordpiece:{vocab}")
  theirs = BertTokenizerFast(vocab)
  chunks = [lines[i : i + batch] for i in range(0, len(lines), batch)]
  ours_ids = [ids for chunk in chunks for ids in ours.encode(chunk)]
  theirs_ids = [ids for chunk in chunks for ids in theirs(chunk, add_special_tokens=False)["input_ids"]]
  if ours_ids != theirs_ids:
    raise AssertionError("WordPiece ids differ from BertTokenizerFast")
  n_tokens = sum(map(len, ours_ids))
  ours_rate = _best_rate(lambda: [ours.encode(c) for c in chunks], n_tokens, repeats)
  theirs_rate = _best_rate(lambda: [theirs(c, add_special_tokens=False) for c in chunks], n_tokens, repeats)
  print(f"tokenizer: {len(lines)} lines, {n_tokens} tokens, batches of {batch} lines, best of {repeats}")
  print(f"tokenizer: ours {ours_rate:,.0f} tokens/s  BertTokenizerFast {theirs_rate:,.0f} tokens/s  "
        f"ratio {ours_rate / theirs_rate:.2f}x (ids identical)")


def bench_builder(corpus, tokenizer, output, num_workers, num_shards):
  manifest = builder.build_pretraining_data(
      corpus, tokenizer, output, seq_len=128, num_shards=num_shards, num_workers=num_workers, progress=False
  )
  summary = manifest["build"]["summary"]
  per_worker = summary["packing"]["tokens"] / summary["worker_seconds"]
  print(f"builder: {summary['packing']['tokens']} corpus tokens -> {summary['examples']} examples in "
        f"{summary['rows']} rows ({manifest_lib.layout_of(manifest)}, real-token fraction "
        f"{summary['real_token_fraction']:.3f}) in {num_shards} shards; {per_worker:,.0f} tokens/s per worker; "
        f"wall {summary['wall_seconds']:.1f}s "
        f"with {num_workers} worker(s) (wall includes process start and TensorFlow import)")
  return output


def bench_reader(data_dir, steps, batch=128):
  reader = pretraining_reader.PretrainingData(data_dir, global_batch_size=batch, seed=0, process_index=0,
                                              process_count=1)
  stream = reader.iterate(0)
  next(stream)  # TensorFlow start-up and the first window
  started = time.perf_counter()
  for _ in range(steps):
    next(stream)
  rate = steps * batch / (time.perf_counter() - started)
  print(f"reader: {rate:,.0f} rows/s ({rate * 128:,.0f} tokens/s) over {steps} batches of {batch} x "
        f"{reader.seq_len}, {reader.num_examples} rows per epoch, {steps * batch / reader.num_examples:.1f} epochs")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  default_corpus = str(SHARED / "pretrain_corpus") if SHARED.is_dir() else "builtin"
  parser.add_argument("--corpus", default=default_corpus)
  parser.add_argument("--vocab", default=str(SHARED / "vocab" / "bert-uncased-vocab.txt"))
  parser.add_argument("--num_workers", type=int, default=2)
  parser.add_argument("--num_shards", type=int, default=8)
  parser.add_argument("--reader_steps", type=int, default=500)
  parser.add_argument("--output", default=None, help="shard directory (default: a temp dir)")
  args = parser.parse_args(argv)
  if not os.path.isfile(args.vocab):
    raise FileNotFoundError(f"vocab not found: {args.vocab} (pass --vocab)")
  stats = text_io.InputStats()
  lines = [u for u in corpora.load(args.corpus).iter_units([0], 1, stats) if u]
  bench_tokenizer(lines, args.vocab)
  with tempfile.TemporaryDirectory() as temp:
    output = args.output or os.path.join(temp, "shards")
    bench_builder(args.corpus, f"wordpiece:{args.vocab}", output, args.num_workers, args.num_shards)
    bench_reader(output, args.reader_steps)


if __name__ == "__main__":
  main()
