"""docs/step_whatif.py: each variant changes the traced step and is undone after; the rounds'
rotation and the paired differences."""

import dataclasses
import importlib.util
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from electra_jax import benchmark
from electra_jax.model import config as config_lib
from electra_jax.pretrain import objective as ob

SPEC = importlib.util.spec_from_file_location(
    "step_whatif", Path(__file__).parents[2] / "docs" / "step_whatif.py")
sw = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sw)


def test_every_variant_changes_the_loss_and_is_undone():
  """The pre-training loss (tiny preset, dropout on) traced inside each variant's patch, with a
  fresh loss function as the script's fresh step, differs from the base's; after the patch it is
  the base's again. (jax caches what a function traced to: a step traced before the patch keeps
  the base's computation.)"""
  size = config_lib.PRESETS["tiny"]
  gen = config_lib.generator_config(size.model, size.generator_hidden_fraction)
  objective = ob.ObjectiveConfig()
  model = ob.build_pretraining_model(size.model, gen, "tied", objective)
  special = dataclasses.replace(benchmark.SPECIAL, vocab_size=size.model.vocab_size)
  batch = {k: jnp.asarray(v) for k, v in benchmark.synthetic_batch(2, 16, size.model.vocab_size).items()}
  key = jax.random.PRNGKey(0)
  params = jax.eval_shape(lambda k: nn.meta.unbox(ob.init_fn(model, 16)(k)), key)

  def text():
    return jax.jit(ob.loss_fn(model, objective, special)).lower(params, batch, key).as_text()

  base = text()
  for variant in sw.VARIANTS:
    with sw.patched(variant):
      assert text() != base, variant
  assert text() == base


def test_rounds_rotate_and_costs_are_paired_differences():
  calls = []

  def fake(name):
    def step(state, data):
      calls.append(name)
      return state + 1, {"loss": 0.0}
    return step

  steps = {name: [fake(name), 0] for name in ("base", "a", "b")}
  times = sw.paired_rounds(steps, None, rounds=3, warmup=1)
  assert calls == ["base", "a", "b", "a", "b", "base", "b", "base", "a", "base", "a", "b"]
  assert all(len(t) == 3 for t in times.values()) and steps["a"][1] == 4
  got = sw.costs({"base": [1.0, 2.0, 3.0], "a": [1.5, 2.5, 3.0], "b": [1.0, 2.0, 3.0]})
  assert got["a"][0] == pytest.approx(1 / 3) and got["a"][1] == pytest.approx((1 / 36) ** 0.5)
  assert got["b"] == (0.0, 0.0)


def test_unknown_variant_is_refused(capsys):
  with pytest.raises(SystemExit) as exit_info:
    sw.main(["--variants", "relu,nope"])
  assert exit_info.value.code == 2
  assert "unknown variants ['nope']" in capsys.readouterr().err
