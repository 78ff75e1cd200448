"""Hugging Face ELECTRA directories <-> electra_jax parameters.

A Hugging Face ELECTRA directory holds `config.json` and `model.safetensors` (or shards listed in
`model.safetensors.index.json`). This module maps its tensors onto the parameter tree of the
matching electra_jax model (`electra_jax.model`) and back:

  HF class                           electra_jax model                  tensors under
  ElectraModel                       ElectraModel                       (no prefix)
  ElectraForPreTraining              ElectraForPreTraining              electra., discriminator_predictions.
  ElectraForMaskedLM                 ElectraForMaskedLM                 electra., generator_predictions., generator_lm_head.bias
  ElectraForSequenceClassification   ElectraForSequenceClassification(head="hf")   classifier.dense, classifier.out_proj
  ElectraForTokenClassification      ElectraForTokenClassification      classifier.
  ElectraForQuestionAnswering        ElectraForQuestionAnswering        qa_outputs.
  ElectraForMultipleChoice           ElectraForMultipleChoice           sequence_summary.summary., classifier.

Layout rules: a torch Linear weight is [out, in] and becomes a kernel [in, out]; our attention
query/key/value kernels are [H, N, D] (biases [N, D]) and the attention output kernel is
[N, D, H]; LayerNorm weight/bias are scale/bias; `generator_lm_head.weight` is the word-embedding
table (tied) and is neither stored by `save_pretrained` nor needed; the HF output bias
`generator_lm_head.bias` is our `generator_predictions/output_bias`. Both directions come from one
table, so import followed by export reproduces every tensor bit for bit.

Pickle-based `pytorch_model.bin` files are refused without being opened. Directories may be
local or on any tf.io.gfile path (gs://...; electra_jax.floor.fs).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterable, Optional

import flax.linen as nn
import numpy as np

from electra_jax.floor import fs
from electra_jax.io.common import (CheckpointError, ImportReport, Progress, check_params,
                                   expected_shapes, flatten, fmt_list, read_json, read_safetensors,
                                   read_safetensors_header, refuse_pickle, shape_hint, unflatten,
                                   write_safetensors)
from electra_jax.model import heads, pretraining
from electra_jax.model.config import ModelConfig
from electra_jax.model.heads import ARCHITECTURES

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"

# Tensors that old HF checkpoints may carry and that hold no learned weights.
_IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")


# ---------------------------------------------------------------------------------------------
# The mapping table

@dataclasses.dataclass(frozen=True)
class Entry:
  """One tensor: HF name <-> path in our params tree.

  kind: "same" (identical layout), "vector" (our array flattened), "linear{k}" (HF [out, in]
  <-> our kernel whose first k axes are the input axes).
  """

  hf: str
  path: tuple
  kind: str


def hf_shape(kind: str, our_shape: tuple) -> tuple:
  if kind == "same":
    return tuple(our_shape)
  if kind == "vector":
    return (math.prod(our_shape),)
  k = int(kind[len("linear"):])
  return (math.prod(our_shape[k:]), math.prod(our_shape[:k]))


def to_ours(kind: str, array: np.ndarray, our_shape: tuple) -> np.ndarray:
  if kind.startswith("linear"):
    array = array.T
  return np.ascontiguousarray(array.reshape(our_shape))


def to_hf(kind: str, array: np.ndarray) -> np.ndarray:
  shape = hf_shape(kind, array.shape)
  if kind.startswith("linear"):
    return np.ascontiguousarray(array.reshape(shape[1], shape[0]).T)
  return np.ascontiguousarray(array.reshape(shape))


def _linear(hf: str, path: tuple, k: int = 1) -> list[Entry]:
  return [Entry(f"{hf}.weight", path + ("kernel",), f"linear{k}"),
          Entry(f"{hf}.bias", path + ("bias",), "vector")]


def _layer_norm(hf: str, path: tuple) -> list[Entry]:
  return [Entry(f"{hf}.weight", path + ("scale",), "vector"),
          Entry(f"{hf}.bias", path + ("bias",), "vector")]


def backbone_entries(cfg: ModelConfig, prefix: str = "electra.",
                     path: tuple = ("electra",)) -> list[Entry]:
  """Entries of an ElectraModel (embeddings, optional embeddings_project, encoder)."""
  p, e = prefix, []
  for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
    e.append(Entry(f"{p}embeddings.{table}.weight", path + ("embeddings", table, "embedding"),
                   "same"))
  e += _layer_norm(f"{p}embeddings.LayerNorm", path + ("embeddings", "LayerNorm"))
  if cfg.embedding_size != cfg.hidden_size:
    e += _linear(f"{p}embeddings_project", path + ("embeddings_project",))
  for i in range(cfg.num_hidden_layers):
    hf, ours = f"{p}encoder.layer.{i}", path + ("encoder", f"layer_{i}")
    for qkv in ("query", "key", "value"):
      e += _linear(f"{hf}.attention.self.{qkv}", ours + ("attention", qkv))
    e += _linear(f"{hf}.attention.output.dense", ours + ("attention", "output"), k=2)
    e += _layer_norm(f"{hf}.attention.output.LayerNorm", ours + ("attention_LayerNorm",))
    e += _linear(f"{hf}.intermediate.dense", ours + ("intermediate",))
    e += _linear(f"{hf}.output.dense", ours + ("output",))
    e += _layer_norm(f"{hf}.output.LayerNorm", ours + ("output_LayerNorm",))
  return e


@dataclasses.dataclass(frozen=True)
class HFClass:
  """How one transformers ELECTRA class maps onto the electra_jax class of the same name.

  head: the entries of its head tensors (after the encoder's); prefix: its encoder tensors'
  prefix; marks: tensor-name prefixes that only it (of the classes after it in HF_CLASSES)
  carries, which identify it when config.json names no class (none: the class of last resort);
  config: (config.json key, the one value electra_jax supports) pairs.
  """

  name: str
  head: tuple[Entry, ...]
  marks: tuple[str, ...]
  prefix: str = "electra."
  config: tuple = ()


# In detection order: the first whose marks a checkpoint's tensor names carry.
HF_CLASSES: dict[str, HFClass] = {c.name: c for c in [
    HFClass("ElectraForPreTraining",
            tuple(_linear("discriminator_predictions.dense", ("discriminator_predictions", "dense"))
                  + _linear("discriminator_predictions.dense_prediction",
                            ("discriminator_predictions", "dense_prediction"))),
            marks=("discriminator_predictions.",)),
    HFClass("ElectraForMaskedLM",
            tuple(_linear("generator_predictions.dense", ("generator_predictions", "dense"))
                  + _layer_norm("generator_predictions.LayerNorm",
                                ("generator_predictions", "LayerNorm"))
                  + [Entry("generator_lm_head.bias", ("generator_predictions", "output_bias"),
                           "vector")]),
            marks=("generator_predictions.", "generator_lm_head.")),
    HFClass("ElectraForSequenceClassification",
            tuple(_linear("classifier.dense", ("dense",))
                  + _linear("classifier.out_proj", ("classifier",))),
            marks=("classifier.out_proj.", "classifier.dense.")),
    HFClass("ElectraForMultipleChoice",
            tuple(_linear("sequence_summary.summary", ("summary",))
                  + _linear("classifier", ("classifier",))),
            marks=("sequence_summary.",),
            config=(("summary_type", "first"), ("summary_use_proj", True),
                    ("summary_activation", "gelu"))),
    HFClass("ElectraForQuestionAnswering", tuple(_linear("qa_outputs", ("qa_outputs",))),
            marks=("qa_outputs.",)),
    HFClass("ElectraForTokenClassification", tuple(_linear("classifier", ("classifier",))),
            marks=("classifier.",)),
    HFClass("ElectraModel", (), marks=(), prefix=""),
]}


def hf_class(architecture: str) -> HFClass:
  if architecture not in HF_CLASSES:
    raise CheckpointError(f"unknown architecture {architecture!r}; expected one of "
                          f"{tuple(ARCHITECTURES)}")
  return HF_CLASSES[architecture]


def entries(cfg: ModelConfig, architecture: str) -> list[Entry]:
  """The full table for one HF class (ElectraModel's tensors carry no `electra.` prefix)."""
  c = hf_class(architecture)
  return backbone_entries(cfg, c.prefix) + list(c.head)


# ---------------------------------------------------------------------------------------------
# Models <-> architectures

def architecture_of(model) -> str:
  """The HF class name matching an electra_jax model instance."""
  name = type(model).__name__
  if name not in ARCHITECTURES or not isinstance(model, getattr(heads, name)):
    raise CheckpointError(
        f"cannot export {type(model).__name__} to Hugging Face: expected one of "
        f"{tuple(ARCHITECTURES)} "
        "(for ElectraPretrainingModel pass which='discriminator' or which='generator')")
  if name == "ElectraForSequenceClassification" and model.head != "hf":
    raise CheckpointError(
        "ElectraForSequenceClassification(head='official') (dropout + linear on [CLS]) has no "
        "Hugging Face class: transformers' ElectraForSequenceClassification always applies "
        "dense -> GELU -> dense. Fine-tune with head='hf' to export a classifier, or export the "
        "encoder alone with export_hf(ElectraModel(config), {'electra': params['electra']}, ...)")
  return name


def check_table(paths: set, shapes: dict[tuple, tuple], architecture: str) -> None:
  """The mapping table must cover the model's parameters exactly (a programming error if not)."""
  if paths != set(shapes):
    raise RuntimeError(f"electra_jax bug: the {architecture} mapping table does not match the "
                       f"model: table-only {sorted(paths - set(shapes))}, "
                       f"model-only {sorted(set(shapes) - paths)}")


# ---------------------------------------------------------------------------------------------
# Import

def config_from_hf_dict(d: dict, where: str = "config.json", **overrides) -> ModelConfig:
  if d.get("model_type", "electra") != "electra":
    raise CheckpointError(f"{where}: model_type={d.get('model_type')!r}, expected 'electra'")
  if d.get("is_decoder") or d.get("add_cross_attention"):
    raise CheckpointError(f"{where}: decoder / cross-attention ELECTRA models are not supported")
  try:
    return ModelConfig.from_hf_dict(d, **overrides)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{where}: {e}") from None


def weight_files(directory: str) -> list[str]:
  """The safetensors files of an HF directory; clear errors for missing / pickle / TF files."""
  if not fs.isdir(directory):
    raise CheckpointError(f"{directory}: no such directory")
  single = fs.join(directory, WEIGHTS_NAME)
  index = fs.join(directory, WEIGHTS_INDEX_NAME)
  if fs.exists(single):
    return [single]
  if fs.exists(index):
    shards = sorted(set(read_json(index).get("weight_map", {}).values()))
    files = [fs.join(directory, s) for s in shards]
    for f in files:
      if not fs.exists(f):
        raise CheckpointError(f"{f}: shard listed in {WEIGHTS_INDEX_NAME} not found")
    return files
  for name in ("pytorch_model.bin", "pytorch_model.bin.index.json"):
    if fs.exists(fs.join(directory, name)):
      refuse_pickle(fs.join(directory, name))
  others = [n for n in ("tf_model.h5", "flax_model.msgpack") if
            fs.exists(fs.join(directory, n))]
  raise CheckpointError(
      f"{directory}: no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME})"
      + (f"; found {', '.join(others)}, which electra_jax does not read: re-save with "
         "transformers' save_pretrained to get model.safetensors" if others else ""))


def read_hf_state(directory: str) -> dict[str, np.ndarray]:
  state = {}
  for f in weight_files(directory):
    state.update(read_safetensors(f))
  return state


def detect_architecture(config: dict, names: Iterable[str]) -> str:
  """From `architectures` in config.json, else from tensor names."""
  for arch in config.get("architectures") or ():
    if arch in ARCHITECTURES:
      return arch
  archs = config.get("architectures")
  if archs:
    raise CheckpointError(f"config.json architectures={archs}: not an ELECTRA class electra_jax "
                          f"reads (one of {tuple(ARCHITECTURES)})")
  names = set(names)
  return next(c.name for c in HF_CLASSES.values()
              if not c.marks or any(n.startswith(c.marks) for n in names))


def _normalize_names(state: dict[str, np.ndarray], architecture: str, report: ImportReport,
                     config: dict) -> dict[str, np.ndarray]:
  """Drops buffers, renames legacy LayerNorm gamma/beta, handles the ElectraModel prefix and the
  tied generator output matrix."""
  out = {}
  for name, arr in state.items():
    if name.endswith(_IGNORED_SUFFIXES):
      report.ignored.append(name)
      continue
    if ".LayerNorm." in name or name.startswith("LayerNorm."):
      name = name.replace(".gamma", ".weight").replace(".beta", ".bias")
    out[name] = arr
  base = [n for n in out if n.startswith("embeddings.") or n.startswith("encoder.")]
  prefixed = [n for n in out if n.startswith("electra.")]
  if not hf_class(architecture).prefix and prefixed and not base:
    # A task checkpoint read as the bare encoder: keep `electra.*`, drop the heads (requested).
    heads = [n for n in out if not n.startswith("electra.")]
    if heads:
      report.notes.append(f"dropped {len(heads)} head tensors (reading the encoder only)")
      report.ignored.extend(heads)
    out = {n[len("electra."):]: a for n, a in out.items() if n.startswith("electra.")}
  lm = out.pop("generator_lm_head.weight", None)
  if lm is not None:
    word = out.get("electra.embeddings.word_embeddings.weight")
    if config.get("tie_word_embeddings", True) is False and (
        word is None or word.shape != lm.shape or not np.array_equal(word, lm)):
      raise CheckpointError(
          "generator_lm_head.weight differs from electra.embeddings.word_embeddings.weight and "
          "config.json sets tie_word_embeddings=false: untied generator output embeddings are "
          "not supported (ELECTRA ties them)")
    report.ignored.append("generator_lm_head.weight (tied to the word embeddings)")
  return out


def state_to_params(state: dict[str, np.ndarray], model, architecture: str, source: str,
                    progress: Progress = None) -> dict:
  """HF tensors -> our params (numpy float32), with one error listing every mismatch."""
  cfg = model.config
  table = entries(cfg, architecture)
  shapes = expected_shapes(model)
  check_table({e.path for e in table}, shapes, architecture)
  by_name = {e.hf: e for e in table}
  unknown = sorted(set(state) - set(by_name))
  missing = sorted(set(by_name) - set(state))
  problems = []
  if unknown:
    problems.append(f"unknown tensors (not part of {architecture}): {fmt_list(unknown)}")
  if missing:
    problems.append(f"missing tensors: {fmt_list(missing)}")
  for e in table:
    if e.hf in state:
      want = hf_shape(e.kind, shapes[e.path])
      got = tuple(state[e.hf].shape)
      if got != want:
        problems.append(f"{e.hf}: checkpoint shape {got}, config implies {want}")
  if problems:
    raise CheckpointError(
        f"{source}: the weights do not match {architecture} with config "
        f"({shape_hint(cfg)}):\n  " + "\n  ".join(problems))
  flat = {}
  for i, e in enumerate(table):
    arr = np.asarray(state[e.hf])
    if not np.issubdtype(arr.dtype, np.floating) and arr.dtype.name != "bfloat16":
      raise CheckpointError(f"{source}: {e.hf} has dtype {arr.dtype}, expected a float tensor")
    flat[e.path] = to_ours(e.kind, arr.astype(np.float32), shapes[e.path])
    if progress:
      progress(i + 1, len(table), e.hf)
  return unflatten(flat)


def import_hf(directory: str, architecture: Optional[str] = None, progress: Progress = None,
              **config_overrides):
  """Reads an HF ELECTRA directory -> (model, params, report). params are numpy float32.

  `architecture` forces the class (e.g. "ElectraModel" to read only the encoder of any
  checkpoint); by default it comes from config.json `architectures`, else from tensor names.
  `config_overrides` replace ModelConfig fields (e.g. dtype="bfloat16", remat=True).
  """
  if fs.isfile(directory):
    if directory.endswith(".bin"):
      refuse_pickle(directory)
    directory = fs.dirname(directory) or "."
  files = weight_files(directory)
  config = read_json(fs.join(directory, CONFIG_NAME))
  names = []
  for f in files:
    names += list(read_safetensors_header(f)[0])
  arch = architecture or detect_architecture(config, names)
  cfg = config_from_hf_dict(config, fs.join(directory, CONFIG_NAME), **config_overrides)
  for key, want in hf_class(arch).config:
    if config.get(key, want) != want:
      raise CheckpointError(f"{directory}/config.json: {key}={config[key]!r} is not supported "
                            f"for {arch} (only {want!r})")
  num_labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
  try:
    model = heads.build(arch, cfg, num_labels=num_labels,
                        classifier_dropout=config.get("classifier_dropout"))
  except ValueError as err:
    raise CheckpointError(f"{directory}: {err}") from None
  report = ImportReport(source=directory, source_format="hf", architecture=arch)
  state = read_hf_state(directory)
  state = _normalize_names(state, arch, report, config)
  params = state_to_params(state, model, arch, directory, progress)
  report.tensors = len(state)
  report.parameters = sum(int(np.size(v)) for v in flatten(params).values())
  return model, params, report


# ---------------------------------------------------------------------------------------------
# Export

def params_to_state(model, params: dict, progress: Progress = None) -> dict[str, np.ndarray]:
  """Our params -> HF tensors (float32 numpy) for the class matching `model`."""
  arch = architecture_of(model)
  params = nn.meta.unbox(params)
  check_params(model, params)
  table = entries(model.config, arch)
  check_table({e.path for e in table}, expected_shapes(model), arch)
  flat = flatten(params)
  out = {}
  for i, e in enumerate(table):
    out[e.hf] = to_hf(e.kind, np.asarray(flat[e.path], dtype=np.float32))
    if progress:
      progress(i + 1, len(table), e.hf)
  return out


def hf_config_dict(model, architecture: str, id2label: Optional[dict] = None,
                   problem_type: Optional[str] = None) -> dict:
  cfg: ModelConfig = model.config
  d = cfg.to_hf_dict()
  d.pop("position_embedding_type", None)
  d.update({
      "architectures": [architecture],
      "model_type": "electra",
      "dtype": "float32",
      "tie_word_embeddings": True,
      "classifier_dropout": getattr(model, "classifier_dropout", None),
      "summary_type": "first",
      "summary_use_proj": True,
      "summary_activation": "gelu",
      "summary_last_dropout": 0.1,
      "is_decoder": False,
      "add_cross_attention": False,
  })
  num_labels = getattr(model, "num_labels", None)
  if id2label is not None:
    id2label = {str(k): v for k, v in id2label.items()}
    if num_labels is not None and len(id2label) != num_labels:
      raise CheckpointError(f"id2label has {len(id2label)} labels, the model {num_labels}")
  elif num_labels is not None:
    id2label = {str(i): f"LABEL_{i}" for i in range(num_labels)}
  if id2label is not None:
    d["id2label"] = id2label
    d["label2id"] = {v: int(k) for k, v in id2label.items()}
  if problem_type is not None:
    d["problem_type"] = problem_type
  return dict(sorted(d.items()))


def resolve_pretraining(model, params, which: Optional[str], notes: Optional[list] = None):
  """ElectraPretrainingModel + params -> (standalone model, its params) for `which`.

  which="generator" -> ElectraForMaskedLM(gen_config). which="discriminator" -> the big network:
  ElectraForPreTraining when it has the replaced-token head, ElectraForMaskedLM(disc_config) when
  its only head is the MLM one (objective kinds "mlm" / "replace_mlm"); with both heads
  ("all_tokens_mlm") the replaced-token head is kept and the MLM head dropped (noted in `notes`).
  """
  if which not in ("discriminator", "generator"):
    raise CheckpointError(f"which={which!r}: a pre-training model holds two networks; pass "
                          "which='discriminator' or which='generator'")
  gen, disc = pretraining.split_pretraining_params(nn.meta.unbox(params), model.embedding_sharing)
  if which == "generator":
    if gen is None or not getattr(model, "use_generator", True):
      raise CheckpointError("this pre-training model has no generator tower (use_generator="
                            "False: an MLM baseline or uniform generator); use "
                            "which='discriminator'")
    return heads.ElectraForMaskedLM(model.gen_config), gen
  if "discriminator_predictions" in disc:
    if "generator_predictions" in disc:
      disc = {k: v for k, v in disc.items() if k != "generator_predictions"}
      if notes is not None:
        notes.append("the big network's MLM head (discriminator/generator_predictions) was not "
                     "converted: ElectraForPreTraining has only the replaced-token head")
    return heads.ElectraForPreTraining(model.disc_config), disc
  return heads.ElectraForMaskedLM(model.disc_config), disc


def export_hf(model, params: dict, out_dir: str, which: Optional[str] = None,
              id2label: Optional[dict] = None, progress: Progress = None,
              tokenizer=None, problem_type: Optional[str] = None) -> dict:
  """Writes `config.json` + `model.safetensors` that transformers loads with from_pretrained,
  and with `tokenizer` (a data_pipelines.tokenizers.Tokenizer) the files AutoTokenizer reads,
  with model_max_length = the model's max_position_embeddings (pipelines truncate to it).
  problem_type: transformers' config.problem_type ("regression",
  "multi_label_classification", "single_label_classification"; what a text-classification
  pipeline applies to the logits), None to leave it unset.

  `model` is an electra_jax standalone model (ElectraModel, ElectraForPreTraining,
  ElectraForMaskedLM, ElectraForSequenceClassification(head="hf"), ElectraForTokenClassification,
  ElectraForQuestionAnswering, ElectraForMultipleChoice), or an ElectraPretrainingModel with
  `which="discriminator"` (-> ElectraForPreTraining) or `which="generator"`
  (-> ElectraForMaskedLM). Returns {"architecture", "tensors", "parameters", "path"}.
  """
  if type(model).__name__ == "ElectraPretrainingModel":
    model, params = resolve_pretraining(model, params, which)
  arch = architecture_of(model)
  state = params_to_state(model, params, progress)
  fs.makedirs(out_dir)
  fs.write_text(fs.join(out_dir, CONFIG_NAME),
                json.dumps(hf_config_dict(model, arch, id2label, problem_type), indent=2) + "\n")
  write_safetensors(state, fs.join(out_dir, WEIGHTS_NAME))
  if tokenizer is not None:
    tokenizer.save(out_dir, model_max_length=model.config.max_position_embeddings)
  return {"architecture": arch, "tensors": len(state),
          "parameters": sum(int(v.size) for v in state.values()), "path": out_dir}
