"""electra_jax.random_bits: uniform, independent, deterministic bits that any sharding reproduces."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from electra_jax import random_bits as rb

REPO = Path(__file__).resolve().parents[1]


def test_bits_are_balanced_and_the_two_words_of_a_hash_independent():
  bits = np.asarray(rb.uint32_bits(jax.random.key(0), (500, 1000)))
  ones = np.unpackbits(bits.view(np.uint8)).reshape(bits.size, 32).mean(axis=0)  # per bit
  assert np.all(np.abs(ones - 0.5) < 5 * 0.5 / np.sqrt(bits.size))
  u = bits.astype(np.float64) / 2 ** 32
  even, odd = u[:, 0::2].ravel(), u[:, 1::2].ravel()  # words 1 and 2 of one threefry hash
  assert abs(np.corrcoef(even, odd)[0, 1]) < 5 / np.sqrt(even.size)
  across = u[:-1].ravel(), u[1:].ravel()  # neighbouring rows: neighbouring hashes
  assert abs(np.corrcoef(*across)[0, 1]) < 5 / np.sqrt(across[0].size)


def test_deterministic_per_key_and_key_forms_agree():
  a = rb.uint32_bits(jax.random.key(7), (3, 5))
  np.testing.assert_array_equal(a, rb.uint32_bits(jax.random.PRNGKey(7), (3, 5)))
  assert not np.array_equal(a, rb.uint32_bits(jax.random.key(8), (3, 5)))
  # An odd last axis is the prefix of the next even one (same hashes, last word dropped).
  np.testing.assert_array_equal(rb.uint32_bits(jax.random.key(7), (4, 5)),
                                rb.uint32_bits(jax.random.key(7), (4, 6))[:, :5])
  assert rb.uint32_bits(jax.random.key(7), ()).shape == ()


def test_uniform_and_gumbel_distributions():
  u = np.asarray(rb.uniform(jax.random.key(1), (400_000,)), np.float64)
  assert u.min() > 0 and u.max() < 1
  assert stats.kstest(u, "uniform").pvalue > 1e-3
  g = np.asarray(rb.gumbel(jax.random.key(2), (400_000,)), np.float64)
  assert stats.kstest(g, "gumbel_r").pvalue > 1e-3
  assert np.all(np.isfinite(g))


def test_uint16_uniforms_cover_the_range_evenly():
  h = np.asarray(rb.uint16_uniforms(jax.random.key(3), (777, 1001)))
  assert h.shape == (777, 1001) and h.dtype == np.uint32
  assert h.min() == 0 and h.max() == 65535
  counts = np.bincount(h.ravel() >> 10, minlength=64)  # 64 equal bins
  assert stats.chisquare(counts).pvalue > 1e-3


def test_non_threefry_key_is_refused():
  with pytest.raises(ValueError, match="default 'threefry2x32' PRNG implementation"):
    rb.uint32_bits(jax.random.key(0, impl="rbg"), (4,))


def test_same_bits_under_any_sharding():
  """8 simulated devices: bits drawn with the output split over rows, columns or both equal the
  unsharded draw bitwise (they depend only on key and element index)."""
  code = textwrap.dedent("""
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from electra_jax import random_bits as rb
      assert jax.device_count() == 8
      mesh = jax.make_mesh((2, 4), ("a", "b"))
      key = jax.random.key(11)
      shape = (16, 24)
      want = np.asarray(jax.jit(lambda k: rb.uint32_bits(k, shape))(key))
      for spec in [P("a", "b"), P(None, "b"), P(("a", "b"), None), P("b", "a")]:
        f = jax.jit(lambda k: (rb.uint32_bits(k, shape), rb.uint16_uniforms(k, shape)),
                    out_shardings=NamedSharding(mesh, spec))
        got, half = f(key)
        assert len(got.sharding.device_set) == 8, got.sharding
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=str(spec))
        np.testing.assert_array_equal(
            np.asarray(half), np.asarray(rb.uint16_uniforms(key, shape)), err_msg=str(spec))
      print("OK")
      """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=str(REPO))
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                     timeout=300)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
