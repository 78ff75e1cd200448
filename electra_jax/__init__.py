"""electra_jax: ELECTRA pre-training and fine-tuning in JAX/Flax.

Top-level names are imported lazily so that `import electra_jax` stays fast (no jax,
TensorFlow or safetensors import until a name is used):

  ModelConfig        the model config dataclass (electra_jax.config)
  load_pretrained    (model, params) from a Hugging Face directory, an official TF1 checkpoint or
                     an electra_jax checkpoint (electra_jax.pretrained)
  export_hf          write a model as a Hugging Face directory (electra_jax.hf_io)
  CheckpointError    the error raised for unreadable or mismatching checkpoints
"""

import importlib

_LAZY = {
    "ModelConfig": "electra_jax.config",
    "load_pretrained": "electra_jax.pretrained",
    "export_hf": "electra_jax.hf_io",
    "CheckpointError": "electra_jax.hf_io",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'electra_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY))
