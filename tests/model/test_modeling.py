"""The Flax model on its own: output shapes and dtypes, config validation errors, padding masks,
rematerialisation, logical axis names, and bfloat16 compute against float32.

bfloat16 tolerance (stated): with bfloat16 compute (float32 params, softmax, LayerNorm statistics
and logits), every output stays within 0.1 x std(float32 output) of the float32 output, max over
all positions; measured on 4-layer tiny models: 0.03-0.06 x std.
"""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import electra_fixtures as F
from electra_jax.model import heads, layers, pretraining
from electra_jax.model import config as C
from electra_jax.model.config import ModelConfig

BF16_TOL = 0.1  # x std of the float32 output


def small_cfg(**kw):
  return ModelConfig(**{**F.SHAPES["small"], **kw})


# ---------------------------------------------------------------------------------------------
# Config validation

@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_size=30, num_attention_heads=4), "hidden_size=30 is not a multiple of "
                                                  "num_attention_heads=4"),
    (dict(dtype="float64"), "dtype='float64'; expected one of"),
    (dict(hidden_act="swish"), "hidden_act='swish'; expected gelu, gelu_new or relu"),
    (dict(vocab_size=0), "vocab_size=0 must be positive"),
    (dict(num_hidden_layers=-1), "num_hidden_layers=-1 must be positive"),
    (dict(intermediate_size=0), "intermediate_size=0 must be positive"),
    (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob=1.0 must be in"),
    (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob=-0.1 must be in"),
])
def test_config_validation_errors(kwargs, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    small_cfg(**kwargs)


def test_generator_config_rules_and_errors():
  disc = C.PRESETS["small"].model
  gen = C.generator_config(disc, 0.25)
  assert (gen.hidden_size, gen.intermediate_size, gen.num_attention_heads) == (64, 256, 1)
  assert gen.embedding_size == disc.embedding_size
  base_gen = C.PRESETS["base"].generator
  assert (base_gen.hidden_size, base_gen.num_attention_heads) == (256, 4)
  with pytest.raises(ValueError, match="generator fractions must be in"):
    C.generator_config(disc, 0.0)
  with pytest.raises(ValueError, match="generator fractions must be in"):
    C.generator_config(disc, 0.5, layer_fraction=1.5)


def test_presets_match_paper_table6():
  for preset, (num_layers, hidden, ffn, num_heads, embed, fraction) in {
      "small": (12, 256, 1024, 4, 128, 1 / 4), "base": (12, 768, 3072, 12, 768, 1 / 3),
      "large": (24, 1024, 4096, 16, 1024, 1 / 4)}.items():
    cfg = C.PRESETS[preset].model
    assert C.PRESETS[preset].generator_hidden_fraction == fraction
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size,
            cfg.num_attention_heads, cfg.embedding_size) == (
                num_layers, hidden, ffn, num_heads, embed)
    assert cfg.layer_norm_eps == 1e-12 and cfg.hidden_act == "gelu"


def test_hf_dict_round_trip_and_rejections():
  cfg = small_cfg()
  assert ModelConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
  # HF's storage dtype does not set the compute dtype; overrides do.
  assert ModelConfig.from_hf_dict({**cfg.to_hf_dict(), "dtype": "bfloat16"}).dtype == "float32"
  assert ModelConfig.from_hf_dict(cfg.to_hf_dict(), dtype="bfloat16").dtype == "bfloat16"
  with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
    ModelConfig.from_hf_dict({**cfg.to_hf_dict(), "position_embedding_type": "relative_key"})


def test_bad_module_arguments():
  cfg = small_cfg()
  ids = jnp.ones((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="head='linear'; expected 'official' or 'hf'"):
    jax.eval_shape(lambda: heads.ElectraForSequenceClassification(cfg, 2, head="linear").init(
        jax.random.key(0), ids))
  with pytest.raises(ValueError, match="sequence length 41 exceeds max_position_embeddings=40"):
    jax.eval_shape(lambda: heads.ElectraModel(cfg).init(jax.random.key(0),
                                                        jnp.ones((1, 41), jnp.int32)))
  with pytest.raises(ValueError, match="embedding_sharing='shared'"):
    jax.eval_shape(lambda: pretraining.ElectraPretrainingModel(cfg, cfg, "shared").init(
        jax.random.key(0), ids, ids, ids, ids[:, :2]))
  with pytest.raises(ValueError, match="shared embeddings need equal embedding_size"):
    model = pretraining.ElectraPretrainingModel(cfg, cfg.replace(embedding_size=8))
    jax.eval_shape(lambda: model.init(jax.random.key(0), ids, ids, ids, ids[:, :2]))


def test_import_electra_jax_leaves_out_tensorflow_and_torch():
  """The public API imports plainly; TensorFlow (a data library here) and torch stay lazy."""
  code = ("import sys, electra_jax; "
          "assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules; "
          "print(sorted(electra_jax.__all__))")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  for name in ("load_pretrained", "load_tokenizer", "export_hf", "PRESETS"):
    assert name in r.stdout


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, axis names

MODELS = {
    "ElectraModel": lambda c: heads.ElectraModel(c),
    "ElectraForPreTraining": lambda c: heads.ElectraForPreTraining(c),
    "ElectraForMaskedLM": lambda c: heads.ElectraForMaskedLM(c),
    "seq_official": lambda c: heads.ElectraForSequenceClassification(c, 5),
    "seq_hf": lambda c: heads.ElectraForSequenceClassification(c, 5, head="hf"),
    "ElectraForTokenClassification": lambda c: heads.ElectraForTokenClassification(c, 7),
    "ElectraForQuestionAnswering": lambda c: heads.ElectraForQuestionAnswering(c),
    "ElectraForMultipleChoice": lambda c: heads.ElectraForMultipleChoice(c),
}


def _expected_shapes(name, b, length, cfg):
  return {"ElectraModel": [(b, length, cfg.hidden_size)], "ElectraForPreTraining": [(b, length)],
          "ElectraForMaskedLM": [(b, length, cfg.vocab_size)], "seq_official": [(b, 5)],
          "seq_hf": [(b, 5)], "ElectraForTokenClassification": [(b, length, 7)],
          "ElectraForQuestionAnswering": [(b, length), (b, length)],
          "ElectraForMultipleChoice": [(b, 2)]}[name]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_output_shapes_and_dtypes(name, dtype):
  cfg = small_cfg(dtype=dtype)
  model = MODELS[name](cfg)
  ids, mask, types = F.batch()
  if name == "ElectraForMultipleChoice":
    ids, mask, types = F.choices(ids, mask, types)
  # Abstract evaluation: shapes and dtypes without compiling.
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(ids)))["params"]
  out = jax.eval_shape(lambda p: model.apply({"params": p}, jnp.asarray(ids),
                                             attention_mask=jnp.asarray(mask),
                                             token_type_ids=jnp.asarray(types)),
                       nn.meta.unbox(params))
  out = list(out) if isinstance(out, tuple) else [out]
  b, length = F.batch()[0].shape
  assert [o.shape for o in out] == _expected_shapes(name, b, length, cfg)
  # Params are float32 whatever the compute dtype; logits are float32; only ElectraModel's
  # hidden states come out in the compute dtype.
  assert all(leaf.value.dtype == jnp.float32 for leaf in
             jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)))
  want = jnp.dtype(dtype) if name == "ElectraModel" else jnp.float32
  assert all(o.dtype == want for o in out)


def test_every_parameter_has_logical_axis_names():
  cfg = small_cfg()
  ids = jnp.ones((1, 4), jnp.int32)
  model = pretraining.ElectraPretrainingModel(cfg, C.generator_config(cfg, 0.5).replace(
      num_attention_heads=2))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), ids, ids, ids, ids[:, :2]))
  leaves = jax.tree.leaves(params["params"],
                           is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned)
    assert len(leaf.names) == leaf.value.ndim and all(leaf.names)


def test_pretraining_model_shapes():
  cfg = small_cfg()
  gen = C.generator_config(cfg, 0.5).replace(num_attention_heads=2)
  model = pretraining.ElectraPretrainingModel(cfg, gen)
  ids, mask, types = (jnp.asarray(x) for x in F.batch())
  positions = jnp.zeros((ids.shape[0], 5), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), ids, mask, types, positions))
  g, d = jax.eval_shape(lambda p: model.apply(p, ids, mask, types, positions), params)
  assert g.shape == (3, 5, cfg.vocab_size) and d.shape == ids.shape
  assert g.dtype == d.dtype == jnp.float32


# ---------------------------------------------------------------------------------------------
# Numerics

@pytest.fixture(scope="module")
def small_model():
  cfg = small_cfg(num_hidden_layers=4)
  model = heads.ElectraForMaskedLM(cfg)
  params = F.random_params(model, jnp.ones((1, 4), jnp.int32), seed=2)
  return model, params


def test_padding_is_masked(small_model):
  """Outputs at real tokens do not depend on what sits in padded positions."""
  model, params = small_model
  ids, mask, types = F.batch(length=16)
  noisy = ids.copy()
  noisy[mask == 0] = 7
  noisy_types = types.copy()
  noisy_types[mask == 0] = 1
  a = F.jax_outputs(model, params, ids, mask, types)[0]
  b = F.jax_outputs(model, params, noisy, mask, noisy_types)[0]
  valid = mask.astype(bool)
  assert np.max(np.abs(a[valid] - b[valid])) <= 1e-5
  assert np.max(np.abs(a[~valid] - b[~valid])) > 1e-3  # the padded positions themselves differ


def test_remat_gives_the_same_outputs(small_model):
  model, params = small_model
  ids, mask, types = F.batch()
  remat = heads.ElectraForMaskedLM(model.config.replace(remat=True))
  a = F.jax_outputs(model, params, ids, mask, types)[0]
  b = F.jax_outputs(remat, params, ids, mask, types)[0]
  assert np.max(np.abs(a - b)) <= 1e-6


def test_dropout_is_active_only_when_not_deterministic(small_model):
  model, params = small_model
  ids, mask, types = (jnp.asarray(x) for x in F.batch())
  det = model.apply({"params": params}, ids, mask, types)
  train = model.apply({"params": params}, ids, mask, types, deterministic=False,
                      rngs={"dropout": jax.random.key(1)})
  assert float(jnp.max(jnp.abs(det - train))) > 1e-3


@pytest.mark.parametrize("rate, shape, dtype", [(0.1, (64, 1000), jnp.float32),
                                                (0.5, (3, 999), jnp.float32),
                                                (0.15, (2, 4, 7), jnp.bfloat16)])
def test_dropout_equals_flax_dropout_bitwise(rate, shape, dtype):
  """Same rng stream, mask and 1/(1-rate) scaling as nn.Dropout, eagerly and under jit (where
  the mask's hash is fused)."""
  x = jax.random.normal(jax.random.key(0), shape, dtype)
  for key in (jax.random.key(4), jax.random.key(5)):
    ours = layers.Dropout(rate).apply({}, x, False, rngs={"dropout": key})
    flax = nn.Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, flax)
    jitted = jax.jit(lambda x, k: layers.Dropout(rate).apply({}, x, False, rngs={"dropout": k}))
    np.testing.assert_array_equal(jitted(x, key), flax)
  assert 0 < float(jnp.mean(ours == 0)) < 1


def test_dropout_identity_when_deterministic_or_rate_zero():
  x = jax.random.normal(jax.random.key(0), (4, 9), jnp.bfloat16)
  for rate, det in [(0.1, True), (0.0, False)]:
    y = layers.Dropout(rate).apply({}, x, det, rngs={"dropout": jax.random.key(1)})
    assert y is x
  dropped = layers.Dropout(1.0).apply({}, x, False, rngs={"dropout": jax.random.key(1)})
  assert dropped.dtype == jnp.bfloat16 and not jnp.any(dropped)


@pytest.mark.parametrize("shape", list(F.SHAPES))
@pytest.mark.parametrize("cls", ["ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM",
                                 "ElectraForQuestionAnswering"])
def test_bfloat16_compute_within_tolerance_of_float32(cls, shape):
  cfg = ModelConfig(**{**F.SHAPES[shape], "num_hidden_layers": 4})
  model = getattr(heads, cls)(cfg)
  ids, mask, types = F.batch(b=4, length=32)
  params = F.random_params(model, jnp.asarray(ids), seed=1)
  f32 = F.jax_outputs(model, params, ids, mask, types)
  bf16 = F.jax_outputs(getattr(heads, cls)(cfg.replace(dtype="bfloat16")), params, ids, mask, types)
  for a, b in zip(f32, bf16):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert np.all(np.isfinite(b64))
    rel = float(np.max(np.abs(a64 - b64))) / float(a64.std())
    print(f"BF16 {cls:28s} {shape:5s} max|bf16-f32| / std(f32) = {rel:.4f}")
    assert rel <= BF16_TOL
    assert rel > 0  # bfloat16 was really used


def _scatter_dtypes(jaxpr) -> list:
  """Dtypes of every scatter-add's operand in a (closed) jaxpr, sub-jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scatter-add":
      found.append(eqn.invars[0].aval.dtype)
    for sub in jax.core.jaxprs_in_params(eqn.params):
      found += _scatter_dtypes(sub)
  return found


def test_bfloat16_gradients_scatter_in_float32():
  """The gradients of the embedding lookups and of the generator's masked-position gather are
  scatter-adds; in bfloat16 they become compare-and-swap loops on GPU that serialise on shared
  rows (measured on an H100: an ELECTRA-Small step took 269 ms instead of 17 ms). They must run in float32."""
  cfg = small_cfg(dtype="bfloat16")
  gen = C.generator_config(cfg, 0.5).replace(num_attention_heads=2)
  model = pretraining.ElectraPretrainingModel(cfg, gen)
  ids, mask, types = (jnp.asarray(x) for x in F.batch())
  positions = jnp.tile(jnp.arange(1, 4)[None], (ids.shape[0], 1))
  params = nn.meta.unbox(jax.eval_shape(
      lambda: model.init(jax.random.key(0), ids, mask, types, positions))["params"])

  def loss(p):
    g, d = model.apply({"params": p}, ids, mask, types, positions)
    return jnp.sum(g) + jnp.sum(d)

  dtypes = _scatter_dtypes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  assert len(dtypes) >= 3  # word + token-type lookups, masked-position gather
  assert all(d == jnp.float32 for d in dtypes), dtypes


def test_exact_gelu_is_the_erf_gelu_of_the_references():
  """activation("gelu") is x Phi(x) as 0.5 x (1 + erf(x / sqrt 2)) (official ELECTRA, PyTorch):
  within 1.2e-6 of float64 GELU over [-12, 12], its gradient within 3e-7 of x phi(x) + Phi(x),
  and in the input's dtype."""
  import scipy.special

  gelu = layers.activation("gelu")
  x = np.linspace(-12, 12, 240_001).astype(np.float32)
  x64 = x.astype(np.float64)
  cdf = 0.5 * scipy.special.erfc(-x64 / np.sqrt(2))
  got = np.asarray(jax.jit(gelu)(jnp.asarray(x)), np.float64)
  assert np.abs(got - x64 * cdf).max() < 1.2e-6
  grad = np.asarray(jax.jit(jax.vmap(jax.grad(gelu)))(jnp.asarray(x)), np.float64)
  assert np.abs(grad - (cdf + x64 * np.exp(-x64 ** 2 / 2) / np.sqrt(2 * np.pi))).max() < 3e-7
  assert gelu(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16
