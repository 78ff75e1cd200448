"""Is a pre-training run learning? Priors to compare against and an alarm when it is not.

A model that has learned nothing still reports plausible numbers: a discriminator that predicts
the replaced fraction everywhere has loss = the binary entropy of that fraction (the metric
`disc_prior_loss`) and AUC 0.5; a masked-LM that predicts the most frequent token has the
unigram accuracy. `unigram_prior` measures the latter on host batches; `HealthMonitor` watches
the per-step training metrics and, once past a warmup-scaled step, flags a run whose big
network (the one fine-tuned later) still sits at its prior (`health` = "at_prior" in
metrics.jsonl, one loud warning naming the likely causes). Which signal it watches and the
thresholds are the objective kind's health rule (`ObjectiveKind.witness`,
electra_jax.pretrain.kinds).
"""

from __future__ import annotations

import collections
from typing import Iterable, Optional

import numpy as np

from electra_jax.pretrain.objective import ObjectiveConfig, SpecialIds
from electra_jax.runtime.optim import OptimizerConfig, uncorrected_amplification

WINDOW = 50  # training steps averaged
GRACE_STEPS = 200  # steps after warmup before the first verdict


def unigram_prior(batches: Iterable[dict], special: SpecialIds) -> dict:
  """Context-free baselines of a masked-LM on `batches` (dicts of int [B,L] `input_ids`,
  `attention_mask`): over the maskable tokens (real, not [CLS]/[SEP]/[MASK]/[PAD]),
    unigram_accuracy  the frequency of the most frequent token (what always predicting it scores)
    unigram_loss      the entropy of the token distribution (nats): the cross-entropy of the best
                      unigram model fitted on these very tokens, so no context-free predictor
                      does better on them.
  """
  counts = np.zeros(special.vocab_size, np.int64)
  for batch in batches:
    ids = np.asarray(batch["input_ids"]).reshape(-1)
    keep = np.asarray(batch["attention_mask"]).reshape(-1).astype(bool)
    keep &= ~np.isin(ids, [special.pad, special.cls, special.sep, special.mask])
    counts += np.bincount(ids[keep], minlength=special.vocab_size)
  total = counts.sum()
  if total == 0:
    raise ValueError("unigram_prior: the batches hold no maskable tokens")
  p = counts[counts > 0] / total
  return {"unigram_accuracy": float(p.max()), "unigram_loss": float(-(p * np.log(p)).sum())}


def likely_causes(optimizer: OptimizerConfig, objective: ObjectiveConfig) -> list[str]:
  """Human-readable suspects for a run stuck at its prior, most likely first."""
  causes = []
  if not optimizer.bias_correction:
    factor, step = uncorrected_amplification(optimizer)
    if factor > 1.1:
      causes.append(f"OptimizerConfig.bias_correction = False with a {optimizer.warmup_steps}-"
                    f"step warmup: updates reach {factor:.2f}x the peak learning rate (step "
                    f"{step}); set bias_correction = True or a warmup of >= 10000 steps")
  causes.append(f"learning rate {optimizer.learning_rate:g} too high for this model (post-LN "
                "transformers collapse to the prior when steps are too large): try 1/3 of it")
  causes.append(f"learning rate too low, warmup too long or the schedule too short "
                f"({optimizer.warmup_steps} warmup of {optimizer.total_steps} steps; a 4-layer "
                "x 128 discriminator left its prior at ~step 200 of a 400-step schedule, not at "
                "all in a 300-step one)")
  return causes + objective.objective_kind.likely_causes(objective)


# The metrics the verdict and its message read from the window.
WATCHED = ("disc_loss", "disc_prior_loss", "disc_auc", "gen_accuracy", "mlm_accuracy")


class HealthMonitor:
  """Feeds on every training step's metrics; `status` is "warmup" until step
  max(2 x warmup, warmup + GRACE_STEPS), then "at_prior" or "ok" from the last WINDOW steps.

  It watches the big network, the one that is fine-tuned later, by its kind's health rule
  (`ObjectiveKind.witness`): the discriminator (disc_loss against disc_prior_loss, and disc_auc)
  for kinds electra / electra_15, its MLM accuracy against the unigram accuracy for the others.
  The generator is not a witness: under the collapsing optimizer it measured gen_accuracy 0.09
  (1.6 x unigram) at step 300 while the discriminator sat at its prior. `update` returns a
  message to print when the verdict changes to "at_prior" (once) or back to "ok".
  """

  def __init__(self, optimizer: OptimizerConfig, objective: ObjectiveConfig,
               unigram_accuracy: float):
    self.optimizer, self.objective = optimizer, objective
    self.witness = objective.objective_kind.witness
    self.unigram_accuracy = unigram_accuracy
    warmup = optimizer.warmup_steps
    self.first_verdict = max(2 * warmup, warmup + GRACE_STEPS)
    self.window = collections.deque(maxlen=WINDOW)
    self.status = "warmup"
    self.warned = False

  def _mean(self, key: str) -> float:
    return float(np.mean([m[key] for m in self.window]))

  def describe(self) -> str:
    mean = self._mean
    parts = self.witness.describe(mean)
    if self.objective.has_generator:
      parts.append(f"gen_accuracy {mean('gen_accuracy'):.3f}")
    if "mlm" in self.objective.discriminator_heads:
      parts.append(f"mlm_accuracy {mean('mlm_accuracy'):.3f}")
    parts.append(f"unigram accuracy {self.unigram_accuracy:.3f}")
    return "; ".join(parts)

  def state_dict(self) -> dict:
    """What a resumed run needs to go on with the same verdicts (JSON: status, warned and the
    window's values of WATCHED); `load_state` takes it back."""
    return {"status": self.status, "warned": self.warned,
            "window": [{k: m[k] for k in WATCHED if k in m} for m in self.window]}

  def load_state(self, state: dict) -> None:
    """Continues from `state_dict()` of an earlier run (the one of a restored checkpoint)."""
    self.status, self.warned = state["status"], state["warned"]
    self.window.clear()
    self.window.extend(state["window"])

  def update(self, step: int, metrics: dict) -> Optional[str]:
    """Adds step `step`'s metrics (host floats); returns a message when the verdict changes."""
    self.window.append(metrics)
    if step < self.first_verdict or len(self.window) < self.window.maxlen:
      return None
    at_prior = self.witness.at_prior(self._mean, self.unigram_accuracy)
    status = "at_prior" if at_prior else "ok"
    previous, self.status = self.status, status
    if status == "at_prior" and not self.warned:
      self.warned = True
      causes = "\n".join(f"  - {c}" for c in likely_causes(self.optimizer, self.objective))
      bar = "!" * 78
      return (f"{bar}\nWARNING: NOT LEARNING at step {step}: the {self.witness.name}"
              f" is still at its context-free prior over the last {len(self.window)} steps "
              f"({self.describe()}).\nLikely causes:\n{causes}\n{bar}")
    if status == "ok" and previous == "at_prior":
      return f"health: learning past the prior from step {step} ({self.describe()})"
    return None


def amplification_warning(optimizer: OptimizerConfig) -> Optional[str]:
  """A start-of-run warning when the uncorrected optimizer would step above the peak rate."""
  if optimizer.bias_correction:
    return None
  factor, step = uncorrected_amplification(optimizer)
  if factor <= 1.1:
    return None
  return (f"warning: OptimizerConfig.bias_correction = False (the official update) with a "
          f"{optimizer.warmup_steps}-step warmup makes updates up to {factor:.2f}x the peak "
          f"learning rate {optimizer.learning_rate:g} (at step {step}); short warmups like this "
          f"can leave the model at its prior. Set bias_correction = True, or warmup_steps >= "
          f"10000 as the paper")
