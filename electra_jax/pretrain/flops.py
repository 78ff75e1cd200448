"""Analytic training FLOPs of the pre-training step, peak FLOP/s of known accelerators, and MFU.

Counts matmul FLOPs only (2 per multiply-add), forward x 3 for forward + backward: every
projection, the two attention matmuls (QK^T and probs x V), the FFN, the embedding projection
E -> H, the discriminator head, and the generator head with its vocabulary projection at the P
masked positions only (where the generator computes it). Embedding lookups, softmax, LayerNorm,
GELU, sampling and the optimizer are not counted (they are not matmuls).
"""

from __future__ import annotations

from typing import Optional

from electra_jax.model.config import ModelConfig
from electra_jax.pretrain.objective import ObjectiveConfig

# Dense peak FLOP/s per JAX device, by a substring of `device.device_kind`: (bfloat16, float32).
# NVIDIA float32 is the TF32 tensor-core peak (XLA's default precision for f32 dots on Ampere+);
# TPU float32 dots run as bf16 passes, so only bfloat16 is listed. TPU v2/v3 devices are cores.
PEAK_FLOPS = {
    "H200": (989e12, 494e12),
    "H100": (989e12, 494e12),  # SXM; the PCIe card is about 25% lower
    "A100": (312e12, 156e12),
    "L4": (121e12, 60e12),
    "V100": (125e12, 15.7e12),
    "TPU v6 lite": (918e12, None),
    "TPU v5 lite": (197e12, None),
    "TPU v5p": (459e12, None),
    "TPU v5": (459e12, None),
    "TPU v4": (275e12, None),
    "TPU v3": (61.5e12, None),
    "TPU v2": (23e12, None),
}


def encoder_forward_flops(cfg: ModelConfig, batch: int, seq_len: int) -> float:
  """Matmul FLOPs of one Backbone forward pass (embedding projection + all layers)."""
  tokens = batch * seq_len
  h, f = cfg.hidden_size, cfg.intermediate_size
  per_layer = (2 * tokens * h * 3 * h  # Q, K, V
               + 2 * 2 * batch * seq_len * seq_len * h  # QK^T and probs x V
               + 2 * tokens * h * h  # attention output
               + 2 * 2 * tokens * h * f)  # FFN in and out
  project = 2 * tokens * cfg.embedding_size * h if cfg.embedding_size != h else 0
  return float(project + cfg.num_hidden_layers * per_layer)


def mlm_head_forward_flops(cfg: ModelConfig, rows: int) -> float:
  """dense(H -> E) and the tied vocabulary projection (E -> V) at `rows` positions."""
  return float(2 * rows * cfg.hidden_size * cfg.embedding_size
               + 2 * rows * cfg.embedding_size * cfg.vocab_size)


def rtd_head_forward_flops(cfg: ModelConfig, tokens: int) -> float:
  """dense(H -> H) and dense(H -> 1) on every token."""
  return float(2 * tokens * cfg.hidden_size * (cfg.hidden_size + 1))


# The big network's heads (model.pretraining): forward FLOPs at a number of rows.
HEAD_FORWARD_FLOPS = {"rtd": rtd_head_forward_flops, "mlm": mlm_head_forward_flops}


def training_flops_per_step(disc: ModelConfig, gen: ModelConfig, objective: ObjectiveConfig,
                            batch: int, seq_len: int) -> float:
  """Matmul FLOPs of one optimizer step (forward + backward = 3 x forward) for `objective`: the
  towers it builds, and its kind's heads at the rows each computes on (ObjectiveKind.head_rows)."""
  p = objective.num_predictions(seq_len)
  fwd = encoder_forward_flops(disc, batch, seq_len)
  if objective.has_generator:
    fwd += encoder_forward_flops(gen, batch, seq_len) + mlm_head_forward_flops(gen, batch * p)
  for head, rows in objective.objective_kind.head_rows(batch, seq_len, p).items():
    fwd += HEAD_FORWARD_FLOPS[head](disc, rows)
  return 3.0 * fwd


def peak_flops(device_kind: str, dtype: str) -> Optional[float]:
  """Peak dense FLOP/s of one device of this kind for `dtype` matmuls, or None if unknown."""
  for key, (bf16, f32) in PEAK_FLOPS.items():
    if key.lower() in device_kind.lower():
      return bf16 if dtype in ("bfloat16", "float16") else (f32 if f32 is not None else bf16)
  return None


def mfu(flops_per_step: float, step_time_s: float, peak_flops_per_s: float) -> float:
  """Model FLOPs utilisation: achieved matmul FLOP/s over the peak (all devices together)."""
  if step_time_s <= 0 or peak_flops_per_s <= 0:
    raise ValueError(f"step_time_s={step_time_s} and peak_flops_per_s={peak_flops_per_s} must be "
                     "positive")
  return flops_per_step / step_time_s / peak_flops_per_s
