"""jax.random's threefry draws, bit for bit, as code that XLA fuses into its consumer.

  bits(key, shape)         == jax.random.bits(key, shape)              (uint32)
  uniform(key, shape)      == jax.random.uniform(key, shape, minval=float32 tiny)
  gumbel(key, shape)       == jax.random.gumbel(key, shape)            (float32)
  bernoulli(key, p, shape) == jax.random.bernoulli(key, p, shape)

for JAX's default PRNG (threefry2x32, partitionable), each tested bitwise. Why not call
jax.random: on CPU, JAX lowers its threefry2x32 primitive as a while loop of 5 iterations, each a
pass over the whole array, which XLA cannot fuse with the consumer (the Gumbel noise and its
argmax, a dropout mask and its select). `threefry2x32` below is the same hash as straight-line
code with constant rotations. Measured on the 2-core CPU, [32, 19, 30522] (ELECTRA-Small's
generator samples): 9.3M hashes 158 ms through the primitive, 35 ms as straight-line code.

Every element's counter is its row-major index, so the values depend only on the key and the
index, and any sharding of the array draws the same values.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32 rotation constants
_PARITY = 0x1BD11BDA  # Threefish key-schedule parity constant


def threefry2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
  """Threefry-2x32 with 20 rounds (Salmon et al., SC 2011), as `jax.extend.random.threefry2x32_p`
  computes it: key words k1, k2 (uint32 scalars), counter words x1, x2 (uint32 [...]) -> the two
  output words (uint32 [...] each)."""
  ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(_PARITY))
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):  # 5 x 4 rounds, a key injection after each 4
    for r in _ROTATIONS[i % 2]:
      x1 = x1 + x2
      x2 = ((x2 << jnp.uint32(r)) | (x2 >> jnp.uint32(32 - r))) ^ x1
    x1 = x1 + ks[(i + 1) % 3]
    x2 = x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
  return x1, x2


def _threefry_key_data(key: Array) -> Array:
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  if data.shape != (2,) or data.dtype != jnp.uint32:
    raise ValueError(f"expected a threefry2x32 key (uint32[2] key data), got key data "
                     f"{data.dtype}{list(data.shape)}; electra_jax's random bits need JAX's "
                     "default 'threefry2x32' PRNG implementation")
  return data


def bits(key: Array, shape: Sequence[int]) -> Array:
  """uint32 [*shape] uniformly random bits from a threefry key (typed or raw uint32[2]): both
  output words of the hash of each element's row-major index, XORed."""
  shape = tuple(int(d) for d in shape)
  if math.prod(shape) >= 2 ** 32:  # jax.random's counter then needs its high word
    raise ValueError(f"random_bits: {shape} has {math.prod(shape)} elements; at most 2^32 - 1")
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * jnp.uint32(stride)
    stride *= shape[dim]
  data = _threefry_key_data(key)
  w1, w2 = threefry2x32(data[0], data[1], jnp.zeros_like(index), index)
  return w1 ^ w2


def _unit_floats(key: Array, shape: Sequence[int]) -> Array:
  """float32 [*shape] on [0, 1): the top 23 random bits as the mantissa (jax.random.uniform's
  construction)."""
  mantissa = jax.lax.shift_right_logical(bits(key, shape), jnp.uint32(9))
  return mantissa.astype(jnp.float32) * jnp.float32(2.0 ** -23)


def uniform(key: Array, shape: Sequence[int]) -> Array:
  """float32 [*shape] uniform on [2^-126, 1) (the floor keeps log(u) finite)."""
  return jnp.maximum(_unit_floats(key, shape), jnp.finfo(jnp.float32).tiny)


def gumbel(key: Array, shape: Sequence[int]) -> Array:
  """float32 [*shape] standard Gumbel noise, -log(-log(u))."""
  return -jnp.log(-jnp.log(uniform(key, shape)))


def bernoulli(key: Array, p: float, shape: Sequence[int]) -> Array:
  """bool [*shape], True with probability p (float32 p, 2^-23 resolution)."""
  return _unit_floats(key, shape) < jnp.float32(p)
