"""Official google-research/electra TF1 checkpoints -> electra_jax.

The test writes TF1 checkpoints with the official variable names (TF1 Saver, generator +
discriminator, AdamWeightDecayOptimizer slots and global_step) and checks our import against
transformers' TF -> PyTorch ELECTRA loader. transformers 5 no longer ships that loader
(`load_tf_weights_in_electra` was removed with the TF support in v5), so
`electra_fixtures.reference_load_tf_weights` re-implements its rules (as in transformers v4) on
the v5 PyTorch classes; a second, by-name check compares every parameter with the checkpoint
array under the semantics of the official code (TF kernels [in, out]).
"""

import numpy as np
import pytest
import transformers

import electra_fixtures as F
from electra_jax import CheckpointError, export_hf, load_pretrained
from electra_jax.io import common
from electra_jax.io import tf1 as tf1_io

TOL = 1e-5
transformers.logging.set_verbosity_error()

# "small": E != H for both networks (each has an embeddings_project); heads follow the official
# rule hidden // 64 (2 and 1). "base": discriminator E == H (no projection), generator H < E.
NETWORKS = {
    "small": (dict(vocab_size=50, embedding_size=32, hidden_size=128, num_hidden_layers=2,
                   intermediate_size=96, max_position_embeddings=40, type_vocab_size=2),
              dict(vocab_size=50, embedding_size=32, hidden_size=64, num_hidden_layers=1,
                   intermediate_size=256, max_position_embeddings=40, type_vocab_size=2)),
    "base": (dict(vocab_size=50, embedding_size=128, hidden_size=128, num_hidden_layers=2,
                  intermediate_size=64, max_position_embeddings=40, type_vocab_size=2),
             dict(vocab_size=50, embedding_size=128, hidden_size=64, num_hidden_layers=2,
                  intermediate_size=256, max_position_embeddings=40, type_vocab_size=2)),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  out = {}
  for shape, (disc, gen) in NETWORKS.items():
    d = tmp_path_factory.mktemp(f"tf1_{shape}")
    arrays = F.official_tf1_arrays(disc, gen, seed=len(out))
    prefix = F.write_tf1_checkpoint(str(d / "model.ckpt-1000"), arrays)
    out[shape] = (prefix, arrays)
  return out


def _reference(which, shape, prefix):
  disc, gen = NETWORKS[shape]
  sizes = disc if which == "discriminator" else gen
  cfg = transformers.ElectraConfig(**sizes, num_attention_heads=max(1, sizes["hidden_size"] // 64))
  cls = transformers.ElectraForPreTraining if which == "discriminator" else \
      transformers.ElectraForMaskedLM
  model = cls(cfg).eval()
  skipped = F.reference_load_tf_weights(model, prefix, which)
  return model, skipped


@pytest.mark.parametrize("shape", list(NETWORKS))
@pytest.mark.parametrize("which", ["discriminator", "generator"])
def test_tf1_import_matches_transformers_loader(checkpoints, tmp_path, which, shape):
  prefix, arrays = checkpoints[shape]
  model, params, report = load_pretrained(prefix, which, return_report=True)
  assert report.source_format == "tf1"
  assert type(model).__name__ == ("ElectraForPreTraining" if which == "discriminator"
                                  else "ElectraForMaskedLM")
  ref, skipped = _reference(which, shape, prefix)
  # The reference loader filled every weight of the PyTorch model from the checkpoint.
  n_model = len([k for k in ref.state_dict() if k != "generator_lm_head.weight"])
  assert len(arrays) * 3 + 1 - len(skipped) == n_model
  ids, mask, types = F.batch(vocab=50)
  diff = F.max_abs_diff(F.jax_outputs(model, params, ids, mask, types),
                        F.torch_outputs(ref, ids, mask, types))
  print(f"PARITY tf1 {which:13s} {shape:5s} vs reference loader max_abs_diff={diff:.3e}")
  assert diff <= TOL
  # Export of the TF1 import == the reference PyTorch state dict, tensor for tensor.
  export_hf(model, params, str(tmp_path))
  exported = common.read_safetensors(str(tmp_path / "model.safetensors"))
  ref_state = {k: v.numpy() for k, v in ref.state_dict().items()
               if k != "generator_lm_head.weight"}
  assert sorted(exported) == sorted(ref_state)
  for k in ref_state:
    assert exported[k].tobytes() == ref_state[k].tobytes(), k
  # ...and transformers loads that export with identical outputs.
  cls = getattr(transformers, type(model).__name__)
  reloaded = cls.from_pretrained(str(tmp_path)).eval()
  assert F.max_abs_diff(F.torch_outputs(reloaded, ids, mask, types),
                        F.torch_outputs(ref, ids, mask, types)) == 0.0


@pytest.mark.parametrize("which", ["discriminator", "generator"])
def test_tf1_by_name_against_official_semantics(checkpoints, which):
  """Every parameter equals the checkpoint array it comes from (official names, TF kernels
  [in, out], attention kernels reshaped to [H,N,D] / [N,D,H], shared embeddings)."""
  prefix, arrays = checkpoints["small"]
  model, params = load_pretrained(prefix, which, as_numpy=True)
  cfg = model.config
  n, d = cfg.num_attention_heads, cfg.head_dim
  scope = "electra" if which == "discriminator" else "generator"
  e = params["electra"]
  np.testing.assert_array_equal(e["embeddings"]["word_embeddings"]["embedding"],
                                arrays["electra/embeddings/word_embeddings"])
  np.testing.assert_array_equal(e["embeddings"]["LayerNorm"]["scale"],
                                arrays["electra/embeddings/LayerNorm/gamma"])
  np.testing.assert_array_equal(e["embeddings_project"]["kernel"],
                                arrays[f"{scope}/embeddings_project/kernel"])
  for i in range(cfg.num_hidden_layers):
    layer, tf_l = e["encoder"][f"layer_{i}"], f"{scope}/encoder/layer_{i}"
    q = arrays[f"{tf_l}/attention/self/query/kernel"]
    np.testing.assert_array_equal(layer["attention"]["query"]["kernel"],
                                  q.reshape(cfg.hidden_size, n, d))
    np.testing.assert_array_equal(layer["attention"]["value"]["bias"],
                                  arrays[f"{tf_l}/attention/self/value/bias"].reshape(n, d))
    np.testing.assert_array_equal(layer["attention"]["output"]["kernel"],
                                  arrays[f"{tf_l}/attention/output/dense/kernel"].reshape(
                                      n, d, cfg.hidden_size))
    np.testing.assert_array_equal(layer["attention_LayerNorm"]["bias"],
                                  arrays[f"{tf_l}/attention/output/LayerNorm/beta"])
    np.testing.assert_array_equal(layer["intermediate"]["kernel"],
                                  arrays[f"{tf_l}/intermediate/dense/kernel"])
    np.testing.assert_array_equal(layer["output"]["kernel"],
                                  arrays[f"{tf_l}/output/dense/kernel"])
    np.testing.assert_array_equal(layer["output_LayerNorm"]["scale"],
                                  arrays[f"{tf_l}/output/LayerNorm/gamma"])
  if which == "discriminator":
    head = params["discriminator_predictions"]
    np.testing.assert_array_equal(head["dense"]["kernel"],
                                  arrays["discriminator_predictions/dense/kernel"])
    np.testing.assert_array_equal(head["dense_prediction"]["kernel"],
                                  arrays["discriminator_predictions/dense_1/kernel"])
    np.testing.assert_array_equal(head["dense_prediction"]["bias"],
                                  arrays["discriminator_predictions/dense_1/bias"])
  else:
    head = params["generator_predictions"]
    np.testing.assert_array_equal(head["dense"]["kernel"],
                                  arrays["generator_predictions/dense/kernel"])
    np.testing.assert_array_equal(head["LayerNorm"]["scale"],
                                  arrays["generator_predictions/LayerNorm/gamma"])
    np.testing.assert_array_equal(head["output_bias"], arrays["generator_predictions/output_bias"])


def test_tf1_config_inferred_from_shapes(checkpoints):
  prefix, _ = checkpoints["small"]
  disc, _ = load_pretrained(prefix, "discriminator")
  gen, _ = load_pretrained(prefix, "generator")
  want_d, want_g = NETWORKS["small"]
  for model, want in ((disc, want_d), (gen, want_g)):
    for k, v in want.items():
      assert getattr(model.config, k) == v, k
  assert disc.config.num_attention_heads == 2 and gen.config.num_attention_heads == 1


def test_tf1_directory_with_checkpoint_file(checkpoints):
  prefix, _ = checkpoints["small"]
  import os
  model, _ = load_pretrained(os.path.dirname(prefix))  # default: the discriminator
  assert type(model).__name__ == "ElectraForPreTraining"
  # The .index file names the same checkpoint.
  model, _ = load_pretrained(prefix + ".index", "generator")
  assert type(model).__name__ == "ElectraForMaskedLM"


def test_tf1_heads_override(checkpoints):
  prefix, _ = checkpoints["small"]
  model, _ = load_pretrained(prefix, "discriminator", num_attention_heads=4)
  assert model.config.num_attention_heads == 4 and model.config.head_dim == 32


def test_tf1_untied_generator_embeddings(tmp_path):
  """untied_generator_embeddings=True: the generator reads generator/embeddings/*."""
  disc, gen = NETWORKS["small"]
  arrays = F.official_tf1_arrays(disc, gen, seed=3, untied_embeddings=True)
  prefix = F.write_tf1_checkpoint(str(tmp_path / "model.ckpt-5"), arrays, adam_slots=False)
  model, params = load_pretrained(prefix, "generator", as_numpy=True)
  np.testing.assert_array_equal(params["electra"]["embeddings"]["word_embeddings"]["embedding"],
                                arrays["generator/embeddings/word_embeddings"])
  model, params = load_pretrained(prefix, "discriminator", as_numpy=True)
  np.testing.assert_array_equal(params["electra"]["embeddings"]["word_embeddings"]["embedding"],
                                arrays["electra/embeddings/word_embeddings"])


def test_tf1_errors(checkpoints, tmp_path):
  prefix, arrays = checkpoints["small"]
  with pytest.raises(CheckpointError, match="TF checkpoint not found"):
    load_pretrained(str(tmp_path / "nope.ckpt"), format="tf1")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(CheckpointError, match="no `checkpoint` file"):
    load_pretrained(str(empty), format="tf1")
  with pytest.raises(CheckpointError, match="not available for TF1"):
    load_pretrained(prefix, "pretraining")

  # A discriminator-only checkpoint has no generator.
  only_disc = {k: v for k, v in arrays.items()
               if not k.startswith(("generator/", "generator_predictions/"))}
  p2 = F.write_tf1_checkpoint(str(tmp_path / "d" / "model.ckpt-1"), only_disc, adam_slots=False)
  with pytest.raises(CheckpointError, match="no generator in this checkpoint"):
    load_pretrained(p2, "generator")

  # Unknown and missing variables are listed; strict=False ignores unknown ones.
  odd = dict(arrays)
  odd["electra/pooler/dense/kernel"] = np.zeros((128, 128), np.float32)
  del odd["electra/encoder/layer_1/output/dense/bias"]
  p3 = F.write_tf1_checkpoint(str(tmp_path / "o" / "model.ckpt-1"), odd, adam_slots=False)
  with pytest.raises(CheckpointError) as e:
    load_pretrained(p3, "discriminator")
  msg = str(e.value)
  assert "unknown variables" in msg and "electra/pooler/dense/kernel" in msg
  assert "missing variables: electra/encoder/layer_1/output/dense/bias" in msg
  del odd["electra/pooler/dense/kernel"]
  odd["electra/encoder/layer_1/output/dense/bias"] = arrays[
      "electra/encoder/layer_1/output/dense/bias"]
  odd["electra/pooler/dense/kernel"] = np.zeros((128, 128), np.float32)
  p4 = F.write_tf1_checkpoint(str(tmp_path / "o2" / "model.ckpt-1"), odd, adam_slots=False)
  model, _ = load_pretrained(p4, "discriminator", strict=False)
  assert type(model).__name__ == "ElectraForPreTraining"

  # A given config that disagrees with the shapes: tensor named with both shapes.
  from electra_jax.model.config import ModelConfig
  wrong = ModelConfig(**{**NETWORKS["small"][0], "intermediate_size": 100,
                         "num_attention_heads": 2})
  with pytest.raises(CheckpointError) as e:
    load_pretrained(prefix, "discriminator", config=wrong)
  msg = str(e.value)
  assert "electra/encoder/layer_0/intermediate/dense/kernel: checkpoint shape (128, 96), " \
         "config implies (128, 100)" in msg


def test_tf1_variable_listing(checkpoints):
  prefix, arrays = checkpoints["small"]
  names = tf1_io.list_variables(prefix)
  assert "global_step" in names
  assert names["electra/embeddings/word_embeddings"] == (50, 32)
  assert "electra/embeddings/word_embeddings/adam_m" in names
