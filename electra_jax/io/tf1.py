"""Official ELECTRA (google-research/electra, TF 1.x) pre-training checkpoints -> electra_jax.

One official checkpoint holds both networks (run_pretraining.py, model/modeling.py):

  electra/embeddings/{word,position,token_type}_embeddings, electra/embeddings/LayerNorm/{gamma,beta}
      the embeddings, shared by generator and discriminator (the generator's own live under
      generator/embeddings/... when it was trained with untied_generator_embeddings)
  electra/embeddings_project/{kernel,bias}       discriminator E -> H projection (only if E != H)
  electra/encoder/layer_{i}/attention/self/{query,key,value}/{kernel,bias}
  electra/encoder/layer_{i}/attention/output/dense/{kernel,bias}
  electra/encoder/layer_{i}/attention/output/LayerNorm/{gamma,beta}
  electra/encoder/layer_{i}/intermediate/dense/{kernel,bias}
  electra/encoder/layer_{i}/output/dense/{kernel,bias}
  electra/encoder/layer_{i}/output/LayerNorm/{gamma,beta}
  discriminator_predictions/dense/{kernel,bias}, discriminator_predictions/dense_1/{kernel,bias}
  generator/embeddings_project/..., generator/encoder/layer_{i}/...   the generator (same layout)
  generator_predictions/dense/{kernel,bias}, generator_predictions/LayerNorm/{gamma,beta},
  generator_predictions/output_bias              (the output matrix is the word-embedding table)

plus optimizer slots (`.../adam_m`, `.../adam_v`) and `global_step`, which are ignored.
TF dense kernels are already [in, out]; attention kernels are reshaped to our [H, N, D] /
[N, D, H] layout.

The checkpoint stores no config: sizes are read from the tensor shapes, and the number of heads
follows the official rule max(1, hidden // 64) (true of every released model: small 4, base 12,
large 16, generators 1/4/4) unless `num_attention_heads` is given. TensorFlow is imported only
here, lazily, with accelerators hidden from it.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from electra_jax.floor import fs, tf_runtime
from electra_jax.io.common import (CheckpointError, ImportReport, Progress, expected_shapes,
                                   fmt_list, shape_hint, unflatten)
from electra_jax.io.hf import check_table
from electra_jax.model.config import ModelConfig
from electra_jax.model.heads import ElectraForMaskedLM, ElectraForPreTraining

WHICH = ("discriminator", "generator")

# Variables that are training bookkeeping, not model weights.
_BOOKKEEPING = re.compile(
    r"(^|/)(global_step|beta1_power|beta2_power|good_steps|loss_scale|current_loss_scale"
    r"|temperature)$|/(adam_m|adam_v|Adam|Adam_1|Momentum|Adagrad|RMSProp|RMSProp_1)$")


def _tf():
  """TensorFlow as a CPU-only library (data_pipelines.tf_runtime: accelerators hidden, quiet)."""
  return tf_runtime.tensorflow()


def resolve_checkpoint(path: str) -> str:
  """A checkpoint prefix from a prefix, an `.index` / `.data-*` file, or a directory with a
  `checkpoint` file."""
  if fs.isdir(path):
    state = fs.join(path, "checkpoint")
    if not fs.exists(state):
      raise CheckpointError(f"{path}: no `checkpoint` file in this directory (pass the "
                            "checkpoint prefix, e.g. .../model.ckpt-1000000)")
    tf = _tf()
    prefix = tf.train.latest_checkpoint(path)
    if prefix is None or not fs.exists(prefix + ".index"):
      raise CheckpointError(f"{state} names a checkpoint that does not exist ({prefix})")
    return prefix
  m = re.match(r"^(.*)\.(index|data-\d+-of-\d+|meta)$", path)
  if m:
    path = m.group(1)
  if not fs.exists(path + ".index"):
    raise CheckpointError(f"{path}: TF checkpoint not found (no {fs.basename(path)}.index)")
  return path


def is_tf1_checkpoint(path: str) -> bool:
  if fs.isdir(path):
    return fs.exists(fs.join(path, "checkpoint"))
  return (fs.exists(path + ".index")
          or bool(re.match(r"^.*\.(index|data-\d+-of-\d+)$", path)) and fs.exists(path))


def _layer_norm(tf_name: str, path: tuple) -> list:
  return [(f"{tf_name}/gamma", path + ("scale",), "reshape"),
          (f"{tf_name}/beta", path + ("bias",), "reshape")]


def _dense(tf_name: str, path: tuple) -> list:
  return [(f"{tf_name}/kernel", path + ("kernel",), "reshape"),
          (f"{tf_name}/bias", path + ("bias",), "reshape")]


def tf1_entries(cfg: ModelConfig, which: str, scope: str, emb_scope: str) -> list[tuple]:
  """(TF variable name, our param path, kind) for the standalone model of `which`.

  Every TF tensor maps by a reshape (kernels are [in, out] in TF and in our tree)."""
  e = []
  emb = ("electra", "embeddings")
  for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
    e.append((f"{emb_scope}/embeddings/{table}", emb + (table, "embedding"), "reshape"))
  e += _layer_norm(f"{emb_scope}/embeddings/LayerNorm", emb + ("LayerNorm",))
  if cfg.embedding_size != cfg.hidden_size:
    e += _dense(f"{scope}/embeddings_project", ("electra", "embeddings_project"))
  for i in range(cfg.num_hidden_layers):
    tf_l, ours = f"{scope}/encoder/layer_{i}", ("electra", "encoder", f"layer_{i}")
    for qkv in ("query", "key", "value"):
      e += _dense(f"{tf_l}/attention/self/{qkv}", ours + ("attention", qkv))
    e += _dense(f"{tf_l}/attention/output/dense", ours + ("attention", "output"))
    e += _layer_norm(f"{tf_l}/attention/output/LayerNorm", ours + ("attention_LayerNorm",))
    e += _dense(f"{tf_l}/intermediate/dense", ours + ("intermediate",))
    e += _dense(f"{tf_l}/output/dense", ours + ("output",))
    e += _layer_norm(f"{tf_l}/output/LayerNorm", ours + ("output_LayerNorm",))
  if which == "discriminator":
    e += _dense("discriminator_predictions/dense", ("discriminator_predictions", "dense"))
    e += _dense("discriminator_predictions/dense_1",
                ("discriminator_predictions", "dense_prediction"))
  else:
    e += _dense("generator_predictions/dense", ("generator_predictions", "dense"))
    e += _layer_norm("generator_predictions/LayerNorm", ("generator_predictions", "LayerNorm"))
    e.append(("generator_predictions/output_bias", ("generator_predictions", "output_bias"),
              "reshape"))
  return e


def _scopes(shapes: dict, which: str) -> tuple[str, str]:
  """(encoder scope, embeddings scope) of `which` in this checkpoint."""
  if which == "discriminator":
    return "electra", "electra"
  scope = "generator" if "generator/encoder/layer_0/attention/self/query/kernel" in shapes \
      else "electra"  # a BERT-style MLM checkpoint: the generator head on the one encoder
  emb = "generator" if "generator/embeddings/word_embeddings" in shapes else "electra"
  return scope, emb


def infer_config(shapes: dict, which: str, num_attention_heads: Optional[int] = None,
                 **overrides) -> ModelConfig:
  """A ModelConfig from the variable shapes of one network of an official checkpoint."""
  scope, emb = _scopes(shapes, which)
  need = [f"{emb}/embeddings/word_embeddings", f"{emb}/embeddings/position_embeddings",
          f"{emb}/embeddings/token_type_embeddings",
          f"{scope}/encoder/layer_0/attention/self/query/kernel",
          f"{scope}/encoder/layer_0/intermediate/dense/kernel"]
  missing = [n for n in need if n not in shapes]
  if missing:
    raise CheckpointError(f"not an ELECTRA {which} checkpoint: missing {fmt_list(missing)}")
  vocab, embed = shapes[need[0]]
  hidden = shapes[need[3]][1]
  layers = {int(m.group(1)) for n in shapes
            for m in [re.match(rf"^{scope}/encoder/layer_(\d+)/", n)] if m}
  heads = num_attention_heads or max(1, hidden // 64)
  fields = dict(vocab_size=vocab, embedding_size=embed, hidden_size=hidden,
                num_hidden_layers=max(layers) + 1, num_attention_heads=heads,
                intermediate_size=shapes[need[4]][1],
                max_position_embeddings=shapes[need[1]][0], type_vocab_size=shapes[need[2]][0])
  fields.update(overrides)
  try:
    return ModelConfig(**fields)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"cannot build a config for the {which}: {e}") from None


def import_tf1(path: str, which: str = "discriminator", config: Optional[ModelConfig] = None,
               strict: bool = True, progress: Progress = None, **config_overrides):
  """Official checkpoint -> (model, params, report) for `which` network.

  which="discriminator" -> ElectraForPreTraining; which="generator" -> ElectraForMaskedLM.
  `config` (optional) replaces the config inferred from shapes; `config_overrides` (e.g.
  num_attention_heads=4, dtype="bfloat16") adjust the inferred one. With `strict`, variables that
  belong to neither network and are not optimizer / bookkeeping state are an error.
  """
  if which not in WHICH:
    raise CheckpointError(f"which={which!r}; expected 'discriminator' or 'generator'")
  prefix = resolve_checkpoint(path)
  tf = _tf()
  try:
    reader = tf.train.load_checkpoint(prefix)
  except Exception as e:  # tf raises its own error types (DataLossError, NotFoundError, ...)
    raise CheckpointError(f"{prefix}: cannot read TF checkpoint ({type(e).__name__}: {e})") \
        from None
  shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
  head = f"{which}_predictions/dense/kernel"
  if head not in shapes:
    raise CheckpointError(
        f"{prefix}: no {which} in this checkpoint ({head} not found); model variables: "
        f"{fmt_list(n for n in shapes if not _BOOKKEEPING.search(n))}")
  if config is None:
    heads = config_overrides.pop("num_attention_heads", None)
    cfg = infer_config(shapes, which, heads, **config_overrides)
  else:
    cfg = config.replace(**config_overrides) if config_overrides else config
  model = ElectraForPreTraining(cfg) if which == "discriminator" else ElectraForMaskedLM(cfg)
  scope, emb = _scopes(shapes, which)
  table = tf1_entries(cfg, which, scope, emb)
  ours = expected_shapes(model)
  check_table({p for _, p, _ in table}, ours, type(model).__name__)

  # Everything the two networks use, to tell unknown variables from the other network's.
  other = "generator" if which == "discriminator" else "discriminator"
  known = {n for n, _, _ in table}
  if f"{other}_predictions/dense/kernel" in shapes:
    known |= _other_names(shapes, other)
  ignored = sorted(n for n in shapes if _BOOKKEEPING.search(n))
  unknown = sorted(set(shapes) - known - set(ignored))
  problems = []
  missing = [n for n, _, _ in table if n not in shapes]
  if missing:
    problems.append(f"missing variables: {fmt_list(missing)}")
  for name, path, _ in table:
    if name in shapes and shapes[name] != _tf_shape(name, ours[path]):
      problems.append(f"{name}: checkpoint shape {shapes[name]}, config implies "
                      f"{_tf_shape(name, ours[path])}")
  if strict and unknown:
    problems.append(f"unknown variables (neither network, not optimizer state; pass "
                    f"strict=False to ignore them): {fmt_list(unknown)}")
  if problems:
    raise CheckpointError(f"{prefix}: the {which} does not match config "
                          f"({shape_hint(cfg)}):\n  " + "\n  ".join(problems))
  flat = {}
  for i, (name, path, _) in enumerate(table):
    arr = np.asarray(reader.get_tensor(name))
    flat[path] = np.ascontiguousarray(arr.astype(np.float32).reshape(ours[path]))
    if progress:
      progress(i + 1, len(table), name)
  params = unflatten(flat)
  report = ImportReport(source=prefix, source_format="tf1", architecture=type(model).__name__,
                        tensors=len(table),
                        parameters=sum(int(np.size(v)) for v in flat.values()))
  report.ignored = ignored + sorted(set(shapes) - {n for n, _, _ in table} - set(ignored)
                                    - set(unknown))
  n_other = len(set(shapes) - {n for n, _, _ in table} - set(ignored) - set(unknown))
  report.notes.append(f"{len(ignored)} optimizer/bookkeeping variables ignored"
                      + (f", {n_other} variables of the {other} not read" if n_other else "")
                      + (f", {len(unknown)} unknown variables ignored" if unknown else ""))
  report.notes.append(f"config inferred from shapes: {shape_hint(cfg)}" if config is None
                      else "config given by the caller")
  return model, params, report


def _tf_shape(name: str, our_shape: tuple) -> tuple:
  """The TF shape of a variable whose electra_jax shape is `our_shape`."""
  if name.endswith("/kernel"):
    if "/attention/self/" in name:          # [H, N, D] -> [H, N*D]
      return (our_shape[0], int(np.prod(our_shape[1:])))
    if "/attention/output/dense/" in name:  # [N, D, H] -> [N*D, H]
      return (int(np.prod(our_shape[:-1])), our_shape[-1])
    return tuple(our_shape)
  if name.endswith("_embeddings"):
    return tuple(our_shape)
  return (int(np.prod(our_shape)),)


def _other_names(shapes: dict, which: str) -> set:
  """Variable names of the `which` network (best effort: its config inferred from shapes)."""
  try:
    cfg = infer_config(shapes, which)
  except CheckpointError:
    return set()
  scope, emb = _scopes(shapes, which)
  return {n for n, _, _ in tf1_entries(cfg, which, scope, emb)}


def list_variables(path: str) -> dict[str, tuple]:
  """name -> shape of every variable of a TF checkpoint (for inspection)."""
  prefix = resolve_checkpoint(path)
  tf = _tf()
  return {k: tuple(v) for k, v in tf.train.list_variables(prefix)}
