"""The shard builder: shard format, manifest, token conservation, bad input counts, resume."""

import collections
import json
import os
import string

import numpy as np
import pytest

from data_pipelines import corpora, shard_format, text_io, tokenizers
from data_pipelines import build_pretraining_data as builder
from data_pipelines.tf_runtime import tensorflow

SEQ_LEN = 32


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
  """A character-level WordPiece vocab: specials, a-z, ##a-##z, digits, punctuation."""
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tokens += list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase + string.digits]
  tokens += list(string.digits) + list(".,;!?'-")
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("corpus")
  words = "the quick brown fox jumps over lazy dogs while seven wizards quietly hex jolly boxers".split()
  lines = []
  for doc in range(30):
    for sent in range(doc % 7 + 1):
      lines.append(" ".join(words[(doc * 3 + sent + k) % len(words)] for k in range(doc % 5 + 3)) + f" {doc}.")
    lines.append("")
  (directory / "a.txt").write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
  (directory / "b.txt").write_bytes(("\n".join(lines[60:]) + "\n").encode() + b"broken \xff\xfe bytes here\n")
  (directory / "empty.txt").write_bytes(b"")
  return str(directory)


def _read_shard(path):
  tf = tensorflow()
  rows = [shard_format.parse_examples(tf, tf.constant([r.numpy()]), SEQ_LEN) for r in tf.data.TFRecordDataset(path)]
  return {k: np.concatenate([r[k].numpy() for r in rows]) if rows else np.zeros((0, SEQ_LEN), np.int32)
          for k in shard_format.BATCH_KEYS.values()}


def _build(corpus_dir, vocab_path, out, **kwargs):
  args = dict(seq_len=SEQ_LEN, num_shards=3, eval_shards=1, pieces_per_shard=4, progress=False)
  args.update(kwargs)
  return builder.build_pretraining_data(corpus_dir, f"wordpiece:{vocab_path}", str(out), **args)


def test_shards_manifest_and_token_conservation(corpus_dir, vocab_path, tmp_path):
  manifest = _build(corpus_dir, vocab_path, tmp_path / "out")
  tok = tokenizers.load(f"wordpiece:{vocab_path}")
  assert manifest["seq_len"] == SEQ_LEN
  assert manifest["tokenizer"] == {"spec": tok.spec, "fingerprint": tok.fingerprint(), "vocab_size": tok.vocab_size,
                                   "pad_id": 0, "unk_id": 1, "cls_id": 2, "sep_id": 3, "mask_id": 4}
  files = [shard_format.shard_name(i, 3) for i in range(3)]
  assert manifest["train_shards"] == files[:2] and manifest["eval_shards"] == files[2:]
  assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest

  corpus = corpora.load(corpus_dir)
  total = collections.Counter()
  for index, entry in enumerate(manifest["shards"]):
    shard = _read_shard(str(tmp_path / "out" / entry["file"]))
    ids, mask, segments = shard["input_ids"], shard["attention_mask"], shard["token_type_ids"]
    assert entry["examples"] == len(ids) > 0 and entry["tokens"] == int(mask.sum())
    lengths = mask.sum(axis=1)
    assert (mask == (np.arange(SEQ_LEN)[None] < lengths[:, None])).all()
    assert (ids[:, 0] == 2).all() and (ids[np.arange(len(ids)), lengths - 1] == 3).all()
    assert (ids[mask == 0] == 0).all() and (segments[mask == 0] == 0).all()
    for row, seg, n in zip(ids, segments, lengths):
      n_a = int((seg[:n] == 0).sum())
      assert (seg[:n] == np.r_[np.zeros(n_a), np.ones(n - n_a)]).all() and row[n_a - 1] == 3
    body = ids[(mask == 1) & (ids != 2) & (ids != 3)]
    # the shard holds exactly the tokens of its corpus parts i, i + 3, i + 6, i + 9
    units = [u for u in corpus.iter_units([index + 3 * k for k in range(4)], 12, text_io.InputStats()) if u]
    assert collections.Counter(body.tolist()) == collections.Counter(t for u in tok.encode(units) for t in u)
    total.update(body.tolist())
  all_units = [u for u in corpus.iter_units([0], 1, text_io.InputStats()) if u]
  assert total == collections.Counter(t for u in tok.encode(all_units) for t in u)

  summary = manifest["build"]["summary"]
  assert summary["input"]["replaced_bytes"] == 2
  assert summary["input"]["empty_files"] == 1
  assert summary["input"]["empty_lines"] == 30
  assert summary["input"]["files"] == 2
  assert summary["examples"] == sum(s["examples"] for s in manifest["shards"])
  assert summary["packing"]["tokens"] == sum(total.values())


def test_rerun_skips_finished_shards_and_rebuilds_missing_ones(corpus_dir, vocab_path, tmp_path):
  out = tmp_path / "out"
  first = _build(corpus_dir, vocab_path, out)
  shard1 = out / shard_format.shard_name(1, 3)
  original = shard1.read_bytes()
  mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
  again = _build(corpus_dir, vocab_path, out)
  assert again["build"]["summary"]["shards_skipped_already_built"] == 3
  assert again["build"]["summary"]["shards_built"] == 0
  assert again["shards"] == first["shards"]
  assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in out.iterdir() if not p.name.startswith("manifest"))
  # a crash after the rename but before the sidecar, plus a stale temp file: only that shard is rebuilt
  os.remove(str(shard1) + ".stats.json")
  shard1.write_bytes(original[:100])
  (out / f".{shard1.name}.tmp-99999").write_bytes(b"partial")
  third = _build(corpus_dir, vocab_path, out)
  assert third["build"]["summary"]["shards_built"] == 1
  assert shard1.read_bytes() == original
  assert third["shards"] == first["shards"]


def test_crash_while_writing_leaves_no_file_under_the_shard_name(tmp_path):
  tf = tensorflow()
  path = tmp_path / shard_format.shard_name(0, 1)

  def records():
    yield shard_format.serialize_example(tf, [2, 7, 3], [0, 0, 0], 8)
    raise RuntimeError("worker killed")

  with pytest.raises(RuntimeError, match="worker killed"):
    shard_format.write_atomically(tf, str(path), records())
  assert not path.exists()


def test_rebuilding_with_other_settings_is_refused(corpus_dir, vocab_path, tmp_path):
  _build(corpus_dir, vocab_path, tmp_path / "out")
  with pytest.raises(ValueError, match=r"was built with different settings \(seq_len: existing 32 vs requested 16\)"):
    _build(corpus_dir, vocab_path, tmp_path / "out", seq_len=16)


def test_eval_settings_are_checked(corpus_dir, vocab_path, tmp_path):
  with pytest.raises(ValueError, match="eval_shards=3 must leave at least one of the 3 shards for training"):
    _build(corpus_dir, vocab_path, tmp_path / "out", eval_shards=3)
  manifest = _build(corpus_dir, vocab_path, tmp_path / "out", eval_fraction=0.5)
  assert len(manifest["eval_shards"]) == 2 and len(manifest["train_shards"]) == 1


def test_cli_prints_summary(corpus_dir, vocab_path, tmp_path, capsys):
  builder.main(["--corpus", corpus_dir, "--tokenizer", f"wordpiece:{vocab_path}", "--output", str(tmp_path / "cli"),
                "--seq_len", str(SEQ_LEN), "--num_shards", "2", "--eval_shards", "1", "--pieces_per_shard", "2"])
  out = capsys.readouterr().out
  assert "shards: 2 built, 0 already built (1 train, 1 eval)" in out
  assert "input.replaced_bytes: 2" in out and "input.empty_files: 1" in out
  assert f"wrote {tmp_path / 'cli' / 'manifest.json'}" in out


@pytest.mark.slow
def test_parallel_workers_write_the_same_bytes_as_one_worker(corpus_dir, vocab_path, tmp_path):
  one = _build(corpus_dir, vocab_path, tmp_path / "one", num_workers=1)
  two = _build(corpus_dir, vocab_path, tmp_path / "two", num_workers=2)
  assert one["shards"] == two["shards"]
  for entry in one["shards"]:
    assert (tmp_path / "one" / entry["file"]).read_bytes() == (tmp_path / "two" / entry["file"]).read_bytes()
