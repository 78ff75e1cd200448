"""The CPU matmul rate of the ELECTRA-Small step's products, by operand layout (issue 23).

The step's dense layers multiply [B*L, H] activations by [H, H'] weights three ways: forward
(x @ w), input gradient (dy @ w.T) and weight gradient (x.T @ dy, contracting the B*L = 4,096
token rows). Each is timed alone under jax.jit in float32 (best of 3 repeats of enough calls for
2e10 FLOPs), beside the 2048^2 product the benchmark's MFU uses as the ceiling, plus the
weight gradient from an activation already stored transposed, a forward with the exact-GELU
epilogue the FFN fuses, in jax.nn.gelu's erfc form and in the model's erf form
(`layers.exact_gelu`; rate counted on the matmul's FLOPs only), and the transpose alone (what a
backward reading a transposed copy would pay in the forward instead). The same for the 4-layer x
128 quality model's [4096,128]x[128,128] and [4096,128]x[128,512] layers.

    python docs/matmul_layouts.py            # all cores; or under taskset -c 1 for one
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from electra_jax.model import layers


def seconds(fn, args, flops: float) -> float:
  """Seconds per call of jit(fn)(*args): the best of 3 repeats of ceil(2e10 / flops) calls."""
  fn = jax.jit(fn)
  fn(*args).block_until_ready()
  calls, best = max(3, int(2e10 / flops)), float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    out.block_until_ready()
    best = min(best, (time.perf_counter() - start) / calls)
  return best


def cases(r, rows: int, h: int, h_out: int) -> list:
  """(name, fn, args, matmul FLOPs or None) for the products of one [rows, h] x [h, h_out] dense
  layer."""
  x, w, dy, bias = r(rows, h), r(h, h_out), r(rows, h_out), r(h_out)
  flops = 2 * rows * h * h_out
  shape = f"[{rows},{h}]x[{h},{h_out}]"
  return [
      (f"forward x @ w {shape}", lambda a, b: a @ b, (x, w), flops),
      ("input gradient dy @ w.T", lambda a, b: a @ b.T, (dy, w), flops),
      ("weight gradient x.T @ dy", lambda a, b: a.T @ b, (x, dy), flops),
      (f"weight gradient, x stored as [{h},{rows}]", lambda at, b: at @ b, (x.T.copy(), dy),
       flops),
      (f"transpose x to [{h},{rows}] alone", lambda a: a.T + 0.0, (x,), None),
      ("forward + bias + GELU, erfc (jax.nn.gelu)", lambda a, b, c: jax.nn.gelu(
          a @ b + c, approximate=False), (x, w, bias), flops),
      ("forward + bias + GELU, erf (layers.exact_gelu)",
       lambda a, b, c: layers.exact_gelu(a @ b + c), (x, w, bias), flops),
  ]


def main() -> None:
  rng = np.random.default_rng(0)
  r = lambda *shape: jnp.asarray(rng.random(shape), jnp.float32)
  rows = 4096  # batch 32 x 128 tokens
  table = [("[2048,2048] x [2048,2048] (the ceiling)", lambda a, b: a @ b,
            (r(2048, 2048), r(2048, 2048)), 2 * 2048 ** 3)]
  table += cases(r, rows, 256, 256)  # ELECTRA-Small's attention projections
  table += cases(r, rows, 128, 128)  # the 4-layer x 128 quality model's projections
  table += cases(r, rows, 128, 512)  # and its FFN input
  print(f"{jax.devices()[0].platform}, float32, jax {jax.__version__}; GFLOP/s on the product's "
        "FLOPs, ms per call")
  for name, fn, args, n in table:
    t = seconds(fn, args, n or rows * 256)
    rate = f"{n / t / 1e9:7.1f} GFLOP/s" if n else " " * 15
    print(f"{name:48s} {rate} {t * 1e3:8.3f} ms", flush=True)


if __name__ == "__main__":
  main()
