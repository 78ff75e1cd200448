"""The CPU matmul rate of the ELECTRA-Small step's products, by operand layout (issue 23).

The step's dense layers multiply [B*L, H] activations by [H, H'] weights three ways: forward
(x @ w), input gradient (dy @ w.T) and weight gradient (x.T @ dy, contracting the B*L = 4,096
token rows). Each is timed alone under jax.jit in float32 (best of 3 repeats of enough calls for
2e10 FLOPs), beside the 2048^2 product the benchmark's MFU uses as the ceiling, plus the
weight gradient from an activation already stored transposed, and a forward with the exact-GELU
epilogue the FFN fuses (rate counted on the matmul's FLOPs only).

    python docs/matmul_layouts.py            # all cores; or under taskset -c 1 for one
"""

import time

import jax
import jax.numpy as jnp
import numpy as np


def gflops(fn, args, flops: float) -> float:
  """GFLOP/s of jit(fn)(*args): the best of 3 repeats of ceil(2e10 / flops) calls."""
  fn = jax.jit(fn)
  fn(*args).block_until_ready()
  calls, best = max(3, int(2e10 / flops)), float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    out.block_until_ready()
    best = min(best, (time.perf_counter() - start) / calls)
  return flops / best / 1e9


def main() -> None:
  rng = np.random.default_rng(0)
  r = lambda *shape: jnp.asarray(rng.random(shape), jnp.float32)
  rows, h = 4096, 256  # batch 32 x 128 tokens, ELECTRA-Small's hidden size
  x, w, dy, bias = r(rows, h), r(h, h), r(rows, h), r(h)
  flops = 2 * rows * h * h
  cases = [
      ("[2048,2048] x [2048,2048] (the ceiling)", lambda a, b: a @ b,
       (r(2048, 2048), r(2048, 2048)), 2 * 2048 ** 3),
      ("forward x @ w [4096,256]x[256,256]", lambda a, b: a @ b, (x, w), flops),
      ("input gradient dy @ w.T", lambda a, b: a @ b.T, (dy, w), flops),
      ("weight gradient x.T @ dy", lambda a, b: a.T @ b, (x, dy), flops),
      ("weight gradient, x stored as [256,4096]", lambda at, b: at @ b, (x.T.copy(), dy), flops),
      ("forward + bias + exact GELU", lambda a, b, c: jax.nn.gelu(a @ b + c, approximate=False),
       (x, w, bias), flops),
  ]
  print(f"{jax.devices()[0].platform}, float32, jax {jax.__version__}")
  for name, fn, args, n in cases:
    print(f"{name:45s} {gflops(fn, args, n):7.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
  main()
