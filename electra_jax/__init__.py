"""electra_jax: ELECTRA pre-training and fine-tuning in JAX/Flax.

  ModelConfig, PRESETS  the model config dataclass and the size presets (electra_jax.model.config)
  load_pretrained       (model, params) from a Hugging Face directory, an official TF1
                        checkpoint, an electra_jax pre-training checkpoint or a native export
                        (fine-tuned models included) (electra_jax.io.load)
  load_tokenizer        the tokenizer saved with any of those (electra_jax.io.load)
  save_safetensors      write a model in electra_jax's native format (electra_jax.io.native)
  export_hf             write a model as a Hugging Face directory (electra_jax.io.hf)
  CheckpointError       the error raised for unreadable or mismatching checkpoints
  load_classifier       a fine-tuned model that scores a list of texts (or pairs) in one call
                        (electra_jax.finetune.classifier)

The names load on first use (`from electra_jax import ModelConfig` works as before), so that
importing a subpackage, e.g. the ground floor electra_jax.floor that data_pipelines imports,
loads neither JAX nor the checkpoint code.
"""

import importlib

_EXPORTS = {
    "CheckpointError": "electra_jax.io.common",
    "load_classifier": "electra_jax.finetune.classifier",
    "export_hf": "electra_jax.io.hf",
    "load_pretrained": "electra_jax.io.load",
    "load_tokenizer": "electra_jax.io.load",
    "save_safetensors": "electra_jax.io.native",
    "ModelConfig": "electra_jax.model.config",
    "PRESETS": "electra_jax.model.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
  return sorted([*globals(), *_EXPORTS])
