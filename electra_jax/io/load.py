"""`load_pretrained(path)`: one entry point for every checkpoint format electra_jax reads.

Formats (detected from the path, or given with `format=`):

  "hf"                       a Hugging Face ELECTRA directory: config.json + model.safetensors
                             (ElectraModel, ElectraForPreTraining, ElectraForMaskedLM,
                             ElectraForSequenceClassification / TokenClassification /
                             QuestionAnswering / MultipleChoice); see `electra_jax.io.hf`.
  "tf1"                      an official google-research/electra TF 1.x checkpoint (a prefix such
                             as .../model.ckpt-1000000, or a directory with a `checkpoint` file);
                             generator and discriminator live in one checkpoint: choose with
                             `which`; see `electra_jax.io.tf1`.
  "electra_jax"              a pre-training checkpoint written by electra_jax's trainer, read
                             through `native.read_pretraining_checkpoint` (orbax, params only).
  "electra_jax-safetensors"  electra_jax's own flat export (`native.save_safetensors`):
                             electra_jax.json + params.safetensors, any model including the joint
                             pre-training one.

Paths may be local or tf.io.gfile URLs (gs://...; data_pipelines.fs); pre-training checkpoints
(orbax) only local or gs:// (`native.orbax_path`).

`which` picks the network of a two-network checkpoint: "discriminator" (default; returns
ElectraForPreTraining) or "generator" (returns ElectraForMaskedLM); "pretraining" returns the
joint ElectraPretrainingModel where the source holds one (electra_jax formats).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from data_pipelines import fs, tokenizers
from electra_jax.io import native
from electra_jax.io import hf as hf_io
from electra_jax.io import tf1 as tf1_io
from electra_jax.io.common import CheckpointError, Progress, refuse_pickle
from electra_jax.io.native import NATIVE_CONFIG
from electra_jax.model.config import ModelConfig

FORMATS = ("hf", "tf1", "electra_jax", "electra_jax-safetensors")


def detect_format(path: str) -> str:
  """Which of FORMATS `path` is; CheckpointError if none."""
  if fs.isfile(path):
    directory = fs.dirname(path) or "."
    if path.endswith((".bin", ".pt", ".pth", ".ckpt")) and not tf1_io.is_tf1_checkpoint(path):
      refuse_pickle(path)
    if path.endswith(".safetensors"):
      if fs.exists(fs.join(directory, NATIVE_CONFIG)):
        return "electra_jax-safetensors"
      return "hf"
    if tf1_io.is_tf1_checkpoint(path):
      return "tf1"
    raise CheckpointError(f"{path}: unrecognised checkpoint file")
  if fs.isdir(path):
    has = lambda name: fs.exists(fs.join(path, name))
    if has(NATIVE_CONFIG):
      return "electra_jax-safetensors"
    if has("checkpoints") or has("_CHECKPOINT_METADATA"):
      # a trainer workdir (its config.json is the run's config, not an HF one) or a step dir
      return "electra_jax"
    if has("config.json") or has("model.safetensors") or has("model.safetensors.index.json") \
        or has("pytorch_model.bin"):
      return "hf"
    if has("checkpoint"):
      return "tf1"
    return "electra_jax"
  if tf1_io.is_tf1_checkpoint(path):
    return "tf1"
  raise CheckpointError(f"{path}: no such file or directory")


def load_pretrained(path: str, which: Optional[str] = None, *, format: Optional[str] = None,
                    architecture: Optional[str] = None, config: Optional[ModelConfig] = None,
                    strict: bool = True, as_numpy: bool = False, return_report: bool = False,
                    progress: Progress = None, **config_overrides):
  """Loads a checkpoint -> `(model, params)` (and an ImportReport with `return_report=True`).

  `model.apply({"params": params}, input_ids, attention_mask=..., token_type_ids=...)` returns
  what the Hugging Face class of the same name returns. params are float32 jax arrays (numpy with
  `as_numpy=True`).

  which: for two-network checkpoints (tf1, electra_jax): "discriminator" (default) or
    "generator"; "pretraining" for the joint model (electra_jax formats only). Ignored otherwise
    (a single-network source), except that a mismatch is an error.
  architecture: HF sources only; "ElectraModel" reads just the encoder of any checkpoint.
  config: tf1 only; the ModelConfig to use instead of the one inferred from shapes.
  config_overrides: ModelConfig fields to change, e.g. dtype="bfloat16", remat=True, or
    num_attention_heads=... for a tf1 checkpoint whose heads are not hidden // 64.
  """
  fmt = format or detect_format(path)
  if fmt not in FORMATS:
    raise CheckpointError(f"format={fmt!r}; expected one of {FORMATS}")
  if which not in (None, "discriminator", "generator", "pretraining"):
    raise CheckpointError(f"which={which!r}; expected 'discriminator', 'generator' or "
                          "'pretraining'")
  if fmt == "hf":
    model, params, report = hf_io.import_hf(path, architecture=architecture, progress=progress,
                                            **config_overrides)
    native.check_which(which, model, path)
  elif fmt == "tf1":
    if which == "pretraining":
      raise CheckpointError("which='pretraining' is not available for TF1 checkpoints: load "
                            "'discriminator' and 'generator' separately")
    model, params, report = tf1_io.import_tf1(path, which or "discriminator", config=config,
                                              strict=strict, progress=progress,
                                              **config_overrides)
  elif fmt == "electra_jax":
    model, params, report = native.load_pretraining_checkpoint(path, which, **config_overrides)
  else:
    model, params, report = native.load_safetensors(path, which, **config_overrides)
  if not as_numpy:
    params = jax.tree.map(jnp.asarray, params)
  return (model, params, report) if return_report else (model, params)



def load_tokenizer(path: str):
  """The tokenizer saved with the checkpoint at `path` (any path `load_pretrained` reads: a
  pre-training workdir or step, a native or Hugging Face export, a fine-tuning output);
  CheckpointError when it carries none."""
  tokenizer = tokenizers.find_saved(path)
  if tokenizer is None:
    raise CheckpointError(f"{path} carries no tokenizer (electra_jax_tokenizer.json or "
                          "vocab.txt): load one with data_pipelines.tokenizers.load(SPEC)")
  return tokenizer


