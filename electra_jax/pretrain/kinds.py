"""What pre-training does differently per objective: one `ObjectiveKind` object per kind, registered
in KINDS under its `ObjectiveConfig.kind` name, and one `Replacements` object per source of the
replaced tokens.

An objective kind holds everything particular to it; electra_jax.pretrain.objective (the loss),
flops, health and electra_jax.quality ask it and never its name:
  replaces      whether the big network sees replaced tokens, so that the run needs a generator
                (the trained tower, or uniform replacements with ObjectiveConfig.uniform_generator)
  heads         the big network's heads (model.pretraining: "rtd", "mlm")
  mask_token_prob, random_token_prob  its defaults for the masked positions' corruption
  big_network   one pass of the big network; loss_terms: its losses and metrics from that pass
  metrics       the names loss_terms logs (the other objective.METRIC_NAMES stay 0)
  head_rows     the rows each head computes on, from which pretrain.flops counts its FLOPs
  witness       its health rule: the signal that says whether the big network learns
  likely_causes its suspects when that signal stays at its prior

The kinds of the paper (Clark et al. 2020, §3.2 and Table 5; "the big network" is the
discriminator tower, the network that is fine-tuned later):
  electra         generator MLM + replaced-token detection on all non-pad tokens.
  electra_15      as electra, but the discriminator loss only at the masked positions.
  replace_mlm     masked positions get generator samples (no [MASK] in the big network's input);
                  the big network does MLM (predicts the original ids) at the masked positions.
  all_tokens_mlm  as replace_mlm, but the big network predicts every non-pad token, with the
                  paper's copy mechanism: p(x) = D [x = input] + (1 - D) softmax(x), where the
                  copy probability D = sigmoid(-rtd_logit) comes from the replaced-token head.
  mlm             BERT baseline: no generator; the big network does MLM on 80/10/10-masked input.
Replacements: GENERATOR samples the trained generator's softmax (the one call of
`sampling.sample_tokens`); UNIFORM draws ids uniformly, no generator tower (its loss is the
constant ln V and its accuracy the expected 1/V, as the official code's zero logits give).

Adding an objective: subclass ObjectiveKind (or a kind below), give it a new `name`, and
`register` an instance; tests/pretrain/test_objective_kinds.py trains a toy objective added so.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.floor.registry import Registry
from electra_jax.pretrain.losses import (binary_entropy, copy_mlm_loss, detection_metrics,
                                         safe_div, sigmoid_cross_entropy, weighted_cross_entropy)

Array = jax.Array

# A health signal is "at its prior" when, averaged over the monitor's window (set from measured
# curves: a slowly learning 4-layer ELECTRA is at disc_loss 0.985 x prior, AUC 0.54, gen_accuracy
# 1.5 x unigram by step 240; a collapsed one at 1.000 x prior, AUC 0.50, gen_accuracy 0.9 x
# unigram):
DISC_LOSS_RATIO = 0.995  # disc_loss >= 0.995 x disc_prior_loss
DISC_AUC_MAX = 0.53  # and disc_auc < 0.53
ACCURACY_RATIO = 1.2  # mlm accuracy <= 1.2 x the unigram accuracy

DETECTION_METRICS = ("disc_accuracy", "disc_precision", "disc_recall", "disc_auc")


# ---------------------------------------------------------------------------------------------
# Health rules: which signal says that the big network learns (electra_jax.pretrain.health).


class Witness:
  """A health rule. `mean(name)` is a metric's mean over the monitor's window."""

  name = ""  # what the NOT LEARNING warning calls the watched network

  def at_prior(self, mean: Callable[[str], float], unigram_accuracy: float) -> bool:
    raise NotImplementedError

  def describe(self, mean: Callable[[str], float]) -> list[str]:
    """The watched signal for the health messages ([] when the metrics list says it)."""
    return []


class DiscriminatorWitness(Witness):
  """Replaced-token detection at its prior: the loss of the best constant and AUC near 0.5."""

  name = "discriminator"

  def at_prior(self, mean, unigram_accuracy):
    return (mean("disc_loss") >= DISC_LOSS_RATIO * mean("disc_prior_loss")
            and mean("disc_auc") < DISC_AUC_MAX)

  def describe(self, mean):
    return [f"disc_loss {mean('disc_loss'):.4f} vs prior {mean('disc_prior_loss'):.4f}, "
            f"disc_auc {mean('disc_auc'):.3f}"]


class MLMWitness(Witness):
  """The big network's MLM accuracy near the unigram accuracy."""

  name = "MLM"

  def at_prior(self, mean, unigram_accuracy):
    return mean("mlm_accuracy") <= ACCURACY_RATIO * unigram_accuracy


DISCRIMINATOR_WITNESS = DiscriminatorWitness()
MLM_WITNESS = MLMWitness()


# ---------------------------------------------------------------------------------------------
# Replacements: where a kind that replaces gets its tokens.


class Replacements:
  """A source of replaced tokens. `tower`: a generator network is built and trained."""

  tower = False

  def draw(self, rng: Array, generate: Callable[[], Array], sample: Callable[..., Array],
           targets: Array, objective, vocab_size: int) -> tuple[Optional[Array], Array]:
    """(generator logits [B,P,V] f32 or None, replacement ids [B,P] int32). generate() runs the
    generator at the masked positions; sample is `sampling.sample_tokens` (as the objective
    module names it, where tests replace it); targets [B,P] are the original ids there."""
    raise NotImplementedError

  def metrics(self, gen_logits: Optional[Array], targets: Array, weights: Array,
              vocab_size: int) -> dict:
    """gen_loss and gen_accuracy (scalars f32)."""
    raise NotImplementedError


class GeneratorReplacements(Replacements):
  """Samples of the trained generator's softmax, without gradient (ObjectiveConfig.temperature,
  sampler and disallow_correct)."""

  tower = True

  def draw(self, rng, generate, sample, targets, objective, vocab_size):
    logits = generate()
    disallow = targets if objective.disallow_correct else None
    return logits, sample(rng, logits, objective.temperature, disallow, objective.sampler)

  def metrics(self, gen_logits, targets, weights, vocab_size):
    loss, accuracy = weighted_cross_entropy(gen_logits, targets, weights)
    return {"gen_loss": loss, "gen_accuracy": accuracy}


class UniformReplacements(Replacements):
  """Ids uniform over the vocabulary (the official code's zero generator logits)."""

  def draw(self, rng, generate, sample, targets, objective, vocab_size):
    return None, jax.random.randint(rng, targets.shape, 0, vocab_size, jnp.int32)

  def metrics(self, gen_logits, targets, weights, vocab_size):
    return {"gen_loss": jnp.asarray(math.log(vocab_size), jnp.float32),
            "gen_accuracy": jnp.asarray(1.0 / vocab_size, jnp.float32)}


GENERATOR = GeneratorReplacements()
UNIFORM = UniformReplacements()


# ---------------------------------------------------------------------------------------------
# Objective kinds.


@dataclasses.dataclass(frozen=True)
class LossInputs:
  """What a kind's big network and loss see of one batch ([B,L] unless said; built by
  objective.pretraining_loss): ids the original tokens, big_input the big network's input,
  input_mask and types the model's other inputs, packing {example_ids, position_ids} of packed
  rows or {}, labels 1 where big_input differs from ids (non-pad), real the non-pad positions as
  float32, masked the `objective.mask_tokens` dict (positions, weights, masked_lm_ids [B,P],
  is_masked [B,L])."""

  ids: Array
  big_input: Array
  input_mask: Array
  types: Array
  packing: dict
  labels: Array
  real: Array
  masked: dict


class ObjectiveKind:
  """One pre-training objective (module docstring). Subclasses set the class attributes and
  define loss_terms; the defaults run the big network's heads with the MLM head at the masked
  positions."""

  name = ""
  replaces = True
  heads: tuple = ()
  mask_token_prob = 0.85
  random_token_prob = 0.0
  metrics: tuple = ()
  witness: Witness = MLM_WITNESS

  def big_network(self, model: nn.Module, variables: dict, x: LossInputs, deterministic: bool,
                  rng: Array) -> dict:
    """{head: logits} of one pass of the big network (dropout from `rng`)."""
    return model.apply(variables, x.big_input, x.input_mask, x.types, x.masked["positions"],
                       deterministic, method="discriminator_outputs", rngs={"dropout": rng},
                       **x.packing)

  def loss_terms(self, out: dict, x: LossInputs) -> dict:
    """{name in `metrics`: scalar f32} from the big network's outputs `out`."""
    raise NotImplementedError

  def head_rows(self, batch: int, seq_len: int, predictions: int) -> dict:
    """{head: rows it computes on}: "rtd" every token, "mlm" the masked slots."""
    rows = {"rtd": batch * seq_len, "mlm": batch * predictions}
    return {head: rows[head] for head in self.heads}

  def likely_causes(self, objective) -> list[str]:
    """This kind's suspects for a run stuck at its prior (after the optimizer's)."""
    return []


class Electra(ObjectiveKind):
  """Replaced-token detection on every non-pad token (the generator's MLM is the
  replacements' part)."""

  name = "electra"
  heads = ("rtd",)
  metrics = ("disc_loss", "disc_prior_loss", *DETECTION_METRICS)
  witness = DISCRIMINATOR_WITNESS

  def detection_weights(self, x: LossInputs) -> Array:
    """[B,L] f32: the positions the discriminator loss weighs (every non-pad token)."""
    return x.real

  def big_network(self, model, variables, x, deterministic, rng):
    rtd = model.apply(variables, x.big_input, x.input_mask, x.types, deterministic,
                      method="discriminator_logits", rngs={"dropout": rng}, **x.packing)
    return {"rtd": rtd}

  def loss_terms(self, out, x):
    w = self.detection_weights(x)
    terms = {"disc_loss": sigmoid_cross_entropy(out["rtd"], x.labels, w),
             "disc_prior_loss": binary_entropy(safe_div(jnp.sum(x.labels * w), jnp.sum(w)))}
    terms.update(detection_metrics(out["rtd"], x.labels, w))
    return terms

  def likely_causes(self, objective):
    if not objective.has_generator:
      return []
    return ["a small generator at temperature 1 samples near-unigram tokens that only context "
            "can expose; tiny discriminators need many steps (see experiments/tiny.gin, which "
            "uses ObjectiveConfig.temperature = 2)"]


class Electra15(Electra):
  """Replaced-token detection at the masked positions only."""

  name = "electra_15"

  def detection_weights(self, x):
    return x.masked["is_masked"].astype(jnp.float32)


class ReplaceMLM(ObjectiveKind):
  """The big network predicts the original ids at the masked positions, which hold replacements."""

  name = "replace_mlm"
  heads = ("mlm",)
  metrics = ("mlm_loss", "mlm_accuracy")

  def loss_terms(self, out, x):
    loss, accuracy = weighted_cross_entropy(out["mlm"], x.masked["masked_lm_ids"],
                                            x.masked["weights"])
    return {"mlm_loss": loss, "mlm_accuracy": accuracy}


class BertMLM(ReplaceMLM):
  """BERT: MLM at the masked positions of 80/10/10-corrupted input, no replacements."""

  name = "mlm"
  replaces = False
  mask_token_prob = 0.8
  random_token_prob = 0.1


class AllTokensMLM(ObjectiveKind):
  """MLM of every non-pad token with the copy mechanism, the replaced-token head as copy gate."""

  name = "all_tokens_mlm"
  heads = ("rtd", "mlm")
  metrics = ("mlm_loss", "mlm_accuracy", *DETECTION_METRICS)

  def big_network(self, model, variables, x, deterministic, rng):
    return model.apply(variables, x.big_input, x.input_mask, x.types, None, deterministic,
                       method="discriminator_outputs", rngs={"dropout": rng}, **x.packing)

  def loss_terms(self, out, x):
    loss, accuracy = copy_mlm_loss(out["mlm"], out["rtd"], x.big_input, x.ids, x.real)
    return {"mlm_loss": loss, "mlm_accuracy": accuracy,
            **detection_metrics(out["rtd"], x.labels, x.real)}

  def head_rows(self, batch, seq_len, predictions):
    return {"rtd": batch * seq_len, "mlm": batch * seq_len}


KINDS: Registry = Registry("objective kind")
# register(kind) makes `kind` available as ObjectiveConfig.kind = kind.name; a taken name is refused
register = KINDS.register


for built_in in (Electra(), Electra15(), ReplaceMLM(), AllTokensMLM(), BertMLM()):
  register(built_in)
