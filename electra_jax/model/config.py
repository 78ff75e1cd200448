"""Model configuration: one frozen dataclass with the fields of an ELECTRA config.

Field names follow Hugging Face's `ElectraConfig` so that `config.json` files map one to one.
PRESETS holds the sizes (ELECTRA paper Table 6, plus a tiny CPU model); generator sizes follow
the official code
(hidden = fraction x discriminator hidden, FFN = 4 x hidden, heads = max(1, hidden // 64)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

_DTYPES = ("float32", "bfloat16", "float16")
# Self-attention implementations (electra_jax.model.layers.attention_path picks one per call).
ATTENTION_CHOICES = ("auto", "explicit", "xla", "cudnn")
# The architecture of a network: the ModelConfig fields its parameter shapes follow, and its
# activation. A resumed pre-training run keeps every one (pretrain.train.RESUME_FIXED); a
# fine-tuning run from a loaded model may override none (finetune.train.load_initial).
ARCHITECTURE_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                       "num_attention_heads", "intermediate_size", "hidden_act",
                       "max_position_embeddings", "type_vocab_size")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and regularisation of one ELECTRA transformer (generator or discriminator).

  `dtype` is the compute dtype of matmuls and activations; parameters are always float32, and
  softmax, LayerNorm statistics and output logits are computed in float32.
  `attention` chooses the self-attention implementation (`layers.attention_path`): "auto" ("xla"
  without attention dropout, "explicit" with it), "explicit" (einsum, float32 softmax, dropout),
  "xla" (jax.nn.dot_product_attention; no attention dropout), "cudnn" (cuDNN fused flash
  attention, with dropout; CUDA GPUs, bfloat16/float16). It is not part of a Hugging Face config.
  """

  vocab_size: int = 30522
  embedding_size: int = 128
  hidden_size: int = 256
  num_hidden_layers: int = 12
  num_attention_heads: int = 4
  intermediate_size: int = 1024
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  dtype: str = "float32"
  remat: bool = False
  attention: str = "auto"

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f"hidden_size={self.hidden_size} is not a multiple of "
          f"num_attention_heads={self.num_attention_heads}")
    if self.dtype not in _DTYPES:
      raise ValueError(f"dtype={self.dtype!r}; expected one of {sorted(_DTYPES)}")
    if self.attention not in ATTENTION_CHOICES:
      raise ValueError(f"attention={self.attention!r}; expected one of {ATTENTION_CHOICES}")
    if self.hidden_act not in ("gelu", "gelu_new", "relu"):
      raise ValueError(f"hidden_act={self.hidden_act!r}; expected gelu, gelu_new or relu")
    for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name}={getattr(self, name)} must be positive")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")

  @property
  def compute_dtype(self) -> Any:
    return getattr(jnp, self.dtype)

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def to_hf_dict(self) -> dict:
    """The fields of a Hugging Face `config.json` (without `architectures`)."""
    d = dataclasses.asdict(self)
    d.pop("dtype")
    d.pop("remat")
    d.pop("attention")
    d["model_type"] = "electra"
    d["pad_token_id"] = 0
    d["position_embedding_type"] = "absolute"
    return d

  @classmethod
  def from_hf_dict(cls, d: dict, **overrides) -> "ModelConfig":
    """Builds a config from a Hugging Face `config.json` dict; unknown keys are ignored.

    `dtype` / `remat` / `attention` in the dict are ignored: HF's `dtype` is the storage dtype of its
    checkpoint, not our compute dtype (pass `dtype=...` as an override to choose that)."""
    pet = d.get("position_embedding_type", "absolute")
    if pet != "absolute":
      raise ValueError(f"position_embedding_type={pet!r} is not supported (only 'absolute')")
    names = {f.name for f in dataclasses.fields(cls)} - {"dtype", "remat", "attention"}
    kwargs = {k: v for k, v in d.items() if k in names}
    kwargs.update(overrides)
    return cls(**kwargs)


def generator_config(disc: ModelConfig, hidden_fraction: float, layer_fraction: float = 1.0
                     ) -> ModelConfig:
  """The generator paired with `disc`, as the official code sizes it.

  hidden = round(fraction x disc hidden), FFN = 4 x hidden, heads = max(1, hidden // 64),
  layers = round(layer_fraction x disc layers); the embedding size is the discriminator's so that
  the two networks can share one embedding table.
  """
  if not 0 < hidden_fraction <= 1 or not 0 < layer_fraction <= 1:
    raise ValueError(f"generator fractions must be in (0, 1]: hidden_fraction={hidden_fraction}, "
                     f"layer_fraction={layer_fraction}")
  hidden = max(1, int(round(disc.hidden_size * hidden_fraction)))
  heads = max(1, hidden // 64)
  if hidden % heads:
    raise ValueError(f"generator hidden size {hidden} is not divisible by {heads} heads")
  return disc.replace(hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=heads,
                      num_hidden_layers=max(1, int(round(disc.num_hidden_layers * layer_fraction))))


@dataclasses.dataclass(frozen=True)
class Preset:
  """A model size: the discriminator and its generator's hidden-size fraction (paper Table 6)."""

  model: ModelConfig
  generator_hidden_fraction: float

  @property
  def generator(self) -> ModelConfig:
    return generator_config(self.model, self.generator_hidden_fraction)


# The only definition of the sizes: gin experiments select one with `ModelConfig.size = NAME`,
# fine-tuning with FinetuneConfig.size, the benchmark with --size.
PRESETS = {
    # A CPU demo / test model, not a paper size (experiments/tiny.gin, the tests).
    "tiny": Preset(ModelConfig(embedding_size=32, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=128), 0.5),
    # ELECTRA-Small, 14M parameters.
    "small": Preset(ModelConfig(embedding_size=128, hidden_size=256, num_hidden_layers=12,
                                num_attention_heads=4, intermediate_size=1024), 0.25),
    # ELECTRA-Base, 110M parameters.
    "base": Preset(ModelConfig(embedding_size=768, hidden_size=768, num_hidden_layers=12,
                               num_attention_heads=12, intermediate_size=3072), 1 / 3),
    # ELECTRA-Large, 335M parameters.
    "large": Preset(ModelConfig(embedding_size=1024, hidden_size=1024, num_hidden_layers=24,
                                num_attention_heads=16, intermediate_size=4096), 0.25),
}


def preset(name: str) -> Preset:
  """PRESETS[name]; ValueError naming the sizes when there is none."""
  if name not in PRESETS:
    raise ValueError(f"unknown model size {name!r}; expected one of {sorted(PRESETS)}")
  return PRESETS[name]
