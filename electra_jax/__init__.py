"""electra_jax: ELECTRA pre-training and fine-tuning in JAX/Flax.

  ModelConfig, PRESETS  the model config dataclass and the size presets (electra_jax.config)
  load_pretrained       (model, params) from a Hugging Face directory, an official TF1
                        checkpoint, an electra_jax pre-training checkpoint or a native export
                        (fine-tuned models included) (electra_jax.pretrained)
  load_tokenizer        the tokenizer saved with any of those (electra_jax.pretrained)
  save_safetensors      write a model in electra_jax's native format (electra_jax.pretrained)
  export_hf             write a model as a Hugging Face directory (electra_jax.hf_io)
  CheckpointError       the error raised for unreadable or mismatching checkpoints
"""

from electra_jax.config import PRESETS, ModelConfig
from electra_jax.hf_io import CheckpointError, export_hf
from electra_jax.pretrained import load_pretrained, load_tokenizer, save_safetensors

__all__ = ["CheckpointError", "ModelConfig", "PRESETS", "export_hf", "load_pretrained",
           "load_tokenizer", "save_safetensors"]
