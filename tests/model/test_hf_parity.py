"""Parity with Hugging Face transformers' PyTorch ELECTRA classes.

Randomly initialised HF models (every weight random, biases and LayerNorm included) are saved with
save_pretrained (safetensors), loaded with electra_jax.load_pretrained and run on the same batch
(padding in two rows, both token types) in float32: max |ours - HF| <= 1e-5, for a small-shaped
(embedding_size != hidden_size) and a base-shaped (==) tiny config. Export goes the other way:
electra_jax params -> export_hf -> transformers from_pretrained -> the same outputs, and
import -> export reproduces every tensor bit for bit.

Measured max differences are printed (`pytest -s tests/test_hf_parity.py`).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import electra_fixtures as F
from electra_jax import export_hf, load_pretrained
from electra_jax.io import common
from electra_jax.model import heads, pretraining
from electra_jax.model.config import ModelConfig

TOL = 1e-5

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
  """(class, shape) -> (torch model, directory written by save_pretrained)."""
  out = {}
  for shape in F.SHAPES:
    for i, cls in enumerate(F.HF_CLASSES):
      model = F.make_hf_model(cls, shape, seed=i)
      d = tmp_path_factory.mktemp(f"{cls}_{shape}")
      model.save_pretrained(d)
      out[cls, shape] = (model, str(d))
  return out


def _inputs(cls):
  ids, mask, types = F.batch()
  if cls == "ElectraForMultipleChoice":
    return F.choices(ids, mask, types)
  return ids, mask, types


@pytest.mark.parametrize("shape", list(F.SHAPES))
@pytest.mark.parametrize("cls", F.HF_CLASSES)
def test_import_matches_transformers(hf_dirs, cls, shape):
  torch_model, d = hf_dirs[cls, shape]
  model, params = load_pretrained(d)
  assert type(model).__name__ == cls
  if cls == "ElectraForSequenceClassification":
    assert model.head == "hf" and model.num_labels == 3
  inputs = _inputs(cls)
  ours = F.jax_outputs(model, params, *inputs)
  ref = F.torch_outputs(torch_model, *inputs)
  diff = F.max_abs_diff(ours, ref)
  print(f"PARITY import {cls:34s} {shape:5s} max_abs_diff={diff:.3e}")
  assert diff <= TOL
  # The outputs are not trivially small: a wrong mapping would show.
  assert max(float(np.abs(r).max()) for r in ref) > 0.1


def test_output_shapes_match_hf_contract(hf_dirs):
  ids, mask, types = F.batch()
  b, length = ids.shape
  h, v = F.SHAPES["small"]["hidden_size"], F.SHAPES["small"]["vocab_size"]
  want = {
      "ElectraModel": [(b, length, h)],
      "ElectraForPreTraining": [(b, length)],
      "ElectraForMaskedLM": [(b, length, v)],
      "ElectraForSequenceClassification": [(b, 3)],
      "ElectraForTokenClassification": [(b, length, 3)],
      "ElectraForQuestionAnswering": [(b, length), (b, length)],
      "ElectraForMultipleChoice": [(b, 2)],
  }
  for cls, shapes in want.items():
    model, params = load_pretrained(hf_dirs[cls, "small"][1])
    outs = F.jax_outputs(model, params, *_inputs(cls))
    assert [o.shape for o in outs] == shapes, cls
    assert all(o.dtype == np.float32 for o in outs)


def test_official_head_is_a_plain_linear_on_cls(hf_dirs):
  """head="official" (dropout + linear on [CLS]) == torch Linear on HF ElectraModel's [CLS]."""
  torch_model, d = hf_dirs["ElectraModel", "small"]
  enc_model, enc_params = load_pretrained(d)
  cfg = enc_model.config
  linear = torch.nn.Linear(cfg.hidden_size, 5)
  F.randomize_(linear, seed=7)
  ids, mask, types = F.batch()
  with torch.no_grad():
    hidden = torch_model(input_ids=torch.tensor(ids, dtype=torch.long),
                         attention_mask=torch.tensor(mask, dtype=torch.long),
                         token_type_ids=torch.tensor(types, dtype=torch.long))[0]
    ref = linear(hidden[:, 0]).numpy()
  model = heads.ElectraForSequenceClassification(cfg, num_labels=5, head="official")
  params = {"electra": enc_params["electra"],
            "classifier": {"kernel": linear.weight.detach().numpy().T,
                           "bias": linear.bias.detach().numpy()}}
  common.check_params(model, params)
  diff = F.max_abs_diff(F.jax_outputs(model, params, ids, mask, types), [ref])
  print(f"PARITY official-head (linear on [CLS])            max_abs_diff={diff:.3e}")
  assert diff <= TOL


def test_encoder_only_from_any_checkpoint(hf_dirs):
  """architecture="ElectraModel" reads the encoder of a ForPreTraining checkpoint, as HF's
  ElectraModel.from_pretrained does."""
  _, d = hf_dirs["ElectraForPreTraining", "small"]
  model, params = load_pretrained(d, architecture="ElectraModel")
  assert type(model).__name__ == "ElectraModel"
  ref_model = transformers.ElectraModel.from_pretrained(d).eval()
  ids, mask, types = F.batch()
  diff = F.max_abs_diff(F.jax_outputs(model, params, ids, mask, types),
                        F.torch_outputs(ref_model, ids, mask, types))
  assert diff <= TOL


@pytest.mark.parametrize("shape", list(F.SHAPES))
@pytest.mark.parametrize("cls", F.HF_CLASSES)
def test_import_export_round_trip_is_bitwise(hf_dirs, tmp_path, cls, shape):
  _, d = hf_dirs[cls, shape]
  model, params = load_pretrained(d, as_numpy=True)
  export_hf(model, params, str(tmp_path))
  original = common.read_safetensors(f"{d}/model.safetensors")
  exported = common.read_safetensors(str(tmp_path / "model.safetensors"))
  assert sorted(original) == sorted(exported)
  for name in original:
    assert original[name].dtype == exported[name].dtype, name
    assert original[name].shape == exported[name].shape, name
    assert original[name].tobytes() == exported[name].tobytes(), name


def _our_model(cls, cfg):
  if cls in ("ElectraForSequenceClassification", "ElectraForTokenClassification"):
    kw = {"num_labels": 3}
    if cls == "ElectraForSequenceClassification":
      kw["head"] = "hf"
    return getattr(heads, cls)(cfg, **kw)
  return getattr(heads, cls)(cfg)


@pytest.mark.parametrize("shape", list(F.SHAPES))
@pytest.mark.parametrize("cls", F.HF_CLASSES)
def test_export_loads_in_transformers_with_same_outputs(tmp_path, cls, shape):
  cfg = ModelConfig(**F.SHAPES[shape])
  model = _our_model(cls, cfg)
  ids, mask, types = _inputs(cls)
  params = F.random_params(model, jnp.asarray(ids), seed=3)
  export_hf(model, params, str(tmp_path))
  hf_model, info = getattr(transformers, cls).from_pretrained(str(tmp_path),
                                                              output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  assert not info["mismatched_keys"], info
  diff = F.max_abs_diff(F.jax_outputs(model, params, ids, mask, types),
                        F.torch_outputs(hf_model.eval(), ids, mask, types))
  print(f"PARITY export {cls:34s} {shape:5s} max_abs_diff={diff:.3e}")
  assert diff <= TOL


@pytest.mark.parametrize("sharing", ["tied", "untied", "gdes"])
def test_pretraining_model_exports_discriminator_and_generator(tmp_path, sharing):
  from electra_jax.model.config import generator_config
  disc = ModelConfig(**F.SHAPES["small"])
  gen = generator_config(disc, 0.5).replace(num_attention_heads=2)
  model = pretraining.ElectraPretrainingModel(disc, gen, embedding_sharing=sharing)
  ids, mask, types = F.batch()
  positions = np.tile(np.arange(ids.shape[1], dtype=np.int32), (ids.shape[0], 1))
  params = F.random_params(model, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types),
                           jnp.asarray(positions), seed=5)
  args = (jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
  ours_disc = model.apply({"params": params}, *args, method=model.discriminator_logits)
  ours_gen = model.apply({"params": params}, *args, jnp.asarray(positions),
                         method=model.generator_logits)
  for which, cls, ours in (("discriminator", "ElectraForPreTraining", ours_disc),
                           ("generator", "ElectraForMaskedLM", ours_gen)):
    out = tmp_path / which
    info = export_hf(model, params, str(out), which=which)
    assert info["architecture"] == cls
    hf_model = getattr(transformers, cls).from_pretrained(str(out)).eval()
    diff = F.max_abs_diff([np.asarray(ours)], F.torch_outputs(hf_model, ids, mask, types))
    print(f"PARITY pretraining[{sharing}] {which:13s} -> HF {cls:22s} max_abs_diff={diff:.3e}")
    assert diff <= TOL
    # And back: the exported directory loads into the standalone model with the same outputs.
    back, back_params = load_pretrained(str(out))
    assert F.max_abs_diff(F.jax_outputs(back, back_params, ids, mask, types),
                          [np.asarray(ours)]) <= TOL


def test_export_refuses_official_head(tmp_path):
  model = heads.ElectraForSequenceClassification(ModelConfig(**F.SHAPES["small"]), num_labels=2)
  params = F.random_params(model, jnp.ones((1, 4), jnp.int32))
  with pytest.raises(common.CheckpointError, match="head='official'.*no Hugging Face class"):
    export_hf(model, params, str(tmp_path))


def test_export_needs_which_for_pretraining_model(tmp_path):
  disc = ModelConfig(**F.SHAPES["small"])
  model = pretraining.ElectraPretrainingModel(disc, disc)
  with pytest.raises(common.CheckpointError, match="which='discriminator' or which='generator'"):
    export_hf(model, {}, str(tmp_path))


def test_export_checks_params_against_model(tmp_path):
  cfg = ModelConfig(**F.SHAPES["small"])
  model = heads.ElectraForPreTraining(cfg)
  params = F.random_params(model, jnp.ones((1, 4), jnp.int32))
  params["electra"]["encoder"]["layer_0"]["intermediate"]["kernel"] = np.zeros((32, 40),
                                                                               np.float32)
  del params["discriminator_predictions"]["dense"]["bias"]
  with pytest.raises(common.CheckpointError) as e:
    export_hf(model, params, str(tmp_path))
  msg = str(e.value)
  assert "electra/encoder/layer_0/intermediate/kernel has shape (32, 40)" in msg
  assert "(32, 37)" in msg
  assert "missing parameters: discriminator_predictions/dense/bias" in msg


@pytest.mark.parametrize("act", ["relu", "gelu_new"])
@pytest.mark.parametrize("cls", F.HF_CLASSES)
def test_hidden_act_variants(tmp_path, cls, act):
  """hidden_act reaches exactly the places HF uses it (FFN, discriminator head) and no others
  (generator head, classification head and multiple-choice summary are fixed exact GELU)."""
  torch_model = F.make_hf_model(cls, "small", seed=2, hidden_act=act)
  torch_model.save_pretrained(tmp_path)
  model, params = load_pretrained(str(tmp_path))
  assert model.config.hidden_act == act
  inputs = _inputs(cls)
  diff = F.max_abs_diff(F.jax_outputs(model, params, *inputs),
                        F.torch_outputs(torch_model, *inputs))
  print(f"PARITY hidden_act={act:8s} {cls:34s} max_abs_diff={diff:.3e}")
  assert diff <= TOL
