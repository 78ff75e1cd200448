"""ELECTRA's building blocks in Flax Linen: dense and LayerNorm with logical axes, dropout,
embeddings, post-LN self-attention and feed-forward layers, the encoder and the backbone.

Shapes: B batch, L sequence length, E embedding size, H hidden size, N heads, D head size,
F intermediate (FFN) size, V vocabulary.

Packed rows (several examples in one row of L tokens, data_pipelines.packing): `Backbone` takes
optional `example_ids` [B,L] (k >= 1 on the tokens of the row's k-th example, 0 on padding) and
`position_ids` [B,L] (each example's positions from 0). Then a token attends only to the real
tokens of its own example, and its position embedding is that of its place in the example, so
each example's outputs are those it has alone in a row (tests/model/test_packed_model.py).
Without them the model is the one-example-per-row model of Hugging Face's ElectraModel.

Every parameter carries logical axis names (see `electra_jax.runtime.mesh` for the table that maps
them to mesh axes): "vocab", "embed" (E), "hidden" (H), "heads" (N), "kv" (D), "mlp" (F),
"position", "type", "classes". Parameters are float32; matmuls and activations run in
`config.dtype`; softmax, LayerNorm statistics and every returned logit are float32.

Parameter names mirror Hugging Face's ElectraModel so that conversion is a renaming plus reshapes.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax._src.cudnn import fused_attention_stablehlo as cudnn_attention
from jax.extend import backend as jax_backend

from electra_jax.floor import sharding
from electra_jax.model import random_bits
from electra_jax.model.config import ModelConfig

Array = jax.Array

def param_init(cfg: ModelConfig, axes: tuple):
  return nn.with_logical_partitioning(
      nn.initializers.truncated_normal(stddev=cfg.initializer_range), axes)


def zeros_init(axes: tuple):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


class DenseGeneral(nn.Module):
  """y = x . kernel + bias, contracting the `axis` dims of x with the kernel's leading dims.

  kernel [*in_dims, *features] (float32, truncated normal), bias [*features] (zeros). Unlike
  flax's DenseGeneral the kernel is created at its full shape, so its logical axis names apply
  to the array they describe (flax initialises a flattened 2-D kernel, which a 3-name logical
  constraint cannot annotate under a mesh).
  """

  features: tuple
  in_axes: tuple
  out_axes: tuple
  axis: tuple
  init_std: float
  dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    axis = tuple(a % x.ndim for a in self.axis)
    in_shape = tuple(x.shape[a] for a in axis)
    init = nn.with_logical_partitioning(nn.initializers.truncated_normal(stddev=self.init_std),
                                        self.in_axes + self.out_axes)
    kernel = self.param("kernel", init, in_shape + self.features, jnp.float32)
    bias = self.param("bias", zeros_init(self.out_axes), self.features, jnp.float32)
    y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype),
                            ((axis, tuple(range(len(axis)))), ((), ())))
    return y + bias.astype(self.dtype)


def dense(cfg: ModelConfig, features, in_axes: tuple, out_axes: tuple, name: str, axis=-1,
          dtype=None) -> DenseGeneral:
  """A dense layer (truncated-normal(initializer_range) kernel, zero bias) in the compute dtype."""
  return DenseGeneral(
      features=tuple(features) if isinstance(features, (tuple, list)) else (features,),
      in_axes=in_axes, out_axes=out_axes,
      axis=tuple(axis) if isinstance(axis, (tuple, list)) else (axis,),
      init_std=cfg.initializer_range, dtype=dtype or cfg.compute_dtype, name=name)


class LayerNorm(nn.Module):
  """LayerNorm over the last axis with float32 statistics, in two passes: the mean, then the mean
  square of x - mean (nn.LayerNorm takes E[x^2] - E[x]^2). x [..., F] -> `dtype` [..., F];
  parameters `scale` (ones) and `bias` (zeros), float32 [F], named as nn.LayerNorm's.

  The same function as nn.LayerNorm to float32 rounding (closer to PyTorch's, which also
  centres first), and cheaper to differentiate on CPU: for ELECTRA-Small's [32,128,256] the
  forward and backward took 12.8 ms against nn.LayerNorm's 20.2 ms (one core, 2026-12-07), whose
  gradient through E[x^2] - E[x]^2 keeps more full-size intermediates."""

  epsilon: float
  axis_name: str
  dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(),
                                                             (self.axis_name,)),
                       (features,), jnp.float32)
    bias = self.param("bias", zeros_init((self.axis_name,)), (features,), jnp.float32)
    x = x.astype(jnp.float32)
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = centred * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.astype(self.dtype)


def layer_norm(cfg: ModelConfig, axis_name: str, name: str, dtype=None) -> LayerNorm:
  """LayerNorm with epsilon `layer_norm_eps`; statistics are always float32."""
  return LayerNorm(epsilon=cfg.layer_norm_eps, axis_name=axis_name,
                   dtype=dtype or cfg.compute_dtype, name=name)


def exact_gelu(x: Array) -> Array:
  """GELU x * Phi(x) in the form of the official ELECTRA (TF1) code and PyTorch:
  0.5 x (1 + erf(x / sqrt 2)), in x's dtype.

  jax.nn.gelu(approximate=False) writes Phi with erfc, which stays accurate further into the
  negative tail (where 1 + erf cancels) but is dearer: XLA's CPU erfc evaluates two
  approximations and selects. With this form, float32 steps on 2 CPU cores (paired,
  `docs/step_whatif.py --variants erfc_gelu`) took 75 to 338 ms less of about 3 s for
  ELECTRA-Small (three runs) and 25 +- 7 ms less of 400 ms for 4 layers x 128. Largest
  difference over [-12, 12] from float64 GELU: 1.1e-6 (erfc: 3.8e-7); from PyTorch's: 1.4e-6
  (erfc: 1.2e-6)."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


def activation(name: str):
  if name == "gelu":  # exact (erf) GELU, as BERT and ELECTRA use
    return exact_gelu
  if name == "gelu_new":
    return functools.partial(jax.nn.gelu, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown activation {name!r}")


class Dropout(nn.Module):
  """`nn.Dropout`, bit for bit (same rng stream, mask and scaling), with the mask drawn by
  `electra_jax.model.random_bits`, which XLA fuses into the select on CPU: x [...] -> x's
  shape/dtype.
  Kept elements are x / (1 - rate); the mask depends only on the rng and each element's index,
  so any sharding draws the same mask."""

  rate: float

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    if deterministic or self.rate == 0:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    keep_prob = 1.0 - self.rate
    keep = random_bits.bernoulli(self.make_rng("dropout"), keep_prob, x.shape)
    return jax.lax.select(keep, x / keep_prob, jnp.zeros_like(x))


class Embeddings(nn.Module):
  """word + position + token-type embeddings, LayerNorm, dropout: ids [B,L] -> [B,L,E].

  Positions are 0..L-1 in every row, or `position_ids` [B,L] when given (packed rows)."""

  config: ModelConfig

  def setup(self):
    cfg = self.config
    # Only the tables are used (`__call__` gathers from them in float32).
    emb = functools.partial(nn.Embed, features=cfg.embedding_size, param_dtype=jnp.float32)
    self.word_embeddings = emb(cfg.vocab_size, embedding_init=param_init(cfg, ("vocab", "embed")))
    self.position_embeddings = emb(cfg.max_position_embeddings,
                                   embedding_init=param_init(cfg, ("position", "embed")))
    self.token_type_embeddings = emb(cfg.type_vocab_size,
                                     embedding_init=param_init(cfg, ("type", "embed")))
    self.LayerNorm = layer_norm(cfg, "embed", "LayerNorm")
    self.dropout = Dropout(cfg.hidden_dropout_prob)

  def __call__(self, input_ids: Array, token_type_ids: Array, deterministic: bool,
               word_embeddings_delta: Optional[Array] = None,
               position_ids: Optional[Array] = None) -> Array:
    """`word_embeddings_delta` [V,E]: when given, the word table is
    stop_gradient(shared table) + delta (gradient-disentangled sharing, DeBERTa-v3).
    `position_ids` [B,L] int: each token's position (packed rows restart at 0 per example);
    None: 0..L-1."""
    cfg = self.config
    length = input_ids.shape[-1]
    if length > cfg.max_position_embeddings:
      raise ValueError(f"sequence length {length} exceeds max_position_embeddings="
                       f"{cfg.max_position_embeddings}")
    table = self.word_embeddings.embedding
    if word_embeddings_delta is not None:
      table = jax.lax.stop_gradient(table) + word_embeddings_delta
    # Lookups read whole rows: gathering from a table whose E axis is split over fsdp would give
    # E-split rows that XLA can only turn into batch-split ones by replicating them. They run in
    # float32 whatever the compute dtype: a gather's gradient is a scatter-add, and GPUs have no
    # native bfloat16 atomic add (XLA emulates it with compare-and-swap loops, which serialise on
    # rows many tokens share, e.g. [MASK] and the two token types; an ELECTRA-Small bf16 step on
    # an H100 took 269 ms that way, 17 ms with float32 lookups).
    words = jnp.take(sharding.logical_constraint(table, ("vocab", None)), input_ids, axis=0)
    position_table = self.position_embeddings.embedding
    if position_ids is None:
      positions = position_table[None, :length]  # a slice, not a gather
    else:
      positions = jnp.take(sharding.logical_constraint(position_table, ("position", None)),
                           position_ids, axis=0)
    type_table = sharding.logical_constraint(self.token_type_embeddings.embedding, ("type", None))
    types = jnp.take(type_table, token_type_ids, axis=0)
    x = self.LayerNorm(words + positions + types)  # float32 sum in, compute dtype out
    x = self.dropout(x, deterministic=deterministic)
    return sharding.logical_constraint(x, ("batch", "length", "embed"))

  def attend(self, x: Array) -> Array:
    """Tied output projection in float32: [..., E] -> [..., V]."""
    table = self.word_embeddings.embedding.astype(jnp.float32)
    return jnp.einsum("...e,ve->...v", x.astype(jnp.float32), table)


def attention_keep(attention_mask: Array, example_ids: Optional[Array] = None) -> Array:
  """Which keys each query may attend to, bool: [B,1,1,L] (the real tokens of the row) from
  attention_mask [B,L]; with example_ids [B,L] (packed rows) [B,1,L,L]: query i attends to key j
  iff both are in the same example and are both real or both padding (so padding queries, whose
  outputs nobody reads, attend to padding and no row of the mask is empty)."""
  real = attention_mask.astype(bool)
  if example_ids is None:
    return real[:, None, None, :]
  same = (example_ids[:, :, None] == example_ids[:, None, :]) & (
      real[:, :, None] == real[:, None, :])
  return same[:, None, :, :]


def current_platform() -> tuple[str, Optional[tuple[int, int]]]:
  """The default backend as `attention_path` names it ("cpu", "tpu", "cuda", "rocm" or the
  client's platform name) and, on CUDA, the first device's compute capability (major, minor)."""
  client = jax_backend.get_backend()
  version = client.platform_version.lower()
  if "cuda" in version:
    major, minor = jax.devices()[0].compute_capability.split(".")
    return "cuda", (int(major), int(minor))
  if "rocm" in version:
    return "rocm", None
  return client.platform, None


def cudnn_unsupported(backend: str, capability: Optional[tuple[int, int]], dtype: str,
                      head_dim: int, seq_len: int) -> Optional[str]:
  """Why cuDNN's fused (flash) attention cannot run this self-attention, or None if it can.

  Mirrors the checks of jax._src.cudnn.fused_attention_stablehlo (jax 0.10): CUDA, bfloat16 or
  float16 operands, head_dim a multiple of 8 and <= 128 (256 from compute capability 9.0), an
  even sequence length (training with a mask/bias); flash attention needs compute capability
  8.0 (Ampere) or newer. `capability` (major, minor) is that of the CUDA device."""
  if backend != "cuda":
    return f"cuDNN fused attention needs a CUDA GPU, not backend {backend!r}"
  if capability is None or capability < (8, 0):
    return f"cuDNN flash attention needs compute capability >= 8.0, not {capability}"
  if dtype not in ("bfloat16", "float16"):
    return f"cuDNN fused attention takes bfloat16/float16 operands, not dtype={dtype!r}"
  head_max = 256 if capability >= (9, 0) else 128
  if head_dim % 8 or head_dim > head_max:
    return f"cuDNN fused attention needs head_dim % 8 == 0 and <= {head_max}, not {head_dim}"
  if seq_len % 2:
    return f"cuDNN fused attention with a mask needs an even sequence length, not {seq_len}"
  return None


def attention_path(choice: str, backend: str, capability: Optional[tuple[int, int]],
                   dtype: str, head_dim: int, seq_len: int, dropout: bool) -> str:
  """The self-attention implementation for one call: "explicit", "xla" or "cudnn".

  choice: ModelConfig.attention; backend, capability: `current_platform()`; dtype: the compute
  dtype's name; head_dim D and seq_len L of the call; dropout: whether attention-probability
  dropout is applied (rate > 0 and not deterministic). "auto" takes jax.nn.dot_product_attention
  ("xla") without dropout and the explicit path with it, on every backend: cuDNN's fused
  dropout draws its masks outside the training rng (see SelfAttention), so it breaks bitwise
  resume and is only taken when asked for ("cudnn"), and it has not been run on a GPU yet.
  ValueError for a choice that cannot run: "xla" with dropout, "cudnn" where unsupported."""
  if choice == "explicit":
    return "explicit"
  if choice == "xla":
    if dropout:
      raise ValueError("attention='xla' (jax.nn.dot_product_attention) has no attention-"
                       "probability dropout; use attention='auto', 'explicit' or 'cudnn', or "
                       "attention_probs_dropout_prob=0")
    return "xla"
  if choice == "cudnn":
    reason = cudnn_unsupported(backend, capability, dtype, head_dim, seq_len)
    if reason:
      raise ValueError(f"attention='cudnn' cannot run here: {reason}")
    return "cudnn"
  if choice != "auto":
    raise ValueError(f"attention={choice!r}; expected auto, explicit, xla or cudnn")
  return "explicit" if dropout else "xla"


def cudnn_dropout_seed(path: tuple) -> int:
  """The static cuDNN dropout seed of the attention module at `path` (its Flax names): a CRC32
  of the path, so that every layer of every network draws a different mask stream."""
  return zlib.crc32("/".join(path).encode())


class SelfAttention(nn.Module):
  """Multi-head self-attention with an additive mask: x [B,L,H], keep [B,1,1,L] or [B,1,L,L]
  (`attention_keep`) -> [B,L,H]. `config.attention` picks the implementation (`attention_path`).

  The explicit path draws its dropout mask from the "dropout" rng like `Dropout`. cuDNN's
  dropout does not: its mask comes from a static per-layer seed (`cudnn_dropout_seed`) and an
  offset that XLA keeps per executable and device, starting at 0 when the executable loads and
  advancing by 16 at each execution (the forward and backward kernels each keep one and stay in
  step because each runs once per train step). So under "cudnn" the masks do not follow the
  training rng: a resumed run redraws the masks of the first steps, every device draws the same
  mask for its shard of the batch, and the masks differ from the explicit path's.
  """

  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, keep: Array, deterministic: bool) -> Array:
    cfg = self.config
    n, d = cfg.num_attention_heads, cfg.head_dim
    proj = lambda name: dense(cfg, (n, d), ("hidden",), ("heads", "kv"), name)
    q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)  # [B,L,N,D]
    rate = cfg.attention_probs_dropout_prob
    dropout = rate > 0 and not deterministic
    backend, capability = current_platform()
    path = attention_path(cfg.attention, backend, capability, cfg.dtype, d, x.shape[1], dropout)
    if path == "explicit":
      logits = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=jnp.float32)
      logits = logits / jnp.sqrt(jnp.float32(d))
      logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
      probs = jax.nn.softmax(logits, axis=-1)
      probs = Dropout(rate)(probs, deterministic=not dropout)
      out = jnp.einsum("bnqk,bknd->bqnd", probs.astype(cfg.compute_dtype), v)
    elif path == "xla":
      # XLA's attention (jax.nn.dot_product_attention's default): float32 softmax, no dropout.
      out = jax.nn.dot_product_attention(q, k, v, mask=keep, implementation="xla")
    else:
      # cuDNN flash attention takes a [B,1,L,L] mask (it becomes an additive bias); the keys'
      # padding mask [B,1,1,L] is broadcast over the queries.
      b, length = x.shape[:2]
      out = cudnn_attention.dot_product_attention(
          q, k, v, mask=jnp.broadcast_to(keep, (b, 1, length, length)),
          scale=1.0 / float(d) ** 0.5, seed=cudnn_dropout_seed(self.path),
          dropout_rate=rate if dropout else 0.0, qkv_layout="BTNH")
    out = sharding.logical_constraint(out, ("batch", "length", "heads", "kv"))
    return dense(cfg, cfg.hidden_size, ("heads", "kv"), ("hidden",), "output", axis=(-2, -1))(out)


class TransformerLayer(nn.Module):
  """Post-LN BERT block: x = LN(x + Attn(x)); x = LN(x + FFN(x)). keep: `attention_keep`."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, keep: Array, deterministic: bool) -> Array:
    cfg = self.config
    drop = Dropout(cfg.hidden_dropout_prob)
    a = SelfAttention(cfg, name="attention")(x, keep, deterministic)
    x = layer_norm(cfg, "hidden", "attention_LayerNorm")(x + drop(a, deterministic=deterministic))
    h = dense(cfg, cfg.intermediate_size, ("hidden",), ("mlp",), "intermediate")(x)
    h = activation(cfg.hidden_act)(h)
    h = sharding.logical_constraint(h, ("batch", "length", "mlp"))
    h = dense(cfg, cfg.hidden_size, ("mlp",), ("hidden",), "output")(h)
    x = layer_norm(cfg, "hidden", "output_LayerNorm")(x + drop(h, deterministic=deterministic))
    return sharding.logical_constraint(x, ("batch", "length", "hidden"))


class Encoder(nn.Module):
  """`num_hidden_layers` TransformerLayers named layer_0 ... layer_{n-1}. keep: `attention_keep`."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, keep: Array, deterministic: bool) -> Array:
    cfg = self.config
    layer_cls = TransformerLayer
    if cfg.remat:
      layer_cls = nn.remat(TransformerLayer, static_argnums=(3,))
    for i in range(cfg.num_hidden_layers):
      x = layer_cls(cfg, name=f"layer_{i}")(x, keep, deterministic)
    return x


class Backbone(nn.Module):
  """The ELECTRA encoder (Hugging Face's ElectraModel): ids [B,L] -> hidden states [B,L,H].

  With `shared_embeddings` set, that module (owned by a parent) embeds the ids; otherwise the
  backbone owns an `embeddings` submodule. `embeddings_project` (E -> H) exists when E != H.
  attention_mask [B,L] (1 real, 0 padding; None: all real), token_type_ids [B,L] (None: 0).
  Packed rows also pass example_ids and position_ids [B,L] (see the module docstring); without
  them each row is one example.
  """

  config: ModelConfig
  shared_embeddings: Optional[Embeddings] = None

  def setup(self):
    cfg = self.config
    if self.shared_embeddings is None:
      self.embeddings = Embeddings(cfg)
    if cfg.embedding_size != cfg.hidden_size:
      self.embeddings_project = dense(cfg, cfg.hidden_size, ("embed",), ("hidden",),
                                      "embeddings_project")
    self.encoder = Encoder(cfg)

  def embedder(self) -> Embeddings:
    return self.shared_embeddings if self.shared_embeddings is not None else self.embeddings

  def __call__(self, input_ids: Array, attention_mask: Optional[Array] = None,
               token_type_ids: Optional[Array] = None, deterministic: bool = True,
               word_embeddings_delta: Optional[Array] = None,
               example_ids: Optional[Array] = None,
               position_ids: Optional[Array] = None) -> Array:
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    if (example_ids is None) != (position_ids is None):
      raise ValueError("packed rows need both example_ids and position_ids (or neither)")
    x = self.embedder()(input_ids, token_type_ids, deterministic, word_embeddings_delta,
                        position_ids)
    if self.config.embedding_size != self.config.hidden_size:
      x = self.embeddings_project(x)
    return self.encoder(x, attention_keep(attention_mask, example_ids), deterministic)


def gather_positions(x: Array, positions: Array) -> Array:
  """x [B,L,...], positions [B,P] int -> [B,P,...] in x's dtype. Gathers in float32 so that the
  gradient's scatter-add uses native atomics on GPU (see Embeddings)."""
  idx = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x.astype(jnp.float32), idx, axis=1).astype(x.dtype)
