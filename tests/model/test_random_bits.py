"""electra_jax.model.random_bits: jax.random's threefry draws bit for bit, under any sharding."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from electra_jax.model import random_bits as rb

REPO = Path(__file__).resolve().parents[2]


def test_threefry2x32_matches_jax_primitive_and_known_answers():
  from jax.extend.random import threefry2x32_p
  rs = np.random.RandomState(0)
  k = rs.randint(0, 2 ** 32, 2, dtype=np.uint64).astype(np.uint32)
  x1, x2 = (rs.randint(0, 2 ** 32, 4099, dtype=np.uint64).astype(np.uint32) for _ in range(2))
  ours = jax.jit(rb.threefry2x32)(k[0], k[1], x1, x2)
  theirs = threefry2x32_p.bind(jnp.uint32(k[0]), jnp.uint32(k[1]), x1, x2)
  for a, b in zip(ours, theirs):
    np.testing.assert_array_equal(a, b)
  # Random123's known-answer vectors for Threefry-2x32-20: (key, counter) -> output.
  for key, ctr, out in [((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
                        ((2 ** 32 - 1,) * 2, (2 ** 32 - 1,) * 2, (0x1CB996FC, 0xBB002BE7)),
                        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3),
                         (0xC4923A9C, 0x483DF7A0))]:
    got = rb.threefry2x32(*(jnp.uint32(v) for v in key + ctr))
    assert tuple(int(w) for w in got) == out


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 1001)])
def test_draws_equal_jax_random_bitwise(shape):
  key = jax.random.key(7)
  np.testing.assert_array_equal(rb.bits(key, shape), jax.random.bits(key, shape, jnp.uint32))
  tiny = jnp.finfo(jnp.float32).tiny
  np.testing.assert_array_equal(rb.uniform(key, shape), jax.random.uniform(key, shape, minval=tiny))
  np.testing.assert_array_equal(rb.bernoulli(key, 0.9, shape), jax.random.bernoulli(key, 0.9, shape))
  # Gumbel noise: the same uniforms through -log(-log(u)); XLA's log may differ by an ulp between
  # a fused loop and a standalone op, hence the tolerance. Jitted (the hash fused) from a raw key:
  raw = jax.random.key_data(key)
  np.testing.assert_allclose(jax.jit(rb.gumbel, static_argnums=1)(raw, shape),
                             jax.random.gumbel(key, shape), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(jax.jit(rb.bits, static_argnums=1)(raw, shape),
                                jax.random.bits(key, shape, jnp.uint32))
  assert not np.array_equal(rb.bits(jax.random.key(8), (3, 5)), rb.bits(key, (3, 5)))


def test_non_threefry_key_is_refused():
  with pytest.raises(ValueError, match="default 'threefry2x32' PRNG implementation"):
    rb.bits(jax.random.key(0, impl="rbg"), (4,))


def test_same_bits_under_any_sharding():
  """8 simulated devices: bits drawn with the output split over rows, columns or both equal the
  unsharded draw bitwise (they depend only on key and element index)."""
  code = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from electra_jax.model import random_bits as rb
      assert jax.device_count() == 8
      mesh = jax.make_mesh((2, 4), ("a", "b"))
      key = jax.random.key(11)
      shape = (16, 24)
      want = np.asarray(jax.random.bits(key, shape, jnp.uint32))
      for spec in [P("a", "b"), P(None, "b"), P(("a", "b"), None), P("b", "a")]:
        f = jax.jit(lambda k: rb.bits(k, shape), out_shardings=NamedSharding(mesh, spec))
        got = f(key)
        assert len(got.sharding.device_set) == 8, got.sharding
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=str(spec))
      print("OK")
      """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=str(REPO))
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                     timeout=300)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
