"""ELECTRA's output heads and the standalone models, equal to the Hugging Face classes of the same
name, with `build`, the one model factory.

Shapes: B batch, L sequence length, H hidden size, E embedding size, V vocabulary, C classes,
K choices, P predicted positions.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.model.config import ModelConfig
from electra_jax.model.layers import (Backbone, Dropout, Embeddings, activation, dense,
                                      gather_positions, layer_norm, zeros_init)

Array = jax.Array

class GeneratorHead(nn.Module):
  """dense(E) -> GELU -> LayerNorm -> tied word embeddings + bias: [..., H] -> [..., V] (f32)."""

  config: ModelConfig

  @nn.compact
  def __call__(self, h: Array, embeddings: Embeddings) -> Array:
    cfg = self.config
    h = dense(cfg, cfg.embedding_size, ("hidden",), ("embed",), "dense")(h)
    h = activation("gelu")(h)  # fixed exact GELU, whatever hidden_act (as HF and official)
    h = layer_norm(cfg, "embed", "LayerNorm")(h)
    bias = self.param("output_bias", zeros_init(("vocab",)), (cfg.vocab_size,), jnp.float32)
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
  num_labels: ClassVar[int] = 2  # start and end: fixed, not a field

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
ARCHITECTURES: dict[str, type] = {cls.__name__: cls for cls in (
    ElectraModel, ElectraForPreTraining, ElectraForMaskedLM, ElectraForSequenceClassification,
    ElectraForTokenClassification, ElectraForQuestionAnswering, ElectraForMultipleChoice)}


def build(architecture: str, cfg: ModelConfig, num_labels: int = 2, head: str = "hf",
          classifier_dropout: Optional[float] = None) -> nn.Module:
  """The one model factory: the class named `architecture` (one of ARCHITECTURES) on `cfg`.
  num_labels, head (sequence classification: "hf" or "official") and classifier_dropout go to
  the classes that have those fields. ValueError for an unknown name, or a num_labels other than
  the fixed output count of a class that has one (span QA: 2)."""
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {architecture!r}; expected one of "
                     f"{tuple(ARCHITECTURES)}")
  cls = ARCHITECTURES[architecture]
  fields = {f.name for f in dataclasses.fields(cls)}
  fixed = getattr(cls, "num_labels", None)
  if "num_labels" not in fields and fixed is not None and num_labels != fixed:
    raise ValueError(f"{architecture} with num_labels={num_labels} is not supported (it has "
                     f"exactly {fixed} outputs)")
  options = {"num_labels": num_labels, "head": head, "classifier_dropout": classifier_dropout}
  return cls(cfg, **{k: v for k, v in options.items() if k in fields})
