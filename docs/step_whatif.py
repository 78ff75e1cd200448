"""What a piece of the CPU pre-training step costs in wall time: paired steps of the step as it is
and of variants with one piece made cheap or removed (issue 23).

Summing thunk times by kind (docs/step_breakdown.py) says what the threads were busy with, not
what the step waits for: on 2 cores XLA runs independent thunks side by side, so work off the
critical path costs little. Here the benchmark's train step (`electra_jax.benchmark.build_step`)
is compiled once as it is and once per variant, each variant compiled while one function of the
model is replaced, and the steps then run in rounds (the base and every variant once a round, in
rotating order). A variant's cost is the mean over rounds of its step time minus the base's of
the same round, with its standard error; runs of one process drift together, so the pairs are
far tighter than separate benchmark runs (whose times differ by up to 10% here).

Variants (each changes the step's math: an upper bound on what making that piece cheaper can
save, not a training option):
  cheap_random   threefry2x32 in `random_bits` replaced by one multiply (dropout masks, Gumbel
                 noise, masking draws)
  relu           the exact GELU (`layers.exact_gelu`, every use) replaced by ReLU
  erfc_gelu      the exact GELU written with erfc, as jax.nn.gelu(approximate=False) does
                 (its cost over the base is what `layers.exact_gelu`'s erf form saves)
  free_layernorm LayerNorm without its statistics: x * scale + bias
  free_softmax   the attention's softmax replaced by a scaling of the logits

    python docs/step_whatif.py                          # ELECTRA-Small, batch 32 x 128, all
    python docs/step_whatif.py --variants relu,erfc_gelu --rounds 20
    python docs/step_whatif.py --set num_hidden_layers=4 --set hidden_size=128 \\
        --set num_attention_heads=2 --set intermediate_size=512 --set vocab_size=8000
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from electra_jax import benchmark
from electra_jax.model import layers, random_bits
from electra_jax.runtime import mesh as shd


class _FreeLayerNorm(layers.LayerNorm):
  """layers.LayerNorm's parameters, without the statistics: x * scale + bias."""

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (features,), jnp.float32)
    return (x.astype(jnp.float32) * scale + bias).astype(self.dtype)


def _cheap_threefry(k1, k2, x1, x2):
  return x1 + k1, (x2 ^ k2) * jnp.uint32(0x9E3779B9)


def _erfc_gelu(x):
  return jax.nn.gelu(x, approximate=False)


# variant -> (module or object, attribute, replacement)
VARIANTS = {
    "cheap_random": (random_bits, "threefry2x32", _cheap_threefry),
    "relu": (layers, "exact_gelu", jax.nn.relu),
    "erfc_gelu": (layers, "exact_gelu", _erfc_gelu),
    "free_layernorm": (layers, "LayerNorm", _FreeLayerNorm),
    "free_softmax": (jax.nn, "softmax", lambda x, axis=-1: x * jnp.float32(1e-3)),
}


@contextlib.contextmanager
def patched(variant: str):
  """The model with `variant`'s replacement in place (restored on exit)."""
  owner, name, replacement = VARIANTS[variant]
  original = getattr(owner, name)
  setattr(owner, name, replacement)
  try:
    yield
  finally:
    setattr(owner, name, original)


def compiled_steps(build, variants: list) -> dict:
  """({"base" and each variant: [step, state]}, the batch): `build()` returns (jitted step,
  state, batch); each step is called once (compiled) inside its variant's patch, so later calls
  run that variant's executable."""
  steps, data = {}, None
  for name in ["base", *variants]:
    with patched(name) if name != "base" else contextlib.nullcontext():
      step, state, data = build()
      state, metrics = step(state, data)
      jax.block_until_ready(metrics)
    steps[name] = [step, state]
  return steps, data


def paired_rounds(steps: dict, data, rounds: int, warmup: int = 1) -> dict:
  """{name: [seconds per step, one per round]}: every step once a round, the order rotating
  (round r starts at entry r mod n); `warmup` untimed rounds first."""
  names = list(steps)
  times = {name: [] for name in names}
  for r in range(warmup + rounds):
    for i in range(len(names)):
      name = names[(r + i) % len(names)]
      step, state = steps[name]
      start = time.perf_counter()
      state, metrics = step(state, data)
      jax.block_until_ready((state, metrics))
      steps[name][1] = state
      if r >= warmup:
        times[name].append(time.perf_counter() - start)
  return times


def costs(times: dict) -> dict:
  """{variant: (mean of variant - base over rounds, its standard error)} in seconds."""
  out = {}
  for name, ts in times.items():
    if name != "base":
      diffs = [t - b for t, b in zip(ts, times["base"])]
      se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
      out[name] = (statistics.mean(diffs), se)
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  benchmark.add_step_arguments(parser)
  parser.add_argument("--rounds", type=int, default=12, help="timed rounds")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  args = parser.parse_args(argv)
  variants = [v for v in args.variants.split(",") if v]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown or args.rounds < 2:
    parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}" if unknown
                 else "--rounds must be at least 2")

  shd.set_cpu_xla_flags()
  disc, gen, batch, special = benchmark.step_inputs(args)
  build = lambda: benchmark.build_step(disc, gen, batch, args.sampler, special)[:3]
  steps, data = compiled_steps(build, variants)
  times = paired_rounds(steps, data, args.rounds)
  base = np.asarray(times["base"]) * 1e3
  print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"{args.size}{''.join(' ' + s for s in args.set)}, batch {args.batch} x {args.seq_len}, "
        f"sampler {args.sampler}, {args.rounds} rounds: base step {np.median(base):.0f} ms "
        f"(median)")
  print(f"{'variant':16s} {'median ms':>10s} {'variant - base, ms (mean +- s.e.)':>36s}")
  for name, (mean, se) in costs(times).items():
    print(f"{name:16s} {np.median(times[name]) * 1e3:10.0f} {mean * 1e3:+25.0f} +- {se * 1e3:.0f}")


if __name__ == "__main__":
  main()
