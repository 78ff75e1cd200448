"""Loading edge cases, bad input (one clear error each, tested by message), the electra_jax
formats, and the `python -m electra_jax.io.convert` CLI."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import electra_fixtures as F
from electra_jax import CheckpointError, export_hf, load_pretrained
from electra_jax.io import common, native
from electra_jax.io import load as pretrained
from electra_jax.model import heads, pretraining
from electra_jax.model.config import ModelConfig

transformers.logging.set_verbosity_error()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def disc_dir(tmp_path_factory):
  model = F.make_hf_model("ElectraForPreTraining", "small", seed=11)
  d = tmp_path_factory.mktemp("disc")
  model.save_pretrained(d)
  return model, d


def _copy_dir(src: Path, dst: Path) -> Path:
  dst.mkdir(parents=True, exist_ok=True)
  for f in src.iterdir():
    (dst / f.name).write_bytes(f.read_bytes())
  return dst


def _rewrite_tensors(d: Path, edit) -> None:
  state = common.read_safetensors(str(d / "model.safetensors"))
  edit(state)
  common.write_safetensors(state, str(d / "model.safetensors"))


# ---------------------------------------------------------------------------------------------
# Bad input: one clear CheckpointError (a ValueError) each.

def test_error_is_a_value_error():
  assert issubclass(CheckpointError, ValueError)


def test_missing_path(tmp_path):
  with pytest.raises(CheckpointError, match="no such file or directory"):
    load_pretrained(str(tmp_path / "does-not-exist"))


def test_missing_weights_file(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")
  (d / "model.safetensors").unlink()
  with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
    load_pretrained(str(d))


def test_missing_config_file(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")
  (d / "config.json").unlink()
  with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
    load_pretrained(str(d))


def test_bad_config_json(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")
  (d / "config.json").write_text("{not json")
  with pytest.raises(CheckpointError, match="invalid JSON"):
    load_pretrained(str(d))


def test_config_sizes_disagree_with_weights(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")
  cfg = json.loads((d / "config.json").read_text())
  cfg["intermediate_size"] = 40
  (d / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(CheckpointError) as e:
    load_pretrained(str(d))
  msg = str(e.value)
  assert "electra.encoder.layer.0.intermediate.dense.weight: checkpoint shape (37, 32), " \
         "config implies (40, 32)" in msg
  assert "electra.encoder.layer.1.output.dense.weight: checkpoint shape (32, 37), " \
         "config implies (32, 40)" in msg
  assert "intermediate_size=40" in msg


def test_unknown_and_missing_tensors_are_listed(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")

  def edit(state):
    state["electra.pooler.dense.weight"] = np.zeros((4, 4), np.float32)
    state["extra_head.bias"] = np.zeros((2,), np.float32)
    del state["electra.encoder.layer.1.attention.self.key.bias"]
    del state["discriminator_predictions.dense_prediction.weight"]
  _rewrite_tensors(d, edit)
  with pytest.raises(CheckpointError) as e:
    load_pretrained(str(d))
  msg = str(e.value)
  assert "unknown tensors (not part of ElectraForPreTraining): electra.pooler.dense.weight, " \
         "extra_head.bias" in msg
  assert "missing tensors: discriminator_predictions.dense_prediction.weight, " \
         "electra.encoder.layer.1.attention.self.key.bias" in msg


def test_pickle_checkpoint_is_refused_without_unpickling(disc_dir, tmp_path, monkeypatch):
  d = tmp_path / "legacy"
  d.mkdir()
  (d / "config.json").write_bytes((disc_dir[1] / "config.json").read_bytes())
  torch.save(disc_dir[0].state_dict(), d / "pytorch_model.bin")

  def forbidden(*a, **k):
    raise AssertionError("electra_jax tried to unpickle")
  monkeypatch.setattr(pickle, "load", forbidden)
  monkeypatch.setattr(pickle, "loads", forbidden)
  monkeypatch.setattr(pickle, "Unpickler", forbidden)
  monkeypatch.setattr(torch, "load", forbidden)
  for path in (d, d / "pytorch_model.bin"):
    with pytest.raises(CheckpointError) as e:
      load_pretrained(str(path))
    msg = str(e.value)
    assert "pickle-based PyTorch checkpoint" in msg
    assert "does not unpickle" in msg
    assert "save_pretrained" in msg and "model.safetensors" in msg


def test_not_safetensors(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")
  (d / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello")
  with pytest.raises(CheckpointError, match="not a safetensors file"):
    load_pretrained(str(d))


def test_wrong_model_type_and_unsupported_options(disc_dir, tmp_path):
  d = _copy_dir(disc_dir[1], tmp_path / "c")
  cfg = json.loads((d / "config.json").read_text())
  (d / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
  with pytest.raises(CheckpointError, match="model_type='bert'"):
    load_pretrained(str(d))
  (d / "config.json").write_text(json.dumps({**cfg, "hidden_act": "swish"}))
  with pytest.raises(CheckpointError, match="hidden_act='swish'"):
    load_pretrained(str(d))
  (d / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForMaskedLM"]}))
  with pytest.raises(CheckpointError, match="not an ELECTRA class"):
    load_pretrained(str(d))


def test_which_mismatch_for_single_network(disc_dir):
  with pytest.raises(CheckpointError, match="holds one network"):
    load_pretrained(str(disc_dir[1]), "generator")


def test_cli_error_has_no_traceback(tmp_path):
  r = subprocess.run([sys.executable, "-m", "electra_jax.io.convert", str(tmp_path / "nope"),
                      str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 2
  assert r.stderr.startswith("error: ") and "no such file or directory" in r.stderr
  assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# Odd but valid HF inputs

def test_legacy_names_buffers_and_tied_lm_head(tmp_path):
  """Old checkpoints: position_ids buffer, LayerNorm gamma/beta names, a stored (tied)
  generator_lm_head.weight, no `architectures` (class detected from tensor names)."""
  torch_model = F.make_hf_model("ElectraForMaskedLM", "small", seed=4)
  d = tmp_path / "old"
  torch_model.save_pretrained(d)
  cfg = json.loads((d / "config.json").read_text())
  del cfg["architectures"]
  (d / "config.json").write_text(json.dumps(cfg))

  def edit(state):
    state["electra.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    state["generator_lm_head.weight"] = state["electra.embeddings.word_embeddings.weight"]
    for k in [k for k in state if "LayerNorm" in k]:
      state[k.replace(".weight", ".gamma").replace(".bias", ".beta")] = state.pop(k)
  _rewrite_tensors(d, edit)
  model, params = load_pretrained(str(d))
  assert type(model).__name__ == "ElectraForMaskedLM"
  ids, mask, types_ = F.batch()
  assert F.max_abs_diff(F.jax_outputs(model, params, ids, mask, types_),
                        F.torch_outputs(torch_model, ids, mask, types_)) <= 1e-5


def test_untied_lm_head_is_refused(tmp_path):
  torch_model = F.make_hf_model("ElectraForMaskedLM", "small", seed=4)
  d = tmp_path / "untied"
  torch_model.save_pretrained(d)
  cfg = json.loads((d / "config.json").read_text())
  (d / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": False}))
  _rewrite_tensors(d, lambda s: s.__setitem__(
      "generator_lm_head.weight", np.ones_like(s["electra.embeddings.word_embeddings.weight"])))
  with pytest.raises(CheckpointError, match="untied generator output embeddings"):
    load_pretrained(str(d))


def test_bfloat16_and_sharded_checkpoints(tmp_path):
  torch_model = F.make_hf_model("ElectraForPreTraining", "small", seed=5)
  torch_model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
  model, params = load_pretrained(str(tmp_path / "bf16"), as_numpy=True)
  want = torch_model.electra.embeddings.word_embeddings.weight.float().detach().numpy()
  got = params["electra"]["embeddings"]["word_embeddings"]["embedding"]
  assert got.dtype == np.float32 and np.array_equal(got, want)
  assert model.config.dtype == "float32"  # HF's storage dtype is not our compute dtype

  torch_model = F.make_hf_model("ElectraForPreTraining", "small", seed=6)
  torch_model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
  assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
  model, params = load_pretrained(str(tmp_path / "sharded"))
  ids, mask, types_ = F.batch()
  assert F.max_abs_diff(F.jax_outputs(model, params, ids, mask, types_),
                        F.torch_outputs(torch_model, ids, mask, types_)) <= 1e-5


def test_compute_dtype_override(disc_dir):
  model, params = load_pretrained(str(disc_dir[1]), dtype="bfloat16")
  assert model.config.dtype == "bfloat16"
  assert all(v.dtype == np.float32 for v in common.flatten(params).values())


# ---------------------------------------------------------------------------------------------
# electra_jax formats

def _pretraining(sharing="tied", **kw):
  import jax.numpy as jnp
  from electra_jax.model.config import generator_config
  disc = ModelConfig(**F.SHAPES["small"])
  gen = generator_config(disc, 0.5).replace(num_attention_heads=2)
  model = pretraining.ElectraPretrainingModel(disc, gen, embedding_sharing=sharing, **kw)
  ids, mask, types_ = F.batch()
  positions = np.tile(np.arange(4, dtype=np.int32), (ids.shape[0], 1))
  params = F.random_params(model, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types_),
                           jnp.asarray(positions), seed=9)
  return model, params


def _write_electra_jax_checkpoint(workdir: Path, joint, params, step: int = 10,
                                  **config_changes) -> dict:
  """A real pre-training checkpoint through electra_jax.pretrain.checkpoint.Checkpointer (orbax),
  with the config layout of TrainConfig.to_dict() ("model", "generator", "embedding_sharing", ...)."""
  import dataclasses
  import jax
  import jax.numpy as jnp
  from electra_jax.pretrain.checkpoint import Checkpointer
  from electra_jax.pretrain.config import CheckpointConfig
  config_dict = {"model": dataclasses.asdict(joint.disc_config),
                 "generator": dataclasses.asdict(joint.gen_config),
                 "embedding_sharing": joint.embedding_sharing,
                 "optimizer": {"learning_rate": 5e-4}}
  config_dict.update(config_changes)
  ckpt = Checkpointer(workdir, CheckpointConfig(async_save=False))
  state = {"step": jnp.int32(step), "params": jax.tree.map(jnp.asarray, params),
           "opt_state": {"mu": jax.tree.map(jnp.zeros_like, params)}}
  ckpt.save(step, state, config_dict, {"step": step, "seed": 0, "global_batch_size": 8})
  ckpt.close()
  # The trainer also writes its resolved config as WORKDIR/config.json: not an HF config.json.
  (workdir / "config.json").write_text(json.dumps(config_dict))
  return config_dict


@pytest.mark.parametrize("sharing", ["tied", "untied", "gdes"])
def test_electra_jax_pretraining_checkpoint(tmp_path, sharing):
  """A checkpoint written by electra_jax.pretrain.checkpoint, read back through
  read_pretraining_checkpoint and split with pretraining.split_pretraining_params."""
  import jax.numpy as jnp
  model, params = _pretraining(sharing)
  workdir = tmp_path / "workdir"
  _write_electra_jax_checkpoint(workdir, model, params)
  ids, mask, types_ = F.batch()
  args = (jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types_))
  disc_model, disc_params = load_pretrained(str(workdir))  # default: the discriminator
  assert pretrained.detect_format(str(workdir)) == "electra_jax"
  assert type(disc_model).__name__ == "ElectraForPreTraining"
  want_disc = model.apply({"params": params}, *args, method=model.discriminator_logits)
  assert F.max_abs_diff(F.jax_outputs(disc_model, disc_params, *args),
                        [np.asarray(want_disc)]) == 0
  gen_model, gen_params = load_pretrained(str(workdir / "checkpoints" / "10"), "generator")
  positions = jnp.tile(jnp.arange(ids.shape[1]), (ids.shape[0], 1))
  want = model.apply({"params": params}, *args, positions, method=model.generator_logits)
  assert F.max_abs_diff(F.jax_outputs(gen_model, gen_params, *args), [np.asarray(want)]) == 0
  joint, joint_params = load_pretrained(str(workdir), "pretraining")
  assert type(joint).__name__ == "ElectraPretrainingModel" and joint.embedding_sharing == sharing
  if sharing != "tied":
    return
  # CLI: both networks to HF directories that transformers loads.
  r = _cli(workdir, tmp_path / "hf")
  assert r.returncode == 0, r.stderr
  assert r.stdout.count("converted electra_jax") == 2
  hf_disc = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "hf" / "discriminator")
  assert F.max_abs_diff(F.torch_outputs(hf_disc.eval(), ids, mask, types_),
                        [np.asarray(want_disc)]) <= 1e-5


def test_electra_jax_checkpoint_errors(tmp_path):
  model, params = _pretraining()
  workdir = tmp_path / "w"
  import dataclasses
  _write_electra_jax_checkpoint(
      workdir, model, params,
      model=dict(dataclasses.asdict(model.disc_config), intermediate_size=64))
  with pytest.raises(CheckpointError) as e:
    load_pretrained(str(workdir))
  assert "discriminator/electra/encoder/layer_0/intermediate/kernel has shape (32, 37) but the " \
         "model config implies (32, 64)" in str(e.value)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(CheckpointError, match="no pre-training checkpoint"):
    load_pretrained(str(empty))


def test_ablation_pretraining_models(tmp_path):
  """Joint models without a generator / with an MLM head on the big network (objective kinds
  mlm, replace_mlm, all_tokens_mlm) save, load and export."""
  model, params = _pretraining("untied", use_generator=False, discriminator_heads=("mlm",))
  native.save_safetensors(model, params, str(tmp_path / "mlm"))
  big, big_params = load_pretrained(str(tmp_path / "mlm"))
  assert type(big).__name__ == "ElectraForMaskedLM"
  with pytest.raises(CheckpointError, match="no generator tower"):
    load_pretrained(str(tmp_path / "mlm"), "generator")
  model, params = _pretraining("tied", discriminator_heads=("rtd", "mlm"))
  native.save_safetensors(model, params, str(tmp_path / "all"))
  big, _, report = load_pretrained(str(tmp_path / "all"), return_report=True)
  assert type(big).__name__ == "ElectraForPreTraining"
  assert any("MLM head" in n for n in report.notes)
  export_hf(model, params, str(tmp_path / "all_hf"), which="generator")


def test_native_safetensors_round_trip(disc_dir, tmp_path):
  model, params = load_pretrained(str(disc_dir[1]), as_numpy=True)
  info = native.save_safetensors(model, params, str(tmp_path / "n"))
  assert info["tensors"] == len(common.flatten(params))
  back, back_params = load_pretrained(str(tmp_path / "n"), as_numpy=True)
  assert type(back) is type(model) and back.config == model.config
  for p, v in common.flatten(params).items():
    assert common.flatten(back_params)[p].tobytes() == v.tobytes()
  # A head="official" classifier (no HF class) still has a lossless home.
  cls = heads.ElectraForSequenceClassification(model.config, num_labels=4, head="official")
  import jax.numpy as jnp
  cls_params = F.random_params(cls, jnp.ones((1, 4), jnp.int32))
  native.save_safetensors(cls, cls_params, str(tmp_path / "c"))
  back, _ = load_pretrained(str(tmp_path / "c"))
  assert back.head == "official" and back.num_labels == 4


# ---------------------------------------------------------------------------------------------
# CLI

def _cli(*args):
  return subprocess.run([sys.executable, "-m", "electra_jax.io.convert", *map(str, args)],
                        capture_output=True, text=True, cwd=REPO)


def test_cli_hf_to_native_and_back(disc_dir, tmp_path):
  r = _cli(disc_dir[1], tmp_path / "native", "--to", "electra_jax-safetensors")
  assert r.returncode == 0, r.stderr
  assert "converted hf" in r.stdout and "43 tensors" in r.stdout
  assert "reading hf: 43/43 tensors" in r.stderr  # the progress line
  r = _cli(tmp_path / "native", tmp_path / "hf")
  assert r.returncode == 0, r.stderr
  a = common.read_safetensors(str(disc_dir[1] / "model.safetensors"))
  b = common.read_safetensors(str(tmp_path / "hf" / "model.safetensors"))
  assert sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)
  r = _cli(tmp_path / "native", tmp_path / "hf")
  assert r.returncode == 2 and "exists and is not empty" in r.stderr


def test_cli_tf1_to_hf_both_networks(tmp_path):
  disc = dict(vocab_size=50, embedding_size=32, hidden_size=128, num_hidden_layers=1,
              intermediate_size=64, max_position_embeddings=40, type_vocab_size=2)
  gen = dict(disc, hidden_size=64, intermediate_size=256)
  arrays = F.official_tf1_arrays(disc, gen, seed=2)
  prefix = F.write_tf1_checkpoint(str(tmp_path / "ckpt" / "model.ckpt-7"), arrays)
  r = _cli(tmp_path / "ckpt", tmp_path / "out")
  assert r.returncode == 0, r.stderr
  assert "converted tf1" in r.stdout and "(discriminator)" in r.stdout
  assert "(generator)" in r.stdout and "optimizer/bookkeeping variables ignored" in r.stdout
  ids, mask, types_ = F.batch(vocab=50)
  for which, cls in (("discriminator", "ElectraForPreTraining"),
                     ("generator", "ElectraForMaskedLM")):
    hf_model = getattr(transformers, cls).from_pretrained(tmp_path / "out" / which).eval()
    ours, params = load_pretrained(prefix, which)
    assert F.max_abs_diff(F.torch_outputs(hf_model, ids, mask, types_),
                          F.jax_outputs(ours, params, ids, mask, types_)) <= 1e-5
  r = _cli(prefix, tmp_path / "gen_only", "--which", "generator", "--from", "tf1")
  assert r.returncode == 0, r.stderr
  assert json.loads((tmp_path / "gen_only" / "config.json").read_text())["architectures"] == [
      "ElectraForMaskedLM"]


def test_cli_official_head_classifier_to_hf_is_one_error_line(disc_dir, tmp_path):
  """A classifier fine-tuned with the default head="official" has no Hugging Face class: one
  `error:` line (exit 2) saying what to do, nothing written; --architecture ElectraModel exports
  its encoder, which transformers' ElectraModel runs as ours does."""
  encoder, enc_params = load_pretrained(str(disc_dir[1]), architecture="ElectraModel",
                                        as_numpy=True)
  cls = heads.ElectraForSequenceClassification(encoder.config, num_labels=2, head="official")
  params = F.random_params(cls, np.ones((1, 4), np.int32))
  params["electra"] = enc_params["electra"]
  native.save_safetensors(cls, params, str(tmp_path / "ft"),
                          finetune={"task": "sst2", "labels": ["0", "1"]})
  r = _cli(tmp_path / "ft", tmp_path / "hf")
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'ft'}: a classifier "
                                                 "fine-tuned with head='official'"), r.stderr
  assert "FinetuneConfig.head = 'hf'" in lines[0]
  assert "--architecture ElectraModel" in lines[0]
  assert not (tmp_path / "hf").exists()
  r = _cli(tmp_path / "ft", tmp_path / "enc", "--architecture", "ElectraModel")
  assert r.returncode == 0, r.stderr
  assert "ElectraModel" in r.stdout
  hf_model = transformers.ElectraModel.from_pretrained(tmp_path / "enc").eval()
  ids, mask, types_ = F.batch(vocab=encoder.config.vocab_size)
  assert F.max_abs_diff(F.torch_outputs(hf_model, ids, mask, types_),
                        F.jax_outputs(encoder, enc_params, ids, mask, types_)) <= 1e-5


def test_architecture_electra_model_reads_the_encoder_of_any_checkpoint(tmp_path):
  """load_pretrained(..., architecture="ElectraModel") on an ELECTRA workdir and on an MLM run
  returns the encoder whose hidden states equal the discriminator's (it used to return the
  pre-training head's logits)."""
  import jax.numpy as jnp
  model, params = _pretraining()
  _write_electra_jax_checkpoint(tmp_path / "w", model, params)
  ids, mask, types_ = (jnp.asarray(a) for a in F.batch())
  disc, disc_params = load_pretrained(str(tmp_path / "w"))
  encoder, enc_params = load_pretrained(str(tmp_path / "w"), architecture="ElectraModel")
  assert type(encoder).__name__ == "ElectraModel" and set(enc_params) == {"electra"}
  hidden = encoder.apply({"params": enc_params}, ids, mask, types_)
  hidden = hidden[0] if isinstance(hidden, tuple) else hidden
  assert hidden.shape == ids.shape + (model.disc_config.hidden_size,)
  mlm, mlm_params = _pretraining("untied", use_generator=False, discriminator_heads=("mlm",))
  native.save_safetensors(mlm, mlm_params, str(tmp_path / "mlm"))
  assert type(load_pretrained(str(tmp_path / "mlm"), architecture="ElectraModel")[0]).__name__ \
      == "ElectraModel"
  with pytest.raises(CheckpointError, match="applies to Hugging Face sources"):
    load_pretrained(str(tmp_path / "w"), architecture="ElectraForMaskedLM")


def test_loading_a_pretraining_checkpoint_logs_no_orbax_metadata_warning(tmp_path, caplog):
  """Reading the state item of a step no longer goes through a Checkpointer, which warned
  "Metadata file does not exist: .../state/_CHECKPOINT_METADATA" on every load."""
  model, params = _pretraining()
  _write_electra_jax_checkpoint(tmp_path / "w", model, params)
  caplog.clear()
  with caplog.at_level("WARNING"):
    load_pretrained(str(tmp_path / "w"))
  assert not [r for r in caplog.records if "_CHECKPOINT_METADATA" in r.getMessage()]


def test_tensorflow_import_prints_no_onednn_notice():
  """TF is a data library here: its oneDNN kernels are off, and with them the notice its two
  libraries each printed at import."""
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  r = subprocess.run([sys.executable, "-c", "from data_pipelines.tf_runtime import tensorflow; "
                      "tensorflow()"], capture_output=True, text=True, env=env, timeout=120,
                     cwd=Path(__file__).resolve().parents[2])
  assert r.returncode == 0 and "oneDNN" not in r.stderr, r.stderr
