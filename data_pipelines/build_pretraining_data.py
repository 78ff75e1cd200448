"""Build tokenized pre-training shards from a text corpus.

  python -m data_pipelines.build_pretraining_data --corpus SPEC --tokenizer SPEC \
      --seq_len 128 --output DIR --num_shards 64 --num_workers 4 [--eval_shards 1] \
      [--layout unpacked]

Shard i is the packing (see packing.py) of `pieces_per_shard` corpus parts i, i + N, i + 2N, ...
of N x pieces_per_shard (corpora.py) into examples and, with the default layout "packed", of
those examples into rows of seq_len (several whole examples per row; layout "unpacked": one
example per row, the official format; shard_format.py). So every shard mixes material from
across the corpus and can be built on its own: workers build whole shards in parallel, each
shard is written to a temp name and renamed when complete, then a `.stats.json` sidecar marks it
done, and a re-run skips shards whose sidecar is present. The shard contents depend only on
(corpus, tokenizer, seq_len, num_shards, pieces_per_shard, seed, layout), never on num_workers.
The last `eval_shards` shards form the eval split. `manifest.json` is written last; it records
each shard's size in bytes, which the reader checks when it opens the shards. The tokenizer is
saved beside the shards (OUTPUT/tokenizer, `tokenizers.Tokenizer.save`), so that they can move
without the vocabulary file they were made with, and training runs keep it.

Memory is bounded whatever the line lengths: the corpus readers cut lines longer than
text_io.CHUNK_BYTES into pieces, and units go to the tokenizer in batches of at most
ENCODE_BATCH_UNITS units and ENCODE_BATCH_CHARS characters (one piece may pass the latter).
"""

import argparse
import json
import multiprocessing
import os
import random
import sys
import time

from data_pipelines import corpora, manifest as manifest_lib, packing, shard_format, text_io, tokenizers
from electra_jax.floor import cli

ENCODE_BATCH_UNITS = 512
ENCODE_BATCH_CHARS = 1 << 20
BUILD_KEY_FIELDS = ("format", "corpus", "tokenizer_fingerprint", "seq_len", "num_shards", "pieces_per_shard", "seed",
                    "layout")
UNRECORDED = {"layout": "unpacked"}  # the build key of shards built before the field existed


def _sidecar(path):
  return path + ".stats.json"


def _packed_examples(corpus, tokenizer, parts, num_parts, input_stats, packer):
  """Yield (input_ids, segment_ids) examples of the given corpus parts, in corpus order."""
  pending, chars = [], 0

  def flush():
    texts = [unit for unit in pending if unit]
    encoded = iter(tokenizer.encode(texts))
    for unit in pending:
      yield from packer.add(next(encoded)) if unit else packer.end_document()
    pending.clear()

  for unit in corpus.iter_units(parts, num_parts, input_stats):
    pending.append(unit)
    chars += len(unit)
    if len(pending) >= ENCODE_BATCH_UNITS or chars >= ENCODE_BATCH_CHARS:
      yield from flush()
      chars = 0
  yield from flush()
  yield from packer.end_document()


def _packed_rows(examples, seq_len):
  """Rows (lists of examples) of packing.RowPacker over the (input_ids, segment_ids) examples."""
  rows = packing.RowPacker(seq_len)
  for example in examples:
    yield from rows.add(example, len(example[0]))
  yield from rows.finish()


def build_shard(task):
  """Build one shard (a worker's job). `task` is a dict of plain values; returns its stats dict."""
  from electra_jax.floor.tf_runtime import tensorflow

  tf = tensorflow()
  started = time.perf_counter()
  corpus = corpora.load(task["corpus"])
  tokenizer = tokenizers.load(task["tokenizer"])
  index, num_shards, pieces = task["index"], task["build_key"]["num_shards"], task["build_key"]["pieces_per_shard"]
  seq_len = task["build_key"]["seq_len"]
  rng = random.Random(f"{task['build_key']['seed']}/{index}")
  input_stats = text_io.InputStats()
  packer = packing.ExamplePacker(seq_len, tokenizer.cls_id, tokenizer.sep_id, rng)
  parts = [index + k * num_shards for k in range(pieces)]
  examples = _packed_examples(corpus, tokenizer, parts, num_shards * pieces, input_stats, packer)
  if task["build_key"]["layout"] == "packed":
    records = (shard_format.serialize_packed_row(tf, row, seq_len, tokenizer.pad_id)
               for row in _packed_rows(examples, seq_len))
  else:
    records = (shard_format.serialize_example(tf, ids, segments, seq_len, tokenizer.pad_id)
               for ids, segments in examples)
  path = os.path.join(task["output_dir"], shard_format.shard_name(index, num_shards))
  count = shard_format.write_atomically(tf, path, records)
  stats = {
      "build_key": task["build_key"],
      "file": os.path.basename(path),
      "rows": count,
      "examples": packer.stats.examples,
      "bytes": os.path.getsize(path),
      "tokens": packer.stats.tokens + 3 * packer.stats.examples - packer.stats.single_segment_examples,
      "seconds": time.perf_counter() - started,
      "input": input_stats.as_dict(),
      "packing": packer.stats.as_dict(),
  }
  manifest_lib.write_json_atomically(_sidecar(path), stats)
  return stats


def _init_worker():
  os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _finished_shard(path, build_key):
  """The stats of an already built shard, None if it must be built; error if built differently."""
  sidecar = _sidecar(path)
  if not (os.path.isfile(sidecar) and os.path.isfile(path)):
    return None
  with open(sidecar, encoding="utf-8") as f:
    stats = json.load(f)
  existing = {k: stats["build_key"].get(k, UNRECORDED.get(k)) for k in BUILD_KEY_FIELDS}
  differing = [k for k in BUILD_KEY_FIELDS if existing[k] != build_key[k]]
  if differing:
    details = ", ".join(f"{k}: existing {existing[k]!r} vs requested {build_key[k]!r}" for k in differing)
    raise ValueError(f"{path} was built with different settings ({details}); use a new --output directory")
  return stats


def _eval_count(num_shards, eval_shards, eval_fraction):
  if eval_fraction is not None:
    if not 0 <= eval_fraction < 1:
      raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    eval_shards = max(1, round(eval_fraction * num_shards)) if eval_fraction > 0 else 0
  if not 0 <= eval_shards < num_shards:
    raise ValueError(f"eval_shards={eval_shards} must leave at least one of the {num_shards} shards for training")
  return eval_shards


def _summary(all_stats, skipped, seconds, seq_len):
  input_total, packing_total = text_io.InputStats(), packing.PackingStats()
  for stats in all_stats:
    input_total.add(text_io.InputStats(**stats["input"]))
    packing_total.add(packing.PackingStats(**stats["packing"]))
  rows, tokens = sum(manifest_lib.shard_rows(s) for s in all_stats), sum(s["tokens"] for s in all_stats)
  return {
      "shards_built": len(all_stats) - skipped,
      "shards_skipped_already_built": skipped,
      "rows": rows,
      "examples": sum(s["examples"] for s in all_stats),
      "tokens": tokens,
      "real_token_fraction": round(tokens / (rows * seq_len), 6) if rows else 0.0,
      "wall_seconds": round(seconds, 3),
      "worker_seconds": round(sum(s["seconds"] for s in all_stats), 3),
      "input": input_total.as_dict(),
      "packing": packing_total.as_dict(),
  }


def build_pretraining_data(
    corpus,
    tokenizer,
    output_dir,
    seq_len=128,
    num_shards=16,
    num_workers=1,
    eval_shards=0,
    eval_fraction=None,
    seed=0,
    pieces_per_shard=16,
    progress=True,
    layout="packed",
):
  """Build shards + manifest.json in `output_dir`; returns the manifest dict.

  Args:
    corpus: a corpus spec (corpora.load) or a corpora.Corpus.
    tokenizer: a tokenizer spec (tokenizers.load) or a tokenizers.Tokenizer.
    seq_len: tokens per example, [CLS]/[SEP] included.
    num_shards: output TFRecord files; eval_shards (or eval_fraction of them) go to eval.
    num_workers: processes building shards in parallel (1 = in this process).
    seed: packing randomness (single-segment and short examples), per shard.
    pieces_per_shard: corpus parts interleaved into each shard.
    layout: "packed" (several whole examples per row, each attending only to itself in training;
      no compute is spent on padding) or "unpacked" (one example per row, the official format
      that any ELECTRA/BERT reader takes); see shard_format.py.
  """
  corpus = corpora.load(corpus) if isinstance(corpus, str) else corpus
  tokenizer = tokenizers.load(tokenizer) if isinstance(tokenizer, str) else tokenizer
  if num_shards < 1 or num_workers < 1 or pieces_per_shard < 1:
    raise ValueError(
        f"num_shards ({num_shards}), num_workers ({num_workers}) and pieces_per_shard ({pieces_per_shard}) must be >= 1"
    )
  if seq_len < 5:
    raise ValueError(f"seq_len must be >= 5, got {seq_len}")
  if layout not in shard_format.LAYOUTS:
    raise ValueError(f"layout {layout!r}; expected one of {shard_format.LAYOUTS}")
  n_eval = _eval_count(num_shards, eval_shards, eval_fraction)
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise ValueError(f"--output {output_dir} is a file, not a directory; give a new directory "
                     "(or the one of an earlier build to complete it)")
  os.makedirs(output_dir, exist_ok=True)
  build_key = {
      "format": manifest_lib.FORMATS[layout],
      "corpus": corpus.spec,
      "tokenizer_fingerprint": tokenizer.fingerprint(),
      "seq_len": seq_len,
      "num_shards": num_shards,
      "pieces_per_shard": pieces_per_shard,
      "seed": seed,
      "layout": layout,
  }
  started = time.perf_counter()
  done, tasks = {}, []
  for index in range(num_shards):
    path = os.path.join(output_dir, shard_format.shard_name(index, num_shards))
    stats = _finished_shard(path, build_key)
    if stats is None:
      tasks.append({"index": index, "corpus": corpus.spec, "tokenizer": tokenizer.spec,
                    "output_dir": output_dir, "build_key": build_key})
    else:
      done[index] = stats
  skipped = len(done)
  bar = _progress_bar(num_shards, skipped, progress)
  if num_workers == 1 or len(tasks) <= 1:
    results = map(build_shard, tasks)
    _consume(results, tasks, done, bar)
  else:
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(num_workers, len(tasks)), initializer=_init_worker) as pool:
      _consume(pool.imap_unordered(build_shard, tasks), tasks, done, bar)
  if bar is not None:
    bar.close()
  all_stats = [done[i] for i in range(num_shards)]
  shards = [
      {"file": s["file"], "split": "eval" if i >= num_shards - n_eval else "train",
       "rows": manifest_lib.shard_rows(s), "examples": s["examples"], "tokens": s["tokens"],
       **({"bytes": s["bytes"]} if "bytes" in s else {})}  # sidecars of older builds lack it
      for i, s in enumerate(all_stats)
  ]
  build = {"corpus": corpus.spec, "seed": seed, "num_shards": num_shards,
           "pieces_per_shard": pieces_per_shard,
           "summary": _summary(all_stats, skipped, time.perf_counter() - started, seq_len)}
  if not any(shard["rows"] for shard in shards):
    counts = build["summary"]["input"]
    raise ValueError(f"corpus {corpus.spec} holds no text: {counts['files']} file(s) with text, "
                     f"{counts['empty_files']} empty file(s), {counts['empty_lines']} empty "
                     f"line(s); no manifest was written to {output_dir}")
  manifest = manifest_lib.make_manifest(seq_len, tokenizer, shards, build, layout)
  tokenizer.save(os.path.join(output_dir, tokenizers.SAVED_DIR))  # the shards travel with it
  manifest_lib.write_json_atomically(os.path.join(output_dir, manifest_lib.MANIFEST_NAME), manifest)
  return manifest


def _progress_bar(total, initial, enabled):
  if not enabled:
    return None
  from tqdm import tqdm

  return tqdm(total=total, initial=initial, desc="shards", unit="shard", file=sys.stderr)


def _consume(results, tasks, done, bar):
  for stats in results:
    index = int(stats["file"].split("-")[1])
    done[index] = stats
    if bar is not None:
      bar.set_postfix(rows=manifest_lib.shard_rows(stats), refresh=False)
      bar.update(1)


def format_summary(manifest):
  """Human-readable lines of the build summary (counts of input handled, packing, speed)."""
  summary = manifest["build"]["summary"]
  lines = [
      f"shards: {summary['shards_built']} built, {summary['shards_skipped_already_built']} already built "
      f"({len(manifest['train_shards'])} train, {len(manifest['eval_shards'])} eval)",
      f"rows: {summary['rows']} of {manifest['seq_len']} tokens, {manifest_lib.layout_of(manifest)}"
      f"  examples: {summary['examples']}  tokens (non-pad): {summary['tokens']}",
      f"real_token_fraction: {summary['real_token_fraction']:.4f} (non-pad tokens / row slots)",
  ]
  lines += [f"input.{k}: {v}" for k, v in summary["input"].items()]
  lines += [f"packing.{k}: {v}" for k, v in summary["packing"].items()]
  if summary["worker_seconds"] > 0:
    rate = summary["packing"]["tokens"] / summary["worker_seconds"]
    lines.append(f"speed: {rate:,.0f} corpus tokens/s per worker over all shards' worker time")
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
      "--corpus", required=True,
      help="corpus spec (data_pipelines/corpora.py): files/globs, jsonl:GLOB, tfds:NAME, "
      "hf:NAME[/CONFIG][?split=train&field=text&streaming=true], "
      "hf:parquet|json|arrow?data_files=GLOB, hf:SAVE_TO_DISK_DIR, builtin",
  )
  parser.add_argument("--tokenizer", required=True, help="wordpiece:VOCAB[?lowercase=false] or sentencepiece:MODEL")
  parser.add_argument("--output", required=True, help="output directory for shards and manifest.json")
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--num_shards", type=int, default=16)
  parser.add_argument("--num_workers", type=int, default=1)
  parser.add_argument("--eval_shards", type=int, default=0, help="how many of the last shards form the eval split")
  parser.add_argument("--eval_fraction", type=float, default=None, help="fraction of shards for eval (overrides --eval_shards)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--pieces_per_shard", type=int, default=16)
  parser.add_argument("--layout", choices=shard_format.LAYOUTS, default="packed",
                      help="packed: several whole examples per row (default; no compute on padding); "
                      "unpacked: one example per row, the official ELECTRA format")
  args = parser.parse_args(argv)

  def build():
    manifest = build_pretraining_data(
        args.corpus, args.tokenizer, args.output, seq_len=args.seq_len,
        num_shards=args.num_shards, num_workers=args.num_workers, eval_shards=args.eval_shards,
        eval_fraction=args.eval_fraction, seed=args.seed, pieces_per_shard=args.pieces_per_shard,
        layout=args.layout,
    )
    for line in format_summary(manifest):
      print(line)
    print(f"wrote {os.path.join(args.output, manifest_lib.MANIFEST_NAME)}")

  return cli.run_command(build)


if __name__ == "__main__":
  sys.exit(main())
