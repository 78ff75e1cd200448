"""data_pipelines on tf.io.gfile paths. TensorFlow's in-memory file system (ram://) stands in for
gs:// (tests have no network): data_pipelines.fs gives the same results and errors on ram:// as
on the local disk, and the reader and the tokenizers find shards, manifests and vocabularies
there."""

import json
import os
import uuid

import numpy as np
import pytest

from data_pipelines import fs, shard_format, tokenizers
from data_pipelines import manifest as manifest_lib
from data_pipelines.pretraining_reader import PretrainingData, ShardError
from data_pipelines.tf_runtime import tensorflow

SEQ_LEN = 8
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cloud", "path", "##s", "run"]


def _ram():
  """A fresh directory on ram:// (one in-memory file system per process, shared by tests)."""
  return f"ram://{uuid.uuid4().hex}"


def _fs_session(root):
  """Every fs call on files under `root`; returns what each gave (errors by type)."""
  d = fs.join(root, "d")
  fs.makedirs(fs.join(d, "sub"))
  fs.makedirs(d)  # exists already: fine
  fs.write_text(fs.join(d, "a.txt"), "one\r\ntwo\n")
  fs.append_text(fs.join(d, "a.txt"), "three\n")
  fs.write_bytes(fs.join(d, "b.bin"), bytes(range(20)))
  fs.write_bytes(fs.join(d, "b.bin"), bytes(range(10)))  # a shorter file replaces a longer one
  fs.write_atomically(fs.join(d, "c.json"), '{"x": 100}\n')
  fs.write_atomically(fs.join(d, "c.json"), '{"x": 2}\n')
  fs.write_text(fs.join(d, "sub", "b2.bin"), "longer than ten bytes")
  fs.copy(fs.join(d, "b.bin"), fs.join(d, "sub", "b2.bin"))
  fs.replace(fs.join(d, "sub", "b2.bin"), fs.join(d, "sub", "b3.bin"))
  with fs.open_bytes(fs.join(d, "b.bin")) as f:
    f.seek(3)
    middle = f.read(4)
  out = {
      "text": fs.read_text(fs.join(d, "a.txt")),
      "bytes": fs.read_bytes(fs.join(d, "sub", "b3.bin")),
      "middle": middle,
      "json": fs.read_text(fs.join(d, "c.json")),
      "listing": sorted(fs.listdir(d)),
      "sub": sorted(fs.listdir(fs.join(d, "sub"))),
      "glob": sorted(fs.basename(p) for p in fs.glob(fs.join(d, "*.bin"))),
      "kinds": [(fs.exists(p), fs.isdir(p), fs.isfile(p))
                for p in (d, fs.join(d, "a.txt"), fs.join(d, "nothing"))],
      "size": fs.getsize(fs.join(d, "a.txt")),
  }
  errors = []
  for call in (lambda: fs.read_text(fs.join(d, "nothing")),
               lambda: fs.open_bytes(fs.join(d, "nothing")),
               lambda: fs.getsize(fs.join(d, "nothing")),
               lambda: fs.listdir(fs.join(d, "nothing"))):
    with pytest.raises(OSError) as info:
      call()
    errors.append(type(info.value).__name__)
  out["errors"] = errors
  fs.remove(fs.join(d, "a.txt"))
  fs.rmtree(fs.join(d, "sub"))
  out["after"] = sorted(fs.listdir(d))
  return out


def test_ram_paths_give_what_local_paths_give(tmp_path):
  local, remote = _fs_session(str(tmp_path)), _fs_session(_ram())
  assert remote == local
  assert local["text"] == "one\ntwo\nthree\n"  # universal newlines, as open() reads text
  assert local["listing"] == ["a.txt", "b.bin", "c.json", "sub"]  # no c.json.tmp left
  assert local["json"] == '{"x": 2}\n' and local["middle"] == bytes([3, 4, 5, 6])
  assert local["errors"] == ["FileNotFoundError"] * 4
  assert local["after"] == ["b.bin", "c.json"]


def test_unknown_scheme_and_a_missing_slash_are_one_clear_error(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match=r"^cannot use s3://bucket/data/manifest\.json: "
                                       r"tf\.io\.gfile has no file system for s3:// \(.*\); "
                                       r"gs:// is built into TensorFlow, other schemes need "
                                       r"their TensorFlow file-system plugin"):
    PretrainingData("s3://bucket/data", global_batch_size=2, seed=0, process_index=0,
                    process_count=1)
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match=r"^'gs:/bucket/data' is neither a local path nor a URL: "
                                       r"did you mean 'gs://bucket/data'\?$"):
    PretrainingData("gs:/bucket/data", global_batch_size=2, seed=0, process_index=0,
                    process_count=1)
  with pytest.raises(ValueError, match="did you mean 'gs://bucket/run'"):
    fs.makedirs("gs:/bucket/run")
  assert os.listdir(tmp_path) == []  # no local directory "gs:" made
  assert not fs.is_remote("runs/exp:v2") and not fs.is_remote("/tmp/a:/b")


def _write_shards(directory, counts):
  """Shards whose example k of shard s has input_ids[1] = 100 * s + k, and their manifest (with
  the files' sizes, as build_pretraining_data records them)."""
  tf = tensorflow()
  shards = []
  for s, count in enumerate(counts):
    name = shard_format.shard_name(s, len(counts))
    records = [shard_format.serialize_example(tf, [2, 100 * s + k, 7, 3], [0, 0, 0, 0], SEQ_LEN)
               for k in range(count)]
    shard_format.write_atomically(tf, os.path.join(directory, name), records)
    shards.append({"file": name, "split": "train", "examples": count, "tokens": 4 * count,
                   "bytes": os.path.getsize(os.path.join(directory, name))})
  manifest_lib.write_json_atomically(os.path.join(directory, manifest_lib.MANIFEST_NAME), {
      "format": manifest_lib.FORMAT, "seq_len": SEQ_LEN,
      "tokenizer": {"spec": "test", "fingerprint": "f" * 64, "vocab_size": 1000, "pad_id": 0,
                    "unk_id": 1, "cls_id": 2, "sep_id": 3, "mask_id": 4},
      "shards": shards, "train_shards": [s["file"] for s in shards], "eval_shards": [],
      "build": {}})


def _copy_tree(src, dst):
  fs.makedirs(dst)
  for name in os.listdir(src):
    fs.copy(os.path.join(src, name), fs.join(dst, name))


def test_reader_reads_shards_on_ram_as_local_ones_and_checks_their_sizes(tmp_path):
  _write_shards(str(tmp_path), [5, 7, 3])
  remote = fs.join(_ram(), "shards")
  _copy_tree(str(tmp_path), remote)
  read = lambda d: PretrainingData(d, global_batch_size=4, seed=1, process_index=0,
                                   process_count=1, seq_len=SEQ_LEN, window_shards=2)
  local, cloud = read(str(tmp_path)), read(remote)
  for step in range(6):  # across an epoch end (15 examples)
    want, got = local.batch(step), cloud.batch(step)
    assert all(np.array_equal(got[k], want[k]) for k in want), step

  shard = fs.join(remote, shard_format.shard_name(1, 3))
  fs.write_bytes(shard, fs.read_bytes(shard)[:-5])
  with pytest.raises(ShardError, match=rf"^shard {shard} has \d+ bytes but the manifest says "):
    read(remote)
  fs.remove(shard)
  with pytest.raises(ShardError, match=rf"^shard {shard} is missing \(found while opening"):
    read(remote)


def test_tokenizer_saved_on_ram_is_found_and_loaded_like_a_local_one(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(w + "\n" for w in WORDS))
  tokenizer = tokenizers.load(f"wordpiece:{vocab}?lowercase=false")
  data_dir = _ram()
  saved = fs.join(data_dir, tokenizers.SAVED_DIR)
  assert tokenizer.save(saved) == tokenizer.save(str(tmp_path / "local"))
  for name in fs.listdir(saved):
    assert fs.read_bytes(fs.join(saved, name)) == (tmp_path / "local" / name).read_bytes(), name

  # The shards' tokenizer beside them, found without the recorded spec's file.
  recorded = {"spec": "wordpiece:/gone/vocab.txt", "fingerprint": tokenizer.fingerprint()}
  from_shards = tokenizers.of_shards(data_dir, recorded)
  assert from_shards.lowercase is False and from_shards.fingerprint() == tokenizer.fingerprint()
  found = tokenizers.find_saved(fs.join(data_dir, "checkpoints", "7"))  # from a step directory
  text = ["the cloud paths"]
  assert found.encode(text) == tokenizer.encode(text) == [[5, 6, 7, 8]]
  assert tokenizers.find_saved(fs.join(_ram(), "model")) is None  # the search stops at the root
  remote_vocab = tokenizers.load(f"wordpiece:{fs.join(saved, 'vocab.txt')}")
  assert remote_vocab.spec.startswith(f"wordpiece:{saved}/vocab.txt?")
  assert json.loads(fs.read_text(fs.join(saved, tokenizers.SAVED_DESCRIPTION)))["kind"] == \
      "wordpiece"
