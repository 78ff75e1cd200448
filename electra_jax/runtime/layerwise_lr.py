"""Layer-wise learning-rate decay multipliers for fine-tuning (ELECTRA paper §3.3, Table 7).

Each parameter's learning rate is the peak rate times decay^exponent, with the exponent set by
its depth in the network. For a backbone with n transformer layers (named layer_0 ... layer_{n-1},
layer_0 nearest the input):

mode="correct" (the intended rule: every step towards the input multiplies by `decay` once)
  task head (anything outside the backbone)   decay^0 = 1
  encoder layer_i                             decay^(n - i)      top layer_{n-1}: decay^1
  embeddings and embeddings_project           decay^(n + 1)

mode="official" (google-research/electra model/optimization.py `_get_layer_lrs`: depths
embeddings 0, layer_i i + 1, task head n + 2, exponent (n + 2 - depth), so the top layer gets
decay^2 and there is no depth n + 1)
  task head                                   decay^0 = 1
  encoder layer_i                             decay^(n + 1 - i)  top layer_{n-1}: decay^2
  embeddings and embeddings_project           decay^(n + 2)

decay = 1.0 disables the decay (all multipliers 1).
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax

MODES = ("correct", "official")
_LAYER = re.compile(r"layer_(\d+)$")


def layer_exponent(path: tuple[str, ...], n_layers: int, mode: str = "correct") -> int:
  """The decay exponent of the parameter at `path` (a tuple of dict keys from the model root).

  Backbone parameters live under a key "electra" (or under "embeddings"/"encoder" at the root
  for a bare backbone); anything else is the task head.
  """
  if mode not in MODES:
    raise ValueError(f"layer-wise decay mode {mode!r}; expected one of {MODES}")
  extra = 1 if mode == "official" else 0
  names = list(path)
  if "electra" in names:
    names = names[names.index("electra") + 1:]
  elif not names or names[0] not in ("embeddings", "embeddings_project", "encoder"):
    return 0
  if names and names[0] in ("embeddings", "embeddings_project"):
    return n_layers + 1 + extra
  if len(names) >= 2 and names[0] == "encoder":
    match = _LAYER.match(names[1])
    if match:
      i = int(match.group(1))
      if i >= n_layers:
        raise ValueError(f"parameter {'/'.join(path)} is in layer {i} but the model has "
                         f"{n_layers} layers")
      return n_layers - i + extra
  raise ValueError(f"cannot place backbone parameter {'/'.join(path)} at a depth")


def layerwise_lr_multipliers(params: Any, decay: float, n_layers: int,
                             mode: str = "correct") -> Any:
  """A pytree like `params` (boxed or not) of Python floats decay^exponent per leaf."""
  if not 0 < decay <= 1:
    raise ValueError(f"layer-wise lr decay must be in (0, 1], got {decay}")
  params = nn.unbox(params)

  def leaf(path, _):
    keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    return float(decay ** layer_exponent(keys, n_layers, mode))

  return jax.tree_util.tree_map_with_path(leaf, params)
