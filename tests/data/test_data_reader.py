"""The pre-training reader: determinism, seek = replay, multi-process coverage, epochs, errors."""

import collections

import numpy as np
import pytest

from data_pipelines import shard_format
from data_pipelines import manifest as manifest_lib
from data_pipelines.pretraining_reader import PretrainingData
from data_pipelines.tf_runtime import tensorflow

SEQ_LEN = 16
FINGERPRINT = "f" * 64


def _write_dataset(directory, counts, eval_counts=()):
  """Shards whose example k of shard s has input_ids[1] = 1000 * s + k (a unique example id)."""
  tf = tensorflow()
  all_counts = list(counts) + list(eval_counts)
  shards = []
  for s, count in enumerate(all_counts):
    name = shard_format.shard_name(s, len(all_counts))
    records = []
    for k in range(count):
      length = 3 + (s + k) % (SEQ_LEN - 3)
      ids = [2, 1000 * s + k] + [5 + (s * 7 + k + j) % 50 for j in range(length - 3)] + [3]
      records.append(shard_format.serialize_example(tf, ids, [0] * 2 + [1] * (length - 2), SEQ_LEN))
    shard_format.write_atomically(tf, str(directory / name), records)
    split = "train" if s < len(counts) else "eval"
    shards.append({"file": name, "split": split, "examples": count, "tokens": 0})
  manifest_lib.write_json_atomically(str(directory / manifest_lib.MANIFEST_NAME), {
      "format": manifest_lib.FORMAT, "seq_len": SEQ_LEN,
      "tokenizer": {"spec": "test", "fingerprint": FINGERPRINT, "vocab_size": 30000, "pad_id": 0, "unk_id": 1,
                    "cls_id": 2, "sep_id": 3, "mask_id": 4},
      "shards": shards, "train_shards": [s["file"] for s in shards if s["split"] == "train"],
      "eval_shards": [s["file"] for s in shards if s["split"] == "eval"], "build": {},
  })
  return str(directory)


COUNTS = [5, 0, 13, 8, 21, 3, 10]  # 60 train examples, one empty shard


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return _write_dataset(tmp_path_factory.mktemp("shards"), COUNTS, eval_counts=[4, 6])


def _reader(data_dir, batch=12, seed=7, p=0, n=1, **kwargs):
  return PretrainingData(data_dir, global_batch_size=batch, seed=seed, process_index=p, process_count=n,
                         window_shards=2, **kwargs)


def _ids(batch):
  return batch["input_ids"][:, 1].tolist()


def test_batches_are_a_pure_function_of_seed_and_step(data_dir):
  a, b = _reader(data_dir), _reader(data_dir)
  for step in (0, 3, 1, 9, 3):
    x, y = a.batch(step), b.batch(step)
    assert all(np.array_equal(x[k], y[k]) for k in shard_format.BATCH_KEYS.values())
    assert {k: (v.dtype, v.shape) for k, v in x.items()} == {k: (np.int32, (12, SEQ_LEN)) for k in x}
  assert _ids(_reader(data_dir, seed=8).batch(0)) != _ids(a.batch(0))
  assert (a.seq_len, a.local_batch_size, a.num_examples) == (SEQ_LEN, 12, 60)


def test_seek_equals_replay_through_tf_data(data_dir):
  replay = _reader(data_dir).iterate(0)
  replayed = [next(replay) for _ in range(12)]
  resumed = _reader(data_dir).iterate(7)
  for step in range(7, 12):
    got = next(resumed)
    assert all(np.array_equal(got[k], replayed[step][k]) for k in shard_format.BATCH_KEYS.values())
  fresh = _reader(data_dir)
  assert all(np.array_equal(fresh.batch(11)[k], replayed[11][k]) for k in shard_format.BATCH_KEYS.values())


def test_rows_keep_their_mask_and_segments(data_dir):
  batch = _reader(data_dir).batch(2)
  lengths = batch["attention_mask"].sum(axis=1)
  for ids, seg, n in zip(batch["input_ids"], batch["token_type_ids"], lengths):
    s, k = divmod(int(ids[1]), 1000)
    assert n == 3 + (s + k) % (SEQ_LEN - 3)
    assert ids[0] == 2 and ids[n - 1] == 3 and (ids[n:] == 0).all()
    assert seg.tolist() == [0, 0] + [1] * (n - 2) + [0] * (SEQ_LEN - n)


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_processes_cover_each_epoch_disjointly_and_completely(data_dir, process_count):
  readers = [_reader(data_dir, p=p, n=process_count) for p in range(process_count)]
  single = _reader(data_dir)
  seen = []
  for step in range(5):  # 5 steps x 12 = 60 = exactly one epoch
    parts = [_ids(r.batch(step)) for r in readers]
    assert all(len(p) == 12 // process_count for p in parts)
    assert sum(parts, []) == _ids(single.batch(step))  # same global batch for any process count
    seen += sum(parts, [])
  expected = [1000 * s + k for s, c in enumerate(COUNTS) for k in range(c)]
  assert sorted(seen) == expected


def test_epochs_wrap_inside_a_batch_and_reshuffle(data_dir):
  reader = _reader(data_dir, batch=8)
  stream = sum((_ids(reader.batch(step)) for step in range(15)), [])  # 120 = two epochs, 60 % 8 != 0
  expected = sorted(1000 * s + k for s, c in enumerate(COUNTS) for k in range(c))
  assert sorted(stream[:60]) == expected and sorted(stream[60:]) == expected
  assert stream[:60] != stream[60:]


def test_corpus_smaller_than_one_batch(tmp_path):
  directory = _write_dataset(tmp_path, [2, 1])
  reader = PretrainingData(directory, global_batch_size=8, seed=0, process_index=1, process_count=2)
  full = PretrainingData(directory, global_batch_size=8, seed=0, process_index=0, process_count=1)
  rows = _ids(full.batch(0)) + _ids(full.batch(1))
  for epoch in range(5):
    assert sorted(rows[3 * epoch: 3 * epoch + 3]) == [0, 1, 1000]
  assert _ids(reader.batch(1)) == rows[12:16]
  assert collections.Counter(rows) == {0: 5, 1: 6, 1000: 5}


def test_eval_split_reads_only_eval_shards(data_dir):
  reader = _reader(data_dir, batch=10, split="eval")
  assert reader.num_examples == 10
  assert sorted(_ids(reader.batch(0))) == [7000, 7001, 7002, 7003] + [8000 + k for k in range(6)]


def test_mismatches_with_the_run_name_both_values(data_dir):
  with pytest.raises(ValueError, match=r"seq_len mismatch: the run uses seq_len=128 but the shards in .* have seq_len=16"):
    _reader(data_dir, seq_len=128)
  with pytest.raises(ValueError, match=f"the run's tokenizer has fingerprint abc but the shards in .* were built with fingerprint {FINGERPRINT}"):
    _reader(data_dir, vocab_fingerprint="abc")
  assert _reader(data_dir, seq_len=SEQ_LEN, vocab_fingerprint=FINGERPRINT).seq_len == SEQ_LEN
  with pytest.raises(ValueError, match="global_batch_size 10 must be a positive multiple of process_count 4"):
    _reader(data_dir, batch=10, n=4)
  with pytest.raises(ValueError, match="split 'validation' of .* has no examples"):
    _reader(data_dir, split="validation")


def test_manifest_disagreeing_with_shard_contents_is_an_error(tmp_path):
  directory = _write_dataset(tmp_path, [4, 4])
  manifest = manifest_lib.read_manifest(directory)
  manifest["shards"][0]["examples"] = 5
  manifest_lib.write_json_atomically(str(tmp_path / manifest_lib.MANIFEST_NAME), manifest)
  with pytest.raises(ValueError, match=r"shard-00000-of-00002.tfrecord holds 4 rows but the manifest says 5 "
                                       r"\(found while reading the batch of training step 0\)"):
    PretrainingData(directory, global_batch_size=4, seed=0, process_index=0, process_count=1,
                    window_shards=2).batch(0)
  with pytest.raises(FileNotFoundError, match="no manifest.json in"):
    PretrainingData(str(tmp_path / "nowhere"), global_batch_size=4, seed=0)


def test_default_process_index_comes_from_jax(data_dir):
  reader = PretrainingData(data_dir, global_batch_size=12, seed=7, window_shards=2)
  assert (reader.process_index, reader.process_count) == (0, 1)
  assert _ids(reader.batch(4)) == _ids(_reader(data_dir).batch(4))
