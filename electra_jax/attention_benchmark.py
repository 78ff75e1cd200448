"""Self-attention paths (ModelConfig.attention) on this backend: parity, dropout statistics and
one profiled ELECTRA train step per path.

  python -m electra_jax.attention_benchmark [--sizes small,base] [--paths explicit,xla,cudnn,auto]
      [--steps 20] [--profile_dir DIR] [--dry_run]

1. Parity, attention dropout off: every runnable path against the explicit one on the same
   SelfAttention parameters, for a padding mask [B,1,1,L] and a packed mask [B,1,L,L], as
   ||out - explicit|| / ||explicit|| (bfloat16 compute: within BF16_PARITY).
2. Dropout statistics, rate 0.1, for the paths that drop attention probabilities (explicit,
   cudnn): with `probe_params` a SelfAttention returns its dropped probabilities [B,L,L]; the
   fraction of dropped ones must be within 5 standard errors of the rate, kept ones must be
   p / (1 - rate), and the mean over keys must approach the no-dropout probabilities.
3. Per model size (small: bfloat16 128 x 128, base: bfloat16 64 x 512) and path: the
   benchmark's timed train step (steps/s, MFU against the listed peak), then a jax.profiler
   trace of 3 steps and the top ops by device time per step. "xla" has no attention dropout,
   so it runs with attention_probs_dropout_prob=0 (the floor the dropout paths are measured
   against). A path that cannot run here (`layers.attention_path` raises) is reported and skipped.

--dry_run prints the plan (which implementation each size/path resolves to here and on an
H100) without computing anything.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from electra_jax import benchmark
from electra_jax.model import config as config_lib
from electra_jax.model import layers
from electra_jax.pretrain import flops as flops_lib

BF16_PARITY = 2e-2  # ||out - explicit|| / ||explicit|| with bfloat16 operands
F32_PARITY = 1e-5
SHAPES = {"small": (128, 128), "base": (64, 512)}  # batch, sequence length
H100 = ("cuda", (9, 0))


def padding_keep(batch: int, length: int) -> jax.Array:
  """A [B,1,1,L] keep mask: row b has its first L - 3b (at least 2) tokens real."""
  real = np.arange(length)[None, :] < np.maximum(2, length - 3 * np.arange(batch))[:, None]
  return layers.attention_keep(jnp.asarray(real.astype(np.int32)))


def packed_keep(batch: int, length: int, seed: int = 0) -> jax.Array:
  """A [B,1,L,L] packed keep mask: each row holds random-length examples, then padding."""
  rs = np.random.RandomState(seed)
  ids = np.zeros((batch, length), np.int32)
  for b in range(batch):
    cuts = np.sort(rs.choice(np.arange(1, length - 1), 3, replace=False))
    ids[b] = np.searchsorted(cuts, np.arange(length), side="right") + 1
    ids[b, cuts[-1]:] = 0  # the last piece is padding
  return layers.attention_keep(jnp.asarray((ids > 0).astype(np.int32)), jnp.asarray(ids))


def attention_outputs(cfg: config_lib.ModelConfig, paths, keep: jax.Array, seed: int) -> dict:
  """path -> SelfAttention output [B,L,H] float32 for each path, all with the same random
  parameters and input x ~ N(0, 1) [B,L,H], deterministic (no dropout)."""
  batch, length = keep.shape[0], keep.shape[-1]
  x = jax.random.normal(jax.random.PRNGKey(seed), (batch, length, cfg.hidden_size))
  params = layers.SelfAttention(cfg).init(jax.random.PRNGKey(seed + 1), x, keep, True)
  return {path: layers.SelfAttention(cfg.replace(attention=path)).apply(
      params, x, keep, True).astype(jnp.float32) for path in paths}


def relative_error(out: jax.Array, ref: jax.Array) -> float:
  """||out - ref|| / ||ref|| in float64 (NaN if any output is NaN)."""
  out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
  return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def probe_config(dtype: str, length: int, rate: float, attention: str) -> config_lib.ModelConfig:
  """One head of size H = L (so that `probe_params` can read the probabilities out)."""
  return config_lib.ModelConfig(hidden_size=length, num_attention_heads=1,
                                attention_probs_dropout_prob=rate, dtype=dtype,
                                attention=attention)


def probe_params(cfg: config_lib.ModelConfig, seed: int) -> dict:
  """SelfAttention parameters whose output, for the input `probe_input`, is the attention
  probabilities after dropout: value and output projections are identities with zero bias,
  query/key kernels N(0, 1.2^2) (logits of standard deviation ~1.4, far from uniform)."""
  h = cfg.hidden_size
  kq, kk = jax.random.split(jax.random.PRNGKey(seed))
  eye = jnp.eye(h, dtype=jnp.float32)
  head = lambda kernel: {"kernel": kernel, "bias": jnp.zeros((1, h))}  # [H,1,H], [1,H]
  return {"params": {
      "query": head(1.2 * jax.random.normal(kq, (h, 1, h))),
      "key": head(1.2 * jax.random.normal(kk, (h, 1, h))),
      "value": head(eye[:, None, :]),
      "output": {"kernel": eye[None, :, :], "bias": jnp.zeros((h,))},  # [1,H,H], [H]
  }}


def probe_input(batch: int, length: int) -> jax.Array:
  """x [B,L,H=L]: token l is the one-hot e_l, so value(x) row l is e_l."""
  return jnp.broadcast_to(jnp.eye(length), (batch, length, length))


def dropout_statistics(cfg: config_lib.ModelConfig, batch: int, n_keys: int, seed: int) -> dict:
  """Attention dropout of `cfg`'s path, read through `probe_params` over `n_keys` dropout keys
  (all tokens real, B x L x L probabilities per key). Returns drop_fraction (dropped / all),
  its standard error under Bernoulli(rate), kept_scale_error (max |kept x (1 - rate) / p - 1|),
  mean_error ||mean over keys - p|| / ||p|| and mean_expected, its expected value
  sqrt(rate / ((1 - rate) n_keys)) when dropout keeps the expectation."""
  length, rate = cfg.hidden_size, cfg.attention_probs_dropout_prob
  params, x = probe_params(cfg, seed), probe_input(batch, length)
  keep = layers.attention_keep(jnp.ones((batch, length), jnp.int32))
  model = layers.SelfAttention(cfg)
  p = model.apply(params, x, keep, True).astype(jnp.float32)
  draw = jax.jit(lambda key: model.apply(params, x, keep, False, rngs={"dropout": key})
                 .astype(jnp.float32))
  total, dropped, scale_err = jnp.zeros_like(p), 0, 0.0
  for i in range(n_keys):
    d = draw(jax.random.PRNGKey(seed * 100_003 + i))
    kept = d != 0
    dropped += int(jnp.sum(~kept))
    ratio = jnp.where(kept, d * (1 - rate) / p, 1.0)
    scale_err = max(scale_err, float(jnp.max(jnp.abs(ratio - 1))))
    total = total + d
  n = n_keys * p.size
  return {"drop_fraction": dropped / n, "stderr": float(np.sqrt(rate * (1 - rate) / n)),
          "kept_scale_error": scale_err,
          "mean_error": relative_error(total / n_keys, p),
          "mean_expected": float(np.sqrt(rate / ((1 - rate) * n_keys)))}


def top_ops(trace_dir: str, steps: int, count: int = 10) -> list[tuple[str, float]]:
  """(op name, ms per step) of the `count` ops with the most device time in the newest
  perfetto_trace.json.gz under `trace_dir` (complete events of the /device:* processes)."""
  return sum_device_events(benchmark.read_trace(trace_dir), steps)[:count]


def sum_device_events(trace: dict, steps: int) -> list[tuple[str, float]]:
  """("thread: name", ms per step) of the complete ("X") events of processes named /device:...,
  most time first, from a Chrome/perfetto trace dict (durations in microseconds). Threads are
  kept apart because a device's lines overlap (XLA modules, XLA ops, the kernels of streams)."""
  events = trace["traceEvents"]
  devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
             and str(e["args"].get("name", "")).startswith("/device:")}
  threads = {(e["pid"], e["tid"]): e["args"].get("name", str(e["tid"])) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in devices:
      thread = threads.get((e["pid"], e.get("tid")), str(e.get("tid")))
      total[f"{thread}: {e['name']}"] += float(e.get("dur", 0))
  return [(name, us / 1e3 / steps) for name, us in total.most_common()]


def resolve(path: str, platform: tuple, cfg: config_lib.ModelConfig, seq_len: int) -> str:
  """The implementation `path` runs in a training step on `platform` (backend, capability),
  or "skip: <reason>" where it cannot. "xla" is planned without attention dropout."""
  dropout = path != "xla" and cfg.attention_probs_dropout_prob > 0
  try:
    return layers.attention_path(path, *platform, cfg.dtype, cfg.head_dim, seq_len, dropout)
  except ValueError as e:
    return f"skip: {e}"


def plan(sizes, paths) -> list[dict]:
  """One row per (size, path): batch, seq_len and what the path resolves to here and on an
  H100 (compute capability 9.0)."""
  here = layers.current_platform()
  rows = []
  for size in sizes:
    batch, seq_len = SHAPES[size]
    disc = config_lib.PRESETS[size].model.replace(dtype="bfloat16")
    for path in paths:
      rows.append({"size": size, "path": path, "batch": batch, "seq_len": seq_len,
                   "here": resolve(path, here, disc, seq_len),
                   "h100": resolve(path, H100, disc, seq_len)})
  return rows


def check_parity(paths) -> list[dict]:
  """Every runnable path against "explicit" (bfloat16 and float32, padding and packed masks)."""
  rows = []
  for dtype, tol in (("bfloat16", BF16_PARITY), ("float32", F32_PARITY)):
    cfg = config_lib.ModelConfig(hidden_size=256, num_attention_heads=4, dtype=dtype)
    runnable = [p for p in paths if p not in ("auto", "explicit") and not resolve(
        p, layers.current_platform(), cfg.replace(attention_probs_dropout_prob=0), 128)
        .startswith("skip")]
    for mask_name, keep in (("padding", padding_keep(8, 128)), ("packed", packed_keep(8, 128))):
      outs = attention_outputs(cfg, ["explicit"] + runnable, keep, seed=0)
      for path in runnable:
        err = relative_error(outs[path], outs["explicit"])
        rows.append({"dtype": dtype, "mask": mask_name, "path": path, "rel_error": err,
                     "ok": bool(err <= tol)})
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="small,base",
                      help=f"comma-separated, from {sorted(SHAPES)}")
  parser.add_argument("--paths", default="explicit,xla,cudnn,auto",
                      help=f"comma-separated, from {config_lib.ATTENTION_CHOICES}")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per size and path")
  parser.add_argument("--profile_dir", default="/tmp/attention_profiles")
  parser.add_argument("--dry_run", action="store_true", help="print the plan and stop")
  args = parser.parse_args(argv)
  sizes, paths = args.sizes.split(","), args.paths.split(",")
  for size in sizes:
    if size not in SHAPES:
      parser.error(f"unknown size {size!r}; expected one of {sorted(SHAPES)}")
  for path in paths:
    if path not in config_lib.ATTENTION_CHOICES:
      parser.error(f"unknown path {path!r}; expected one of {config_lib.ATTENTION_CHOICES}")

  rows = plan(sizes, paths)
  print(f"platform: {layers.current_platform()}; devices: {jax.devices()}")
  for r in rows:
    print(f"plan {r['size']} {r['batch']}x{r['seq_len']} attention={r['path']}: here -> "
          f"{r['here']}; H100 -> {r['h100']}")
  if args.dry_run:
    return {"plan": rows}

  parity = check_parity(paths)
  for r in parity:
    print(f"parity {r['dtype']} {r['mask']} {r['path']} vs explicit: rel error "
          f"{r['rel_error']:.2e} {'ok' if r['ok'] else 'FAIL'}", flush=True)

  stats = {}
  for path in ("explicit", "cudnn"):
    cfg = probe_config("bfloat16", 64, 0.1, path)
    if resolve(path, layers.current_platform(), cfg, 64).startswith("skip"):
      continue
    s = dropout_statistics(cfg, batch=8, n_keys=200, seed=0)
    s["ok"] = bool(abs(s["drop_fraction"] - 0.1) <= 5 * s["stderr"]
                   and s["kept_scale_error"] <= 2e-2 and s["mean_error"] <= 2 * s["mean_expected"])
    stats[path] = s
    print(f"dropout {path}: {s}", flush=True)

  kind = jax.devices()[0].device_kind
  steps = []
  for r in rows:
    if r["here"].startswith("skip"):
      print(f"step {r['size']} {r['path']}: {r['here']}")
      continue
    size = config_lib.PRESETS[r["size"]]
    disc = size.model.replace(dtype="bfloat16", attention=r["path"])
    if r["path"] == "xla":
      disc = disc.replace(attention_probs_dropout_prob=0.0)
    gen = config_lib.generator_config(disc, size.generator_hidden_fraction)
    trace_dir = str(pathlib.Path(args.profile_dir) / f"{r['size']}_{r['path']}")
    batch = benchmark.synthetic_batch(r["batch"], r["seq_len"], disc.vocab_size)
    t = benchmark.time_jax_step(disc, gen, batch, args.steps, warmup=2, profile_dir=trace_dir,
                                profile_steps=3)
    peak = flops_lib.peak_flops(kind, "bfloat16")
    row = {**r, "step_ms": 1e3 * t["step_s"], "steps_per_s": 1 / t["step_s"],
           "mfu_vs_peak": flops_lib.mfu(t["flops"], t["step_s"], peak) if peak else None,
           "top_ops": top_ops(trace_dir, 3)}
    steps.append(row)
    print(f"step {r['size']} {r['path']} ({r['here']}): {row['step_ms']:.1f} ms, "
          f"{row['steps_per_s']:.2f} steps/s, MFU "
          + (f"{100 * row['mfu_vs_peak']:.1f}% of listed peak" if peak else "n/a"), flush=True)
    for name, ms in row["top_ops"]:
      print(f"    {ms:8.3f} ms/step  {name[:120]}")
  print(json.dumps({"parity": parity, "dropout": stats, "steps": steps}))
  return {"plan": rows, "parity": parity, "dropout": stats, "steps": steps}


if __name__ == "__main__":
  main()
