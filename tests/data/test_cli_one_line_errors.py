"""Every command fails in one `error:` line (issue 24): electra-build-data's bad inputs, an empty
corpus, decoding errors with FILE:LINE, a truncated safetensors file, electra-convert on a full
disk (no partial output), gin files that do not parse or import; ELECTRA_DEBUG=1 gives the
traceback."""

import errno
import re

import jax
import numpy as np
import pytest

from data_pipelines import build_pretraining_data as build
from data_pipelines import fs, glue
from electra_jax.io import common, convert, native
from electra_jax.model import heads
from electra_jax.model.config import preset
from electra_jax.finetune import train as ft
from electra_jax.pretrain import train
from electra_jax.pretrain.config import resolve_config

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "."]


def _vocab(tmp_path, tokens=SPECIALS + WORDS):
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(tokens) + "\n")
  return f"wordpiece:{path}"


def _one_error_line(capsys, rc) -> str:
  """The `error:` line of a command that failed with status 2, checking it is the only one and
  that no traceback was printed."""
  err = capsys.readouterr().err
  assert rc == 2, err
  assert "Traceback" not in err, err
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
  return errors[0]


@pytest.fixture
def corpus(tmp_path):
  path = tmp_path / "corpus.txt"
  path.write_text("the cat sat on the mat .\nthe dog ran far .\n\na cat ran .\n" * 20)
  return path


def test_build_data_bad_inputs_are_one_error_line_each(tmp_path, corpus, capsys):
  vocab = _vocab(tmp_path)
  (tmp_path / "empty_dir").mkdir()
  (tmp_path / "nul.txt").write_bytes(b"the cat\x00sat\n")
  (tmp_path / "nomask").mkdir()
  no_mask = _vocab(tmp_path / "nomask", SPECIALS[:4] + WORDS)
  (tmp_path / "a_file").write_text("x")
  out = str(tmp_path / "out")
  cases = [
      (["--corpus", str(tmp_path / "none*.txt"), "--tokenizer", vocab, "--output", out],
       "corpus pattern .*none\\*\\.txt' matches no file"),
      (["--corpus", str(tmp_path / "empty_dir"), "--tokenizer", vocab, "--output", out],
       "empty_dir' matches no file"),
      (["--corpus", str(tmp_path / "nul.txt"), "--tokenizer", vocab, "--output", out],
       "nul.txt: has NUL bytes"),
      (["--corpus", str(corpus), "--tokenizer", no_mask, "--output", out],
       "lacks the special tokens \\['\\[MASK\\]'\\]"),
      (["--corpus", str(corpus), "--tokenizer", vocab, "--output", str(tmp_path / "a_file")],
       "--output .*a_file is a file, not a directory"),
      (["--corpus", str(corpus), "--tokenizer", vocab, "--output", out, "--num_shards", "2",
        "--eval_shards", "2"], "eval_shards=2 must leave at least one of the 2 shards"),
      (["--corpus", str(corpus), "--tokenizer", f"wordpiece:{tmp_path}/missing.txt",
        "--output", out], "WordPiece vocab file not found: .*missing.txt"),
  ]
  for argv, message in cases:
    shards = [] if "--num_shards" in argv else ["--num_shards", "1"]
    line = _one_error_line(capsys, build.main(argv + shards))
    assert re.search(message, line), (argv, line)

  # Another seq_len into an existing build.
  assert build.main(["--corpus", str(corpus), "--tokenizer", vocab, "--output", out,
                     "--num_shards", "1", "--seq_len", "16"]) == 0
  capsys.readouterr()
  line = _one_error_line(capsys, build.main(["--corpus", str(corpus), "--tokenizer", vocab,
                                             "--output", out, "--num_shards", "1",
                                             "--seq_len", "32"]))
  assert "built with different settings (seq_len: existing 16 vs requested 32)" in line


def test_corpus_of_empty_files_is_a_build_error(tmp_path, capsys):
  (tmp_path / "corpus").mkdir()
  for name in ("a.txt", "b.txt"):
    (tmp_path / "corpus" / name).write_text("")
  out = tmp_path / "out"
  line = _one_error_line(capsys, build.main(["--corpus", str(tmp_path / "corpus" / "*.txt"),
                                             "--tokenizer", _vocab(tmp_path),
                                             "--output", str(out), "--num_shards", "1"]))
  assert line == (f"error: corpus {tmp_path}/corpus/*.txt?docs=blank holds no text: 0 file(s) with "
                  f"text, 2 empty file(s), 0 empty line(s); no manifest was written to {out}")
  assert not (out / "manifest.json").exists()


def test_debug_switch_shows_the_traceback(tmp_path, monkeypatch):
  monkeypatch.setenv("ELECTRA_DEBUG", "1")
  with pytest.raises(FileNotFoundError, match="matches no file"):
    build.main(["--corpus", str(tmp_path / "none*.txt"), "--tokenizer", _vocab(tmp_path),
                "--output", str(tmp_path / "out")])


def test_latin1_byte_in_a_glue_tsv_names_file_line_and_byte(tmp_path):
  path = tmp_path / "train.tsv"
  path.write_bytes(b"sentence\tlabel\ngood film\t1\nbad caf\xe9 film\t0\n")
  with pytest.raises(ValueError, match=rf"^{path}:3: byte 0xe9 at column 8 is not UTF-8 text "
                                       r"\(invalid continuation byte\); save the file as UTF-8"):
    glue.read_tsv(str(path), "sst2", ["0", "1"])
  assert fs.read_text(str(path), "latin-1").endswith("café film\t0\n")


def _native_model(tmp_path):
  """A tiny ElectraModel in electra_jax's safetensors format; its directory."""
  model = heads.ElectraModel(preset("tiny").model.replace(vocab_size=50))
  ids = np.zeros((1, 4), np.int32)
  params = model.init(jax.random.key(0), ids, ids, ids)["params"]
  src = tmp_path / "src"
  native.save_safetensors(model, params, str(src))
  return src


def test_truncated_safetensors_is_named_and_called_truncated(tmp_path):
  src = _native_model(tmp_path)
  weights = src / native.NATIVE_WEIGHTS
  data = weights.read_bytes()
  weights.write_bytes(data[:len(data) - 1001])
  with pytest.raises(common.CheckpointError, match=rf"^{weights}: truncated safetensors file: "
                                                   rf"{len(data) - 1001:,} bytes, but its header "
                                                   rf"describes {len(data):,} \(1,001 missing\)"):
    common.read_safetensors(str(weights))


def test_convert_on_a_full_disk_leaves_no_partial_output(tmp_path, monkeypatch, capsys):
  src = _native_model(tmp_path)
  dst = tmp_path / "out"
  real_write = convert._write

  def disk_fills(model, params, source, out, to, tokenizer, finetune):
    real_write(model, params, source, out, to, tokenizer, finetune)  # the files are written...
    raise OSError(errno.ENOSPC, "No space left on device", f"{out}/model.safetensors")

  monkeypatch.setattr(convert, "_write", disk_fills)
  line = _one_error_line(capsys, convert.main([str(src), str(dst)]))
  assert line.startswith("error: [Errno 28] No space left on device"), line
  assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no DST, no staging directory

  monkeypatch.setattr(convert, "_write", real_write)
  assert convert.main([str(src), str(dst)]) == 0
  assert sorted(p.name for p in dst.iterdir()) >= ["config.json", "model.safetensors"]
  assert str(dst) in capsys.readouterr().out and sorted(p.name for p in tmp_path.iterdir()) == [
      "out", "src"]


@pytest.mark.parametrize("text,message", [
    ("ModelConfig.hidden_size = 64\nTrainConfig.num_train_steps = (3\nDataConfig.seq_len = 64\n",
     r"line 2: '\(' is never closed in `TrainConfig\.num_train_steps = \(3` \(gin noticed "
     r"on line 3: Expected ',' or '\)'\.\)$"),
    ("import not_a_module_xyz\nModelConfig.hidden_size = 64\n",
     r"line 1: No module named 'not_a_module_xyz'; install the module or remove the import$"),
])
def test_gin_file_that_does_not_parse_names_file_and_line(tmp_path, text, message):
  path = tmp_path / "bad.gin"
  path.write_text(text)
  with pytest.raises(ValueError, match=rf"^(cannot parse )?gin file {path}, {message}"):
    resolve_config(None, [str(path)], [])


def test_train_and_finetune_clis_report_gin_and_unexpected_errors_in_one_line(
    tmp_path, monkeypatch, capsys):
  bad = tmp_path / "bad.gin"
  bad.write_text("TrainConfig.num_train_steps = (3\nDataConfig.seq_len = 64\n")
  line = _one_error_line(capsys, train.main([f"--workdir={tmp_path / 'w'}",
                                             f"--gin_file={bad}"]))
  assert line.startswith(f"error: cannot parse gin file {bad}, line 1: '(' is never closed")
  line = _one_error_line(capsys, ft.main(["--task=sst2", "--init=random", "--size=tiny",
                                          f"--workdir={tmp_path / 'f'}",
                                          f"--gin_file={tmp_path / 'missing.gin'}"]))
  assert line == f"error: gin file {tmp_path / 'missing.gin'} does not exist"

  def boom(*args, **kwargs):
    raise RuntimeError("TensorStore said no")

  monkeypatch.setattr(train, "train_and_evaluate", boom)
  assert train.main([f"--workdir={tmp_path / 'w'}", "--experiment=tiny"]) == 1
  err = capsys.readouterr().err
  assert err.strip().splitlines()[-1] == (
      "error: RuntimeError: TensorStore said no (ELECTRA_DEBUG=1 shows the traceback)")
  assert "Traceback" not in err
