"""What every checkpoint format shares: the error type, the conversion report, safetensors files
(read without torch; bfloat16 through ml_dtypes; local or on any tf.io.gfile path, see
electra_jax.floor.fs), nested-dict flattening, the parameter check against a model, and the refusal
to unpickle."""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, Callable, Iterable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from safetensors.numpy import save, save_file

from electra_jax.floor import fs
from electra_jax.model.config import ModelConfig

Progress = Optional[Callable[[int, int, str], None]]


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not match its config / the requested model."""


@dataclasses.dataclass
class ImportReport:
  """What a conversion did (for the CLI summary)."""

  source: str
  source_format: str
  architecture: str
  tensors: int = 0
  parameters: int = 0
  ignored: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)


_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def _st_dtype(code: str):
  if code == "BF16":
    return ml_dtypes.bfloat16
  if code not in _ST_DTYPES:
    raise CheckpointError(f"unsupported safetensors dtype {code!r}")
  return _ST_DTYPES[code]


def read_safetensors_header(path: str) -> tuple[dict, int]:
  """(header without __metadata__, byte offset of the data) of one safetensors file."""
  try:
    with fs.open_bytes(path) as f:
      raw = f.read(8)
      if len(raw) != 8:
        raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
      (n,) = struct.unpack("<Q", raw)
      if n > 100_000_000:
        raise CheckpointError(f"{path}: not a safetensors file (header length {n})")
      header = json.loads(f.read(n))
  except FileNotFoundError:
    raise CheckpointError(f"{path}: file not found") from None
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
  header.pop("__metadata__", None)
  return header, 8 + n


def read_safetensors(path: str, names: Optional[Iterable[str]] = None) -> dict[str, np.ndarray]:
  """name -> numpy array (a copy) for the tensors of one safetensors file. CheckpointError
  naming the file when it is shorter than its header says (truncated)."""
  header, start = read_safetensors_header(path)
  need = start + max((info["data_offsets"][1] for info in header.values()), default=0)
  size = fs.getsize(path)
  if size < need:
    raise CheckpointError(f"{path}: truncated safetensors file: {size:,} bytes, but its header "
                          f"describes {need:,} ({need - size:,} missing); the file was cut "
                          "short (an interrupted copy, download or save): copy it again")
  wanted = header.keys() if names is None else names
  out = {}
  with fs.open_bytes(path) as f:
    for name in wanted:
      info = header[name]
      begin, end = info["data_offsets"]
      f.seek(start + begin)
      buf = f.read(end - begin)
      dtype = np.dtype(_st_dtype(info["dtype"]))
      arr = np.frombuffer(buf, dtype=dtype).reshape(info["shape"])
      out[name] = arr.copy()
  return out


def write_safetensors(tensors: dict[str, np.ndarray], path: str,
                      metadata: Optional[dict] = None) -> None:
  """Writes one safetensors file: straight to a local path; to a remote one (fs) from the
  serialized bytes, held in memory once."""
  tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  metadata = metadata or {"format": "pt"}
  if fs.is_remote(path):
    fs.write_bytes(path, save(tensors, metadata=metadata))
  else:
    save_file(tensors, path, metadata=metadata)


def flatten(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
  """Nested dicts -> {path tuple: leaf}."""
  if hasattr(tree, "items"):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, prefix + (str(k),)))
    return out
  return {prefix: tree}


def unflatten(flat: dict[tuple, Any]) -> dict:
  tree: dict = {}
  for path, leaf in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = leaf
  return tree


def fmt_list(names: Iterable[str], limit: int = 30) -> str:
  names = sorted(names)
  shown = ", ".join(names[:limit])
  return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def shape_hint(cfg: ModelConfig) -> str:
  return (f"vocab_size={cfg.vocab_size}, embedding_size={cfg.embedding_size}, "
          f"hidden_size={cfg.hidden_size}, num_hidden_layers={cfg.num_hidden_layers}, "
          f"num_attention_heads={cfg.num_attention_heads}, "
          f"intermediate_size={cfg.intermediate_size}, "
          f"max_position_embeddings={cfg.max_position_embeddings}, "
          f"type_vocab_size={cfg.type_vocab_size}")


def expected_shapes(model) -> dict[tuple, tuple]:
  """path -> shape of every parameter of `model`, without allocating anything."""
  name = type(model).__name__
  ids = jax.ShapeDtypeStruct((1, 3, 4) if name == "ElectraForMultipleChoice" else (1, 4),
                             jnp.int32)
  if name == "ElectraPretrainingModel":  # (ids, mask, token types, positions [1,2])
    pos = jax.ShapeDtypeStruct((1, 2), jnp.int32)
    variables = jax.eval_shape(lambda i, p: model.init(jax.random.key(0), i, i, i, p), ids, pos)
  else:
    variables = jax.eval_shape(lambda i: model.init(jax.random.key(0), i), ids)
  params = nn.meta.unbox(variables["params"])
  return {path: tuple(leaf.shape) for path, leaf in flatten(params).items()}


def check_params(model, params: dict, what: str = "params") -> None:
  """Raises CheckpointError naming every missing / unexpected / wrongly shaped parameter."""
  expected = expected_shapes(model)
  got = {p: tuple(np.shape(v)) for p, v in flatten(params).items()}
  missing = set(expected) - set(got)
  unknown = set(got) - set(expected)
  bad = [p for p in set(expected) & set(got) if expected[p] != got[p]]
  problems = []
  if missing:
    problems.append(f"missing parameters: {fmt_list('/'.join(p) for p in missing)}")
  if unknown:
    problems.append(f"unexpected parameters: {fmt_list('/'.join(p) for p in unknown)}")
  for p in sorted(bad):
    problems.append(f"{'/'.join(p)} has shape {got[p]} but the model config implies {expected[p]}")
  if problems:
    if hasattr(model, "disc_config"):
      hint = (f"discriminator: {shape_hint(model.disc_config)}; "
              f"generator: {shape_hint(model.gen_config)}")
    else:
      hint = shape_hint(model.config)
    raise CheckpointError(f"{what} do not match {type(model).__name__} "
                          f"({hint}):\n  " + "\n  ".join(problems))


def read_json(path: str) -> dict:
  try:
    return json.loads(fs.read_text(path))
  except FileNotFoundError:
    raise CheckpointError(f"{path}: file not found") from None
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path}: invalid JSON ({e})") from None


def refuse_pickle(path: str) -> None:
  raise CheckpointError(
      f"{path} is a pickle-based PyTorch checkpoint; electra_jax does not unpickle files "
      "(unpickling can run arbitrary code). Convert it to safetensors once, in an environment "
      "you trust, e.g.\n"
      "  python -c \"from transformers import AutoModel; "
      "import sys; AutoModel.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])\" SRC DST\n"
      "(use the matching class, e.g. ElectraForPreTraining or ElectraForMaskedLM, to keep the "
      "heads; save_pretrained writes model.safetensors), or with torch and safetensors:\n"
      "  python -c \"import torch, safetensors.torch as st; "
      "sd = torch.load('pytorch_model.bin', weights_only=True); "
      "st.save_file({k: v.contiguous() for k, v in sd.items() "
      "if not k.endswith('generator_lm_head.weight')}, 'model.safetensors', {'format': 'pt'})\"")
