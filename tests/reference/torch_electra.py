"""ELECTRA pre-training in PyTorch on transformers' classes, a reference to check electra_jax by.

Shapes: B batch, L sequence length, P masked slots per sequence, V vocabulary, E embedding size,
H hidden size. Ids are int64 tensors, masks/weights float32, logits float32.

The networks are transformers' `ElectraForMaskedLM` (generator; also the big network of kinds
"mlm" / "replace_mlm") and `ElectraForPreTraining` (discriminator), with one embeddings module
(word / position / type tables and LayerNorm) shared by both and every MLM head's output layer
tied to its word table; each network keeps its own `embeddings_project` when E != H. Two
departures from transformers' defaults, both to follow the official ELECTRA:
  - the word table's `padding_idx` is removed: nn.Embedding would drop the gradient of every
    lookup of id [PAD], which the official code (and electra_jax) keep (a sampled or random
    replacement can be [PAD]);
  - MLM heads run at the P masked positions only ([B,P,E] -> [B,P,V]), not at all L.

Everything random and every loss is computed here, independently of electra_jax, by the rules of
`electra_jax.pretrain.objective` (its module docstring): masking (`mask_tokens`), Gumbel-max
sampling (`sample_gumbel`), the loss terms and metrics (`pretraining_loss`), and the official AdamW
(`OfficialAdamW`). electra_jax is used only for its config dataclasses and to convert its
parameters (`jax_to_hf`), so that both frameworks can start from the same weights.

Two modes:
  given draws   `pretraining_loss` with the masking of electra_jax's `objective.corrupt` and a
                `sample` callable returning its sampled tokens: every term must then agree.
  free running  `train`: own masking and sampling with torch generators, the optimizer, and
                periodic evaluation on fixed eval batches (`evaluate`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
import transformers

from electra_jax.model.config import ModelConfig
from electra_jax.pretrain.objective import ObjectiveConfig, SpecialIds
from electra_jax.runtime.optim import OptimizerConfig

Tensor = torch.Tensor
SUPPORTED_KINDS = ("electra", "electra_15", "replace_mlm", "mlm")
METRIC_NAMES = ("loss", "gen_loss", "gen_accuracy", "disc_loss", "disc_prior_loss",
                "disc_accuracy", "disc_precision", "disc_recall", "disc_auc", "mlm_loss",
                "mlm_accuracy", "replaced_fraction")
_NO_DECAY = ("LayerNorm", "layer_norm", "bias")  # official exclude_from_weight_decay patterns


def hf_config(cfg: ModelConfig) -> transformers.ElectraConfig:
  """The transformers config of one electra_jax ModelConfig (same sizes, dropout, eps)."""
  return transformers.ElectraConfig(**cfg.to_hf_dict())


def big_architecture(objective: ObjectiveConfig) -> str:
  """transformers class of the big network: the replaced-token head, or an MLM head."""
  return "ElectraForPreTraining" if objective.kind in ("electra", "electra_15") else \
      "ElectraForMaskedLM"


def _check_supported(objective: ObjectiveConfig, embedding_sharing: str = "tied") -> None:
  if objective.kind not in SUPPORTED_KINDS:
    raise ValueError(f"the reference implements kinds {SUPPORTED_KINDS}, not {objective.kind!r}")
  if objective.disallow_correct:
    raise ValueError("the reference does not implement ObjectiveConfig.disallow_correct")
  if embedding_sharing != "tied":
    raise ValueError(f"the reference implements embedding_sharing 'tied', not "
                     f"{embedding_sharing!r}")


class PretrainingReference(torch.nn.Module):
  """Generator (None without one: kind "mlm", uniform generator) and big network, sharing one
  embeddings module. Parameters are addressed by `hf_parameters()` names."""

  def __init__(self, disc_cfg: ModelConfig, gen_cfg: ModelConfig, objective: ObjectiveConfig):
    super().__init__()
    _check_supported(objective)
    big_cls = getattr(transformers, big_architecture(objective))
    self.discriminator = big_cls(hf_config(disc_cfg))
    embeddings = self.discriminator.electra.embeddings
    embeddings.word_embeddings.padding_idx = None
    self.generator = None
    if objective.kind != "mlm" and not objective.uniform_generator:
      self.generator = transformers.ElectraForMaskedLM(hf_config(gen_cfg))
      self.generator.electra.embeddings = embeddings
    for net in (self.generator, self.discriminator):
      if isinstance(net, transformers.ElectraForMaskedLM):
        net.generator_lm_head.weight = embeddings.word_embeddings.weight

  def networks(self) -> dict:
    """{"generator": ElectraForMaskedLM, "discriminator": the big network}, without None."""
    nets = {"generator": self.generator, "discriminator": self.discriminator}
    return {k: v for k, v in nets.items() if v is not None}

  def hf_parameters(self) -> dict[str, torch.nn.Parameter]:
    """Every tensor of the networks' HF state dicts by name, "generator/<state-dict name>" or
    "discriminator/<name>" -> parameter (a shared parameter appears under both prefixes; the tied
    output weight `generator_lm_head.weight` is the word table and is not listed)."""
    out = {}
    for prefix, net in self.networks().items():
      for name in net.state_dict():
        if name != "generator_lm_head.weight":
          out[f"{prefix}/{name}"] = net.get_parameter(name)
    return out

  @torch.no_grad()
  def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
    """Copies float32 arrays named as `hf_parameters()` into the parameters (all must be given)."""
    params = self.hf_parameters()
    if set(arrays) != set(params):
      raise ValueError(f"names differ: missing {sorted(set(params) - set(arrays))}, unknown "
                       f"{sorted(set(arrays) - set(params))}")
    for name, p in params.items():
      p.copy_(torch.from_numpy(np.array(arrays[name], np.float32)))

  @staticmethod
  def _mlm_head(net, hidden: Tensor, positions: Tensor) -> Tensor:
    """MLM logits [B,P,V] at `positions` [B,P] of `hidden` [B,L,H]."""
    picked = torch.gather(hidden, 1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
    return net.generator_lm_head(net.generator_predictions(picked)).float()

  def generator_logits(self, input_ids: Tensor, input_mask: Tensor, segment_ids: Tensor,
                       positions: Tensor) -> Tensor:
    """Generator logits [B,P,V] at `positions` [B,P]."""
    net = self.generator
    hidden = net.electra(input_ids, attention_mask=input_mask,
                         token_type_ids=segment_ids).last_hidden_state
    return self._mlm_head(net, hidden, positions)

  def big_logits(self, input_ids: Tensor, input_mask: Tensor, segment_ids: Tensor,
                 positions: Tensor) -> Tensor:
    """Replaced-token logits [B,L], or for an MLM big network logits [B,P,V] at `positions`."""
    net = self.discriminator
    if isinstance(net, transformers.ElectraForPreTraining):
      return net(input_ids, attention_mask=input_mask, token_type_ids=segment_ids).logits.float()
    hidden = net.electra(input_ids, attention_mask=input_mask,
                         token_type_ids=segment_ids).last_hidden_state
    return self._mlm_head(net, hidden, positions)


def jax_to_hf(tree, disc_cfg: ModelConfig, gen_cfg: ModelConfig, objective: ObjectiveConfig,
              embedding_sharing: str = "tied") -> dict[str, np.ndarray]:
  """An electra_jax pre-training params tree (or a tree shaped like it: gradients, updates) ->
  float32 arrays named as `PretrainingReference.hf_parameters()`, through electra_jax's
  `split_pretraining_params` and `hf_io.params_to_state`."""
  from electra_jax.io import hf as hf_io
  from electra_jax.model import heads
  from electra_jax.model.pretraining import split_pretraining_params

  _check_supported(objective, embedding_sharing)
  gen, disc = split_pretraining_params(tree, embedding_sharing)
  parts = (("generator", "ElectraForMaskedLM", gen_cfg, gen),
           ("discriminator", big_architecture(objective), disc_cfg, disc))
  out = {}
  for prefix, arch, cfg, part in parts:
    if part is not None:
      state = hf_io.params_to_state(heads.build(arch, cfg), part)
      out.update({f"{prefix}/{k}": v for k, v in state.items()})
  return out


def from_jax_params(params, disc_cfg: ModelConfig, gen_cfg: ModelConfig,
                    objective: ObjectiveConfig) -> PretrainingReference:
  """A reference holding exactly the weights of electra_jax pre-training `params` ("tied")."""
  ref = PretrainingReference(disc_cfg, gen_cfg, objective)
  ref.load_arrays(jax_to_hf(params, disc_cfg, gen_cfg, objective))
  return ref


# ---------------------------------------------------------------------------------------------
# Masking and sampling


def num_predictions(objective: ObjectiveConfig, seq_len: int) -> int:
  """P: max_predictions, or the official int((mask_prob + 0.005) x L)."""
  return objective.max_predictions or max(1, int((objective.mask_prob + 0.005) * seq_len))


def shown_fractions(objective: ObjectiveConfig) -> tuple[float, float]:
  """(share of masked positions shown as [MASK], share shown as a uniform random id)."""
  bert = objective.kind == "mlm"
  mask, rand = objective.mask_token_prob, objective.random_token_prob
  mask = (0.8 if bert else 0.85) if mask is None else mask
  rand = (0.1 if bert else 0.0) if rand is None else rand
  return mask, rand


def scatter_slots(ids: Tensor, positions: Tensor, weights: Tensor, values: Tensor) -> Tensor:
  """ids [B,L] with the positions [B,P] of the slots of weight > 0 set to values [B,P]."""
  out = ids.clone()
  rows = torch.arange(ids.shape[0])[:, None].expand_as(positions)
  used = weights > 0
  out[rows[used], positions[used]] = values[used]
  return out


def mask_tokens(input_ids: Tensor, input_mask: Tensor, special: SpecialIds,
                objective: ObjectiveConfig, generator: torch.Generator) -> dict:
  """The official masking with torch's RNG: per row count = max(1, min(P, round_half_even(
  n_real x mask_prob))) positions (capped at the candidates: non-pad, not [CLS]/[SEP]/[MASK]/
  [PAD]), drawn without replacement; each shown as [MASK] / a random id / itself.

  input_ids, input_mask: [B,L]. Returns input_ids [B,L] (what the generator sees), positions
  [B,P] (0 in unused slots), weights [B,P] float32, masked_lm_ids [B,P] (0 in unused slots).
  """
  batch, length = input_ids.shape
  p = num_predictions(objective, length)
  real = input_mask > 0
  specials = torch.tensor([special.pad, special.cls, special.sep, special.mask])
  candidates = real & ~torch.isin(input_ids, specials)
  scores = torch.rand((batch, length), generator=generator).masked_fill(~candidates, -1.0)
  positions = torch.topk(scores, p, dim=1).indices  # a uniform subset of the candidates first
  count = torch.round(real.sum(1).float() * objective.mask_prob).long().clamp(1, p)
  count = torch.minimum(count, candidates.sum(1))
  used = torch.arange(p)[None, :] < count[:, None]
  positions = torch.where(used, positions, 0)
  weights = used.float()
  masked_lm_ids = torch.where(used, torch.gather(input_ids, 1, positions), 0)
  mask_share, random_share = shown_fractions(objective)
  u = torch.rand((batch, p), generator=generator)
  random_ids = torch.randint(0, special.vocab_size, (batch, p), generator=generator)
  shown = torch.where(u < mask_share, special.mask,
                      torch.where(u < mask_share + random_share, random_ids, masked_lm_ids))
  return {"input_ids": scatter_slots(input_ids, positions, weights, shown),
          "positions": positions, "weights": weights, "masked_lm_ids": masked_lm_ids}


def sample_gumbel(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
  """Gumbel-max sample of softmax(logits / temperature): logits [...,V] -> ids [...]."""
  u = torch.rand(logits.shape, generator=generator).clamp_min(torch.finfo(torch.float32).tiny)
  return torch.argmax(logits.detach().float() / temperature - torch.log(-torch.log(u)), dim=-1)


Sampler = Callable[[Optional[Tensor], tuple], Tensor]


def random_sampler(objective: ObjectiveConfig, special: SpecialIds,
                   generator: torch.Generator) -> Sampler:
  """(generator logits [B,P,V] or None, shape (B,P)) -> replacements [B,P]: Gumbel-max from the
  generator, or uniform ids for the uniform generator."""
  if objective.uniform_generator:
    return lambda logits, shape: torch.randint(0, special.vocab_size, shape, generator=generator)
  return lambda logits, shape: sample_gumbel(logits, objective.temperature, generator)


# ---------------------------------------------------------------------------------------------
# Losses and metrics


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
  return num / den if den > 0 else torch.zeros((), dtype=torch.float32)


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor
                           ) -> tuple[Tensor, Tensor]:
  """Softmax CE sum / (sum w + 1e-6) and weighted accuracy of the argmax; logits [...,V]."""
  nll = -torch.gather(F.log_softmax(logits.float(), dim=-1), -1, labels[..., None])[..., 0]
  loss = (nll * weights).sum() / (weights.sum() + 1e-6)
  correct = (logits.argmax(-1) == labels).float()
  return loss, _safe_div((correct * weights).sum().detach(), weights.sum())


def binary_auc(scores: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
  """ROC AUC over the entries of weight > 0 by its definition: the share of (positive,
  negative) pairs ranked correctly, ties counted half; 0.5 when a class is absent."""
  keep = weights > 0
  s, y = scores.detach()[keep], labels[keep] > 0
  pos, neg = s[y], s[~y]
  if pos.numel() == 0 or neg.numel() == 0:
    return torch.tensor(0.5)
  diff = pos[:, None] - neg[None, :]
  wins = (diff > 0).sum().double() + 0.5 * (diff == 0).sum().double()
  return (wins / (pos.numel() * neg.numel())).float()


def detection_metrics(logits: Tensor, labels: Tensor, weights: Tensor) -> dict:
  """Accuracy, precision, recall (prediction: logit > 0) and AUC, weighted; [B,L] inputs; and
  disc_prior_loss, the binary entropy (nats) of the weighted replaced fraction: the loss of the
  best constant prediction."""
  logits, labels = logits.detach(), labels.float()
  preds = (logits > 0).float()
  correct = (preds == labels).float()
  rate = float(_safe_div((labels * weights).sum(), weights.sum()))
  prior = -sum(q * math.log(q) for q in (rate, 1.0 - rate) if q > 0)
  return {
      "disc_prior_loss": torch.tensor(prior, dtype=torch.float32),
      "disc_accuracy": _safe_div((correct * weights).sum(), weights.sum()),
      "disc_precision": _safe_div((correct * preds * weights).sum(), (preds * weights).sum()),
      "disc_recall": _safe_div((correct * labels * weights).sum(), (labels * weights).sum()),
      "disc_auc": binary_auc(logits, labels, weights),
  }


def pretraining_loss(ref: PretrainingReference, batch: dict, masked: dict, sample: Sampler,
                     objective: ObjectiveConfig, special: SpecialIds
                     ) -> tuple[Tensor, dict, dict]:
  """Total loss, metrics and intermediate outputs of one batch.

  batch: int64 input_ids, input_mask, segment_ids [B,L]. masked: a `mask_tokens` dict (or the
  same fields of electra_jax's draws). sample(gen_logits [B,P,V] or None, (B,P)) -> [B,P]
  replacements (unused for kind "mlm"). Returns (loss scalar with gradient, {METRIC_NAMES:
  float32 scalars without gradient}, {"big_input": [B,L], "gen_logits": [B,P,V] or None}).
  """
  ids, input_mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
  positions, weights = masked["positions"], masked["weights"]
  targets = masked["masked_lm_ids"]
  real = (input_mask > 0).float()
  zero = torch.zeros((), dtype=torch.float32)
  m = {name: zero for name in METRIC_NAMES}
  gen_loss = mlm_loss = disc_loss = zero
  gen_logits = None

  if ref.generator is not None:
    gen_logits = ref.generator_logits(masked["input_ids"], input_mask, types, positions)
    gen_loss, m["gen_accuracy"] = weighted_cross_entropy(gen_logits, targets, weights)
  elif objective.uniform_generator:  # the official code's zero logits
    gen_loss = torch.tensor(math.log(special.vocab_size), dtype=torch.float32)
    m["gen_accuracy"] = torch.tensor(1.0 / special.vocab_size, dtype=torch.float32)
  if objective.kind == "mlm":
    big_input = masked["input_ids"]
  else:
    sampled = sample(None if gen_logits is None else gen_logits.detach(), tuple(targets.shape))
    big_input = scatter_slots(ids, positions, weights, sampled)
  labels = ((big_input != ids) & (input_mask > 0)).long()
  m["replaced_fraction"] = _safe_div((labels * real).sum(), real.sum())

  out = ref.big_logits(big_input, input_mask, types, positions)
  if objective.kind in ("electra", "electra_15"):
    if objective.kind == "electra":
      w = real
    else:
      w = scatter_slots(torch.zeros_like(ids), positions, weights, torch.ones_like(targets))
      w = w.float()
    per_token = F.binary_cross_entropy_with_logits(out, labels.float(), reduction="none")
    disc_loss = (per_token * w).sum() / (w.sum() + 1e-6)
    m.update(detection_metrics(out, labels, w))
  else:
    mlm_loss, m["mlm_accuracy"] = weighted_cross_entropy(out, targets, weights)

  loss = (objective.gen_weight * gen_loss + objective.disc_weight * disc_loss
          + objective.mlm_weight * mlm_loss)
  m.update(loss=loss, gen_loss=gen_loss, disc_loss=disc_loss, mlm_loss=mlm_loss)
  metrics = {k: v.detach().float() for k, v in m.items()}
  return loss, metrics, {"big_input": big_input, "gen_logits": gen_logits}


# ---------------------------------------------------------------------------------------------
# Optimizer


class OfficialAdamW:
  """The official ELECTRA AdamW over the unique parameters of `named` (name -> parameter).

  Per step t = 0, 1, ...: g <- g x clip / max(||g||, clip) (global norm over all parameters);
  m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2 (float32); update = m / (sqrt(v) + eps), or with
  bias correction (m / (1-b1^(t+1))) / (sqrt(v / (1-b2^(t+1))) + eps); + weight_decay x param
  unless the name contains LayerNorm / layer_norm / bias; param <- param - lr(t) x update with
  lr(t) = peak x (1 - min(t', T) / T)^power x min(1, t' / warmup), t' = t + schedule_offset.
  """

  def __init__(self, named: dict[str, torch.nn.Parameter], cfg: OptimizerConfig):
    self.cfg = cfg
    self.params, self.decay, seen = [], [], set()
    for name, p in named.items():
      if id(p) not in seen:
        seen.add(id(p))
        self.params.append(p)
        self.decay.append(not any(s in name for s in _NO_DECAY))
    self.m = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
    self.v = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
    self.t = 0

  def learning_rate(self, t: int) -> float:
    cfg = self.cfg
    t = t + cfg.schedule_offset
    lr = cfg.learning_rate * (1.0 - min(t, cfg.total_steps) / cfg.total_steps) ** cfg.lr_decay_power
    if cfg.warmup_steps > 0:
      lr *= min(1.0, t / cfg.warmup_steps)
    return lr

  @torch.no_grad()
  def step(self) -> dict:
    """Applies one update from the parameters' .grad (None counts as zero) and clears them.
    Returns {"grad_norm": global norm before clipping, "learning_rate": lr(t)} (floats)."""
    cfg = self.cfg
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.float() for p in self.params]
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    if cfg.clip_norm is not None and norm > cfg.clip_norm:
      grads = [g * (cfg.clip_norm / norm) for g in grads]
    lr = self.learning_rate(self.t)
    self.t += 1
    c1, c2 = 1.0 - cfg.b1 ** self.t, 1.0 - cfg.b2 ** self.t
    for p, g, m, v, decay in zip(self.params, grads, self.m, self.v, self.decay):
      m.mul_(cfg.b1).add_((1.0 - cfg.b1) * g)
      v.mul_(cfg.b2).add_((1.0 - cfg.b2) * g * g)
      if cfg.bias_correction:
        update = (m / c1) / (torch.sqrt(v / c2) + cfg.eps)
      else:
        update = m / (torch.sqrt(v) + cfg.eps)
      if decay and cfg.weight_decay > 0:
        update = update + cfg.weight_decay * p
      p.sub_(lr * update)
      p.grad = None
    return {"grad_norm": float(norm), "learning_rate": lr}


# ---------------------------------------------------------------------------------------------
# Free-running training and evaluation


def batch_to_torch(batch: dict) -> dict:
  """{input_ids, input_mask, segment_ids: numpy [B,L]} -> int64 tensors."""
  return {k: torch.as_tensor(np.asarray(batch[k]), dtype=torch.long)
          for k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def evaluate(ref: PretrainingReference, eval_data, objective: ObjectiveConfig,
             special: SpecialIds, num_batches: int, seed: int) -> dict:
  """Mean metrics over eval batches 0..num_batches-1, dropout off; every batch is masked and
  sampled from a generator seeded with `seed` (as electra_jax's eval step uses one fixed key)."""
  ref.eval()
  totals = dict.fromkeys(METRIC_NAMES, 0.0)
  for i in range(num_batches):
    g = torch.Generator().manual_seed(seed)
    batch = batch_to_torch(eval_data.batch(i))
    masked = mask_tokens(batch["input_ids"], batch["attention_mask"], special, objective, g)
    _, metrics, _ = pretraining_loss(ref, batch, masked, random_sampler(objective, special, g),
                                     objective, special)
    for k, v in metrics.items():
      totals[k] += float(v)
  return {k: v / num_batches for k, v in totals.items()}


def train(ref: PretrainingReference, optimizer: OfficialAdamW, train_data, eval_data,
          objective: ObjectiveConfig, special: SpecialIds, *, steps: int, eval_every: int,
          eval_batches: int, seed: int, out_path: Optional[Path] = None,
          log: Callable[[str], None] = print) -> list[dict]:
  """Trains for `steps` on train_data.batch(0..steps-1) (dropout per the configs) and evaluates
  after every `eval_every` steps and the last. Returns the eval records [{"step": steps done,
  METRIC_NAMES...}], also written as a JSON list to `out_path` after each evaluation.
  Dropout draws from torch's global RNG, masking and sampling from a generator, both seeded
  with `seed`. Raises FloatingPointError on a non-finite loss."""
  torch.manual_seed(seed)
  g = torch.Generator().manual_seed(seed)
  sample = random_sampler(objective, special, g)
  records = []
  for step in range(steps):
    ref.train()
    batch = batch_to_torch(train_data.batch(step))
    masked = mask_tokens(batch["input_ids"], batch["attention_mask"], special, objective, g)
    loss, metrics, _ = pretraining_loss(ref, batch, masked, sample, objective, special)
    if not torch.isfinite(loss):
      raise FloatingPointError(f"reference: non-finite loss {float(loss)} at step {step}")
    loss.backward()
    optimizer.step()
    done = step + 1
    if done % eval_every == 0 or done == steps:
      record = {"step": done, **evaluate(ref, eval_data, objective, special, eval_batches, seed)}
      records.append(record)
      log(f"reference eval at step {done}: train loss {float(metrics['loss']):.4g}, "
          + ", ".join(f"{k}={record[k]:.4g}" for k in ("loss", "disc_auc", "gen_accuracy",
                                                         "mlm_accuracy")))
      if out_path is not None:
        Path(out_path).write_text(json.dumps(records, indent=1) + "\n")
  return records
