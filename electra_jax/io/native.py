"""electra_jax's own checkpoint formats, for reading and writing models:

  pre-training checkpoints   what the trainer writes (orbax; WORKDIR/checkpoints/STEP/): the run's
                             config and the joint model's params (`read_pretraining_checkpoint`);
                             the optimizer state is not read.
  electra_jax-safetensors    a flat, framework-free export of any electra_jax model, fine-tuned
                             ones included: electra_jax.json (the model's class and constructor
                             fields, a "finetune" record for fine-tuned models) + params.safetensors
                             (keys are '/'-joined parameter paths) + the tokenizer's files.

Safetensors exports are read and written on any path electra_jax.floor.fs serves (local, gs://, or
another tf.io.gfile scheme); pre-training checkpoints on local paths and gs:// (`orbax_path`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from electra_jax.floor import fs
from electra_jax.io.common import (CheckpointError, ImportReport, check_params, flatten,
                                   read_safetensors, unflatten, write_safetensors)
from electra_jax.io.hf import resolve_pretraining
from electra_jax.model import heads, pretraining
from electra_jax.model.config import ModelConfig

NATIVE_CONFIG = "electra_jax.json"


NATIVE_WEIGHTS = "params.safetensors"


NATIVE_FORMAT_VERSION = 1
# Files every complete pre-training checkpoint step holds, relative to its directory (orbax's).
STEP_FILES = ("_CHECKPOINT_METADATA", "state/_METADATA", "state/manifest.ocdbt",
              "config/metadata", "data/metadata")


def check_which(which, model, path):
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
  return pretraining.ElectraPretrainingModel(disc, gen,
                                             config_dict.get("embedding_sharing", "tied"),
                                             use_generator=use_generator,
                                             discriminator_heads=heads)


def _select(model, params, which, notes: list):
  if which == "pretraining":
    return model, params
  return resolve_pretraining(model, params, which or "discriminator", notes)


def orbax_path(path) -> str:
  """`path` as orbax-checkpoint reads and writes it: a local path made absolute (symlinks
  resolved), or a gs:// URL (orbax writes its arrays there with TensorStore's gcs driver).

  ValueError for another scheme: TensorStore, which reads and writes orbax's arrays, has drivers
  for local files and gs:// only (not for ram:// or hdfs://, which tf.io.gfile may serve).
  """
  path = os.fspath(path)
  if not fs.is_remote(path):
    return os.path.realpath(path)
  if path.startswith("gs://"):
    return path
  raise ValueError(f"{path}: pre-training checkpoints (orbax-checkpoint) can be read and written "
                   f"on a local path or gs:// only (TensorStore, which writes their arrays, has "
                   f"no driver for {path.split('://')[0]}://); give a local or gs:// path")


def step_problem(step_dir: str) -> Optional[str]:
  """What is wrong with the pre-training checkpoint step directory `step_dir`, from its files
  alone: the first missing file of STEP_FILES, or a JSON file (config, data, state/_METADATA)
  that does not parse, named with its path; None when these look whole (the arrays are checked
  by reading them)."""
  for name in STEP_FILES:
    path = fs.join(step_dir, name)
    if not fs.exists(path):
      return f"{path} is missing"
  for name in ("config/metadata", "data/metadata", "state/_METADATA"):
    path = fs.join(step_dir, name)
    try:
      json.loads(fs.read_text(path))
    except (ValueError, UnicodeDecodeError) as err:
      return f"{path} is not valid JSON, cut short or overwritten ({err})"
  return None


def _step_dirs(path: str) -> list[str]:
  """Step directories from a step dir (itself), or a checkpoints dir or a workdir (its complete
  steps, newest first: orbax's finalized steps, which on gs:// hold their commit_success.txt)."""
  if fs.isdir(fs.join(path, "state")):
    return [path]
  for root in (fs.join(path, "checkpoints"), path):
    steps = sorted(ocp.path.step.checkpoint_steps(root), reverse=True)
    if steps:
      return [fs.join(root, str(step)) for step in steps]
  raise FileNotFoundError(f"no pre-training checkpoint at {path} (expected a step directory "
                          "with state/, or a workdir or checkpoints directory holding one)")


def _read_step(step_dir: str) -> tuple[dict, dict]:
  """(config_dict, params) of one step directory (see read_pretraining_checkpoint)."""
  config = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
      fs.join(step_dir, "config"), args=ocp.args.JsonRestore())
  # The handler reads the item directory alone (a Checkpointer also looks for a step-level
  # _CHECKPOINT_METADATA inside it and warns that it is missing: the CheckpointManager writes
  # that file one level up, in the step directory).
  handler = ocp.PyTreeCheckpointHandler()
  state_dir = epath.Path(fs.join(step_dir, "state"))
  tree = handler.metadata(state_dir).tree
  if "params" not in tree:
    raise ValueError(f"{fs.join(step_dir, 'state')} has no params (keys: {sorted(tree)})")
  params_meta = {"params": tree["params"]}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), params_meta)
  restored = handler.restore(state_dir, args=ocp.args.PyTreeRestore(
      item=params_meta, restore_args=restore_args, partial_restore=True))
  return dict(config), restored["params"]


def read_pretraining_checkpoint(path: str) -> tuple[dict, dict]:
  """(config_dict, params) from a step dir, or from a workdir / checkpoints dir (latest step),
  on a local path or gs:// (`orbax_path`).

  config_dict: the stored `TrainConfig.to_dict()`: "model" and "generator" hold ModelConfig
  fields, "embedding_sharing" the sharing mode, plus the rest of the run's config.
  params: the ElectraPretrainingModel params tree (unboxed) as host numpy arrays; the optimizer
  state is not read.

  A damaged step (`step_problem`, or an error reading it) is a CheckpointError naming the step
  and what is wrong; for a workdir whose latest step is damaged it names the newest intact step
  to give instead (nothing is read from an older step unasked).
  """
  damaged = []
  for step_dir in _step_dirs(orbax_path(path)):
    problem = step_problem(step_dir)
    if problem is None:
      try:
        result = _read_step(step_dir)
      except Exception as err:  # orbax and TensorStore raise many types for damaged files
        lines = str(err).strip().splitlines()
        problem = f"{type(err).__name__}: {lines[0] if lines else ''}"
    if problem is None and not damaged:
      return result
    if problem is None:
      raise CheckpointError(f"{path}: the latest checkpoint step {damaged[0][0]} is damaged "
                            f"({damaged[0][1]}); the newest intact step is {step_dir}: give "
                            "that path to use it")
    damaged.append((step_dir, problem))
  raise CheckpointError(f"{path}: checkpoint step {damaged[0][0]} is damaged ({damaged[0][1]})"
                        + (f"; no older step is intact ({len(damaged) - 1} tried)"
                           if len(damaged) > 1 else ""))


def load_pretraining_checkpoint(path: str, which: Optional[str] = None, **overrides):
  """Reads an electra_jax pre-training checkpoint (a workdir, checkpoints dir or step dir) ->
  (model, params numpy, report); `which` as in `load_pretrained`."""
  if not fs.exists(path):
    raise CheckpointError(f"{path}: no such file or directory")
  try:
    config_dict, params = read_pretraining_checkpoint(path)
  except FileNotFoundError as e:
    raise CheckpointError(f"{path}: {e}") from None
  except ValueError as e:  # not a path orbax reads
    raise CheckpointError(str(e)) from None
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


def model_spec(model) -> dict:
  """A JSON-able description of an electra_jax model (class + constructor fields)."""
  name = type(model).__name__
  if name == "ElectraPretrainingModel":
    return {"architecture": name, "model": dataclasses.asdict(model.disc_config),
            "generator": dataclasses.asdict(model.gen_config),
            "embedding_sharing": model.embedding_sharing,
            "use_generator": getattr(model, "use_generator", True),
            "discriminator_heads": list(getattr(model, "discriminator_heads", ("rtd",)))}
  if not hasattr(heads, name) or not isinstance(model, getattr(heads, name)):
    raise CheckpointError(f"cannot describe {name}: not an electra_jax.model model")
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
  if name not in heads.ARCHITECTURES:
    raise CheckpointError(f"{where}: unknown architecture {name!r}")
  cfg = _config_from_dict({**spec["model"], **overrides}, where)
  kwargs = {k: spec[k] for k in ("num_labels", "head", "classifier_dropout") if k in spec}
  try:
    return heads.build(name, cfg, **kwargs)
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
  fs.makedirs(out_dir)
  spec = {"format": "electra_jax-safetensors", "format_version": NATIVE_FORMAT_VERSION,
          **model_spec(model), **({"finetune": finetune} if finetune is not None else {})}
  if tokenizer is not None:
    tokenizer.save(out_dir)
  fs.write_text(fs.join(out_dir, NATIVE_CONFIG), json.dumps(spec, indent=2) + "\n")
  write_safetensors(flat, fs.join(out_dir, NATIVE_WEIGHTS), metadata={"format": "electra_jax"})
  return {"architecture": spec["architecture"], "tensors": len(flat),
          "parameters": sum(int(v.size) for v in flat.values()), "path": out_dir}


def read_finetune_info(path: str) -> Optional[dict]:
  """The "finetune" record of a native model directory (or a file in it); None if it has none."""
  directory = path if fs.isdir(path) else fs.dirname(path) or "."
  try:
    return json.loads(fs.read_text(fs.join(directory, NATIVE_CONFIG))).get("finetune")
  except (OSError, ValueError):
    return None


def load_safetensors(path: str, which: Optional[str] = None, **overrides):
  """Reads `save_safetensors` output -> (model, params numpy, report)."""
  directory = path if fs.isdir(path) else fs.dirname(path) or "."
  spec_path = fs.join(directory, NATIVE_CONFIG)
  try:
    spec = json.loads(fs.read_text(spec_path))
  except FileNotFoundError:
    raise CheckpointError(f"{spec_path}: file not found") from None
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{spec_path}: invalid JSON ({e})") from None
  if spec.get("format_version", 0) > NATIVE_FORMAT_VERSION:
    raise CheckpointError(f"{spec_path}: format_version {spec['format_version']} is newer than "
                          f"this electra_jax reads ({NATIVE_FORMAT_VERSION})")
  model = model_from_spec(spec, spec_path, **overrides)
  weights = fs.join(directory, NATIVE_WEIGHTS)
  if not fs.exists(weights):
    raise CheckpointError(f"{weights}: file not found")
  flat = read_safetensors(weights)
  params = unflatten({tuple(k.split("/")): v.astype(np.float32) for k, v in flat.items()})
  check_params(model, params, what=f"{weights}: params")
  notes = []
  if type(model).__name__ == "ElectraPretrainingModel":
    model, params = _select(model, params, which, notes)
  else:
    check_which(which, model, path)
  report = _report(directory, "electra_jax-safetensors", model, params)
  report.notes += notes
  return model, params, report
