"""`load_pretrained(path)`: one entry point for every checkpoint format electra_jax reads.

Formats (detected from the path, or given with `format=`):

  "hf"                       a Hugging Face ELECTRA directory: config.json + model.safetensors
                             (ElectraModel, ElectraForPreTraining, ElectraForMaskedLM,
                             ElectraForSequenceClassification / TokenClassification /
                             QuestionAnswering / MultipleChoice); see `electra_jax.hf_io`.
  "tf1"                      an official google-research/electra TF 1.x checkpoint (a prefix such
                             as .../model.ckpt-1000000, or a directory with a `checkpoint` file);
                             generator and discriminator live in one checkpoint: choose with
                             `which`; see `electra_jax.tf1_io`.
  "electra_jax"              a pre-training checkpoint written by electra_jax's trainer, read
                             through `read_pretraining_checkpoint` (orbax, params only).
  "electra_jax-safetensors"  electra_jax's own flat export (`save_safetensors`): electra_jax.json +
                             params.safetensors, any model including the joint pre-training one.

`which` picks the network of a two-network checkpoint: "discriminator" (default; returns
ElectraForPreTraining) or "generator" (returns ElectraForMaskedLM); "pretraining" returns the
joint ElectraPretrainingModel where the source holds one (electra_jax formats).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from data_pipelines import tokenizers
from electra_jax import hf_io
from electra_jax import modeling as m
from electra_jax import tf1_io
from electra_jax.config import ModelConfig
from electra_jax.hf_io import (CheckpointError, ImportReport, Progress, check_params, flatten,
                               read_safetensors, refuse_pickle, resolve_pretraining,
                               unflatten, write_safetensors)

FORMATS = ("hf", "tf1", "electra_jax", "electra_jax-safetensors")
NATIVE_CONFIG = "electra_jax.json"
NATIVE_WEIGHTS = "params.safetensors"
NATIVE_FORMAT_VERSION = 1


def detect_format(path: str) -> str:
  """Which of FORMATS `path` is; CheckpointError if none."""
  if os.path.isfile(path):
    directory = os.path.dirname(path) or "."
    if path.endswith((".bin", ".pt", ".pth", ".ckpt")) and not tf1_io.is_tf1_checkpoint(path):
      refuse_pickle(path)
    if path.endswith(".safetensors"):
      if os.path.exists(os.path.join(directory, NATIVE_CONFIG)):
        return "electra_jax-safetensors"
      return "hf"
    if tf1_io.is_tf1_checkpoint(path):
      return "tf1"
    raise CheckpointError(f"{path}: unrecognised checkpoint file")
  if os.path.isdir(path):
    has = lambda name: os.path.exists(os.path.join(path, name))
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
    _check_which(which, model, path)
  elif fmt == "tf1":
    if which == "pretraining":
      raise CheckpointError("which='pretraining' is not available for TF1 checkpoints: load "
                            "'discriminator' and 'generator' separately")
    model, params, report = tf1_io.import_tf1(path, which or "discriminator", config=config,
                                              strict=strict, progress=progress,
                                              **config_overrides)
  elif fmt == "electra_jax":
    model, params, report = _load_electra_jax(path, which, **config_overrides)
  else:
    model, params, report = load_safetensors(path, which, **config_overrides)
  if not as_numpy:
    params = jax.tree.map(jnp.asarray, params)
  return (model, params, report) if return_report else (model, params)


def _check_which(which, model, path):
  arch = type(model).__name__
  if which == "generator" and arch != "ElectraForMaskedLM" or \
      which == "discriminator" and arch != "ElectraForPreTraining" or which == "pretraining":
    raise CheckpointError(f"{path} holds one network ({arch}); which={which!r} does not apply")


def _config_from_dict(d: dict, where: str) -> ModelConfig:
  names = {f.name for f in dataclasses.fields(ModelConfig)}
  try:
    return ModelConfig(**{k: v for k, v in d.items() if k in names})
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{where}: invalid model config: {e}") from None


def _pretraining_model(config_dict: dict, where: str, params: Optional[dict] = None,
                       **overrides):
  """The ElectraPretrainingModel for a stored config. Which towers and big-network heads exist
  (use_generator, discriminator_heads) is read from `params` when given, else from the dict."""
  for key in ("model", "generator"):
    if key not in config_dict:
      raise CheckpointError(f"{where}: config has no {key!r} section")
  disc = _config_from_dict({**config_dict["model"], **overrides}, where)
  gen = _config_from_dict({**config_dict["generator"], **overrides}, where)
  use_generator = config_dict.get("use_generator", True)
  heads = tuple(config_dict.get("discriminator_heads", ("rtd",)))
  if params is not None:
    if "discriminator" not in params:
      raise CheckpointError(f"{where}: params have no 'discriminator' tower "
                            f"(top-level keys: {sorted(params)})")
    use_generator = "generator" in params
    heads = tuple(h for h, key in (("rtd", "discriminator_predictions"),
                                   ("mlm", "generator_predictions"))
                  if key in params["discriminator"])
  return m.ElectraPretrainingModel(disc, gen, config_dict.get("embedding_sharing", "tied"),
                                   use_generator=use_generator, discriminator_heads=heads)


def _select(model, params, which, notes: list):
  if which == "pretraining":
    return model, params
  return resolve_pretraining(model, params, which or "discriminator", notes)


def _step_dir(path: Path) -> Path:
  """A step directory from a step dir, a checkpoints dir or a workdir (its latest step)."""
  path = Path(path)
  if (path / "state").is_dir():
    return path
  for root in (path / "checkpoints", path):
    steps = sorted((int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()),
                   reverse=True) if root.is_dir() else []
    for step in steps:
      if (root / str(step) / "state").is_dir():
        return root / str(step)
  raise FileNotFoundError(f"no pre-training checkpoint at {path} (expected a step directory "
                          "with state/, or a workdir or checkpoints directory holding one)")


def read_pretraining_checkpoint(path: Path) -> tuple[dict, dict]:
  """(config_dict, params) from a step dir, or from a workdir / checkpoints dir (latest step).

  config_dict: the stored `TrainConfig.to_dict()`: "model" and "generator" hold ModelConfig
  fields, "embedding_sharing" the sharing mode, plus the rest of the run's config.
  params: the ElectraPretrainingModel params tree (unboxed) as host numpy arrays; the optimizer
  state is not read.
  """
  step_dir = _step_dir(Path(path).resolve())
  config = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
      step_dir / "config", args=ocp.args.JsonRestore())
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(step_dir / "state").item_metadata.tree
  if "params" not in tree:
    raise ValueError(f"{step_dir / 'state'} has no params (keys: {sorted(tree)})")
  params_meta = {"params": tree["params"]}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), params_meta)
  restored = checkpointer.restore(
      step_dir / "state", args=ocp.args.PyTreeRestore(item=params_meta, restore_args=restore_args,
                                                      partial_restore=True))
  return dict(config), restored["params"]


def _load_electra_jax(path: str, which, **overrides):
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: no such file or directory")
  try:
    config_dict, params = read_pretraining_checkpoint(path)
  except FileNotFoundError as e:
    raise CheckpointError(f"{path}: {e}") from None
  params = nn.meta.unbox(params)
  model = _pretraining_model(config_dict, path, params, **overrides)
  check_params(model, params, what=f"{path}: checkpoint params")
  notes = []
  model, params = _select(model, params, which, notes)
  params = _to_numpy(params)
  report = _report(path, "electra_jax", model, params)
  report.notes += notes
  return model, params, report


def _to_numpy(params):
  return unflatten({p: np.asarray(v, dtype=np.float32) for p, v in flatten(params).items()})


def _report(source, fmt, model, params) -> ImportReport:
  flat = flatten(params)
  return ImportReport(source=source, source_format=fmt, architecture=type(model).__name__,
                      tensors=len(flat), parameters=sum(int(np.size(v)) for v in flat.values()))


# ---------------------------------------------------------------------------------------------
# electra_jax-safetensors: a flat, framework-free export of any electra_jax model

def model_spec(model) -> dict:
  """A JSON-able description of an electra_jax model (class + constructor fields)."""
  name = type(model).__name__
  if name == "ElectraPretrainingModel":
    return {"architecture": name, "model": dataclasses.asdict(model.disc_config),
            "generator": dataclasses.asdict(model.gen_config),
            "embedding_sharing": model.embedding_sharing,
            "use_generator": getattr(model, "use_generator", True),
            "discriminator_heads": list(getattr(model, "discriminator_heads", ("rtd",)))}
  if not hasattr(m, name) or not isinstance(model, getattr(m, name)):
    raise CheckpointError(f"cannot describe {name}: not an electra_jax.modeling model")
  spec = {"architecture": name, "model": dataclasses.asdict(model.config)}
  for field in ("num_labels", "head", "classifier_dropout"):
    if hasattr(model, field):
      spec[field] = getattr(model, field)
  return spec


def model_from_spec(spec: dict, where: str = "spec", **overrides):
  """The model `model_spec` describes (ModelConfig fields changed by `overrides`)."""
  name = spec.get("architecture")
  if name == "ElectraPretrainingModel":
    return _pretraining_model(spec, where, **overrides)
  if name not in m.ARCHITECTURES:
    raise CheckpointError(f"{where}: unknown architecture {name!r}")
  cfg = _config_from_dict({**spec["model"], **overrides}, where)
  kwargs = {k: spec[k] for k in ("num_labels", "head", "classifier_dropout") if k in spec}
  try:
    return m.build(name, cfg, **kwargs)
  except ValueError as err:
    raise CheckpointError(f"{where}: {err}") from None


def save_safetensors(model, params, out_dir: str, tokenizer=None,
                     finetune: Optional[dict] = None) -> dict:
  """Writes electra_jax.json + params.safetensors (keys are '/'-joined param paths), and the
  tokenizer's files when given (`data_pipelines.tokenizers.Tokenizer.save`). `finetune`: what a
  fine-tuned model records about its task (task, labels, step, scores...), under "finetune" in
  electra_jax.json (`read_finetune_info`)."""
  params = nn.meta.unbox(params)
  check_params(model, params)
  flat = {"/".join(p): np.asarray(v, dtype=np.float32) for p, v in flatten(params).items()}
  os.makedirs(out_dir, exist_ok=True)
  spec = {"format": "electra_jax-safetensors", "format_version": NATIVE_FORMAT_VERSION,
          **model_spec(model), **({"finetune": finetune} if finetune is not None else {})}
  if tokenizer is not None:
    tokenizer.save(out_dir)
  with open(os.path.join(out_dir, NATIVE_CONFIG), "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
  write_safetensors(flat, os.path.join(out_dir, NATIVE_WEIGHTS),
                    metadata={"format": "electra_jax"})
  return {"architecture": spec["architecture"], "tensors": len(flat),
          "parameters": sum(int(v.size) for v in flat.values()), "path": out_dir}


def read_finetune_info(path: str) -> Optional[dict]:
  """The "finetune" record of a native model directory (or a file in it); None if it has none."""
  directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
  try:
    with open(os.path.join(directory, NATIVE_CONFIG)) as f:
      return json.load(f).get("finetune")
  except (OSError, ValueError):
    return None


def load_tokenizer(path: str):
  """The tokenizer saved with the checkpoint at `path` (any path `load_pretrained` reads: a
  pre-training workdir or step, a native or Hugging Face export, a fine-tuning output);
  CheckpointError when it carries none."""
  tokenizer = tokenizers.find_saved(path)
  if tokenizer is None:
    raise CheckpointError(f"{path} carries no tokenizer (electra_jax_tokenizer.json or "
                          "vocab.txt): load one with data_pipelines.tokenizers.load(SPEC)")
  return tokenizer


def load_safetensors(path: str, which: Optional[str] = None, **overrides):
  """Reads `save_safetensors` output -> (model, params numpy, report)."""
  directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
  spec_path = os.path.join(directory, NATIVE_CONFIG)
  try:
    with open(spec_path) as f:
      spec = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f"{spec_path}: file not found") from None
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{spec_path}: invalid JSON ({e})") from None
  if spec.get("format_version", 0) > NATIVE_FORMAT_VERSION:
    raise CheckpointError(f"{spec_path}: format_version {spec['format_version']} is newer than "
                          f"this electra_jax reads ({NATIVE_FORMAT_VERSION})")
  model = model_from_spec(spec, spec_path, **overrides)
  weights = os.path.join(directory, NATIVE_WEIGHTS)
  if not os.path.exists(weights):
    raise CheckpointError(f"{weights}: file not found")
  flat = read_safetensors(weights)
  params = unflatten({tuple(k.split("/")): v.astype(np.float32) for k, v in flat.items()})
  check_params(model, params, what=f"{weights}: params")
  notes = []
  if type(model).__name__ == "ElectraPretrainingModel":
    model, params = _select(model, params, which, notes)
  else:
    _check_which(which, model, path)
  report = _report(directory, "electra_jax-safetensors", model, params)
  report.notes += notes
  return model, params, report
