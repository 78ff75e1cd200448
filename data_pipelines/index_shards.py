"""Write a manifest.json for existing TFRecord shards, e.g. those of official ELECTRA.

  python -m data_pipelines.index_shards --shards '/data/electra/pretrain_tfrecords/*' \
      --tokenizer wordpiece:vocab/bert-uncased-vocab.txt [--output DIR] [--eval_shards N]

Shards written by google-research/electra's build_pretraining_dataset.py (or any other tool)
hold tf.train.Example records with exactly the int64 features input_ids, input_mask and
segment_ids, all of one length seq_len, but come without the manifest that `PretrainingData`
needs. This scans every record of the shards the glob matches (sorted by name, uncompressed
TFRecords only, as the reader reads them), checks the format and that every id is below the
tokenizer's vocab size, counts examples and non-pad tokens (input_mask != 0) per shard, and
writes the manifest. The last `eval_shards` shards in name order form the eval split. Shard
paths in the manifest are file names when the shard sits in the manifest's directory and
absolute paths otherwise (the reader joins them to its directory, which keeps absolute paths).
An existing manifest.json is left alone if identical and otherwise refused.
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

from data_pipelines import manifest as manifest_lib
from data_pipelines import shard_format, tokenizers

RECORDS_PER_READ = 4096
_GZIP_MAGIC = b"\x1f\x8b"


def _shard_paths(pattern):
  """Absolute paths of the files matching `pattern`, sorted, manifest.json excluded."""
  paths = sorted(
      os.path.abspath(p) for p in glob.glob(pattern)
      if os.path.isfile(p) and os.path.basename(p) != manifest_lib.MANIFEST_NAME
  )
  if not paths:
    raise FileNotFoundError(f"no shard files match {pattern!r}")
  return paths


def _check_record(tf, raw, path, index, seq_len, seq_len_source):
  """Check one serialized record in Python; returns (seq_len, where it was set).

  seq_len None means "take it from this record". Raises ValueError naming the file and record.
  """
  try:
    example = tf.train.Example.FromString(raw)
  except Exception as err:  # protobuf raises DecodeError, whose module differs by backend
    raise ValueError(f"{path}: record {index} is not a serialized tf.train.Example ({err})") from err
  features = example.features.feature
  names = set(features.keys())
  missing = [n for n in shard_format.FEATURES if n not in names]
  extra = sorted(names - set(shard_format.FEATURES))
  if missing or extra:
    problem = f"missing feature(s) {missing}" if missing else f"unexpected feature(s) {extra}"
    raise ValueError(f"{path}: record {index}: {problem}; shards must hold exactly {list(shard_format.FEATURES)}")
  for name in shard_format.FEATURES:
    feature = features[name]
    kind = feature.WhichOneof("kind")
    if kind != "int64_list":
      raise ValueError(f"{path}: record {index}: feature {name!r} is a {kind}, expected an int64_list")
    values = feature.int64_list.value
    if seq_len is None:
      seq_len, seq_len_source = len(values), f"feature {name!r} of record {index} of {path}"
    if len(values) != seq_len:
      raise ValueError(
          f"{path}: record {index}: feature {name!r} has length {len(values)}, "
          f"expected seq_len {seq_len} (set by {seq_len_source})"
      )
  return seq_len, seq_len_source


def _parse_batch(tf, raws, path, first_index, seq_len, seq_len_source):
  """input_ids and input_mask (int64 [n, seq_len]) of a batch of records, every record checked.

  Fast path: TF parses the batch and each record's feature count is read from its proto. On
  any failure every record is checked in Python, so the error names the first bad record.
  """
  spec = {name: tf.io.FixedLenFeature([seq_len], tf.int64) for name in shard_format.FEATURES}
  try:
    exact = all(len(tf.train.Example.FromString(raw).features.feature) == len(spec) for raw in raws)
    parsed = tf.io.parse_example(raws, spec) if exact else None
    failure = None
  except Exception as err:  # protobuf's DecodeError, TF's InvalidArgumentError (or UnicodeDecodeError on its text)
    exact, failure = False, f"{type(err).__name__}: {err}"
  if not exact:
    for k, raw in enumerate(raws):
      _check_record(tf, raw, path, first_index + k, seq_len, seq_len_source)
    raise ValueError(f"{path}: records {first_index}-{first_index + len(raws) - 1} do not parse: {failure}")
  return parsed["input_ids"].numpy(), parsed["input_mask"].numpy()


def _scan_shard(tf, path, tokenizer, seq_len, seq_len_source):
  """(examples, non-pad tokens, seq_len, seq_len_source) of one shard, every record checked."""
  with open(path, "rb") as f:
    if f.read(2) == _GZIP_MAGIC:
      raise ValueError(
          f"{path} is gzip-compressed; PretrainingData reads uncompressed TFRecords only "
          f"(as official ELECTRA writes them): decompress it first"
      )
  examples = tokens = 0
  dataset = tf.data.TFRecordDataset(path).batch(RECORDS_PER_READ)
  try:
    for raws in dataset.as_numpy_iterator():
      if seq_len is None:
        seq_len, seq_len_source = _check_record(tf, raws[0], path, examples, None, None)
      ids, masks = _parse_batch(tf, raws, path, examples, seq_len, seq_len_source)
      bad = (ids < 0) | (ids >= tokenizer.vocab_size)
      if bad.any():
        record, position = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{path}: record {examples + record}: input_ids[{position}] = {ids[record, position]} is not "
            f"an id of tokenizer {tokenizer.spec} (vocab_size {tokenizer.vocab_size})"
        )
      tokens += int(np.count_nonzero(masks))
      examples += len(raws)
  except tf.errors.DataLossError as err:
    raise ValueError(f"{path} is not a readable TFRecord file after record {examples}: {err.message}") from err
  return examples, tokens, seq_len, seq_len_source


def _manifest_dir(paths, output_dir, pattern):
  if output_dir is not None:
    return os.path.abspath(output_dir)
  directories = sorted({os.path.dirname(p) for p in paths})
  if len(directories) > 1:
    raise ValueError(f"the shards matching {pattern!r} lie in {len(directories)} directories; pass output_dir")
  return directories[0]


def index_shards(pattern, tokenizer_spec, output_dir=None, eval_shards=0, progress=True):
  """Scan the TFRecord shards matching `pattern` and write `output_dir`/manifest.json.

  Args:
    pattern: a glob of uncompressed TFRecord shard files (manifest.json is skipped).
    tokenizer_spec: the spec of the tokenizer that made the ids (tokenizers.load), e.g.
      "wordpiece:vocab.txt"; its vocab size bounds the ids and its fingerprint goes in the manifest.
    output_dir: where manifest.json goes; default the shards' directory (they must share one).
    eval_shards: how many of the last shards (in name order) form the eval split.
    progress: show a per-shard progress bar on stderr.

  Returns:
    The manifest dict (as written, or as already present when identical).

  Raises:
    FileNotFoundError: nothing matches `pattern`.
    ValueError: a record breaks the format (the message names the file and record) or an id
      is out of the vocabulary; all shards are empty; bad eval_shards.
    FileExistsError: a different manifest.json is already in output_dir.
  """
  from electra_jax.floor.tf_runtime import tensorflow

  tf = tensorflow()
  tokenizer = tokenizers.load(tokenizer_spec)
  paths = _shard_paths(pattern)
  if not 0 <= eval_shards < len(paths):
    raise ValueError(f"eval_shards={eval_shards} must leave at least one of the {len(paths)} shards for training")
  directory = _manifest_dir(paths, output_dir, pattern)
  seq_len = seq_len_source = None
  shards = []
  bar = None
  if progress:
    from tqdm import tqdm

    bar = tqdm(total=len(paths), desc="indexing shards", unit="shard", file=sys.stderr)
  for i, path in enumerate(paths):
    examples, tokens, seq_len, seq_len_source = _scan_shard(tf, path, tokenizer, seq_len, seq_len_source)
    shards.append({
        "file": os.path.basename(path) if os.path.dirname(path) == directory else path,
        "split": "eval" if i >= len(paths) - eval_shards else "train",
        "examples": examples,
        "tokens": tokens,
    })
    if bar is not None:
      bar.set_postfix(examples=sum(s["examples"] for s in shards), refresh=False)
      bar.update(1)
  if bar is not None:
    bar.close()
  if seq_len is None:
    raise ValueError(f"the {len(paths)} shard(s) matching {pattern!r} hold no records")
  build = {"indexed_from": os.path.abspath(pattern), "num_shards": len(shards),
           "summary": {"examples": sum(s["examples"] for s in shards),
                       "tokens": sum(s["tokens"] for s in shards)}}
  manifest = manifest_lib.make_manifest(seq_len, tokenizer, shards, build)
  target = os.path.join(directory, manifest_lib.MANIFEST_NAME)
  if os.path.exists(target):
    with open(target, encoding="utf-8") as f:
      existing = json.load(f)
    if existing != manifest:
      raise FileExistsError(
          f"{target} already exists and differs from the manifest of the shards matching {pattern!r}; "
          f"remove it or choose another output directory"
      )
    if progress:
      print(f"{target} is already up to date", file=sys.stderr)
    return manifest
  os.makedirs(directory, exist_ok=True)
  tokenizer.save(os.path.join(directory, tokenizers.SAVED_DIR))  # the shards travel with it
  manifest_lib.write_json_atomically(target, manifest)
  if progress:
    print(f"wrote {target}", file=sys.stderr)
  return manifest


def format_summary(manifest):
  """Human-readable lines: shard counts per split, seq_len, examples and tokens."""
  summary = manifest["build"]["summary"]
  return [
      f"shards: {manifest['build']['num_shards']} ({len(manifest['train_shards'])} train, "
      f"{len(manifest['eval_shards'])} eval)  seq_len: {manifest['seq_len']}",
      f"examples: {summary['examples']}  tokens (non-pad): {summary['tokens']}",
  ]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--shards", required=True, help="glob of the TFRecord shard files (quote it)")
  parser.add_argument("--tokenizer", required=True, help="wordpiece:VOCAB[?lowercase=false] or sentencepiece:MODEL")
  parser.add_argument("--output", default=None, help="directory for manifest.json (default: the shards' directory)")
  parser.add_argument("--eval_shards", type=int, default=0, help="how many of the last shards form the eval split")
  args = parser.parse_args(argv)
  from electra_jax.floor.tf_runtime import tensorflow

  tensorflow()  # import time is not indexing time
  started = time.perf_counter()
  manifest = index_shards(args.shards, args.tokenizer, output_dir=args.output, eval_shards=args.eval_shards)
  seconds = time.perf_counter() - started
  for line in format_summary(manifest):
    print(line)
  print(f"speed: {manifest['build']['summary']['examples'] / seconds:,.0f} records/s")


if __name__ == "__main__":
  main()
