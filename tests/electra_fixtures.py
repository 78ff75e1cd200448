"""Shared fixtures for the conversion / parity tests: tiny HF models, batches, official TF1
checkpoints, and a reference TF1 -> PyTorch loader.

Everything here is built by the tests themselves (random weights, no network).
"""

from __future__ import annotations

import os
import re

import numpy as np

from electra_jax.io.hf import ARCHITECTURES

# Two tiny shapes: "small" has embedding_size != hidden_size (factorised embeddings with an
# embeddings_project), "base" has embedding_size == hidden_size.
SHAPES = {
    "small": dict(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=40,
                  type_vocab_size=2),
    "base": dict(vocab_size=99, embedding_size=24, hidden_size=24, num_hidden_layers=2,
                 num_attention_heads=3, intermediate_size=48, max_position_embeddings=40,
                 type_vocab_size=2),
}

HF_CLASSES = ARCHITECTURES


def hf_config(shape: str, **overrides):
  import transformers
  kw = dict(SHAPES[shape])
  kw.update(overrides)
  return transformers.ElectraConfig(**kw)


def randomize_(model, seed: int = 0, scale: float = 0.1):
  """Every parameter random (biases and LayerNorm too), so that a mis-mapped bias or a
  transposed kernel shows up in the outputs."""
  import torch
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = scale * torch.randn(p.shape, generator=g)
      p.copy_(1.0 + noise if name.endswith("LayerNorm.weight") else noise)
  return model.eval()


def make_hf_model(cls_name: str, shape: str, seed: int = 0, **config_overrides):
  import transformers
  num_labels = 2 if cls_name == "ElectraForQuestionAnswering" else 3
  cfg = hf_config(shape, num_labels=num_labels, **config_overrides)
  return randomize_(getattr(transformers, cls_name)(cfg), seed)


def batch(b: int = 3, length: int = 12, vocab: int = 99, seed: int = 0):
  """ids/mask/token types [B, L] with padding (rows 1 and 2 padded) and both token types."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, (b, length)).astype(np.int32)
  mask = np.ones((b, length), np.int32)
  mask[1, length * 2 // 3:] = 0
  if b > 2:
    mask[2, length // 3:] = 0
  types = np.zeros((b, length), np.int32)
  types[:, length // 2:] = 1
  ids[mask == 0] = 0
  types[mask == 0] = 0
  return ids, mask, types


def choices(ids, mask, types, n: int = 2):
  """[B, L] -> [B, n, L] by rolling the batch (multiple-choice inputs)."""
  stack = lambda x: np.stack([np.roll(x, k, axis=0) for k in range(n)], axis=1)
  return stack(ids), stack(mask), stack(types)


def torch_outputs(model, ids, mask, types) -> list[np.ndarray]:
  import torch
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long),
                token_type_ids=torch.tensor(types, dtype=torch.long))
  if hasattr(out, "start_logits"):
    return [out.start_logits.numpy(), out.end_logits.numpy()]
  return [out[0].numpy()]


def jax_outputs(model, params, ids, mask, types) -> list[np.ndarray]:
  import jax.numpy as jnp
  out = model.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                    token_type_ids=jnp.asarray(types))
  out = out if isinstance(out, tuple) else (out,)
  return [np.asarray(o) for o in out]


def max_abs_diff(a: list, b: list) -> float:
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.shape == y.shape, (x.shape, y.shape)
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# Official (google-research/electra) TF1 checkpoints

def official_tf1_arrays(disc: dict, gen: dict, seed: int = 0, untied_embeddings: bool = False
                        ) -> dict[str, np.ndarray]:
  """Random weights under the variable names of google-research/electra's run_pretraining.py /
  model/modeling.py, for a discriminator (scope `electra`) and generator (scope `generator`).

  disc / gen: dicts with vocab_size, embedding_size, hidden_size, num_hidden_layers,
  intermediate_size, max_position_embeddings, type_vocab_size.
  """
  rng = np.random.default_rng(seed)
  r = lambda *shape: (0.1 * rng.standard_normal(shape)).astype(np.float32)
  out = {}

  def embeddings(scope, c):
    e = c["embedding_size"]
    out[f"{scope}/embeddings/word_embeddings"] = r(c["vocab_size"], e)
    out[f"{scope}/embeddings/position_embeddings"] = r(c["max_position_embeddings"], e)
    out[f"{scope}/embeddings/token_type_embeddings"] = r(c["type_vocab_size"], e)
    out[f"{scope}/embeddings/LayerNorm/gamma"] = 1 + r(e)
    out[f"{scope}/embeddings/LayerNorm/beta"] = r(e)

  def dense(name, n_in, n_out):
    out[f"{name}/kernel"] = r(n_in, n_out)  # TF dense kernels are [in, out]
    out[f"{name}/bias"] = r(n_out)

  def layer_norm(name, n):
    out[f"{name}/gamma"] = 1 + r(n)
    out[f"{name}/beta"] = r(n)

  def tower(scope, c):
    h, f = c["hidden_size"], c["intermediate_size"]
    if c["embedding_size"] != h:
      dense(f"{scope}/embeddings_project", c["embedding_size"], h)
    for i in range(c["num_hidden_layers"]):
      l = f"{scope}/encoder/layer_{i}"
      for qkv in ("query", "key", "value"):
        dense(f"{l}/attention/self/{qkv}", h, h)
      dense(f"{l}/attention/output/dense", h, h)
      layer_norm(f"{l}/attention/output/LayerNorm", h)
      dense(f"{l}/intermediate/dense", h, f)
      dense(f"{l}/output/dense", f, h)
      layer_norm(f"{l}/output/LayerNorm", h)

  embeddings("electra", disc)
  if untied_embeddings:
    embeddings("generator", gen)
  tower("electra", disc)
  tower("generator", gen)
  dense("discriminator_predictions/dense", disc["hidden_size"], disc["hidden_size"])
  dense("discriminator_predictions/dense_1", disc["hidden_size"], 1)
  dense("generator_predictions/dense", gen["hidden_size"], gen["embedding_size"])
  layer_norm("generator_predictions/LayerNorm", gen["embedding_size"])
  out["generator_predictions/output_bias"] = r(gen["vocab_size"])
  return out


def write_tf1_checkpoint(prefix: str, arrays: dict[str, np.ndarray], adam_slots: bool = True,
                         global_step: int = 1000) -> str:
  """Saves `arrays` under exactly these names with a TF1 Saver (as the official code does), plus
  AdamWeightDecayOptimizer slots (`<name>/adam_m`, `<name>/adam_v`) and `global_step`."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):
    pass
  v1 = tf.compat.v1
  graph = tf.Graph()
  with graph.as_default():
    var_list = {}
    for i, (name, arr) in enumerate(sorted(arrays.items())):
      var_list[name] = v1.Variable(arr, name=f"v{i}")
      if adam_slots:
        var_list[f"{name}/adam_m"] = v1.Variable(np.zeros_like(arr) + 0.5, name=f"m{i}")
        var_list[f"{name}/adam_v"] = v1.Variable(np.zeros_like(arr) + 0.25, name=f"s{i}")
    if global_step is not None:
      var_list["global_step"] = v1.Variable(np.int64(global_step), name="global_step")
    saver = v1.train.Saver(var_list=var_list)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      os.makedirs(os.path.dirname(prefix), exist_ok=True)
      return saver.save(sess, prefix)


def read_tf1_checkpoint(prefix: str) -> dict[str, np.ndarray]:
  import tensorflow as tf
  reader = tf.train.load_checkpoint(prefix)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def reference_load_tf_weights(model, prefix: str, discriminator_or_generator: str) -> list[str]:
  """transformers' TF1 -> PyTorch ELECTRA loader (`load_tf_weights_in_electra`, shipped by
  transformers up to v4 and removed in v5), re-implemented here from its documented rules so the
  tests can still check our import against it:

  - for an ElectraForMaskedLM, `electra/embeddings/` is read as `generator/embeddings/`;
  - for the generator, `electra/` is renamed `discriminator/` and `generator/` becomes
    `electra/` (so the generator's tower fills the model's `electra` module);
  - `dense_1` -> `dense_prediction`, `generator_predictions/output_bias` -> `generator_lm_head/bias`;
  - `global_step` / `temperature` are skipped; each name is then walked attribute by attribute on
    the PyTorch model (`layer_3` = `.layer[3]`, `kernel`/`gamma` = `.weight`, `beta` /
    `output_bias` = `.bias`, `*_embeddings` get `.weight`); names that do not resolve (optimizer
    slots, the other network) are skipped; kernels are transposed.

  Returns the names it skipped.
  """
  import torch
  import transformers
  arrays = read_tf1_checkpoint(prefix)
  skipped = []
  for original, array in arrays.items():
    name = original
    if isinstance(model, transformers.ElectraForMaskedLM):
      name = name.replace("electra/embeddings/", "generator/embeddings/")
    if discriminator_or_generator == "generator":
      name = name.replace("electra/", "discriminator/").replace("generator/", "electra/")
    name = name.replace("dense_1", "dense_prediction")
    name = name.replace("generator_predictions/output_bias", "generator_lm_head/bias")
    parts = name.split("/")
    if "global_step" in parts or "temperature" in parts:
      skipped.append(original)
      continue
    pointer, resolved = model, True
    for part in parts:
      m = re.fullmatch(r"([A-Za-z]+)_(\d+)", part)
      attr, index = (m.group(1), int(m.group(2))) if m else (part, None)
      attr = {"kernel": "weight", "gamma": "weight", "output_weights": "weight",
              "beta": "bias", "output_bias": "bias"}.get(attr, attr)
      if not hasattr(pointer, attr):
        resolved = False
        break
      pointer = getattr(pointer, attr)
      if index is not None:
        pointer = pointer[index]
    if not resolved:
      skipped.append(original)
      continue
    if parts[-1].endswith("_embeddings"):
      pointer = pointer.weight
    elif parts[-1] == "kernel":
      array = np.transpose(array)
    if tuple(pointer.shape) != tuple(array.shape):
      raise ValueError(f"{original}: pointer shape {tuple(pointer.shape)} != {array.shape}")
    pointer.data = torch.from_numpy(np.ascontiguousarray(array))
  return skipped


def random_params(model, *init_args, seed: int = 0, scale: float = 0.1):
  """Random values (numpy float32) for every parameter of `model`, shapes from jax.eval_shape
  of model.init(key, *init_args) (no XLA compilation of the initialisers, which is slow on CPU).
  LayerNorm scales are around 1, everything else (biases included) around 0."""
  import jax
  import flax.linen as nn
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), *init_args))
  return randomize_params(nn.meta.unbox(abstract["params"]), seed, scale)


def randomize_params(params, seed: int = 0, scale: float = 0.1):
  """Random values for every leaf of an electra_jax params tree (LayerNorm scales around 1)."""
  import jax
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  rng = np.random.default_rng(seed)
  out = []
  for path, leaf in leaves:
    noise = (scale * rng.standard_normal(leaf.shape)).astype(np.float32)
    is_scale = str(getattr(path[-1], "key", "")) == "scale"
    out.append(1.0 + noise if is_scale else noise)
  return jax.tree_util.tree_unflatten(treedef, out)
