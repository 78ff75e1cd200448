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
"""

from electra_jax.finetune.classifier import load_classifier
from electra_jax.io.common import CheckpointError
from electra_jax.io.hf import export_hf
from electra_jax.io.load import load_pretrained, load_tokenizer
from electra_jax.io.native import save_safetensors
from electra_jax.model.config import ModelConfig, PRESETS

__all__ = ["CheckpointError", "ModelConfig", "PRESETS", "export_hf", "load_classifier",
           "load_pretrained", "load_tokenizer", "save_safetensors"]
