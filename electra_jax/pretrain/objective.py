"""The ELECTRA pre-training objective and the paper's ablations (Clark et al. 2020, §3.2).

Shapes: B batch, L sequence length, P = max_predictions (masked slots per sequence), V vocab.

Rules (google-research/electra `pretrain_helpers.mask`, `run_pretraining.PretrainingModel`):
- Candidates are the non-pad positions whose id is not [CLS], [SEP], [MASK] or [PAD]. Each sequence
  masks count = max(1, min(P, round(num_real_tokens x mask_prob))) of them (round half to even, as
  tf.round), further capped at the number of candidates. Positions are drawn uniformly WITHOUT
  replacement (Gumbel top-k); the official code draws with replacement (tf.random.categorical) and
  silently merges duplicates, so it masks slightly fewer distinct tokens.
- Of the masked positions 85% become [MASK] and 15% keep their token (kind "mlm": BERT's
  80% [MASK] / 10% uniform random id / 10% kept).
- Generator: cross-entropy at the masked positions, weighted mean. Replacements are sampled from
  softmax(logits / temperature) in float32 under stop_gradient: by default by Gumbel-max as the
  official code does (sampler="gumbel"), or by an exact inverse-CDF sampler of the same
  distribution that needs 2 instead of V random numbers per position (sampler="inverse_cdf",
  cheaper on CPU; see `sample_tokens`).
- Discriminator: sigmoid cross-entropy on every non-pad token ([CLS]/[SEP] included), weighted
  mean; label 1 where the input differs from the original, so a sampled token equal to the original
  is labelled original.
- loss = gen_weight x gen_loss + disc_weight x disc_loss + mlm_weight x mlm_loss.

Packed rows (batches with `example_ids` and `position_ids`, data_pipelines.packing): the rule
above applies to each example of a row, not to the row: an example of n real tokens gets
max(1, min(P, round(n x mask_prob))) masks, capped at its candidates, drawn among its own
candidates, as it would alone in a row. So the masking rate per example (15%, the official
rule) is kept and no example lends its masks to another; the model confines attention to each
example (electra_jax.model.layers). A row still has P slots: when its examples together ask for
more than P masks, P of them, chosen uniformly at random, are kept. On the shared corpus at
L = 128 (packed build, P = 19) 7.0% of the rows ask for more, at most 21, and 0.37% of the masks
asked for are dropped; ObjectiveConfig.max_predictions = 21 keeps them all. The losses are
means over every masked position / real token of the batch, so a packed batch has the losses and
gradients of its examples in unpacked rows (tests/pretrain/test_packed_objective.py).

Kinds (electra, electra_15, replace_mlm, all_tokens_mlm, mlm) and the replacement sources
(the generator, or uniform with `uniform_generator`) are the registered objects of
electra_jax.pretrain.kinds: this module masks, corrupts and sums the losses the same way for
every kind and asks `ObjectiveConfig.objective_kind` / `.replacements` for the rest (which
towers and heads exist, the replacements, the big network's pass and loss terms). The loss and
metric pieces live in electra_jax.pretrain.losses, the sampler in electra_jax.pretrain.sampling;
their names stay importable from here.

Metrics (float32 scalars): loss, gen_loss, gen_accuracy, disc_loss, disc_prior_loss,
disc_accuracy, disc_precision, disc_recall, disc_auc, mlm_loss, mlm_accuracy, replaced_fraction,
real_token_fraction.
disc_prior_loss is the discriminator loss of the best constant prediction, the binary entropy
(nats) of the replaced fraction over the positions the discriminator loss weighs: a
discriminator at disc_loss = disc_prior_loss has learned nothing. A term that a
kind does not have is 0 (e.g. gen_* for "mlm"; disc_* for "replace_mlm"); for all_tokens_mlm the
disc_* accuracy/precision/recall/auc describe the copy gate and disc_loss is 0 (the gate is trained
through mlm_loss). A registered kind may log metrics of its own (ObjectiveKind.metrics).
replaced_fraction is the fraction of non-pad tokens in the big network's input
that differ from the original. real_token_fraction is the share of the batch's B x L token slots
that hold real tokens (the rest is padding, computed on but not learned from).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.model.config import ModelConfig
from electra_jax.model.init import init_on_dummy
from electra_jax.model.pretraining import EMBEDDING_SHARING, ElectraPretrainingModel
from electra_jax.pretrain.kinds import (GENERATOR, KINDS, UNIFORM, LossInputs, ObjectiveKind,
                                        Replacements)
# Moved to losses.py and sampling.py (issue 22); still importable from here, under the names
# their callers and tests use.
from electra_jax.pretrain.losses import (binary_auc, binary_entropy, first_argmax, safe_div,
                                         sigmoid_cross_entropy, weighted_cross_entropy)
from electra_jax.pretrain.losses import copy_mlm_loss as _copy_mlm_loss
from electra_jax.pretrain.sampling import SAMPLERS, sample_tokens
from electra_jax.runtime import mesh as shd

Array = jax.Array

METRIC_NAMES = ("loss", "gen_loss", "gen_accuracy", "disc_loss", "disc_prior_loss",
                "disc_accuracy", "disc_precision", "disc_recall", "disc_auc", "mlm_loss",
                "mlm_accuracy", "replaced_fraction", "real_token_fraction")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """What is masked, what each network predicts, and how the losses are weighted.

  sampler: how replacements are drawn from the generator's softmax: "gumbel" (official
  Gumbel-max) or "inverse_cdf" (same distribution, far fewer random numbers; see sample_tokens).
  mask_token_prob / random_token_prob: share of the masked positions that become [MASK] / a
  uniform random id (the rest keep their token); None -> 0.85 / 0.0 (ELECTRA), or 0.8 / 0.1 for
  kind "mlm" (BERT). disallow_correct: the generator may not sample the original token (official
  option, off by default). mlm_weight weighs the big network's MLM loss (kinds mlm, replace_mlm,
  all_tokens_mlm). kind: a name in electra_jax.pretrain.kinds.KINDS.
  prior_bias: start the replaced-token head's output bias at logit(mask_prob), the log-odds of
  "replaced" when every masked token is replaced (default), instead of 0 (False: the official
  init, for paper-exact runs). From 0
  the discriminator's first and largest gradient tells every token the same thing (lower your
  logit to the prior); Adam turns that shared direction into a shared component of every token's
  embedding and hidden state, and at small scale the discriminator's features never recover
  from it (README, "Does pre-training pay?").
  """

  kind: str = "electra"
  mask_prob: float = 0.15
  max_predictions: Optional[int] = None
  gen_weight: float = 1.0
  disc_weight: float = 50.0
  mlm_weight: float = 1.0
  temperature: float = 1.0
  uniform_generator: bool = False
  disallow_correct: bool = False
  mask_token_prob: Optional[float] = None
  random_token_prob: Optional[float] = None
  sampler: str = "gumbel"
  prior_bias: bool = True

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"ObjectiveConfig.kind={self.kind!r}; expected one of {tuple(KINDS)}")
    if not 0.0 < self.mask_prob < 1.0:
      raise ValueError(f"ObjectiveConfig.mask_prob={self.mask_prob} must be in (0, 1)")
    if self.max_predictions is not None and self.max_predictions < 1:
      raise ValueError(f"ObjectiveConfig.max_predictions={self.max_predictions} must be >= 1 "
                       "or None")
    for name in ("gen_weight", "disc_weight", "mlm_weight"):
      if getattr(self, name) < 0:
        raise ValueError(f"ObjectiveConfig.{name}={getattr(self, name)} must be >= 0")
    if not self.temperature > 0:
      raise ValueError(f"ObjectiveConfig.temperature={self.temperature} must be > 0")
    if self.sampler not in SAMPLERS:
      raise ValueError(f"ObjectiveConfig.sampler={self.sampler!r}; expected one of {SAMPLERS}")
    if self.uniform_generator and not self.objective_kind.replaces:
      raise ValueError("ObjectiveConfig.uniform_generator=True needs a kind with replacements; "
                       f"kind {self.kind!r} has no generator")
    mask, rand = self.mask_fraction, self.random_fraction
    if not (0.0 <= mask <= 1.0 and 0.0 <= rand <= 1.0 and mask + rand <= 1.0):
      raise ValueError(f"ObjectiveConfig: mask_token_prob={mask} and random_token_prob={rand} "
                       "must be in [0, 1] with a sum <= 1")

  @property
  def objective_kind(self) -> ObjectiveKind:
    """The registered object of `kind` (electra_jax.pretrain.kinds)."""
    return KINDS[self.kind]

  @property
  def replacements(self) -> Optional[Replacements]:
    """Where the replaced tokens come from: the generator, uniform, or None for a kind without
    replacements."""
    if not self.objective_kind.replaces:
      return None
    return UNIFORM if self.uniform_generator else GENERATOR

  @property
  def mask_fraction(self) -> float:
    """Share of masked positions that show [MASK] to the generator (or BERT model)."""
    if self.mask_token_prob is not None:
      return self.mask_token_prob
    return self.objective_kind.mask_token_prob

  @property
  def random_fraction(self) -> float:
    """Share of masked positions that show a uniform random id."""
    if self.random_token_prob is not None:
      return self.random_token_prob
    return self.objective_kind.random_token_prob

  @property
  def has_generator(self) -> bool:
    """Whether a generator tower is built and trained."""
    return self.replacements is not None and self.replacements.tower

  @property
  def discriminator_heads(self) -> tuple:
    return self.objective_kind.heads

  def num_predictions(self, seq_len: int) -> int:
    """P, the masked slots per sequence: max_predictions or int((mask_prob + 0.005) x L)."""
    p = self.max_predictions
    if p is None:
      p = max(1, int((self.mask_prob + 0.005) * seq_len))
    if p > seq_len:
      raise ValueError(f"max_predictions={p} exceeds the sequence length {seq_len}")
    return p


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """Token ids the objective treats specially, and the vocabulary size."""

  pad: int
  cls: int
  sep: int
  mask: int
  vocab_size: int

  def __post_init__(self):
    for name in ("pad", "cls", "sep", "mask"):
      value = getattr(self, name)
      if not 0 <= value < self.vocab_size:
        raise ValueError(f"SpecialIds.{name}={value} is outside the vocabulary "
                         f"[0, {self.vocab_size})")

  @classmethod
  def from_vocab_file(cls, path) -> "SpecialIds":
    """Reads a WordPiece vocab.txt (one token a line) with [PAD], [CLS], [SEP] and [MASK]."""
    tokens = Path(path).read_text(encoding="utf-8").splitlines()
    index = {t: i for i, t in enumerate(tokens)}
    missing = [t for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]") if t not in index]
    if missing:
      raise ValueError(f"vocab file {path} lacks the special tokens {missing}")
    return cls(pad=index["[PAD]"], cls=index["[CLS]"], sep=index["[SEP]"],
               mask=index["[MASK]"], vocab_size=len(tokens))


def build_pretraining_model(disc: ModelConfig, gen: ModelConfig, embedding_sharing: str,
                            objective: ObjectiveConfig) -> nn.Module:
  """The joint model the objective needs: which towers exist and which heads the big network has.

  Kind "mlm" trains the big network (`disc`) alone, so `gen` is unused there.
  """
  if embedding_sharing not in EMBEDDING_SHARING:
    raise ValueError(f"embedding_sharing={embedding_sharing!r}; expected one of "
                     f"{EMBEDDING_SHARING}")
  if embedding_sharing == "gdes" and (not objective.has_generator
                                      or "mlm" in objective.discriminator_heads):
    raise ValueError(f"embedding_sharing='gdes' needs a trained generator and a replaced-token "
                     f"objective; kind={objective.kind!r}, "
                     f"uniform_generator={objective.uniform_generator}")
  if gen.vocab_size != disc.vocab_size:
    raise ValueError(f"generator vocab_size {gen.vocab_size} != discriminator vocab_size "
                     f"{disc.vocab_size}")
  return ElectraPretrainingModel(disc, gen, embedding_sharing,
                                 use_generator=objective.has_generator,
                                 discriminator_heads=objective.discriminator_heads)


def _onehot_positions(positions: Array, weights: Array, length: int) -> Array:
  """[B,P] positions with [B,P] weights -> [B,P,L] bool, True at each weighted slot's position."""
  hit = positions[:, :, None] == jnp.arange(length, dtype=positions.dtype)[None, None, :]
  return hit & (weights[:, :, None] > 0)


def scatter_positions(ids: Array, positions: Array, weights: Array, updates: Array) -> Array:
  """ids [B,L] with the weighted slots' positions [B,P] set to `updates` [B,P].

  Positions of weighted slots must be distinct (mask_tokens guarantees it)."""
  hit = _onehot_positions(positions, weights, ids.shape[1])  # [B,P,L]
  new = jnp.sum(jnp.where(hit, updates[:, :, None], 0), axis=1).astype(ids.dtype)
  return jnp.where(jnp.any(hit, axis=1), new, ids)


def replaced_labels(original: Array, corrupted: Array, input_mask: Array) -> Array:
  """[B,L] int32: 1 where a non-pad token differs from the original (a sampled token equal to
  the original is labelled 0, as the official code)."""
  return ((corrupted != original) & (input_mask > 0)).astype(jnp.int32)


def _per_example_choice(scores: Array, candidates: Array, real: Array, example_ids: Array,
                        mask_prob: float, p: int) -> Array:
  """[B,L] bool: in each example of each row, its count = max(1, min(p, round(n x mask_prob)))
  (n its real tokens; at most its candidates) candidates of the highest `scores` (ties: the
  lower index first). scores, candidates, real, example_ids: [B,L]."""
  same = (example_ids[:, :, None] == example_ids[:, None, :]) & real[:, :, None] & real[:, None, :]
  num_tokens = jnp.sum(same, axis=-1).astype(jnp.float32)  # [B,L]: real tokens of i's example
  rivals = same & candidates[:, None, :]  # [B,L,L]: candidates of i's example
  count = jnp.clip(jnp.round(num_tokens * mask_prob).astype(jnp.int32), 1, p)
  count = jnp.minimum(count, jnp.sum(rivals, axis=-1).astype(jnp.int32))
  index = jnp.arange(scores.shape[1])
  ahead = (scores[:, None, :] > scores[:, :, None]) | (
      (scores[:, None, :] == scores[:, :, None]) & (index[None, None, :] < index[None, :, None]))
  rank = jnp.sum(rivals & ahead, axis=-1)  # [B,L]: i's place among its example's candidates
  return candidates & (rank < count)


def mask_tokens(rng: Array, input_ids: Array, input_mask: Array, special: SpecialIds,
                objective: ObjectiveConfig, example_ids: Optional[Array] = None) -> dict:
  """Chooses and corrupts the positions to predict.

  input_ids, input_mask: [B,L] int. example_ids: [B,L] int for packed rows (k on the k-th
  example's tokens, 0 on padding): the count rule applies to each example (module docstring);
  None: each row is one example. Returns
    input_ids       [B,L] int32  ids with the chosen positions set to [MASK] / random / kept
    positions       [B,P] int32  chosen positions (distinct within a row; 0 in unused slots)
    weights         [B,P] f32    1 for used slots, 0 for the rest
    masked_lm_ids   [B,P] int32  original ids at the positions (0 in unused slots)
    is_masked       [B,L] bool   whether a position was chosen
  """
  input_ids = jnp.asarray(input_ids, jnp.int32)
  batch, length = input_ids.shape
  p = objective.num_predictions(length)
  real = jnp.asarray(input_mask).astype(bool)
  candidates = real & ~jnp.isin(input_ids, jnp.asarray(
      [special.pad, special.cls, special.sep, special.mask], jnp.int32))
  k_pos, k_kind, k_rand = jax.random.split(rng, 3)

  # Gumbel top-k = sampling P positions uniformly without replacement among the candidates.
  scores = jnp.where(candidates, jax.random.gumbel(k_pos, (batch, length), jnp.float32), -jnp.inf)
  if example_ids is None:
    num_tokens = jnp.sum(real, axis=-1).astype(jnp.float32)
    count = jnp.clip(jnp.round(num_tokens * objective.mask_prob).astype(jnp.int32), 1, p)
    count = jnp.minimum(count, jnp.sum(candidates, axis=-1).astype(jnp.int32))
  else:  # each example's own draw; a row asked for more than P keeps P chosen uniformly
    chosen = _per_example_choice(scores, candidates, real, jnp.asarray(example_ids, jnp.int32),
                                 objective.mask_prob, p)
    # Fresh uniforms pick the P kept (the Gumbel scores would favour the maxima of long
    # examples); the slots stay in Gumbel order, so a row of one example masks as unpacked.
    keys = jnp.where(chosen, jax.random.uniform(jax.random.fold_in(k_pos, 1), (batch, length)),
                     -jnp.inf)
    chosen &= keys >= jax.lax.top_k(keys, p)[0][:, -1:]
    scores = jnp.where(chosen, scores, -jnp.inf)
    count = jnp.minimum(jnp.sum(chosen, axis=-1), p).astype(jnp.int32)
  _, positions = jax.lax.top_k(scores, p)
  used = jnp.arange(p)[None, :] < count[:, None]
  positions = jnp.where(used, positions, 0).astype(jnp.int32)
  weights = used.astype(jnp.float32)
  masked_lm_ids = jnp.where(used, jnp.take_along_axis(input_ids, positions, axis=1), 0)

  u = jax.random.uniform(k_kind, (batch, p))
  random_ids = jax.random.randint(k_rand, (batch, p), 0, special.vocab_size, jnp.int32)
  shown = jnp.where(u < objective.mask_fraction, special.mask,
                    jnp.where(u < objective.mask_fraction + objective.random_fraction,
                              random_ids, masked_lm_ids))
  hit = _onehot_positions(positions, weights, length)
  return {
      "input_ids": scatter_positions(input_ids, positions, weights, shown),
      "positions": positions,
      "weights": weights,
      "masked_lm_ids": masked_lm_ids.astype(jnp.int32),
      "is_masked": jnp.any(hit, axis=1),
  }


PACKING_KEYS = ("example_ids", "position_ids")  # the batch keys of packed rows


def packing_inputs(batch: dict) -> dict:
  """{example_ids, position_ids: int32 [B,L]} of a packed batch, {} of an unpacked one; the
  keyword arguments that the model's methods take for packed rows."""
  present = [k for k in PACKING_KEYS if k in batch]
  if present and len(present) != len(PACKING_KEYS):
    raise ValueError(f"a packed batch needs both {PACKING_KEYS}; this one has only {present}")
  return {k: batch[k].astype(jnp.int32) for k in present}


def corrupt(params, batch: dict, rng: Array, *, model: nn.Module, objective: ObjectiveConfig,
            special: SpecialIds, deterministic: bool) -> dict:
  """The random draws of one batch and the big network's input, before any loss.

  params, batch, rng, deterministic: as `pretraining_loss`, which calls this with the same rng,
  so a caller gets exactly the masks and samples a loss evaluation used. Returns
    masked        the `mask_tokens` dict (input_ids shown to the generator / BERT model, ...)
    gen_logits    [B,P,V] f32 generator logits at the masked positions (None without a generator)
    sampled       [B,P] int32 replacements (None for a kind without replacements, "mlm")
    big_input     [B,L] int32 the big network's input
  """
  ids = batch["input_ids"].astype(jnp.int32)
  input_mask = batch["attention_mask"].astype(jnp.int32)
  types = batch["token_type_ids"].astype(jnp.int32)
  packing = packing_inputs(batch)
  k_mask, k_gen, k_sample, _ = jax.random.split(rng, 4)
  masked = mask_tokens(k_mask, ids, input_mask, special, objective, packing.get("example_ids"))
  positions, weights, targets = masked["positions"], masked["weights"], masked["masked_lm_ids"]
  out = {"masked": masked, "gen_logits": None, "sampled": None,
         "big_input": masked["input_ids"]}
  replacements = objective.replacements
  if replacements is None:
    return out
  generate = functools.partial(model.apply, {"params": params}, masked["input_ids"], input_mask,
                               types, positions, deterministic, method="generator_logits",
                               rngs={"dropout": k_gen}, **packing)
  out["gen_logits"], out["sampled"] = replacements.draw(k_sample, generate, sample_tokens, targets,
                                                        objective, special.vocab_size)
  out["big_input"] = scatter_positions(ids, positions, weights, out["sampled"])
  return out


def pretraining_loss(params, batch: dict, rng: Array, *, model: nn.Module,
                     objective: ObjectiveConfig, special: SpecialIds,
                     deterministic: bool) -> tuple[Array, dict]:
  """Total loss and metrics of one batch.

  params: the model's (unboxed) "params" collection. batch: int32 `input_ids`, `attention_mask`,
  `token_type_ids` [B,L], and for packed rows `example_ids`, `position_ids` [B,L] (module
  docstring). rng: a PRNG key for masking, sampling and dropout (draws: `corrupt`).
  `deterministic` turns dropout off (masking and sampling stay random). Returns (loss, metrics),
  scalars f32.
  """
  ids = batch["input_ids"].astype(jnp.int32)
  input_mask = batch["attention_mask"].astype(jnp.int32)
  types = batch["token_type_ids"].astype(jnp.int32)
  packing = packing_inputs(batch)
  real = input_mask.astype(jnp.float32)
  k_disc = jax.random.split(rng, 4)[3]
  draws = corrupt(params, batch, rng, model=model, objective=objective, special=special,
                  deterministic=deterministic)
  masked, big_input = draws["masked"], draws["big_input"]
  targets, weights = masked["masked_lm_ids"], masked["weights"]
  kind = objective.objective_kind
  zero = jnp.zeros((), jnp.float32)
  m = {name: zero for name in (*METRIC_NAMES, *kind.metrics)}
  m["real_token_fraction"] = jnp.mean(real)
  if objective.replacements is not None:
    m.update(objective.replacements.metrics(draws["gen_logits"], targets, weights,
                                            special.vocab_size))

  labels = replaced_labels(ids, big_input, input_mask)
  m["replaced_fraction"] = safe_div(jnp.sum(labels * real), jnp.sum(real))
  x = LossInputs(ids=ids, big_input=big_input, input_mask=input_mask, types=types,
                 packing=packing, labels=labels, real=real, masked=masked)
  terms = kind.loss_terms(kind.big_network(model, {"params": params}, x, deterministic, k_disc), x)
  if set(terms) != set(kind.metrics):
    raise ValueError(f"objective kind {kind.name!r}: loss_terms gave {sorted(terms)}, its "
                     f"metrics are {sorted(kind.metrics)}")
  m.update(terms)

  m["loss"] = (objective.gen_weight * m["gen_loss"] + objective.disc_weight * m["disc_loss"]
               + objective.mlm_weight * m["mlm_loss"])
  return m["loss"], m


def init_fn(model: nn.Module, seq_len: int, objective: Optional[ObjectiveConfig] = None):
  """key -> the joint model's parameters boxed with logical axis names, from a dummy batch of one
  `seq_len`-token row (electra_jax.runtime.state's `init_fn`); with `objective.prior_bias` the
  replaced-token head's output bias starts at logit(mask_prob)."""
  init_params = init_on_dummy(model, seq_len)
  bias = (math.log(objective.mask_prob / (1 - objective.mask_prob))
          if objective is not None and objective.prior_bias else None)

  def init(key):
    params = init_params(key)
    head = params["discriminator"].get("discriminator_predictions")
    if bias is not None and head is not None:
      box = head["dense_prediction"]["bias"]
      head["dense_prediction"]["bias"] = box.replace_boxed(jnp.full_like(box.value, bias))
    return params

  return init


def loss_fn(model: nn.Module, objective: ObjectiveConfig, special: SpecialIds):
  """(params, batch, rng) -> (loss, metrics): `pretraining_loss` with dropout on, the loss
  electra_jax.runtime.step.make_train_step differentiates. batch: int32 `input_ids`,
  `attention_mask`, `token_type_ids` [B, L] (+ `example_ids`, `position_ids` when packed)."""
  return functools.partial(pretraining_loss, model=model, objective=objective, special=special,
                           deterministic=False)


def make_eval_step(model: nn.Module, objective: ObjectiveConfig, special: SpecialIds, mesh,
                   state_shardings, seed: int = 0) -> shd.MeshJit:
  """(state, batch) -> metrics of `pretraining_loss` with dropout off and a fixed rng
  (PRNGKey(seed)), so an eval batch always gets the same masks and samples; a
  `mesh.MeshJit` like the train step."""

  def evaluate(state, batch: dict):
    _, metrics = pretraining_loss(state.params, batch, jax.random.PRNGKey(seed), model=model,
                                  objective=objective, special=special, deterministic=True)
    return metrics

  return shd.MeshJit(evaluate, mesh, in_shardings=(state_shardings, shd.batch_sharding(mesh)),
                     out_shardings=shd.replicated(mesh))
