"""ELECTRA in Flax Linen: embeddings, post-LN encoder, generator, discriminator and task heads.

Shapes: B batch, L sequence length, E embedding size, H hidden size, N heads, D head size,
F intermediate (FFN) size, V vocabulary, C classes.

Every parameter carries logical axis names (see `electra_jax.sharding` for the table that maps
them to mesh axes): "vocab", "embed" (E), "hidden" (H), "heads" (N), "kv" (D), "mlp" (F),
"position", "type", "classes". Parameters are float32; matmuls and activations run in
`config.dtype`; softmax, LayerNorm statistics and every returned logit are float32.

Parameter names mirror Hugging Face's ElectraModel so that conversion is a renaming plus reshapes.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax import random_bits
from electra_jax import sharding as shd
from electra_jax.config import ModelConfig

Array = jax.Array


def _init(cfg: ModelConfig, axes: tuple):
  return nn.with_logical_partitioning(
      nn.initializers.truncated_normal(stddev=cfg.initializer_range), axes)


def _zeros(axes: tuple):
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
    bias = self.param("bias", _zeros(self.out_axes), self.features, jnp.float32)
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


def layer_norm(cfg: ModelConfig, axis_name: str, name: str, dtype=None) -> nn.LayerNorm:
  """LayerNorm with epsilon `layer_norm_eps`; statistics are always float32."""
  return nn.LayerNorm(
      epsilon=cfg.layer_norm_eps, dtype=dtype or cfg.compute_dtype, param_dtype=jnp.float32,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis_name,)),
      bias_init=_zeros((axis_name,)), name=name)


def activation(name: str):
  if name == "gelu":  # exact (erf) GELU, as BERT and ELECTRA use
    return functools.partial(jax.nn.gelu, approximate=False)
  if name == "gelu_new":
    return functools.partial(jax.nn.gelu, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown activation {name!r}")


class Dropout(nn.Module):
  """`nn.Dropout`, bit for bit (same rng stream, mask and scaling), with the mask drawn by
  `electra_jax.random_bits`, which XLA fuses into the select on CPU: x [...] -> x's shape/dtype.
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
  """word + position + token-type embeddings, LayerNorm, dropout: ids [B,L] -> [B,L,E]."""

  config: ModelConfig

  def setup(self):
    cfg = self.config
    # Only the tables are used (`__call__` gathers from them in float32).
    emb = functools.partial(nn.Embed, features=cfg.embedding_size, param_dtype=jnp.float32)
    self.word_embeddings = emb(cfg.vocab_size, embedding_init=_init(cfg, ("vocab", "embed")))
    self.position_embeddings = emb(cfg.max_position_embeddings,
                                   embedding_init=_init(cfg, ("position", "embed")))
    self.token_type_embeddings = emb(cfg.type_vocab_size,
                                     embedding_init=_init(cfg, ("type", "embed")))
    self.LayerNorm = layer_norm(cfg, "embed", "LayerNorm")
    self.dropout = Dropout(cfg.hidden_dropout_prob)

  def __call__(self, input_ids: Array, token_type_ids: Array, deterministic: bool,
               word_embeddings_delta: Optional[Array] = None) -> Array:
    """`word_embeddings_delta` [V,E]: when given, the word table is
    stop_gradient(shared table) + delta (gradient-disentangled sharing, DeBERTa-v3)."""
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
    words = jnp.take(shd.logical_constraint(table, ("vocab", None)), input_ids, axis=0)
    positions = self.position_embeddings.embedding[None, :length]  # a slice, not a gather
    type_table = shd.logical_constraint(self.token_type_embeddings.embedding, ("type", None))
    types = jnp.take(type_table, token_type_ids, axis=0)
    x = self.LayerNorm(words + positions + types)  # float32 sum in, compute dtype out
    x = self.dropout(x, deterministic=deterministic)
    return shd.logical_constraint(x, ("batch", "length", "embed"))

  def attend(self, x: Array) -> Array:
    """Tied output projection in float32: [..., E] -> [..., V]."""
    table = self.word_embeddings.embedding.astype(jnp.float32)
    return jnp.einsum("...e,ve->...v", x.astype(jnp.float32), table)


class SelfAttention(nn.Module):
  """Multi-head self-attention with an additive padding mask: [B,L,H] -> [B,L,H]."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    cfg = self.config
    n, d = cfg.num_attention_heads, cfg.head_dim
    proj = lambda name: dense(cfg, (n, d), ("hidden",), ("heads", "kv"), name)
    q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)  # [B,L,N,D]
    keep = mask[:, None, None, :].astype(bool)  # [B,1,1,L]: which keys may be attended
    if cfg.attention_probs_dropout_prob > 0 and not deterministic:
      # Explicit path: jax.nn.dot_product_attention has no attention-probability dropout.
      logits = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=jnp.float32)
      logits = logits / jnp.sqrt(jnp.float32(d))
      logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
      probs = jax.nn.softmax(logits, axis=-1)
      probs = Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=False)
      out = jnp.einsum("bnqk,bknd->bqnd", probs.astype(cfg.compute_dtype), v)
    else:
      # Fused path (cuDNN flash attention on GPU where it applies, XLA elsewhere); its softmax
      # runs in float32.
      out = jax.nn.dot_product_attention(q, k, v, mask=keep)
    out = shd.logical_constraint(out, ("batch", "length", "heads", "kv"))
    return dense(cfg, cfg.hidden_size, ("heads", "kv"), ("hidden",), "output", axis=(-2, -1))(out)


class TransformerLayer(nn.Module):
  """Post-LN BERT block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    cfg = self.config
    drop = Dropout(cfg.hidden_dropout_prob)
    a = SelfAttention(cfg, name="attention")(x, mask, deterministic)
    x = layer_norm(cfg, "hidden", "attention_LayerNorm")(x + drop(a, deterministic=deterministic))
    h = dense(cfg, cfg.intermediate_size, ("hidden",), ("mlp",), "intermediate")(x)
    h = activation(cfg.hidden_act)(h)
    h = shd.logical_constraint(h, ("batch", "length", "mlp"))
    h = dense(cfg, cfg.hidden_size, ("mlp",), ("hidden",), "output")(h)
    x = layer_norm(cfg, "hidden", "output_LayerNorm")(x + drop(h, deterministic=deterministic))
    return shd.logical_constraint(x, ("batch", "length", "hidden"))


class Encoder(nn.Module):
  """`num_hidden_layers` TransformerLayers named layer_0 ... layer_{n-1}."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    cfg = self.config
    layer_cls = TransformerLayer
    if cfg.remat:
      layer_cls = nn.remat(TransformerLayer, static_argnums=(3,))
    for i in range(cfg.num_hidden_layers):
      x = layer_cls(cfg, name=f"layer_{i}")(x, mask, deterministic)
    return x


class Backbone(nn.Module):
  """The ELECTRA encoder (Hugging Face's ElectraModel): ids [B,L] -> hidden states [B,L,H].

  With `shared_embeddings` set, that module (owned by a parent) embeds the ids; otherwise the
  backbone owns an `embeddings` submodule. `embeddings_project` (E -> H) exists when E != H.
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
               word_embeddings_delta: Optional[Array] = None) -> Array:
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = self.embedder()(input_ids, token_type_ids, deterministic, word_embeddings_delta)
    if self.config.embedding_size != self.config.hidden_size:
      x = self.embeddings_project(x)
    return self.encoder(x, attention_mask, deterministic)


class GeneratorHead(nn.Module):
  """dense(E) -> GELU -> LayerNorm -> tied word embeddings + bias: [..., H] -> [..., V] (f32)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, h: Array, embeddings: Embeddings) -> Array:
    cfg = self.config
    h = dense(cfg, cfg.embedding_size, ("hidden",), ("embed",), "dense")(h)
    h = activation("gelu")(h)  # fixed exact GELU, whatever hidden_act (as HF and official)
    h = layer_norm(cfg, "embed", "LayerNorm")(h)
    bias = self.param("output_bias", _zeros(("vocab",)), (cfg.vocab_size,), jnp.float32)
    return embeddings.attend(h) + bias


class DiscriminatorHead(nn.Module):
  """dense(H) -> GELU -> dense(1): [B,L,H] -> logits [B,L] (float32)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, h: Array) -> Array:
    cfg = self.config
    h = dense(cfg, cfg.hidden_size, ("hidden",), ("hidden_out",), "dense")(h)
    h = activation(cfg.hidden_act)(h)
    logits = dense(cfg, 1, ("hidden_out",), ("classes",), "dense_prediction")(h)
    return logits[..., 0].astype(jnp.float32)


def gather_positions(x: Array, positions: Array) -> Array:
  """x [B,L,...], positions [B,P] int -> [B,P,...] in x's dtype. Gathers in float32 so that the
  gradient's scatter-add uses native atomics on GPU (see Embeddings)."""
  idx = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x.astype(jnp.float32), idx, axis=1).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# Standalone models: outputs equal to the Hugging Face classes of the same name.


class ElectraModel(nn.Module):
  """Last hidden state [B,L,H] (HF ElectraModel)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    return Backbone(self.config, name="electra")(input_ids, attention_mask, token_type_ids,
                                                 deterministic)


class ElectraForPreTraining(nn.Module):
  """Discriminator: replaced-token logits [B,L] (HF ElectraForPreTraining)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    h = Backbone(self.config, name="electra")(input_ids, attention_mask, token_type_ids,
                                              deterministic)
    return DiscriminatorHead(self.config, name="discriminator_predictions")(h)


class ElectraForMaskedLM(nn.Module):
  """Generator: masked-LM logits [B,L,V], or [B,P,V] at `positions` [B,P] (HF ElectraForMaskedLM)."""

  config: ModelConfig

  def setup(self):
    self.electra = Backbone(self.config)
    self.generator_predictions = GeneratorHead(self.config)

  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True,
               positions=None):
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic)
    if positions is not None:
      h = gather_positions(h, positions)
    return self.generator_predictions(h, self.electra.embedder())


class ElectraForSequenceClassification(nn.Module):
  """Logits [B,C] from the [CLS] state.

  head="official": dropout -> linear (google-research/electra).
  head="hf": dropout -> dense(H) -> GELU -> dropout -> linear (HF ElectraClassificationHead).
  """

  config: ModelConfig
  num_labels: int
  head: str = "official"
  classifier_dropout: Optional[float] = None

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    cfg = self.config
    if self.head not in ("official", "hf"):
      raise ValueError(f"head={self.head!r}; expected 'official' or 'hf'")
    rate = cfg.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout
    h = Backbone(cfg, name="electra")(input_ids, attention_mask, token_type_ids, deterministic)
    x = Dropout(rate)(h[:, 0], deterministic=deterministic)
    if self.head == "hf":
      x = dense(cfg, cfg.hidden_size, ("hidden",), ("hidden_out",), "dense")(x)
      x = activation("gelu")(x)  # HF's head fixes exact GELU
      x = Dropout(rate)(x, deterministic=deterministic)
      in_axes = ("hidden_out",)
    else:
      in_axes = ("hidden",)
    logits = dense(cfg, self.num_labels, in_axes, ("classes",), "classifier")(x)
    return logits.astype(jnp.float32)


class ElectraForTokenClassification(nn.Module):
  """Per-token logits [B,L,C]: dropout -> linear."""

  config: ModelConfig
  num_labels: int
  classifier_dropout: Optional[float] = None

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    cfg = self.config
    rate = cfg.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout
    h = Backbone(cfg, name="electra")(input_ids, attention_mask, token_type_ids, deterministic)
    h = Dropout(rate)(h, deterministic=deterministic)
    logits = dense(cfg, self.num_labels, ("hidden",), ("classes",), "classifier")(h)
    return logits.astype(jnp.float32)


class ElectraForQuestionAnswering(nn.Module):
  """Span logits (start [B,L], end [B,L]): linear(H -> 2)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    cfg = self.config
    h = Backbone(cfg, name="electra")(input_ids, attention_mask, token_type_ids, deterministic)
    logits = dense(cfg, 2, ("hidden",), ("classes",), "qa_outputs")(h).astype(jnp.float32)
    return logits[..., 0], logits[..., 1]


class ElectraForMultipleChoice(nn.Module):
  """Choice logits [B,C] for ids [B,C,L]: [CLS] -> dense(H) -> GELU -> dropout -> linear(1)
  (HF ElectraForMultipleChoice's sequence summary)."""

  config: ModelConfig
  classifier_dropout: Optional[float] = None

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    cfg = self.config
    b, c, length = input_ids.shape
    flat = lambda t: None if t is None else t.reshape(b * c, length)
    h = Backbone(cfg, name="electra")(flat(input_ids), flat(attention_mask),
                                      flat(token_type_ids), deterministic)
    x = dense(cfg, cfg.hidden_size, ("hidden",), ("hidden_out",), "summary")(h[:, 0])
    x = activation("gelu")(x)  # HF's summary_activation="gelu" (exact), whatever hidden_act
    rate = cfg.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout
    x = Dropout(rate)(x, deterministic=deterministic)
    logits = dense(cfg, 1, ("hidden_out",), ("classes",), "classifier")(x)
    return logits.reshape(b, c).astype(jnp.float32)


# The standalone classes by their Hugging Face names (what `build` makes).
ARCHITECTURES = ("ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM",
                 "ElectraForSequenceClassification", "ElectraForTokenClassification",
                 "ElectraForQuestionAnswering", "ElectraForMultipleChoice")


def build(architecture: str, cfg: ModelConfig, num_labels: int = 2, head: str = "hf",
          classifier_dropout: Optional[float] = None) -> nn.Module:
  """The one model factory: the class named `architecture` (one of ARCHITECTURES) on `cfg`.
  num_labels, head (sequence classification: "hf" or "official") and classifier_dropout go to
  the classes that take them. ValueError for an unknown name or span QA with num_labels != 2."""
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
  if architecture == "ElectraForSequenceClassification":
    return ElectraForSequenceClassification(cfg, num_labels=num_labels, head=head,
                                            classifier_dropout=classifier_dropout)
  if architecture == "ElectraForTokenClassification":
    return ElectraForTokenClassification(cfg, num_labels=num_labels,
                                         classifier_dropout=classifier_dropout)
  if architecture == "ElectraForMultipleChoice":
    return ElectraForMultipleChoice(cfg, classifier_dropout=classifier_dropout)
  if architecture == "ElectraForQuestionAnswering" and num_labels != 2:
    raise ValueError(f"ElectraForQuestionAnswering with num_labels={num_labels} is not supported "
                     "(span QA has exactly 2 outputs: start and end)")
  return globals()[architecture](cfg)


# ---------------------------------------------------------------------------------------------
# Joint pre-training model.

EMBEDDING_SHARING = ("tied", "untied", "gdes")


class ElectraPretrainingModel(nn.Module):
  """Generator and discriminator with (by default) one shared embedding layer.

  embedding_sharing:
    "tied"   one `embeddings` module (word, position, type tables and LayerNorm) used by both,
             as in ELECTRA; gradients from both losses reach it.
    "untied" each network owns its embeddings (`generator/electra/embeddings`,
             `discriminator/electra/embeddings`).
    "gdes"   gradient-disentangled (DeBERTa-v3): the discriminator's word table is
             stop_gradient(shared table) + `discriminator/word_embeddings_delta` (zero-init).

  Each network owns its `embeddings_project`. Use `generator_logits` and
  `discriminator_logits` through `model.apply(..., method=...)`; `__call__` runs both (for init).

  For the paper's ablations (see `electra_jax.objective`):
    use_generator=False      no generator tower (BERT baseline, uniform generator).
    discriminator_heads      heads on the big network, a subset of ("rtd", "mlm"): "rtd" is the
                             replaced-token head `discriminator_predictions`, "mlm" a generator-style
                             head `discriminator/generator_predictions` (tied word embeddings), so
                             the big network's params have the layout of ElectraForMaskedLM.
                             Read both through `discriminator_outputs`.
  """

  disc_config: ModelConfig
  gen_config: ModelConfig
  embedding_sharing: str = "tied"
  use_generator: bool = True
  discriminator_heads: tuple = ("rtd",)

  def setup(self):
    if self.embedding_sharing not in EMBEDDING_SHARING:
      raise ValueError(f"embedding_sharing={self.embedding_sharing!r}; expected one of "
                       f"{EMBEDDING_SHARING}")
    heads = tuple(self.discriminator_heads)
    if not heads or len(set(heads)) != len(heads) or not set(heads) <= {"rtd", "mlm"}:
      raise ValueError(f"discriminator_heads={heads!r}; expected a non-empty subset of "
                       "('rtd', 'mlm')")
    if "mlm" in heads and self.embedding_sharing == "gdes":
      raise ValueError("an 'mlm' discriminator head needs embedding_sharing 'tied' or 'untied', "
                       "not 'gdes'")
    if self.embedding_sharing != "untied" and self.use_generator:
      for field in ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size"):
        if getattr(self.gen_config, field) != getattr(self.disc_config, field):
          raise ValueError(f"shared embeddings need equal {field}: generator "
                           f"{getattr(self.gen_config, field)} vs discriminator "
                           f"{getattr(self.disc_config, field)}")
    if self.embedding_sharing != "untied":
      self.embeddings = Embeddings(self.disc_config)
      shared = self.embeddings
    else:
      shared = None
    if self.use_generator:
      self.generator = _GeneratorTower(self.gen_config, shared)
    self.discriminator = _DiscriminatorTower(self.disc_config, shared,
                                             gdes=self.embedding_sharing == "gdes", heads=heads)

  def generator_logits(self, input_ids, attention_mask, token_type_ids, positions,
                       deterministic=True):
    """Masked-LM logits [B,P,V] (float32) at `positions` [B,P]."""
    return self.generator(input_ids, attention_mask, token_type_ids, positions, deterministic)

  def discriminator_logits(self, input_ids, attention_mask, token_type_ids, deterministic=True):
    """Replaced-token logits [B,L] (float32)."""
    return self.discriminator(input_ids, attention_mask, token_type_ids, deterministic)

  def discriminator_outputs(self, input_ids, attention_mask, token_type_ids, positions=None,
                            deterministic=True) -> dict:
    """One pass of the big network: {"rtd": logits [B,L], "mlm": logits [B,P,V] at `positions`
    [B,P], or [B,L,V] when positions is None}, for the heads in `discriminator_heads` (float32)."""
    return self.discriminator.outputs(input_ids, attention_mask, token_type_ids, positions,
                                      deterministic)

  def __call__(self, input_ids, attention_mask, token_type_ids, positions, deterministic=True):
    gen = (self.generator_logits(input_ids, attention_mask, token_type_ids, positions,
                                 deterministic) if self.use_generator else None)
    if tuple(self.discriminator_heads) == ("rtd",):
      disc = self.discriminator_logits(input_ids, attention_mask, token_type_ids, deterministic)
    else:
      disc = self.discriminator_outputs(input_ids, attention_mask, token_type_ids, positions,
                                        deterministic)
    return gen, disc


class _GeneratorTower(nn.Module):
  config: ModelConfig
  shared_embeddings: Optional[Embeddings]

  def setup(self):
    self.electra = Backbone(self.config, self.shared_embeddings)
    self.generator_predictions = GeneratorHead(self.config)

  def __call__(self, input_ids, attention_mask, token_type_ids, positions, deterministic):
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic)
    return self.generator_predictions(gather_positions(h, positions), self.electra.embedder())


class _DiscriminatorTower(nn.Module):
  config: ModelConfig
  shared_embeddings: Optional[Embeddings]
  gdes: bool = False
  heads: tuple = ("rtd",)

  def setup(self):
    cfg = self.config
    self.electra = Backbone(cfg, self.shared_embeddings)
    if "rtd" in self.heads:
      self.discriminator_predictions = DiscriminatorHead(cfg)
    if "mlm" in self.heads:
      self.generator_predictions = GeneratorHead(cfg)
    if self.gdes:
      self.word_embeddings_delta = self.param(
          "word_embeddings_delta", _zeros(("vocab", "embed")),
          (cfg.vocab_size, cfg.embedding_size), jnp.float32)

  def __call__(self, input_ids, attention_mask, token_type_ids, deterministic):
    delta = self.word_embeddings_delta if self.gdes else None
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic, delta)
    return self.discriminator_predictions(h)

  def outputs(self, input_ids, attention_mask, token_type_ids, positions, deterministic):
    delta = self.word_embeddings_delta if self.gdes else None
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic, delta)
    out = {}
    if "rtd" in self.heads:
      out["rtd"] = self.discriminator_predictions(h)
    if "mlm" in self.heads:
      hm = h if positions is None else gather_positions(h, positions)
      out["mlm"] = self.generator_predictions(hm, self.electra.embedder())
    return out


def split_pretraining_params(params: dict, embedding_sharing: str = "tied") -> tuple[dict, dict]:
  """Pre-training params -> (ElectraForMaskedLM params, ElectraForPreTraining params).

  The shared embeddings are copied into each network; under "gdes" the discriminator's word
  table is the shared table plus its delta, the table the discriminator actually used.
  Without a generator tower (use_generator=False) the first element is None; the big network
  keeps whichever heads it has ("discriminator_predictions", "generator_predictions").
  """
  gen = None
  if "generator" in params:
    gen = {"electra": dict(params["generator"]["electra"]),
           "generator_predictions": params["generator"]["generator_predictions"]}
  disc_tower = params["discriminator"]
  disc = {"electra": dict(disc_tower["electra"])}
  for head in ("discriminator_predictions", "generator_predictions"):
    if head in disc_tower:
      disc[head] = disc_tower[head]
  if embedding_sharing != "untied":
    if gen is not None:
      gen["electra"]["embeddings"] = params["embeddings"]
    emb = dict(params["embeddings"])
    if embedding_sharing == "gdes":
      emb["word_embeddings"] = {"embedding": emb["word_embeddings"]["embedding"]
                                + disc_tower["word_embeddings_delta"]}
    disc["electra"]["embeddings"] = emb
  return gen, disc
