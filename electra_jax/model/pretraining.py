"""The joint ELECTRA pre-training model (generator and discriminator towers sharing embeddings)
and its split into the two standalone networks.

Shapes: B batch, L sequence length, P predicted positions, V vocabulary.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from electra_jax.model.config import ModelConfig
from electra_jax.model.heads import DiscriminatorHead, GeneratorHead
from electra_jax.model.layers import Backbone, Embeddings, gather_positions, zeros_init

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
  Every method takes optional `example_ids` and `position_ids` [B,L] for packed rows (several
  examples per row, each attending only to itself; see electra_jax.model.layers).

  For the paper's ablations (see `electra_jax.pretrain.objective`):
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
                       deterministic=True, example_ids=None, position_ids=None):
    """Masked-LM logits [B,P,V] (float32) at `positions` [B,P]."""
    return self.generator(input_ids, attention_mask, token_type_ids, positions, deterministic,
                          example_ids, position_ids)

  def discriminator_logits(self, input_ids, attention_mask, token_type_ids, deterministic=True,
                           example_ids=None, position_ids=None):
    """Replaced-token logits [B,L] (float32)."""
    return self.discriminator(input_ids, attention_mask, token_type_ids, deterministic,
                              example_ids, position_ids)

  def discriminator_outputs(self, input_ids, attention_mask, token_type_ids, positions=None,
                            deterministic=True, example_ids=None, position_ids=None) -> dict:
    """One pass of the big network: {"rtd": logits [B,L], "mlm": logits [B,P,V] at `positions`
    [B,P], or [B,L,V] when positions is None}, for the heads in `discriminator_heads` (float32)."""
    return self.discriminator.outputs(input_ids, attention_mask, token_type_ids, positions,
                                      deterministic, example_ids, position_ids)

  def __call__(self, input_ids, attention_mask, token_type_ids, positions, deterministic=True,
               example_ids=None, position_ids=None):
    packing = (example_ids, position_ids)
    gen = (self.generator_logits(input_ids, attention_mask, token_type_ids, positions,
                                 deterministic, *packing) if self.use_generator else None)
    if tuple(self.discriminator_heads) == ("rtd",):
      disc = self.discriminator_logits(input_ids, attention_mask, token_type_ids, deterministic,
                                       *packing)
    else:
      disc = self.discriminator_outputs(input_ids, attention_mask, token_type_ids, positions,
                                        deterministic, *packing)
    return gen, disc


class _GeneratorTower(nn.Module):
  config: ModelConfig
  shared_embeddings: Optional[Embeddings]

  def setup(self):
    self.electra = Backbone(self.config, self.shared_embeddings)
    self.generator_predictions = GeneratorHead(self.config)

  def __call__(self, input_ids, attention_mask, token_type_ids, positions, deterministic,
               example_ids, position_ids):
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic,
                     example_ids=example_ids, position_ids=position_ids)
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
          "word_embeddings_delta", zeros_init(("vocab", "embed")),
          (cfg.vocab_size, cfg.embedding_size), jnp.float32)

  def __call__(self, input_ids, attention_mask, token_type_ids, deterministic, example_ids,
               position_ids):
    delta = self.word_embeddings_delta if self.gdes else None
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic, delta,
                     example_ids, position_ids)
    return self.discriminator_predictions(h)

  def outputs(self, input_ids, attention_mask, token_type_ids, positions, deterministic,
              example_ids, position_ids):
    delta = self.word_embeddings_delta if self.gdes else None
    h = self.electra(input_ids, attention_mask, token_type_ids, deterministic, delta,
                     example_ids, position_ids)
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
