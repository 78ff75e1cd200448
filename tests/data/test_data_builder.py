"""The shard builder: shard formats (unpacked, packed), manifest, token conservation, bad input
counts, resume."""

import collections
import json
import os
import string

import numpy as np
import pytest

from data_pipelines import corpora, shard_format, text_io, tokenizers
from data_pipelines import manifest as manifest_lib
from data_pipelines import build_pretraining_data as builder
from data_pipelines.pretraining_reader import PretrainingData
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
  """The official layout (--layout unpacked): one [CLS] A [SEP] B [SEP] example per record."""
  manifest = _build(corpus_dir, vocab_path, tmp_path / "out", layout="unpacked")
  tok = tokenizers.load(f"wordpiece:{vocab_path}")
  assert manifest["format"] == "electra_jax.pretraining/1" and "layout" not in manifest
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
    assert entry["rows"] == entry["examples"] == len(ids) > 0 and entry["tokens"] == int(mask.sum())
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


def _read_records(path, layout):
  """({batch key: int32 [rows, SEQ_LEN]}, the set of feature-name tuples of the records)."""
  tf = tensorflow()
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  parsed = shard_format.parse_examples(tf, tf.constant(records), SEQ_LEN, layout)
  names = {tuple(sorted(tf.train.Example.FromString(r).features.feature)) for r in records}
  return {k: v.numpy() for k, v in parsed.items()}, names


def _split_packed_rows(rows):
  """[(row, input_ids tuple, token types tuple)] of the examples of packed rows, in row order,
  checking the packed format of every row on the way."""
  examples = []
  for r, (ids, mask, types, ex, pos) in enumerate(zip(*(rows[k] for k in shard_format.batch_keys("packed")))):
    n = int(mask.sum())
    assert (mask == (np.arange(SEQ_LEN) < n)).all()  # the examples first, then padding
    assert not ids[n:].any() and not types[n:].any() and not ex[n:].any() and not pos[n:].any()
    assert ex[0] == 1 and set(np.diff(ex[:n]).tolist()) <= {0, 1}  # examples 1, 2, ... in order
    for k in range(1, int(ex.max()) + 1):
      span = np.flatnonzero(ex == k)
      assert (pos[span] == np.arange(len(span))).all()  # positions restart in each example
      assert ids[span[0]] == 2 and ids[span[-1]] == 3  # [CLS] ... [SEP]
      n_a = int((types[span] == 0).sum())  # token types 0 ... 0 1 ... 1, per example
      assert (types[span] == (np.arange(len(span)) >= n_a)).all() and ids[span[n_a - 1]] == 3
      examples.append((r, tuple(ids[span].tolist()), tuple(types[span].tolist())))
  return examples


def test_packed_build_holds_every_example_of_the_unpacked_build(corpus_dir, vocab_path, tmp_path):
  """The default layout packs the examples of the official one, whole, several per row: the
  same examples token for token, each once, a row's examples in build order, fewer rows."""
  unpacked = _build(corpus_dir, vocab_path, tmp_path / "u", layout="unpacked")
  packed = _build(corpus_dir, vocab_path, tmp_path / "p")
  assert (packed["format"], packed["layout"]) == ("electra_jax.pretraining/2", "packed")
  for u_entry, p_entry in zip(unpacked["shards"], packed["shards"]):
    u_rows, u_names = _read_records(str(tmp_path / "u" / u_entry["file"]), "unpacked")
    p_rows, p_names = _read_records(str(tmp_path / "p" / p_entry["file"]), "packed")
    assert u_names == {tuple(sorted(shard_format.FEATURES))}  # the official three features
    assert p_names == {tuple(sorted(shard_format.FEATURES + shard_format.PACKING_FEATURES))}
    lengths = u_rows["attention_mask"].sum(axis=1)
    u_examples = [(tuple(ids[:n].tolist()), tuple(types[:n].tolist()))
                  for ids, types, n in zip(u_rows["input_ids"], u_rows["token_type_ids"], lengths)]
    p_examples = _split_packed_rows(p_rows)
    assert collections.Counter((ids, types) for _, ids, types in p_examples) == \
        collections.Counter(u_examples)
    place = {e: i for i, e in enumerate(u_examples)}
    unique = {e for e, c in collections.Counter(u_examples).items() if c == 1}
    for r in range(len(p_rows["input_ids"])):
      order = [place[(ids, types)] for row, ids, types in p_examples
               if row == r and (ids, types) in unique]
      assert order == sorted(order)
    assert p_entry["examples"] == u_entry["examples"] == len(u_examples)
    assert p_entry["tokens"] == u_entry["tokens"] == int(p_rows["attention_mask"].sum())
    assert p_entry["rows"] == len(p_rows["input_ids"]) < u_entry["rows"]
  u_sum, p_sum = unpacked["build"]["summary"], packed["build"]["summary"]
  assert p_sum["real_token_fraction"] == round(p_sum["tokens"] / (p_sum["rows"] * SEQ_LEN), 6)
  assert p_sum["real_token_fraction"] > 0.9 > u_sum["real_token_fraction"]


def test_reader_round_trip_of_a_packed_build_gives_back_every_example(corpus_dir, vocab_path, tmp_path):
  """One epoch read through PretrainingData: the packed build's rows, split at example_ids,
  are the unpacked build's examples (the reader permutes rows, never cuts them)."""
  epochs = {}
  for layout in ("unpacked", "packed"):
    manifest = _build(corpus_dir, vocab_path, tmp_path / layout, layout=layout)
    rows = sum(s["rows"] for s in manifest["shards"] if s["split"] == "train")
    reader = PretrainingData(str(tmp_path / layout), global_batch_size=rows, seed=3,
                             process_index=0, process_count=1)
    assert reader.layout == layout and reader.batch_keys == shard_format.batch_keys(layout)
    assert reader.real_token_fraction == pytest.approx(
        sum(s["tokens"] for s in manifest["shards"] if s["split"] == "train") / (rows * SEQ_LEN))
    epochs[layout] = reader.batch(0)
  u = epochs["unpacked"]
  lengths = u["attention_mask"].sum(axis=1)
  unpacked = collections.Counter((tuple(ids[:n].tolist()), tuple(types[:n].tolist()))
                                 for ids, types, n in zip(u["input_ids"], u["token_type_ids"], lengths))
  packed = collections.Counter((ids, types) for _, ids, types in _split_packed_rows(epochs["packed"]))
  assert packed == unpacked and sum(packed.values()) > len(epochs["packed"]["input_ids"])


def test_shards_of_older_unpacked_builds_resume_and_refuse_another_layout(corpus_dir, vocab_path, tmp_path):
  """Sidecars written before layouts existed resume as unpacked; asking for packed rows there is
  refused; the repair command names the layout."""
  out = tmp_path / "out"
  _build(corpus_dir, vocab_path, out, layout="unpacked")
  for sidecar in out.glob("*.stats.json"):
    stats = json.loads(sidecar.read_text())
    del stats["build_key"]["layout"], stats["rows"]
    sidecar.write_text(json.dumps(stats))
  again = _build(corpus_dir, vocab_path, out, layout="unpacked")
  assert again["build"]["summary"]["shards_skipped_already_built"] == 3
  assert [s["rows"] for s in again["shards"]] == [s["examples"] for s in again["shards"]]
  assert manifest_lib.rebuild_command(again, str(out)).endswith("--seed 0 --layout unpacked")
  with pytest.raises(ValueError, match="layout: existing 'unpacked' vs requested 'packed'"):
    _build(corpus_dir, vocab_path, out)
