"""`manifest.json`: what a directory of pre-training shards holds, and checks against a run.

Layout (all counts are ints):
  format: "electra_jax.pretraining/1" (one example per row) or "electra_jax.pretraining/2"
      (packed rows; older readers refuse it rather than read packed rows as single examples)
  layout: "packed" (shard_format); absent: unpacked
  seq_len, tokenizer: {spec, fingerprint, vocab_size, pad_id, unk_id, cls_id, sep_id, mask_id}
  shards: [{file, split ("train"|"eval"), rows, examples, tokens, bytes}]  rows = records (of
      seq_len tokens), examples = [CLS] ... [SEP] examples in them (= rows unless packed),
      tokens = non-pad positions, bytes = the file's size (written by build_pretraining_data;
      absent from older manifests and from index_shards manifests, whose records are counted as
      `examples` only: one example a row)
  train_shards, eval_shards: file names in shard order
  build: {corpus, seed, num_shards, pieces_per_shard, summary: {...counts...,
      real_token_fraction}} (build_pretraining_data) or {indexed_from, num_shards, summary}
      (index_shards)
"""

import json
import os
import shlex

from electra_jax.floor import fs

MANIFEST_NAME = "manifest.json"
FORMAT = "electra_jax.pretraining/1"
PACKED_FORMAT = "electra_jax.pretraining/2"
FORMATS = {"unpacked": FORMAT, "packed": PACKED_FORMAT}


def make_manifest(seq_len, tokenizer, shards, build, layout="unpacked"):
  """The manifest dict for `shards` ([{file, split, rows, examples, tokens}] in shard order) of
  `seq_len`-token rows of `layout` made with `tokenizer`; `build` records how they were made.
  An unpacked manifest has no `layout` entry, as before packing."""
  return {
      "format": FORMATS[layout],
      **({"layout": layout} if layout != "unpacked" else {}),
      "seq_len": seq_len,
      "tokenizer": {"spec": tokenizer.spec, "fingerprint": tokenizer.fingerprint(),
                    "vocab_size": tokenizer.vocab_size, **tokenizer.special_ids()},
      "shards": shards,
      "train_shards": [s["file"] for s in shards if s["split"] == "train"],
      "eval_shards": [s["file"] for s in shards if s["split"] == "eval"],
      "build": build,
  }


def write_json_atomically(path, data):
  """Write `data` as indented JSON via a temp file and an atomic rename."""
  temp = f"{path}.tmp-{os.getpid()}"
  with open(temp, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(temp, path)


def read_manifest(data_dir):
  """Load and sanity-check `data_dir/manifest.json` (a local or tf.io.gfile path, see fs)."""
  path = fs.join(data_dir, MANIFEST_NAME)
  if not fs.isfile(path):
    raise FileNotFoundError(f"no {MANIFEST_NAME} in {data_dir}: build it with data_pipelines.build_pretraining_data")
  manifest = json.loads(fs.read_text(path))
  layout = manifest.get("layout", "unpacked")
  if layout not in FORMATS or manifest.get("format") != FORMATS[layout]:
    raise ValueError(f"{path}: format {manifest.get('format')!r} with layout {layout!r}; expected "
                     + " or ".join(f"{f!r} with layout {l!r}" for l, f in FORMATS.items()))
  return manifest


def layout_of(manifest):
  """"packed" or "unpacked" (an unpacked manifest has no layout entry)."""
  return manifest.get("layout", "unpacked")


def shard_rows(shard):
  """Records (rows) of a manifest's shard entry or a builder sidecar's stats; older ones without
  `rows` have one example a row."""
  return shard.get("rows", shard["examples"])


def real_token_fraction(manifest, split=None):
  """Non-pad tokens over all token slots (rows x seq_len) of the shards of `split` (None: all)."""
  shards = [s for s in manifest["shards"] if split is None or s["split"] == split]
  slots = sum(shard_rows(s) for s in shards) * manifest["seq_len"]
  return sum(s["tokens"] for s in shards) / slots if slots else 0.0


def check_compatible(manifest, data_dir, seq_len=None, vocab_fingerprint=None):
  """Raise ValueError naming both values if the shards disagree with the run's config."""
  if seq_len is not None and int(seq_len) != manifest["seq_len"]:
    raise ValueError(
        f"seq_len mismatch: the run uses seq_len={seq_len} but the shards in {data_dir} "
        f"have seq_len={manifest['seq_len']}"
    )
  if vocab_fingerprint is not None and vocab_fingerprint != manifest["tokenizer"]["fingerprint"]:
    raise ValueError(
        f"vocabulary mismatch: the run's tokenizer has fingerprint {vocab_fingerprint} but the "
        f"shards in {data_dir} were built with fingerprint {manifest['tokenizer']['fingerprint']} "
        f"({manifest['tokenizer']['spec']})"
    )


def rebuild_command(manifest, data_dir):
  """The build_pretraining_data command line that rebuilds the shards of `data_dir` as they were
  built (it skips the shards still present, so it rebuilds only deleted ones, byte for byte), or
  None when the manifest does not record how they were built (index_shards, older formats)."""
  build = manifest.get("build", {})
  if not all(key in build for key in ("corpus", "seed", "num_shards", "pieces_per_shard")):
    return None
  return shlex.join([
      "python", "-m", "data_pipelines.build_pretraining_data", "--corpus", build["corpus"],
      "--tokenizer", manifest["tokenizer"]["spec"], "--output", data_dir,
      "--seq_len", str(manifest["seq_len"]), "--num_shards", str(build["num_shards"]),
      "--eval_shards", str(len(manifest["eval_shards"])), "--pieces_per_shard", str(build["pieces_per_shard"]),
      "--seed", str(build["seed"]), "--layout", layout_of(manifest),
  ])


def repair_advice(manifest, data_dir):
  """One sentence on how to get back an intact copy of a bad shard of `data_dir`."""
  command = rebuild_command(manifest, data_dir)
  if command is not None:
    return f"rebuild it: delete the file if it is there and re-run `{command}`, which rebuilds only missing shards"
  source = manifest.get("build", {}).get("indexed_from")
  if source is not None:
    return f"restore it from the original shards (this manifest indexes {source}, see data_pipelines.index_shards)"
  return "rebuild the shards with python -m data_pipelines.build_pretraining_data"
