"""Objectives are registered objects (electra_jax.pretrain.kinds): a new one is one class and a
`register` call, and the loss, FLOPs, health monitor and training loop take it without a change.
The toy here adds MLM of the original ids at the masked positions to ELECTRA's replaced-token
detection, both on the big network, and logs a metric of its own."""

import jax.numpy as jnp
import pytest
from train_testlib import read_jsonl, tiny_config

from electra_jax.pretrain import flops, health, kinds, losses
from electra_jax.pretrain.objective import ObjectiveConfig
from electra_jax.pretrain.train import train_and_evaluate
from electra_jax.runtime.optim import OptimizerConfig


class DetectionPlusMLM(kinds.ObjectiveKind):
  """Replaced-token detection on every token plus MLM at the masked positions."""

  name = "toy_detection_plus_mlm"
  heads = ("rtd", "mlm")
  metrics = ("disc_loss", "disc_prior_loss", "disc_auc", "mlm_loss", "mlm_accuracy",
             "toy_masked_fraction")
  witness = kinds.DISCRIMINATOR_WITNESS

  def loss_terms(self, out, x):
    mlm_loss, mlm_accuracy = losses.weighted_cross_entropy(out["mlm"], x.masked["masked_lm_ids"],
                                                           x.masked["weights"])
    replaced = losses.safe_div(jnp.sum(x.labels * x.real), jnp.sum(x.real))
    return {"disc_loss": losses.sigmoid_cross_entropy(out["rtd"], x.labels, x.real),
            "disc_prior_loss": losses.binary_entropy(replaced),
            "disc_auc": losses.binary_auc(out["rtd"], x.labels, x.real),
            "mlm_loss": mlm_loss, "mlm_accuracy": mlm_accuracy,
            "toy_masked_fraction": losses.safe_div(jnp.sum(x.masked["is_masked"] * x.real),
                                                   jnp.sum(x.real))}


@pytest.fixture
def toy_kind():
  kind = kinds.register(DetectionPlusMLM())
  yield kind
  del kinds.KINDS[kind.name]


def test_a_registered_toy_objective_trains(tmp_path, toy_kind):
  config = tiny_config(2, ObjectiveConfig__kind=toy_kind.name)
  assert config.objective.objective_kind is toy_kind and config.objective.has_generator
  result = train_and_evaluate(config, tmp_path)
  records = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == [1, 2] and result["step"] == 2
  for r in records:
    assert r["disc_loss"] > 0 and r["mlm_loss"] > 0 and r["gen_loss"] > 0
    assert 0 < r["toy_masked_fraction"] < 0.5
    assert r["loss"] == pytest.approx(r["gen_loss"] + 50 * r["disc_loss"] + r["mlm_loss"],
                                      rel=1e-5)

  # FLOPs: both towers, the replaced-token head on every token, the MLM head at the masked slots.
  batch, seq_len = config.data.global_batch_size, config.data.seq_len
  p = config.objective.num_predictions(seq_len)
  disc, gen = config.model, config.generator
  forward = (flops.encoder_forward_flops(disc, batch, seq_len)
             + flops.encoder_forward_flops(gen, batch, seq_len)
             + flops.mlm_head_forward_flops(gen, batch * p)
             + flops.rtd_head_forward_flops(disc, batch * seq_len)
             + flops.mlm_head_forward_flops(disc, batch * p))
  assert flops.training_flops_per_step(disc, gen, config.objective, batch,
                                       seq_len) == 3 * forward

  # Health: the kind's rule (the discriminator) and no suspects of its own.
  optimizer = OptimizerConfig(warmup_steps=0)
  monitor = health.HealthMonitor(optimizer, config.objective, unigram_accuracy=0.05)
  at_prior = {"disc_loss": 0.5, "disc_prior_loss": 0.5, "disc_auc": 0.5, "gen_accuracy": 0.1,
              "mlm_accuracy": 0.9}
  messages = [monitor.update(step, at_prior) for step in range(health.GRACE_STEPS + 1)]
  assert "the discriminator is still at its context-free prior" in messages[-1]
  causes = health.likely_causes(optimizer, config.objective)
  assert causes and not any("small generator" in c for c in causes)


def test_registration_refuses_a_taken_name_and_unknown_kinds_list_the_registered(toy_kind):
  with pytest.raises(ValueError, match="'electra' is empty or taken"):
    kinds.register(kinds.Electra())
  with pytest.raises(ValueError, match="toy_detection_plus_mlm"):
    ObjectiveConfig(kind="toy")
