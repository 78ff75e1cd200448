"""Bad shards: missing, truncated or corrupted TFRecord files stop a run with one error naming the
file and the step, or with on_corrupt_shard="skip" are used as far as they read, deterministically,
and counted. Huge lines go through the shard builder in bounded pieces."""

import os
import re
import shlex
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import shard_format, text_io, tokenizers
from data_pipelines import build_pretraining_data as builder
from data_pipelines import manifest as manifest_lib
from data_pipelines.default_data import ensure_default_pretraining_data
from data_pipelines.pretraining_reader import PretrainingData, ShardError, seeded_permutation
from data_pipelines.tf_runtime import tensorflow
from electra_jax.pretrain.config import resolve_config
from electra_jax.pretrain.train import open_data
from test_data_builder import vocab_path  # noqa: F401 (fixture)
from test_data_reader import _write_dataset
from train_testlib import DATA_CACHE, REPO, VOCAB

SEQ_LEN = 32
NUM_SHARDS = 6  # 5 train + 1 eval
SEED = 3
TF_NOISE = ("Traceback", "function_node", "[Op:", "\n")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, vocab_path):
  """Shards built by the builder from a corpus of short lines that differ in their first tokens,
  so that no two examples are equal."""
  words = "the quick brown fox jumps over lazy dogs while seven wizards quietly hex jolly boxers".split()
  lines = []
  for doc in range(120):
    for sent in range(doc % 5 + 2):
      lines.append(f"{doc} {sent} " + " ".join(words[(doc + sent * 3 + k) % len(words)] for k in range(4)))
    lines.append("")
  corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
  corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
  out = tmp_path_factory.mktemp("pristine")
  builder.build_pretraining_data(str(corpus), f"wordpiece:{vocab_path}", str(out), seq_len=SEQ_LEN,
                                 num_shards=NUM_SHARDS, eval_shards=1, pieces_per_shard=2, progress=False)
  return out


@pytest.fixture
def data_dir(pristine, tmp_path):
  """A copy of the pristine shards, to damage."""
  copy = tmp_path / "shards"
  shutil.copytree(pristine, copy)
  return copy


def _reader(directory, **kwargs):
  return PretrainingData(str(directory), global_batch_size=8, seed=SEED, process_index=0, process_count=1,
                         window_shards=2, **kwargs)


def _train_files(directory):
  return [directory / name for name in manifest_lib.read_manifest(str(directory))["train_shards"]]


def _last_read(directory):
  """The train shard read last in epoch 0: its window is not the first, so the step is > 0."""
  files = _train_files(directory)
  return files[seeded_permutation(len(files), SEED, 0, 0)[-1]]


def _flip_middle(path):
  """Invert one byte in the middle of the file (inside a record): same size, failing CRC."""
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _record_starts(data):
  """Byte offsets of the records of TFRecord bytes (8-byte length, 4-byte CRC, data, 4-byte CRC)."""
  starts, offset = [], 0
  while offset < len(data):
    starts.append(offset)
    offset += 16 + struct.unpack("<Q", data[offset : offset + 8])[0]
  return starts


def _truncate_mid_record(path):
  """Cut the file inside the data of its middle record: TensorFlow raises DataLossError there."""
  data = path.read_bytes()
  starts = _record_starts(data)
  path.write_bytes(data[: starts[len(starts) // 2] + 20])


def _truncate_in_header(path):
  """Cut the file 5 bytes into the header of its middle record: TensorFlow silently stops there."""
  data = path.read_bytes()
  starts = _record_starts(data)
  path.write_bytes(data[: starts[len(starts) // 2] + 5])


def _rows(path):
  """The examples of a shard file as a list of bytes keys, in file order."""
  tf = tensorflow()
  rows = []
  for chunk in tf.data.TFRecordDataset(str(path)).batch(1024).map(
          lambda s: shard_format.parse_examples(tf, s, SEQ_LEN)).as_numpy_iterator():
    stacked = np.concatenate([chunk[k] for k in shard_format.BATCH_KEYS.values()], axis=1)
    rows += [row.tobytes() for row in stacked]
  return rows


def _keys(batch):
  return [row.tobytes() for row in np.concatenate([batch[k] for k in shard_format.BATCH_KEYS.values()], axis=1)]


def _first_error(reader, steps):
  for step in range(steps):
    try:
      reader.batch(step)
    except ShardError as err:
      return err
  raise AssertionError(f"no ShardError in {steps} steps")


def test_missing_and_wrong_size_shards_are_refused_at_open_and_the_advice_repairs_them(data_dir, pristine):
  truncated, deleted = _train_files(data_dir)[1:3]
  _truncate_mid_record(truncated)
  os.remove(deleted)
  with pytest.raises(ShardError) as info:
    _reader(data_dir)
  message = str(info.value)
  size = truncated.stat().st_size
  wanted = (pristine / truncated.name).stat().st_size
  assert message.startswith(f"shard {truncated} has {size} bytes but the manifest says {wanted} "
                            f"(and 1 more shard(s) are missing or of the wrong size: {deleted.name}) "
                            "(found while opening the data); rebuild it: delete the file if it is there")
  assert "on_corrupt_shard='skip'" in message and info.value.step is None
  assert not any(noise in message for noise in TF_NOISE)
  assert isinstance(info.value, ValueError)

  # Following the advice: delete the bad files, re-run the recorded command; only they are rebuilt.
  command = re.search(r"re-run `([^`]*)`", message).group(1)
  args = shlex.split(command)
  assert args[:3] == ["python", "-m", "data_pipelines.build_pretraining_data"]
  os.remove(truncated)
  builder.main(args[3:])
  assert truncated.read_bytes() == (pristine / truncated.name).read_bytes()
  assert deleted.read_bytes() == (pristine / deleted.name).read_bytes()
  repaired, reference = _reader(data_dir), _reader(pristine)
  assert all(_keys(repaired.batch(step)) == _keys(reference.batch(step)) for step in range(0, 60, 7))


def test_corrupt_record_mid_run_names_the_shard_and_the_step(data_dir, pristine):
  bad = _last_read(data_dir)
  _flip_middle(bad)  # same size: passes the check at open
  reader, reference = _reader(data_dir), _reader(pristine)
  err = _first_error(reader, 200)
  assert err.step > 0 and err.path == str(bad)
  for step in range(err.step):  # every batch before it was read intact
    assert _keys(reader.batch(step)) == _keys(reference.batch(step))
  message = str(err)
  assert message.startswith(f"shard {bad} is unreadable (corrupted record at ")
  assert f"(found while reading the batch of training step {err.step}); rebuild it: delete the file" in message
  assert "or set on_corrupt_shard='skip' (DataConfig.on_corrupt_shard = 'skip')" in message
  assert not any(noise in message for noise in TF_NOISE)
  with pytest.raises(ShardError, match=f"training step {err.step + 1}\\)"):
    reader.batch(err.step + 1)  # the same window: still an error, with the new step


def test_truncated_shard_without_recorded_sizes_is_an_error_not_a_short_epoch(data_dir):
  manifest = manifest_lib.read_manifest(str(data_dir))
  for shard in manifest["shards"]:  # as written before manifests recorded sizes
    del shard["bytes"]
  manifest_lib.write_json_atomically(str(data_dir / manifest_lib.MANIFEST_NAME), manifest)
  bad = _last_read(data_dir)
  expected = next(manifest_lib.shard_rows(s) for s in manifest["shards"] if s["file"] == bad.name)
  _truncate_in_header(bad)  # TensorFlow reads the records before the cut without an error
  err = _first_error(_reader(data_dir), 200)
  assert err.path == str(bad) and err.step > 0
  assert str(err).startswith(f"shard {bad} holds {len(_rows(bad))} rows but the manifest says {expected} "
                             f"(found while reading the batch of training step {err.step}); ")


def test_skip_mode_keeps_batches_full_deterministic_and_counted(tmp_path, capsys):
  counts = [30, 25, 40, 20, 35]
  directory = tmp_path / "unique"
  directory.mkdir()
  _write_dataset(directory, counts)  # example k of shard s has input_ids[1] = 1000 * s + k
  files = _train_files(directory)
  flipped, truncated = files[0], files[3]
  _flip_middle(flipped)
  _truncate_mid_record(truncated)
  reader = _reader(directory, on_corrupt_shard="skip")
  epoch = reader.num_examples
  steps = 2 * epoch // 8 + 3  # two epochs and a bit: both bad shards are read twice
  batches = [reader.batch(step) for step in range(steps)]
  assert all(b["input_ids"].shape == (8, 16) for b in batches)
  warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: shard")]
  assert len(warnings) == 2 and {w.split()[2] for w in warnings} == {str(flipped), str(truncated)}
  assert "on_corrupt_shard='skip': using its first" in warnings[0]

  again = _reader(directory, on_corrupt_shard="skip")
  assert [_keys(again.batch(step)) for step in range(steps)] == [_keys(b) for b in batches]
  resumed = _reader(directory, on_corrupt_shard="skip")
  assert [_keys(resumed.batch(step)) for step in range(steps - 5, steps)] == [_keys(b) for b in batches[-5:]]

  # Epoch 0 holds every example of the good shards once, a prefix of each bad shard, and as
  # many copies of those as the bad shards lack.
  ids = np.concatenate([b["input_ids"][:, 1] for b in batches])[:epoch]
  lost = 0
  for s, count in enumerate(counts):
    present = {int(i) % 1000 for i in ids if i // 1000 == s}
    kept = len(present)
    assert present == set(range(kept))
    assert kept == count if files[s] not in (flipped, truncated) else 0 < kept < count
    lost += count - kept
  assert len(set(ids.tolist())) == epoch - lost  # every other row is a copy of a kept example
  assert reader.skipped == again.skipped == {"shards": 2, "examples": lost}


def test_skip_mode_with_nothing_readable_in_a_window_is_an_error(data_dir):
  bad = _last_read(data_dir)
  bad.write_bytes(os.urandom(bad.stat().st_size))
  reader = PretrainingData(str(data_dir), global_batch_size=8, seed=SEED, process_index=0, process_count=1,
                           window_shards=1, on_corrupt_shard="skip")
  err = _first_error(reader, 200)
  assert str(err).startswith(f"shard {bad} has no readable example, nor has any other shard of its window")
  assert f"training step {err.step})" in str(err) and "on_corrupt_shard='skip'" not in str(err)
  with pytest.raises(ValueError, match=r"on_corrupt_shard='ignore'; expected one of \('error', 'skip'\)"):
    _reader(data_dir, on_corrupt_shard="ignore")


def _cli_data(tmp_path):
  """A copy of the tiny run's default data (seq_len 64) whose first shard read is corrupted."""
  copy = tmp_path / "data"
  shutil.copytree(ensure_default_pretraining_data(str(DATA_CACHE), 64, VOCAB), copy)
  files = _train_files(copy)
  bad = files[seeded_permutation(len(files), 0, 0, 0)[0]]  # DataConfig.seed 0: read at step 0
  _flip_middle(bad)
  return copy, bad


@pytest.mark.slow  # a whole CLI run in a subprocess (about 45 s); the reader's own tests stay
def test_cli_stops_on_a_corrupt_shard_with_one_error_line_and_the_config_can_skip_it(tmp_path, capsys):
  data, bad = _cli_data(tmp_path)
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(
      [sys.executable, "-m", "electra_jax.train", "--experiment=tiny", f"--workdir={tmp_path / 'run'}",
       "--set", f"DataConfig.data_dir = '{data}'", "--set", "LogConfig.progress_bar = False"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 2, done.stderr[-3000:]
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, done.stderr[-3000:]
  assert errors[0].startswith(f"error: shard {bad} is unreadable (corrupted record at ")
  assert "training step 0" in errors[0]
  assert "Traceback" not in done.stderr and "function_node" not in done.stderr

  config = resolve_config("tiny", gin_bindings=[f"DataConfig.data_dir = '{data}'",
                                                "DataConfig.on_corrupt_shard = 'skip'"])
  train, evaluation, _, _ = open_data(config)
  assert train.on_corrupt_shard == evaluation.on_corrupt_shard == "skip"
  assert train.batch(0)["input_ids"].shape == (8, 64)
  assert train.skipped["shards"] == 1 and f"warning: shard {bad} is unreadable" in capsys.readouterr().err
  with pytest.raises(ValueError, match="DataConfig.on_corrupt_shard='ignore'; expected 'error' or 'skip'"):
    resolve_config("tiny", gin_bindings=["DataConfig.on_corrupt_shard = 'ignore'"])


def test_one_huge_line_reaches_the_tokenizer_in_bounded_batches(tmp_path, vocab_path, monkeypatch):
  monkeypatch.setattr(text_io, "CHUNK_BYTES", 1024)
  monkeypatch.setattr(builder, "ENCODE_BATCH_CHARS", 4096)
  huge = " ".join(f"w{i % 997}" for i in range(12_000))  # ~60 KB: ~60 chunks, no newline
  corpus = tmp_path / "huge.txt"
  corpus.write_text(f"a short line\n{huge}\nlast line\n", encoding="utf-8")
  tokenizer = tokenizers.load(f"wordpiece:{vocab_path}")
  expected_tokens = sum(len(ids) for ids in tokenizer.encode(["a short line", huge, "last line"]))
  calls = []
  encode = tokenizers.WordPieceTokenizer.encode

  def spy(self, texts):
    calls.append(sum(len(t) for t in texts))
    return encode(self, texts)

  monkeypatch.setattr(tokenizers.WordPieceTokenizer, "encode", spy)
  manifest = builder.build_pretraining_data(str(corpus), f"wordpiece:{vocab_path}", str(tmp_path / "out"),
                                            seq_len=SEQ_LEN, num_shards=1, pieces_per_shard=1, progress=False)
  summary = manifest["build"]["summary"]
  assert len(calls) > 10 and max(calls) <= 4096 + 2 * 1024  # the batch limit plus one piece
  assert summary["input"]["long_lines_split"] == 1 and summary["input"]["lines"] == 3
  assert summary["packing"]["tokens"] == expected_tokens  # nothing lost at the cuts
