"""Hugging Face Hub model ids (ORG/NAME) in `load_pretrained`, `load_tokenizer` and fine-tuning's
--init, without network: a model in a local Hub cache resolves (a fake cache laid out as
huggingface_hub lays it out); offline and not cached is one clear error naming the id and the
download command. Nothing here downloads: every test runs with the Hub offline."""

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

import electra_fixtures as F
from data_pipelines import tokenizers
from electra_jax import CheckpointError, export_hf, load_pretrained, load_tokenizer
from electra_jax.finetune import train as ft
from electra_jax.io import common
from electra_jax.io.load import is_hub_id
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig
from finetune_testlib import TINY, finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
REPO_ID = "electra-jax-test/tiny-discriminator"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(root: Path, repo_id: str, model_dir: Path) -> Path:
  """A Hub cache at `root` holding `model_dir`'s files as repo `repo_id` at revision main, laid
  out as huggingface_hub writes it: models--ORG--NAME/{blobs/, snapshots/HASH/ (links to the
  blobs), refs/main (HASH)}."""
  repo = root / f"models--{repo_id.replace('/', '--')}"
  (repo / "blobs").mkdir(parents=True)
  snapshot = repo / "snapshots" / COMMIT
  snapshot.mkdir(parents=True)
  for i, f in enumerate(sorted(model_dir.iterdir())):
    blob = repo / "blobs" / f"{i:040x}"
    blob.write_bytes(f.read_bytes())
    os.symlink(os.path.relpath(blob, snapshot), snapshot / f.name)
  (repo / "refs").mkdir()
  (repo / "refs" / "main").write_text(COMMIT)
  return root


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, vocab):
  """(cache root, the exported model's params) for a tiny ElectraForPreTraining with vocab.txt."""
  cfg = ModelConfig(vocab_size=len(vocab.read_text().split()), type_vocab_size=2, **dict(TINY))
  model = heads.ElectraForPreTraining(cfg)
  params = F.random_params(model, np.ones((1, 4), np.int32), seed=5)
  export = tmp_path_factory.mktemp("export")
  export_hf(model, params, str(export), tokenizer=tokenizers.load(f"wordpiece:{vocab}"))
  return fake_hub_cache(tmp_path_factory.mktemp("hub"), REPO_ID, export), params


@pytest.fixture
def offline(monkeypatch, tmp_path):
  """The Hub offline, its cache an empty directory (tests that need a model pass their own)."""
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
  return monkeypatch


def test_what_counts_as_a_hub_id(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "runs").mkdir()
  assert is_hub_id("google/electra-small-discriminator")
  assert not is_hub_id("runs/small")  # ORG is a local directory: a mistyped local path
  assert not is_hub_id("electra-small")  # no ORG
  assert not is_hub_id("./a/b") and not is_hub_id("/a/b") and not is_hub_id("a/b/c")
  (tmp_path / "runs" / "small").mkdir()
  assert not is_hub_id("runs/small")


def test_cached_hub_model_loads_offline(hub_cache, offline):
  root, params = hub_cache
  offline.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
  model, loaded = load_pretrained(REPO_ID, as_numpy=True)
  assert type(model).__name__ == "ElectraForPreTraining"
  want = common.flatten(params)
  got = common.flatten(loaded)
  assert sorted(got) == sorted(want)
  assert all(np.array_equal(got[k], want[k]) for k in want)
  assert load_tokenizer(REPO_ID).vocab_size == model.config.vocab_size


def test_finetune_init_from_a_cached_hub_model(hub_cache, offline, vocab, tmp_path):
  """--init ORG/NAME: fine-tuning's tokenizer and initial encoder come from the cached snapshot."""
  root, params = hub_cache
  offline.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
  cfg = finetune_config(vocab, tmp_path, init=REPO_ID, tokenizer=None, size=None,
                        model_overrides=())
  tokenizer = ft.resolve_tokenizer(cfg)
  assert tokenizer.vocab_size == len(vocab.read_text().split())
  model_config, initial = ft.load_initial(cfg, tokenizer.vocab_size)
  assert model_config.hidden_size == 32
  np.testing.assert_array_equal(
      initial["electra"]["embeddings"]["word_embeddings"]["embedding"],
      params["electra"]["embeddings"]["word_embeddings"]["embedding"])


def test_offline_and_not_cached_is_one_clear_error(offline):
  with pytest.raises(CheckpointError) as err:
    load_pretrained("electra-jax-test/not-cached")
  message = str(err.value)
  assert message.startswith("electra-jax-test/not-cached: no such local path")
  assert "not in the local cache (HF_HUB_OFFLINE is set)" in message
  assert "hf download electra-jax-test/not-cached config.json model.safetensors" in message


def test_hub_model_without_safetensors_is_refused(tmp_path, offline):
  pickled = tmp_path / "pickled"
  pickled.mkdir()
  (pickled / "config.json").write_text("{}")
  (pickled / "vocab.txt").write_text("[PAD]\n")
  root = fake_hub_cache(tmp_path / "hub", "electra-jax-test/pickled", pickled)
  offline.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
  with pytest.raises(CheckpointError, match=r"has no safetensors weights .*does not unpickle"):
    load_pretrained("electra-jax-test/pickled")


def test_finetune_cli_offline_hub_id_is_one_error_line(tmp_path, vocab):
  """The command line under HF_HUB_OFFLINE=1 (the environment variable, in a fresh process):
  exit code 2 and a single `error:` line naming the id, no traceback."""
  data = sst2_dir(tmp_path / "glue", n_train=8, n_dev=4, n_test=0)
  env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
         "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, "-m", "electra_jax.finetune", "--task=sst2",
                      "--init=electra-jax-test/not-cached", f"--data_dir={data}",
                      f"--workdir={tmp_path / 'work'}"],
                     capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert r.returncode == 2, r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      "error: electra-jax-test/not-cached: no such local path"), r.stderr
  assert "HF_HUB_OFFLINE is set" in lines[0] and "hf download" in lines[0]
