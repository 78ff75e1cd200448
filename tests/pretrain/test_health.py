"""The priors a run is compared against and the alarm for runs that learn nothing."""

import math

import numpy as np
import pytest

from electra_jax.pretrain import health
from electra_jax.pretrain.objective import ObjectiveConfig, SpecialIds
from electra_jax.runtime.optim import OptimizerConfig

SPECIAL = SpecialIds(pad=0, cls=1, sep=2, mask=3, vocab_size=10)


def test_unigram_prior_counts_only_maskable_tokens():
  batch = {"input_ids": np.array([[1, 5, 5, 6, 2, 0], [1, 7, 5, 3, 2, 0]]),
           "attention_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])}
  got = health.unigram_prior([batch], SPECIAL)
  # maskable tokens: 5 5 6 7 5 (the [MASK], [CLS], [SEP], [PAD] are not)
  p = np.array([3, 1, 1]) / 5
  assert got["unigram_accuracy"] == pytest.approx(0.6)
  assert got["unigram_loss"] == pytest.approx(float(-(p * np.log(p)).sum()))
  with pytest.raises(ValueError, match="no maskable tokens"):
    health.unigram_prior([{"input_ids": np.array([[1, 2]]), "attention_mask": np.ones((1, 2))}],
                         SPECIAL)


def electra_metrics(disc_loss, auc, gen_acc, prior=0.4175):
  return {"disc_loss": disc_loss, "disc_prior_loss": prior, "disc_auc": auc,
          "gen_accuracy": gen_acc, "mlm_accuracy": 0.0}


def feed(monitor, steps, metrics):
  messages = [monitor.update(s, metrics) for s in steps]
  return [m for m in messages if m]


def test_alarm_fires_once_after_warmup_when_every_signal_is_at_its_prior():
  opt = OptimizerConfig(learning_rate=1e-3, warmup_steps=30, total_steps=300,
                        bias_correction=False)
  monitor = health.HealthMonitor(opt, ObjectiveConfig(), unigram_accuracy=0.05)
  assert monitor.first_verdict == 230  # max(2 x 30, 30 + 200)
  stuck = electra_metrics(0.4180, 0.50, 0.05)
  assert feed(monitor, range(1, 230), stuck) == [] and monitor.status == "warmup"
  messages = feed(monitor, range(230, 300), stuck)
  assert len(messages) == 1 and monitor.status == "at_prior"
  assert "NOT LEARNING at step 230" in messages[0]
  assert "bias_correction = False" in messages[0] and "4.95x" in messages[0]
  # recovery is reported once too
  messages = feed(monitor, range(300, 400), electra_metrics(0.30, 0.80, 0.20))
  assert len(messages) == 1 and "learning past the prior" in messages[0]
  assert monitor.status == "ok"


@pytest.mark.parametrize("metrics", [
    electra_metrics(0.3500, 0.70, 0.05),  # discriminator learns
    electra_metrics(0.4180, 0.60, 0.05),  # discriminator ranks replaced tokens above chance
    electra_metrics(0.4110, 0.54, 0.08),  # measured: slow 4-layer ELECTRA at step 240
])
def test_no_alarm_while_the_discriminator_learns(metrics):
  monitor = health.HealthMonitor(OptimizerConfig(warmup_steps=10, total_steps=1000),
                                 ObjectiveConfig(), unigram_accuracy=0.05)
  assert feed(monitor, range(1, 600), metrics) == []
  assert monitor.status == "ok"


def test_a_learning_generator_does_not_hide_a_collapsed_discriminator():
  """Measured under the collapsing optimizer at step 300: gen_accuracy 0.09 (1.6 x unigram),
  disc_loss 0.4106 against the prior 0.4105, AUC 0.48."""
  monitor = health.HealthMonitor(OptimizerConfig(warmup_steps=40, total_steps=400),
                                 ObjectiveConfig(), unigram_accuracy=0.0556)
  messages = feed(monitor, range(1, 300), electra_metrics(0.4106, 0.48, 0.09, prior=0.4105))
  assert len(messages) == 1 and "the discriminator is still at its" in messages[0]
  assert monitor.status == "at_prior"


def test_mlm_kind_watches_mlm_accuracy_against_unigram():
  monitor = health.HealthMonitor(OptimizerConfig(warmup_steps=0, total_steps=1000),
                                 ObjectiveConfig(kind="mlm"), unigram_accuracy=0.06)
  stuck = {"mlm_accuracy": 0.061, "disc_loss": 0.0, "disc_prior_loss": 0.0, "disc_auc": 0.0,
           "gen_accuracy": 0.0}
  messages = feed(monitor, range(1, 300), stuck)
  assert len(messages) == 1 and "mlm_accuracy 0.061" in messages[0]
  assert "the MLM is still at its" in messages[0]
  assert "bias_correction" not in messages[0]  # on by default: not a suspect


def test_amplification_warning_only_for_uncorrected_short_warmups():
  assert health.amplification_warning(OptimizerConfig(warmup_steps=100)) is None
  assert health.amplification_warning(OptimizerConfig(bias_correction=False)) is None  # 10k
  text = health.amplification_warning(OptimizerConfig(bias_correction=False, warmup_steps=100,
                                                      total_steps=1000))
  assert "2.9" in text and "bias_correction = True" in text  # 3.23 x (1 - 100/1000)
  assert not math.isnan(float(text.split("up to ")[1].split("x")[0]))


@pytest.mark.parametrize("learning_rate, status", [
    (0.0, "at_prior"), pytest.param(3e-3, "ok", marks=pytest.mark.slow)])
def test_train_loop_logs_health_and_warns_once(tmp_path, capsys, learning_rate, status):
  """A run that cannot learn (learning rate 0) is flagged in metrics.jsonl and on stderr; the
  tiny demo model at temperature 2 with the default optimizer is not (slow: the default suite
  checks "ok" on a real-width run in test_learning.py)."""
  from train_testlib import read_jsonl, tiny_config

  from electra_jax.pretrain.train import train_and_evaluate

  config = tiny_config(240, OptimizerConfig__learning_rate=learning_rate,
                       ObjectiveConfig__temperature=2.0, LogConfig__log_every=20)
  result = train_and_evaluate(config, tmp_path)
  records = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["health"] for r in records if r["step"] < 210] == ["warmup"] * 10
  assert records[-1]["health"] == result["train"]["health"] == status
  warnings = capsys.readouterr().err.count("NOT LEARNING")
  assert warnings == (1 if status == "at_prior" else 0)
