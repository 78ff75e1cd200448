"""index_shards: manifests for official-format shards that have none; the reader then reads them.

Shards are written here the way google-research/electra's build_pretraining_dataset.py writes
them (tf.io.TFRecordWriter, three int64 features, names pretrain_data.tfrecord-I-of-N, no
manifest), independently of our own shard_format writer.
"""

import json
import os
import re

import numpy as np
import pytest

from data_pipelines import shard_format, tokenizers
from data_pipelines import index_shards as indexer
from data_pipelines import manifest as manifest_lib
from data_pipelines.pretraining_reader import PretrainingData
from data_pipelines.tf_runtime import tensorflow

SEQ_LEN = 16
VOCAB_SIZE = 100
FEATURES = ["input_ids", "input_mask", "segment_ids"]
EXACT = "shards must hold exactly ['input_ids', 'input_mask', 'segment_ids']"


@pytest.fixture(scope="module")
def vocab_spec(tmp_path_factory):
  """A 100-token WordPiece vocab: the five specials then w5 ... w99."""
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(5, VOCAB_SIZE)]
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return f"wordpiece:{path}"


def _official_row(example_id, length):
  """(input_ids, input_mask, segment_ids) as the official builder pads them; ids[1] is unique."""
  body = [5 + (example_id * 7 + j) % (VOCAB_SIZE - 5) for j in range(length - 3)]
  ids = [2, 5 + example_id] + body + [3]
  split = 2 + len(body) // 2
  segments = [0] * split + [1] * (length - split)
  pad = SEQ_LEN - length
  return ids + [0] * pad, [1] * length + [0] * pad, segments + [0] * pad


def _record(tf, features):
  """Serialize {name: list} as a tf.train.Example; int lists -> int64_list, float lists -> float_list."""
  def feature(values):
    if values and isinstance(values[0], float):
      return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

  example = tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in features.items()}))
  return example.SerializeToString()


def _write(path, records, compression=None):
  tf = tensorflow()
  with tf.io.TFRecordWriter(str(path), options=compression) as writer:
    for record in records:
      writer.write(record)
  return str(path)


def _write_official_shards(directory, counts):
  """Shards pretrain_data.tfrecord-I-of-N of `counts` examples; returns their rows [n, 3 * SEQ_LEN]."""
  tf = tensorflow()
  rows, next_id = [], 0
  for index, count in enumerate(counts):
    records = []
    for _ in range(count):
      row = _official_row(next_id, 4 + next_id % (SEQ_LEN - 3))
      records.append(_record(tf, dict(zip(FEATURES, row))))
      rows.append(sum(row, []))
      next_id += 1
    _write(directory / f"pretrain_data.tfrecord-{index}-of-{len(counts)}", records)
  return rows


def _epoch_rows(data_dir, split, batch, steps):
  """Sorted rows (input_ids ++ attention_mask ++ token_type_ids) of `steps` global batches."""
  data = PretrainingData(data_dir, global_batch_size=batch, seed=3, split=split, process_index=0, process_count=1)
  rows = []
  for step in range(steps):
    b = data.batch(step)
    rows += np.concatenate([b[shard_format.BATCH_KEYS[k]] for k in FEATURES], axis=1).tolist()
  return sorted(rows)


COUNTS = [7, 0, 5, 4]  # shard 1 is empty; with eval_shards=1 the last shard (4 examples) is eval


@pytest.fixture(scope="module")
def official(tmp_path_factory):
  directory = tmp_path_factory.mktemp("official")
  return directory, _write_official_shards(directory, COUNTS)


def test_indexed_official_shards_read_back_exactly(official, vocab_spec):
  directory, rows = official
  manifest = indexer.index_shards(str(directory / "pretrain_data.tfrecord-*"), vocab_spec, eval_shards=1,
                                  progress=False)
  with open(directory / manifest_lib.MANIFEST_NAME, encoding="utf-8") as f:
    assert json.load(f) == manifest
  tokenizer = tokenizers.load(vocab_spec)
  assert manifest["seq_len"] == SEQ_LEN
  assert manifest["tokenizer"] == {"spec": tokenizer.spec, "fingerprint": tokenizer.fingerprint(),
                                   "vocab_size": VOCAB_SIZE, "pad_id": 0, "unk_id": 1, "cls_id": 2,
                                   "sep_id": 3, "mask_id": 4}
  names = [f"pretrain_data.tfrecord-{i}-of-4" for i in range(4)]
  starts = np.cumsum([0] + COUNTS)
  tokens = [sum(sum(r[SEQ_LEN:2 * SEQ_LEN]) for r in rows[starts[i]:starts[i + 1]]) for i in range(4)]
  assert manifest["shards"] == [
      {"file": names[i], "split": "eval" if i == 3 else "train", "examples": COUNTS[i], "tokens": tokens[i]}
      for i in range(4)
  ]
  assert manifest["train_shards"] == names[:3] and manifest["eval_shards"] == names[3:]
  assert manifest["build"]["summary"] == {"examples": 16, "tokens": sum(tokens)}
  assert _epoch_rows(str(directory), "train", batch=4, steps=3) == sorted(rows[:12])
  assert _epoch_rows(str(directory), "eval", batch=4, steps=1) == sorted(rows[12:])


def test_manifest_elsewhere_uses_absolute_paths(official, vocab_spec, tmp_path):
  directory, rows = official
  output = tmp_path / "index"
  manifest = indexer.index_shards(str(directory / "pretrain_data.tfrecord-[023]-of-4"), vocab_spec,
                                  output_dir=str(output), progress=False)
  assert manifest["train_shards"] == [str(directory / f"pretrain_data.tfrecord-{i}-of-4") for i in (0, 2, 3)]
  assert _epoch_rows(str(output), "train", batch=16, steps=1) == sorted(rows)


def test_rerun_keeps_an_identical_manifest_and_refuses_a_different_one(vocab_spec, tmp_path):
  _write_official_shards(tmp_path, [3, 2])
  pattern = str(tmp_path / "*")  # also matches manifest.json on the re-run, which is skipped
  first = indexer.index_shards(pattern, vocab_spec, progress=False)
  path = tmp_path / manifest_lib.MANIFEST_NAME
  before = (path.read_bytes(), os.stat(path).st_mtime_ns)
  assert indexer.index_shards(pattern, vocab_spec, progress=False) == first
  assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
  message = (f"{path} already exists and differs from the manifest of the shards matching {pattern!r}; "
             f"remove it or choose another output directory")
  with pytest.raises(FileExistsError, match=re.escape(message)):
    indexer.index_shards(pattern, vocab_spec, eval_shards=1, progress=False)
  assert path.read_bytes() == before[0]


def _good(example_id=0):
  return dict(zip(FEATURES, _official_row(example_id, 9)))


def _bad_records(case):
  """Two good records then record 2 as `case` describes."""
  bad = _good(2)
  if case == "missing":
    del bad["segment_ids"]
  elif case == "extra":
    bad["next_sentence_labels"] = [1]
  elif case == "length":
    bad["input_mask"] = bad["input_mask"][:-1]
  elif case == "float":
    bad["segment_ids"] = [float(v) for v in bad["segment_ids"]]
  elif case in ("too_big", "negative"):
    bad["input_ids"][4] = VOCAB_SIZE if case == "too_big" else -1
  return [_good(0), _good(1), bad]


@pytest.mark.parametrize("case, message", [
    ("missing", "record 2: missing feature(s) ['segment_ids']; " + EXACT),
    ("extra", "record 2: unexpected feature(s) ['next_sentence_labels']; " + EXACT),
    ("length", "record 2: feature 'input_mask' has length 15, expected seq_len 16 "
               "(set by feature 'input_ids' of record 0 of {path})"),
    ("float", "record 2: feature 'segment_ids' is a float_list, expected an int64_list"),
    ("too_big", "record 2: input_ids[4] = 100 is not an id of tokenizer {spec} (vocab_size 100)"),
    ("negative", "record 2: input_ids[4] = -1 is not an id of tokenizer {spec} (vocab_size 100)"),
])
def test_bad_records_are_named_by_file_and_index(case, message, vocab_spec, tmp_path):
  tf = tensorflow()
  path = _write(tmp_path / "shard-0", [_record(tf, r) for r in _bad_records(case)])
  expected = f"{path}: " + message.format(path=path, spec=tokenizers.load(vocab_spec).spec)
  with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
    indexer.index_shards(path, vocab_spec, progress=False)
  assert not (tmp_path / manifest_lib.MANIFEST_NAME).exists()


def test_length_disagreeing_with_an_earlier_shard(vocab_spec, tmp_path):
  tf = tensorflow()
  first = _write(tmp_path / "a", [_record(tf, _good())])
  short = {k: v[:-2] for k, v in _good().items()}
  second = _write(tmp_path / "b", [_record(tf, _good()), _record(tf, short)])
  expected = (f"{second}: record 1: feature 'input_ids' has length 14, expected seq_len 16 "
              f"(set by feature 'input_ids' of record 0 of {first})")
  with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
    indexer.index_shards(str(tmp_path / "*"), vocab_spec, progress=False)


def test_unreadable_inputs(vocab_spec, tmp_path):
  tf = tensorflow()
  missing = str(tmp_path / "nothing-*")
  with pytest.raises(FileNotFoundError, match=f"^{re.escape(f'no shard files match {missing!r}')}$"):
    indexer.index_shards(missing, vocab_spec, progress=False)

  gz = _write(tmp_path / "shard.gz", [_record(tf, _good())], compression="GZIP")
  expected = (f"{gz} is gzip-compressed; PretrainingData reads uncompressed TFRecords only "
              f"(as official ELECTRA writes them): decompress it first")
  with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
    indexer.index_shards(gz, vocab_spec, progress=False)

  text = tmp_path / "text.tfrecord"
  text.write_bytes(b"this is plain text, not a TFRecord file\n" * 4)
  with pytest.raises(ValueError, match=f"^{re.escape(f'{text} is not a readable TFRecord file after record 0: ')}"):
    indexer.index_shards(str(text), vocab_spec, progress=False)

  junk = _write(tmp_path / "junk", [_record(tf, _good()), b"\xff\xff\xff not a proto"])
  with pytest.raises(ValueError, match=f"^{re.escape(f'{junk}: record 1 is not a serialized tf.train.Example (')}"):
    indexer.index_shards(junk, vocab_spec, progress=False)

  empty = _write(tmp_path / "empty", [])
  with pytest.raises(ValueError, match=f"^{re.escape(f'the 1 shard(s) matching {empty!r} hold no records')}$"):
    indexer.index_shards(empty, vocab_spec, progress=False)


def test_bad_arguments(vocab_spec, tmp_path):
  tf = tensorflow()
  os.makedirs(tmp_path / "x")
  os.makedirs(tmp_path / "y")
  _write(tmp_path / "x" / "s0", [_record(tf, _good())])
  _write(tmp_path / "y" / "s1", [_record(tf, _good())])
  pattern = str(tmp_path / "*" / "s*")
  with pytest.raises(ValueError, match=f"^{re.escape(f'the shards matching {pattern!r} lie in 2 directories; pass output_dir')}$"):
    indexer.index_shards(pattern, vocab_spec, progress=False)
  with pytest.raises(ValueError, match=re.escape("eval_shards=2 must leave at least one of the 2 shards for training")):
    indexer.index_shards(pattern, vocab_spec, output_dir=str(tmp_path), eval_shards=2, progress=False)


def test_cli_prints_a_summary(official, vocab_spec, tmp_path, capsys):
  directory, _ = official
  output = tmp_path / "cli"
  indexer.main(["--shards", str(directory / "pretrain_data.tfrecord-*"), "--tokenizer", vocab_spec,
                "--output", str(output), "--eval_shards", "2"])
  captured = capsys.readouterr()
  lines = captured.out.splitlines()
  assert lines[:2] == ["shards: 4 (2 train, 2 eval)  seq_len: 16",
                       f"examples: 16  tokens (non-pad): {json.loads((output / 'manifest.json').read_text())['build']['summary']['tokens']}"]
  assert re.fullmatch(r"speed: [\d,]+ records/s", lines[2])
  assert f"wrote {output / manifest_lib.MANIFEST_NAME}" in captured.err
  assert "indexing shards: 100%" in captured.err
