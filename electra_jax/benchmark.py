"""Throughput of the pre-training step: tokens/s, step time and MFU, optionally against PyTorch.

  python -m electra_jax.benchmark --size small --batch 32 --seq_len 128 [--steps N]
      [--dtype bfloat16] [--compare_torch] [--data SHARD_DIR] [--set FIELD=VALUE ...]

Times our jitted, sharded train step (ELECTRA objective, official optimizer) after compilation and
warm-up, with block_until_ready, on a synthetic batch whose every token is real, or with --data on
the first batch of a shard directory (packed rows or one example a row, as built; its seq_len).
Besides tokens/s (all token slots) it prints the batch's real-token fraction (non-pad tokens over
the slots) and real tokens/s, the rate at which text is learned: packing raises the fraction
(0.58 -> 0.99 on the shared corpus at seq_len 128). In the same run it measures this machine's
dense matmul FLOP/s in the run's dtype (2048^2 on CPU, 8192^2 on an accelerator, through XLA)
and prints MFU against that and against the device's listed peak
(electra_jax.pretrain.flops.PEAK_FLOPS). With
--compare_torch it also times Hugging Face transformers' PyTorch ElectraForMaskedLM generator +
ElectraForPreTraining discriminator (shared embeddings, same sizes and batch, masking, Gumbel
sampling, loss gen + 50 x disc, clip 1.0, AdamW; on CUDA when JAX runs on a GPU, with bf16
autocast for --dtype bfloat16) and prints the tokens/s ratio (the PyTorch peer always runs the
synthetic batch of that shape). Quote the ratios: absolute numbers move with machine load.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import gzip
import json
import math
import os
import pathlib
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.pretraining_reader import PretrainingData
from electra_jax.model import config as config_lib
from electra_jax.pretrain import flops as flops_lib
from electra_jax.pretrain import objective as ob
from electra_jax.runtime import optim
from electra_jax.runtime import mesh as shd
from electra_jax.runtime import state as ts
from electra_jax.runtime.step import make_train_step

SPECIAL = ob.SpecialIds(pad=0, cls=101, sep=102, mask=103, vocab_size=30522)  # BERT uncased


def synthetic_batch(batch: int, seq_len: int, vocab: int, seed: int = 0) -> dict:
  """[CLS] random word ids [SEP], every token real (int32 [B,L])."""
  rs = np.random.RandomState(seed)
  ids = rs.randint(1000, vocab, (batch, seq_len)).astype(np.int32)
  ids[:, 0], ids[:, -1] = SPECIAL.cls, SPECIAL.sep
  return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def model_overrides(settings: list[str]) -> dict:
  """["num_hidden_layers=4", "vocab_size=8000", ...] -> {field: Python literal} for
  ModelConfig.replace; ValueError naming the fields for an unknown one."""
  fields = {f.name for f in dataclasses.fields(config_lib.ModelConfig)}
  changes = {}
  for setting in settings:
    name, sep, value = setting.partition("=")
    if not sep or name not in fields:
      raise ValueError(f"--set {setting!r}: expected FIELD=VALUE with FIELD one of "
                       f"{sorted(fields)}")
    try:
      changes[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      changes[name] = value  # a bare string such as attention=explicit
  return changes


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
  """--size, --batch, --seq_len, --sampler and --set: the step this benchmark and the docs/
  step scripts time (`step_inputs` reads them)."""
  parser.add_argument("--size", choices=sorted(config_lib.PRESETS), default="small")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--sampler", choices=ob.SAMPLERS, default="gumbel",
                      help="ObjectiveConfig.sampler of the timed step")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="override a ModelConfig field of the size's discriminator before its "
                      "generator is derived (repeatable), e.g. --set num_hidden_layers=4")


def step_inputs(args) -> tuple:
  """(discriminator, generator, synthetic batch, special ids) of `add_step_arguments`' args:
  the size's discriminator with --set applied, its generator, a [batch, seq_len] all-real batch
  and SPECIAL over the discriminator's vocabulary (docs/step_breakdown.py, docs/step_whatif.py)."""
  size = config_lib.PRESETS[args.size]
  disc = size.model.replace(**model_overrides(args.set))
  gen = config_lib.generator_config(disc, size.generator_hidden_fraction)
  return (disc, gen, synthetic_batch(args.batch, args.seq_len, disc.vocab_size),
          dataclasses.replace(SPECIAL, vocab_size=disc.vocab_size))


def measure_matmul_flops(n: int, dtype: str, repeats: int = 10) -> float:
  """Best-of-`repeats` n x n `dtype` matmul FLOP/s through XLA on the default device (random
  normal operands, never zeros)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2.0 * n ** 3 / best


def shard_batch(data_dir: str, batch: int) -> tuple[dict, ob.SpecialIds]:
  """(the first batch of `batch` rows of the train split of `data_dir`, its special ids)."""
  reader = PretrainingData(data_dir, global_batch_size=batch, seed=0, process_index=0,
                           process_count=1)
  tok = reader.manifest["tokenizer"]
  special = ob.SpecialIds(pad=tok["pad_id"], cls=tok["cls_id"], sep=tok["sep_id"],
                          mask=tok["mask_id"], vocab_size=tok["vocab_size"])
  return reader.batch(0), special


def build_step(disc, gen, batch: dict, sampler: str = "gumbel", special: ob.SpecialIds = SPECIAL):
  """(jitted train step, its initial state, the batch on the mesh, the ObjectiveConfig) of the
  ELECTRA objective with the official optimizer, on all devices, for `batch`'s shape."""
  seq_len = batch["input_ids"].shape[1]
  objective = ob.ObjectiveConfig(sampler=sampler)
  model = ob.build_pretraining_model(disc, gen, "tied", objective)
  tx = optim.make_optimizer(optim.OptimizerConfig())
  mesh = shd.make_mesh(shd.MeshConfig())
  state, shardings = ts.create_train_state(ob.init_fn(model, seq_len), tx, mesh, seed=0)
  step = make_train_step(ob.loss_fn(model, objective, special), tx, mesh, shardings)
  return step, state, shd.global_batch(batch, mesh), objective


def run_step(step, state, data, steps: int, warmup: int, profile_dir: Optional[str] = None,
             profile_steps: int = 3) -> dict:
  """Compile (the first call), warm up, then time `steps` calls of a train step built by
  `build_step`; returns {"step_s", "compile_s", "loss"} (seconds per step, seconds, the last loss).

  With `profile_dir`, `profile_steps` more steps then run under jax.profiler.trace (TensorBoard
  xplane and perfetto_trace.json.gz under that directory; `read_trace` reads the latter)."""
  t = time.perf_counter()
  state, metrics = step(state, data)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t
  for _ in range(warmup):
    state, metrics = step(state, data)
  jax.block_until_ready((state, metrics))
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, data)
  jax.block_until_ready((state, metrics))
  step_s = (time.perf_counter() - t) / steps
  if profile_dir:
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      for _ in range(profile_steps):
        state, metrics = step(state, data)
      jax.block_until_ready((state, metrics))
  return {"step_s": step_s, "compile_s": compile_s, "loss": float(metrics["loss"])}


def read_trace(trace_dir: str) -> dict:
  """The Chrome/perfetto trace dict of the newest perfetto_trace.json.gz under `trace_dir`."""
  path = max(pathlib.Path(trace_dir).rglob("perfetto_trace.json.gz"),
             key=lambda p: p.stat().st_mtime)
  with gzip.open(path) as f:
    return json.load(f)


def time_jax_step(disc, gen, batch: dict, steps: int, warmup: int, sampler: str = "gumbel",
                  special: ob.SpecialIds = SPECIAL, profile_dir: Optional[str] = None,
                  profile_steps: int = 3) -> dict:
  """`run_step` of the `build_step` step on `batch` (numpy int32 [B, L] arrays, packed rows with
  example_ids/position_ids), plus "flops": the step's analytic FLOPs."""
  rows, seq_len = batch["input_ids"].shape
  step, state, data, objective = build_step(disc, gen, batch, sampler, special)
  return {**run_step(step, state, data, steps, warmup, profile_dir, profile_steps),
          "flops": flops_lib.training_flops_per_step(disc, gen, objective, rows, seq_len)}


def time_torch_step(disc, gen, batch: int, seq_len: int, steps: int, warmup: int,
                    device: str = "cpu", dtype: str = "float32") -> float:
  """Seconds per step of the transformers PyTorch generator + discriminator step on `device`
  ("cpu" or "cuda"). Parameters are float32; dtype="bfloat16" runs the forward and backward under
  bf16 autocast, and float32 matmuls on CUDA use TF32 as XLA's default precision does on GPU."""
  import torch
  from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

  if device == "cuda":
    torch.set_float32_matmul_precision("high")
  autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16)
              if dtype == "bfloat16" else contextlib.nullcontext())

  def hf(cfg):
    return ElectraConfig(**{k: v for k, v in cfg.to_hf_dict().items() if k != "model_type"})

  torch.manual_seed(0)
  generator = ElectraForMaskedLM(hf(gen)).to(device)
  discriminator = ElectraForPreTraining(hf(disc)).to(device)
  generator.electra.embeddings = discriminator.electra.embeddings  # ELECTRA's shared embeddings
  generator.tie_weights()
  generator.train()
  discriminator.train()
  params = list({id(p): p for p in [*generator.parameters(), *discriminator.parameters()]}
                .values())
  optimizer = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.999), eps=1e-6,
                                weight_decay=0.01)
  data = {k: torch.from_numpy(v).long().to(device)
          for k, v in synthetic_batch(batch, seq_len, disc.vocab_size).items()}
  p = ob.ObjectiveConfig().num_predictions(seq_len)

  def step():
    ids, mask, types = data["input_ids"], data["attention_mask"], data["token_type_ids"]
    candidates = (ids != SPECIAL.cls) & (ids != SPECIAL.sep) & mask.bool()
    scores = torch.where(candidates, torch.rand(ids.shape, device=device),
                         torch.full(ids.shape, -1.0, device=device))
    positions = scores.topk(p, dim=-1).indices  # [B,P]
    chosen = torch.zeros_like(ids, dtype=torch.bool).scatter_(1, positions, True)
    to_mask = chosen & (torch.rand(ids.shape, device=device) < 0.85)
    masked_ids = torch.where(to_mask, torch.full_like(ids, SPECIAL.mask), ids)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    with autocast:
      out = generator(input_ids=masked_ids, attention_mask=mask, token_type_ids=types,
                      labels=labels)
    with torch.no_grad():
      logits = out.logits[chosen].float()  # [B*P, V]
      u = torch.rand(logits.shape, device=device).clamp_(1e-9, 1.0)
      sampled = (logits - torch.log(-torch.log(u))).argmax(-1)
      fake = ids.clone()
      fake[chosen] = sampled
      is_replaced = (fake != ids).float()
    with autocast:
      disc_out = discriminator(input_ids=fake, attention_mask=mask, token_type_ids=types)
    disc_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        disc_out.logits.float(), is_replaced, weight=mask.float(), reduction="sum") / mask.sum()
    loss = out.loss.float() + 50.0 * disc_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()

  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  for _ in range(warmup + 1):
    step()
  sync()
  t = time.perf_counter()
  for _ in range(steps):
    step()
  sync()
  return (time.perf_counter() - t) / steps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add_step_arguments(parser)
  parser.add_argument("--steps", type=int, default=5, help="timed steps")
  parser.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument("--compare_torch", action="store_true")
  parser.add_argument("--data", help="time the first batch of this shard directory's train split "
                      "(its seq_len and vocabulary) instead of a synthetic all-real batch")
  parser.add_argument("--json", action="store_true", help="also print one JSON line of results")
  parser.add_argument("--no_cpu_flags", action="store_true",
                      help="do not add sharding.CPU_XLA_FLAGS to $XLA_FLAGS")
  args = parser.parse_args(argv)
  if not args.no_cpu_flags:
    shd.set_cpu_xla_flags()

  size = config_lib.PRESETS[args.size]
  disc = size.model.replace(dtype=args.dtype, **model_overrides(args.set))
  if args.data:
    batch, special = shard_batch(args.data, args.batch)
    args.seq_len = batch["input_ids"].shape[1]
    disc = disc.replace(vocab_size=special.vocab_size)
    layout = "packed rows" if "example_ids" in batch else "one example a row"
    source = f"the first batch of {args.data} ({layout})"
  else:
    batch = synthetic_batch(args.batch, args.seq_len, disc.vocab_size)
    special = dataclasses.replace(SPECIAL, vocab_size=disc.vocab_size)
    source = "a synthetic batch, every token real"
  gen = config_lib.generator_config(disc, size.generator_hidden_fraction)
  devices = jax.devices()
  print(f"devices: {len(devices)} x {devices[0].device_kind} ({jax.default_backend()}); "
        f"ELECTRA-{args.size}{''.join(' ' + s for s in args.set)} {args.dtype}, "
        f"sampler {args.sampler}, "
        f"batch {args.batch} x {args.seq_len} of {source}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
  on_cpu = jax.default_backend() == "cpu"
  n = 2048 if on_cpu else 8192  # big enough to reach the ceiling, small enough for a laptop
  matmul = measure_matmul_flops(n, args.dtype)
  # Simulated CPU devices share the host's cores, which the measured product already used.
  ceiling = matmul if on_cpu else matmul * len(devices)
  print(f"measured {args.dtype} matmul ({n}^2, XLA): {matmul / 1e9:.1f} GFLOP/s "
        f"{'on the host' if on_cpu else 'per device'}", flush=True)
  r = time_jax_step(disc, gen, batch, args.steps, args.warmup, args.sampler, special)
  tokens = args.batch * args.seq_len
  real_fraction = float(np.mean(batch["attention_mask"] > 0))
  result = {"size": args.size, "dtype": args.dtype, "batch": args.batch, "seq_len": args.seq_len,
            "data": args.data, "packed": "example_ids" in batch,
            "devices": len(devices), "device_kind": devices[0].device_kind,
            "step_s": r["step_s"], "steps_per_s": 1 / r["step_s"],
            "tokens_per_s": tokens / r["step_s"], "real_token_fraction": real_fraction,
            "real_tokens_per_s": tokens * real_fraction / r["step_s"], "compile_s": r["compile_s"],
            "flops_per_step": r["flops"], "matmul_flops_per_s": matmul,
            "mfu_vs_measured_matmul": flops_lib.mfu(r["flops"], r["step_s"], ceiling)}
  peak = flops_lib.peak_flops(devices[0].device_kind, args.dtype)
  if peak:
    result["mfu_vs_peak"] = flops_lib.mfu(r["flops"], r["step_s"], peak * len(devices))
  print(f"electra_jax: {result['step_s'] * 1e3:.1f} ms/step, {result['steps_per_s']:.2f} "
        f"steps/s, {result['tokens_per_s']:.0f} tokens/s, {result['real_tokens_per_s']:.0f} real "
        f"tokens/s (real-token fraction {real_fraction:.3f}; compile {r['compile_s']:.1f} s, "
        f"loss {r['loss']:.3f})")
  print(f"  analytic {r['flops'] / 1e9:.1f} GFLOP/step -> "
        f"{r['flops'] / r['step_s'] / 1e9:.1f} GFLOP/s; MFU "
        f"{100 * result['mfu_vs_measured_matmul']:.1f}% of measured matmul"
        + (f", {100 * result['mfu_vs_peak']:.1f}% of listed peak {peak / 1e12:.0f} TFLOP/s"
           if peak else ", no listed peak for this device"))
  if args.compare_torch:
    torch_device = "cpu" if on_cpu else "cuda"
    torch_s = time_torch_step(disc, gen, args.batch, args.seq_len, args.steps, args.warmup,
                              torch_device, args.dtype)
    result["torch_step_s"] = torch_s
    result["torch_tokens_per_s"] = tokens / torch_s
    result["speedup_vs_torch"] = torch_s / r["step_s"]
    print(f"transformers PyTorch {args.dtype} on {torch_device}: {torch_s * 1e3:.1f} ms/step, "
          f"{tokens / torch_s:.0f} tokens/s -> electra_jax is {result['speedup_vs_torch']:.2f}x")
  if args.json:
    print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
