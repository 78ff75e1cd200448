"""Checkpoint formats as registered objects: one `CheckpointFormat` per format, in FORMATS under
its name, each saying how a path of it is recognised (`detect`), read (`load`) and, where
electra_jax writes it, written (`save`). electra_jax.io.load (detect_format, load_pretrained) and
electra_jax.io.convert ask these objects and never a format's name.

  hf                       a Hugging Face ELECTRA directory (electra_jax.io.hf)
  tf1                      an official google-research/electra TF 1.x checkpoint (io.tf1)
  electra_jax              a pre-training checkpoint of electra_jax's trainer (orbax, params only)
  electra_jax-safetensors  electra_jax's own flat export: electra_jax.json + params.safetensors

Detection asks the formats in registration order (the first that recognises the path wins); a
directory none recognises is read as the format with `claims_other_directories`.

Adding a format: subclass CheckpointFormat, give it a new `name`, and `register` an instance;
tests/io/test_formats.py detects, loads and converts a toy format added so.
"""

from __future__ import annotations

import json
from typing import Optional

from electra_jax.floor import fs
from electra_jax.floor.registry import Registry
from electra_jax.io import hf as hf_io
from electra_jax.io import native
from electra_jax.io import tf1 as tf1_io
from electra_jax.io.common import CheckpointError, Progress
from electra_jax.io.native import NATIVE_CONFIG
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig


class CheckpointFormat:
  """One checkpoint format (see the module docstring)."""

  name = ""  # what format= / --from / --to call it
  title = ""  # how messages call it
  writable = False  # `save` writes it (electra-convert --to)
  joint_model = False  # can hold the joint generator + discriminator model (which="pretraining")
  architectures = False  # `load` reads any of heads.ARCHITECTURES as `architecture` names it
  claims_other_directories = False  # a directory no format recognises is read as this one

  def detect(self, path: str) -> bool:
    """Whether `path` (a file, a directory or a prefix) is a checkpoint of this format."""
    raise NotImplementedError

  def two_networks(self, path: str) -> bool:
    """Whether the checkpoint at `path` holds a generator and a discriminator."""
    return False

  def finetune_record(self, path: str) -> Optional[dict]:
    """What a fine-tuned model at `path` records about its task (labels, kind); None if none."""
    return None

  def load(self, path: str, which: Optional[str], *, architecture: Optional[str],
           config: Optional[ModelConfig], strict: bool, progress: Progress, **overrides):
    """(model, params as numpy, ImportReport) of the network `which` names (None: the default);
    architecture, config, strict and progress as in load.load_pretrained, for the formats that
    use them."""
    raise NotImplementedError

  def save(self, model, params, src: str, dst: str, tokenizer, finetune: Optional[dict],
           progress: Progress) -> dict:
    """Writes `model` + `params` into the directory `dst`; returns {"architecture", "tensors",
    "parameters", "path"}. `finetune`: a fine-tuned model's record (labels, kind)."""
    raise CheckpointError(f"electra_jax does not write {self.title} checkpoints")


def _has(directory: str, *names: str) -> bool:
  return any(fs.exists(fs.join(directory, name)) for name in names)


class NativeSafetensors(CheckpointFormat):

  name = "electra_jax-safetensors"
  title = "electra_jax safetensors"
  writable = joint_model = True

  def detect(self, path):
    if fs.isfile(path):
      return path.endswith(".safetensors") and _has(fs.dirname(path) or ".", NATIVE_CONFIG)
    return fs.isdir(path) and _has(path, NATIVE_CONFIG)

  def two_networks(self, path):
    directory = path if fs.isdir(path) else fs.dirname(path) or "."
    try:
      return json.loads(fs.read_text(fs.join(directory, NATIVE_CONFIG))).get(
          "architecture") == "ElectraPretrainingModel"
    except (OSError, ValueError):
      return False

  def finetune_record(self, path):
    return native.read_finetune_info(path)

  def load(self, path, which, *, architecture, config, strict, progress, **overrides):
    return native.load_safetensors(path, which, **overrides)

  def save(self, model, params, src, dst, tokenizer, finetune, progress):
    return native.save_safetensors(model, params, dst, tokenizer=tokenizer, finetune=finetune)


class PretrainingCheckpoint(CheckpointFormat):

  name = "electra_jax"
  title = "electra_jax pre-training"
  joint_model = claims_other_directories = True

  def detect(self, path):
    # a trainer workdir (its config.json is the run's config, not an HF one) or a step dir
    return fs.isdir(path) and _has(path, "checkpoints", "_CHECKPOINT_METADATA")

  def two_networks(self, path):
    return True

  def load(self, path, which, *, architecture, config, strict, progress, **overrides):
    return native.load_pretraining_checkpoint(path, which, **overrides)


# transformers' config.problem_type of a fine-tuned model's task kind (what a text-classification
# pipeline applies to the logits)
PROBLEM_TYPES = {"classification": "single_label_classification", "regression": "regression",
                 "multilabel": "multi_label_classification"}


class HuggingFace(CheckpointFormat):

  name = "hf"
  title = "Hugging Face"
  writable = architectures = True

  def detect(self, path):
    if fs.isfile(path):
      return path.endswith(".safetensors")
    return fs.isdir(path) and _has(path, "config.json", "model.safetensors",
                                   "model.safetensors.index.json", "pytorch_model.bin")

  def load(self, path, which, *, architecture, config, strict, progress, **overrides):
    model, params, report = hf_io.import_hf(path, architecture=architecture, progress=progress,
                                            **overrides)
    native.check_which(which, model, path)
    return model, params, report

  def save(self, model, params, src, dst, tokenizer, finetune, progress):
    if isinstance(model, heads.ElectraForSequenceClassification) and model.head != "hf":
      raise CheckpointError(
          f"{src}: a classifier fine-tuned with head='official' (dropout + linear on [CLS]) has "
          "no Hugging Face class (transformers' ElectraForSequenceClassification applies dense "
          "-> GELU -> dense): fine-tune with --set \"FinetuneConfig.head = 'hf'\" to export "
          "the classifier, or pass --architecture ElectraModel to export the encoder alone "
          "(or --to electra_jax-safetensors to keep the whole model)")
    finetune = finetune or {}
    labels = finetune.get("label_names") or finetune.get("labels") or []
    id2label = {i: str(label) for i, label in enumerate(labels)} if labels else None
    return hf_io.export_hf(model, params, dst, id2label=id2label, tokenizer=tokenizer,
                           progress=progress, problem_type=PROBLEM_TYPES.get(finetune.get("kind")))


class TF1(CheckpointFormat):

  name = "tf1"
  title = "official TF1"

  def detect(self, path):
    return tf1_io.is_tf1_checkpoint(path)

  def two_networks(self, path):
    return True

  def load(self, path, which, *, architecture, config, strict, progress, **overrides):
    if which == "pretraining":
      raise CheckpointError("which='pretraining' is not available for TF1 checkpoints: load "
                            "'discriminator' and 'generator' separately")
    return tf1_io.import_tf1(path, which or "discriminator", config=config, strict=strict,
                             progress=progress, **overrides)


FORMATS: Registry = Registry("checkpoint format")
# makes a format readable as format=fmt.name, detected after the formats registered before it;
# a taken name is refused
register = FORMATS.register


# Detection order: a native export's directory may also hold HF files; a trainer workdir holds
# config.json (its run's config); a directory with a TF1 `checkpoint` file and no config.json is
# TF1.
for built_in in (NativeSafetensors(), PretrainingCheckpoint(), HuggingFace(), TF1()):
  register(built_in)
