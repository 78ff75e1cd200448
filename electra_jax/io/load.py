"""`load_pretrained(path)`: one entry point for every checkpoint format electra_jax reads.

Formats (electra_jax.io.formats.FORMATS; detected from the path, or given with `format=`):

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

Paths may be local or tf.io.gfile URLs (gs://...; electra_jax.floor.fs); pre-training checkpoints
(orbax) only local or gs:// (`native.orbax_path`).

`which` picks the network of a two-network checkpoint: "discriminator" (default; returns
ElectraForPreTraining) or "generator" (returns ElectraForMaskedLM); "pretraining" returns the
joint ElectraPretrainingModel where the source holds one (electra_jax formats).

A path that does not exist and looks like ORG/NAME is a Hugging Face Hub model id
(`resolve_hub_id`): its config, safetensors weights and tokenizer files come from the local Hub
cache, downloaded there first when the network allows.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import jax
import jax.numpy as jnp
from huggingface_hub import errors as hub_errors
from huggingface_hub import is_offline_mode, snapshot_download

from data_pipelines import tokenizers
from electra_jax.floor import fs
from electra_jax.io import tf1 as tf1_io
from electra_jax.io.common import CheckpointError, Progress, refuse_pickle
from electra_jax.io.formats import FORMATS
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig

HUB_FILES = ("config.json", "model.safetensors*", "model-*.safetensors", "vocab.txt", "tokenizer*")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def is_hub_id(path: str) -> bool:
  """Whether `path` names a Hugging Face Hub model (ORG/NAME) rather than a local checkpoint:
  it does not exist here, is not a TF1 checkpoint prefix, has the form ORG/NAME and ORG is not
  a local directory (then it is a mistyped local path)."""
  return (_HUB_ID.fullmatch(path) is not None and not os.path.exists(path)
          and not tf1_io.is_tf1_checkpoint(path) and not os.path.isdir(path.split("/")[0]))


def resolve_hub_id(path: str) -> str:
  """`path` itself, or for a Hub model id (`is_hub_id`) the local snapshot directory of its
  HUB_FILES (config.json, safetensors weights, vocab.txt, tokenizer files), downloaded into the
  Hugging Face cache (HF_HUB_CACHE) unless already there. HF_HUB_OFFLINE=1 uses the cache only.

  Raises CheckpointError naming the id: not cached and the Hub unreachable or offline (with the
  command that downloads it), no such model on the Hub, or no safetensors weights in it.
  """
  if not is_hub_id(path):
    return path
  fetch = (f"download it on a machine that reaches the Hub with `hf download {path} "
           "config.json model.safetensors vocab.txt tokenizer_config.json` and copy the Hugging "
           "Face cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub) here, or add "
           "`--local-dir DIR` to that command and pass DIR instead of the id")
  try:
    snapshot = snapshot_download(path, allow_patterns=list(HUB_FILES))
  except hub_errors.LocalEntryNotFoundError as e:  # offline / unreachable and not cached
    why = ("HF_HUB_OFFLINE is set" if is_offline_mode() else
           "the cached copy is incomplete" if isinstance(e, hub_errors.IncompleteSnapshotError)
           else "the Hub cannot be reached")
    raise CheckpointError(f"{path}: no such local path, and the Hugging Face Hub model {path} "
                          f"is not in the local cache ({why}): {fetch}") from None
  except hub_errors.RepositoryNotFoundError:
    raise CheckpointError(f"{path}: no such local path, and no Hugging Face Hub model {path} "
                          "(or it is private or gated: log in with `hf auth login`)") from None
  except hub_errors.HFValidationError:
    raise CheckpointError(f"{path}: no such file or directory") from None
  except OSError as e:
    raise CheckpointError(f"{path}: fetching the Hugging Face Hub model failed "
                          f"({type(e).__name__}: {e}); {fetch}") from None
  names = os.listdir(snapshot)
  if not any(n.endswith(".safetensors") for n in names):
    raise CheckpointError(
        f"{path}: the Hugging Face Hub model has no safetensors weights (found {sorted(names)}); "
        "electra_jax does not unpickle pytorch_model.bin. Convert it once, in an environment "
        "you trust: python -c \"from transformers import ElectraForPreTraining as M; "
        f"M.from_pretrained('{path}').save_pretrained('DIR')\" and pass DIR")
  return snapshot


def detect_format(path: str) -> str:
  """The name of the first of FORMATS (electra_jax.io.formats) that recognises `path`; a
  directory none recognises, the one that claims other directories. CheckpointError for a
  pickle file (never unpickled), an unrecognised file or a missing path."""
  if fs.isfile(path) and path.endswith((".bin", ".pt", ".pth", ".ckpt")) \
      and not tf1_io.is_tf1_checkpoint(path):
    refuse_pickle(path)
  for fmt in FORMATS.values():
    if fmt.detect(path):
      return fmt.name
  if fs.isfile(path):
    raise CheckpointError(f"{path}: unrecognised checkpoint file")
  if fs.isdir(path):
    return next(f.name for f in FORMATS.values() if f.claims_other_directories)
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
  architecture: "ElectraModel" reads just the encoder of any checkpoint (a pre-training
    workdir's discriminator, or generator with which="generator"; a fine-tuned model's
    encoder); other class names apply to HF sources only.
  config: tf1 only; the ModelConfig to use instead of the one inferred from shapes.
  config_overrides: ModelConfig fields to change, e.g. dtype="bfloat16", remat=True, or
    num_attention_heads=... for a tf1 checkpoint whose heads are not hidden // 64.
  A Hugging Face Hub model id (ORG/NAME, `resolve_hub_id`) loads from the Hub cache.
  """
  path = resolve_hub_id(path)
  name = format or detect_format(path)
  if name not in FORMATS:
    raise CheckpointError(f"format={name!r}; expected one of {tuple(FORMATS)}")
  if which not in (None, "discriminator", "generator", "pretraining"):
    raise CheckpointError(f"which={which!r}; expected 'discriminator', 'generator' or "
                          "'pretraining'")
  fmt = FORMATS[name]
  model, params, report = fmt.load(path, which, architecture=architecture, config=config,
                                   strict=strict, progress=progress, **config_overrides)
  if architecture == "ElectraModel" and type(model).__name__ != "ElectraModel":
    if "electra" not in params:  # the joint pre-training model: two encoders
      raise CheckpointError(f"{path}: architecture='ElectraModel' reads one encoder; pass "
                            "which='discriminator' or 'generator'")
    model, params = heads.ElectraModel(model.config), {"electra": params["electra"]}
  elif architecture is not None and not fmt.architectures:
    raise CheckpointError(f"architecture={architecture!r} applies to Hugging Face sources; "
                          f"from {name} only 'ElectraModel' (the encoder alone)")
  if not as_numpy:
    params = jax.tree.map(jnp.asarray, params)
  return (model, params, report) if return_report else (model, params)


def load_tokenizer(path: str):
  """The tokenizer saved with the checkpoint at `path` (any path `load_pretrained` reads: a
  pre-training workdir or step, a native or Hugging Face export, a fine-tuning output, a Hub
  model id); CheckpointError when it carries none."""
  tokenizer = tokenizers.find_saved(resolve_hub_id(path))
  if tokenizer is None:
    raise CheckpointError(f"{path} carries no tokenizer (electra_jax_tokenizer.json or "
                          "vocab.txt): load one with data_pipelines.tokenizers.load(SPEC)")
  return tokenizer
