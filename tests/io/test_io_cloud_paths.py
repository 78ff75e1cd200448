"""Exports to and loads from tf.io.gfile paths. TensorFlow's in-memory file system (ram://) stands
in for gs:// (tests have no network): export_hf, save_safetensors and electra-convert write there
the bytes they write locally, and load_pretrained / load_tokenizer read them back."""

import os
import uuid

import jax.numpy as jnp
import pytest

import electra_fixtures as F
from data_pipelines import fs, tokenizers
from electra_jax import CheckpointError, export_hf, load_pretrained, load_tokenizer
from electra_jax import save_safetensors
from electra_jax.io import common, convert, native
from electra_jax.model import pretraining
from electra_jax.model.config import ModelConfig, generator_config

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]


@pytest.fixture(scope="module")
def joint():
  """A small joint generator + discriminator with random weights, and a WordPiece tokenizer."""
  disc = ModelConfig(**F.SHAPES["small"])
  model = pretraining.ElectraPretrainingModel(
      disc, generator_config(disc, 0.5).replace(num_attention_heads=2), embedding_sharing="tied")
  ids, mask, types = (jnp.asarray(a) for a in F.batch())
  positions = jnp.tile(jnp.arange(4), (ids.shape[0], 1))
  return model, F.random_params(model, ids, mask, types, positions, seed=3)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  vocab.write_text("".join(w + "\n" for w in WORDS))
  return tokenizers.load(f"wordpiece:{vocab}")


def _ram():
  return f"ram://{uuid.uuid4().hex}"


def _same_files(remote: str, local) -> None:
  """The directory `remote` holds the files of the local directory, byte for byte."""
  assert sorted(fs.listdir(remote)) == sorted(os.listdir(local))
  for name in os.listdir(local):
    assert fs.read_bytes(fs.join(remote, name)) == (local / name).read_bytes(), name


def _assert_equal_params(a: dict, b: dict) -> None:
  a, b = common.flatten(a), common.flatten(b)
  assert sorted(a) == sorted(b)
  for key in a:
    assert a[key].tobytes() == b[key].tobytes(), key


def test_export_hf_and_save_safetensors_to_ram_load_back_equal(joint, tokenizer, tmp_path):
  model, params = joint
  root = _ram()
  for which in ("discriminator", "generator"):
    remote = fs.join(root, which)
    info = export_hf(model, params, remote, which=which, tokenizer=tokenizer)
    assert info["path"] == remote
    export_hf(model, params, str(tmp_path / which), which=which, tokenizer=tokenizer)
    _same_files(remote, tmp_path / which)
    got_model, got = load_pretrained(remote, as_numpy=True)
    want_model, want = load_pretrained(str(tmp_path / which), as_numpy=True)
    assert type(got_model) is type(want_model) and got_model.config == want_model.config
    _assert_equal_params(got, want)
    assert load_tokenizer(remote).fingerprint() == tokenizer.fingerprint()

  native_dir = fs.join(root, "native")
  save_safetensors(model, params, native_dir, tokenizer=tokenizer, finetune={"task": "x"})
  save_safetensors(model, params, str(tmp_path / "native"), tokenizer=tokenizer,
                   finetune={"task": "x"})
  _same_files(native_dir, tmp_path / "native")
  back_model, back = load_pretrained(native_dir, "pretraining", as_numpy=True)
  assert back_model.disc_config == model.disc_config
  _assert_equal_params(back, params)
  assert native.read_finetune_info(native_dir) == {"task": "x"}
  assert load_tokenizer(native_dir).fingerprint() == tokenizer.fingerprint()


def test_convert_cli_reads_and_writes_ram(joint, tokenizer, tmp_path, capsys):
  model, params = joint
  save_safetensors(model, params, str(tmp_path / "native"), tokenizer=tokenizer)
  out = _ram()
  assert convert.main([str(tmp_path / "native"), out]) == 0
  assert capsys.readouterr().out.count("converted electra_jax-safetensors") == 2
  assert sorted(fs.listdir(out)) == ["discriminator", "generator"]
  disc_model, disc = load_pretrained(fs.join(out, "discriminator"), as_numpy=True)
  assert type(disc_model).__name__ == "ElectraForPreTraining"
  _assert_equal_params(disc, load_pretrained(str(tmp_path / "native"), as_numpy=True)[1])

  # ram:// to ram://, then a destination that is not empty is refused as locally.
  again = fs.join(_ram(), "native")
  assert convert.main([fs.join(out, "discriminator"), again,
                       "--to", "electra_jax-safetensors"]) == 0
  _assert_equal_params(load_pretrained(again, as_numpy=True)[1], disc)
  capsys.readouterr()
  assert convert.main([fs.join(out, "discriminator"), again]) == 2
  assert f"error: {again} exists and is not empty" in capsys.readouterr().err


def test_unusable_paths_are_one_clear_error(joint, tmp_path, capsys, monkeypatch):
  model, params = joint
  save_safetensors(model, params, str(tmp_path / "native"))
  assert convert.main(["s3://bucket/model", str(tmp_path / "out")]) == 2
  assert capsys.readouterr().err.startswith(
      "error: cannot use s3://bucket/model: tf.io.gfile has no file system for s3://")
  monkeypatch.chdir(tmp_path)
  assert convert.main(["native", "gs:/bucket/out"]) == 2
  assert capsys.readouterr().err == ("error: 'gs:/bucket/out' is neither a local path nor a URL: "
                                     "did you mean 'gs://bucket/out'?\n")
  assert sorted(os.listdir(tmp_path)) == ["native"]
  with pytest.raises(CheckpointError, match=r"^ram://nothing/here: no such file or directory$"):
    load_pretrained("ram://nothing/here")

  # Pre-training checkpoints are orbax's: local paths and gs:// only.
  assert native.orbax_path("gs://bucket/run") == "gs://bucket/run"
  assert native.orbax_path("run") == os.path.join(str(tmp_path.resolve()), "run")
  workdir = _ram()
  fs.makedirs(fs.join(workdir, "checkpoints"))
  with pytest.raises(CheckpointError, match=rf"^{workdir}: pre-training checkpoints "
                                            r"\(orbax-checkpoint\) can be read and written on a "
                                            r"local path or gs:// only \(TensorStore, which "
                                            r"writes their arrays, has no driver for ram://\)"):
    load_pretrained(workdir, format="electra_jax")
