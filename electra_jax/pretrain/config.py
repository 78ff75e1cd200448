"""Pre-training configuration: frozen dataclasses, their JSON form, and gin resolution.

`TrainConfig` composes the discriminator `ModelConfig` (the generator is derived from it by
`generator_hidden_fraction` / `generator_layer_fraction`), the objective, optimizer, mesh, data,
checkpoint and logging settings (MeshConfig, OptimizerConfig and LogConfig are the runtime's,
shared with fine-tuning: electra_jax.runtime.mesh, .optim, .metrics). Library code takes a
`TrainConfig`; gin is read only by `resolve_config`, which the command line
(`electra_jax.pretrain.train.main`) calls:

    config = resolve_config("small", gin_files=[], gin_bindings=["ModelConfig.hidden_size = 64"])

Gin selectors are the class names: ModelConfig, ObjectiveConfig, OptimizerConfig, MeshConfig,
DataConfig, CheckpointConfig, LogConfig, ProbeConfig, TrainConfig (scalar fields of TrainConfig only). Every
binding applies or is refused with the right spelling: a bare `hidden_size = 64` (which gin alone
would read as an unused macro and ignore), a scoped binding, an unknown selector or field, a value
of the wrong type and a syntax error are ValueErrors (electra_jax.runtime.gin, the gin edge that
fine-tuning shares).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

import gin

from electra_jax.floor import fs
from electra_jax.model.config import ModelConfig, generator_config, preset
from electra_jax.model.pretraining import EMBEDDING_SHARING
from electra_jax.pretrain.objective import ObjectiveConfig
from electra_jax.pretrain.probe import ProbeConfig
from electra_jax.runtime import gin as gin_edge
from electra_jax.runtime.mesh import MeshConfig
from electra_jax.runtime.metrics import LogConfig
from electra_jax.runtime.optim import OptimizerConfig


def _experiments_dir() -> Path:
  """The gin experiment files: electra_jax/experiments in an installed wheel (pyproject maps the
  top-level experiments/ there), else experiments/ at the top of a source checkout."""
  package = Path(__file__).resolve().parents[1]
  installed = package / "experiments"
  return installed if installed.is_dir() else package.parent / "experiments"


EXPERIMENTS_DIR = _experiments_dir()


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where pre-training batches come from and how held-out evaluation reads them.

  data_dir: a shard directory built by `data_pipelines` (with its manifest). None: the built-in
    default data (small public-domain corpus + SentencePiece tokenizer trained on it), built on
    first use under `cache_dir` (None: ~/.cache/electra_jax).
  seq_len: tokens per row; global_batch_size: rows per step over all processes.
  layout: the shards' row layout (data_pipelines.shard_format). None: the built-in default data
    is packed (several whole examples per row, each attending only to itself; no compute spent
    on padding) and a data_dir is read as it was built. "packed" / "unpacked" (one example per
    row, the official layout): the default data is built so, and a data_dir built otherwise is
    refused naming the builder's --layout flag.
  seed: data order seed; the global batch at step s is a pure function of (seed, s).
  eval_every: steps between evaluations on `eval_split` (0: never); eval_batches: batches per
    evaluation (the same batches every time).
  on_corrupt_shard: what a missing, truncated or corrupted shard does: "error" stops the run with
    one error naming the shard and the step; "skip" trains on, its unreadable examples replaced
    by copies of readable ones of the same window (deterministically), with a warning per bad
    shard (data_pipelines.pretraining_reader).
  """

  data_dir: Optional[str] = None
  cache_dir: Optional[str] = None
  seq_len: int = 128
  global_batch_size: int = 128
  seed: int = 0
  eval_split: str = "eval"
  eval_every: int = 5000
  eval_batches: int = 20
  on_corrupt_shard: str = "error"
  layout: Optional[str] = None

  def __post_init__(self):
    for name in ("seq_len", "global_batch_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"DataConfig.{name}={getattr(self, name)} must be positive")
    if self.on_corrupt_shard not in ("error", "skip"):
      raise ValueError(f"DataConfig.on_corrupt_shard={self.on_corrupt_shard!r}; expected 'error' "
                       "or 'skip'")
    if self.layout not in (None, "packed", "unpacked"):
      raise ValueError(f"DataConfig.layout={self.layout!r}; expected None, 'packed' or 'unpacked'")
    if self.eval_every < 0 or self.eval_batches <= 0:
      raise ValueError(f"DataConfig.eval_every={self.eval_every} must be >= 0 and "
                       f"eval_batches={self.eval_batches} > 0")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """save_every: steps between checkpoints (the last step is always saved; 0: only the last).
  keep_latest: how many recent checkpoints to keep; keep_every: additionally keep every step that
  is a multiple of this (for evaluating partially trained models; None: none).
  async_save: write in a background thread while training continues."""

  save_every: int = 10000
  keep_latest: int = 3
  keep_every: Optional[int] = None
  async_save: bool = True

  def __post_init__(self):
    if self.save_every < 0 or self.keep_latest < 1:
      raise ValueError(f"CheckpointConfig.save_every={self.save_every} must be >= 0 and "
                       f"keep_latest={self.keep_latest} >= 1")
    if self.keep_every is not None and self.keep_every <= 0:
      raise ValueError(f"CheckpointConfig.keep_every={self.keep_every} must be positive or None")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a pre-training run needs.

  model: the discriminator; the generator is `generator_config(model, generator_hidden_fraction,
    generator_layer_fraction)` (paper: 1/4 small and large, 1/3 base; 1.0 for Small++). In gin,
    `ModelConfig.size = NAME` starts both from config.PRESETS[NAME] (the ModelConfig and
    TrainConfig.generator_hidden_fraction bindings then change it).
  num_train_steps: steps to run (None: optimizer.total_steps, the schedule length).
  init_from: weights to start from (continued pre-training; fresh optimizer slots): an official
    TF checkpoint (both networks), an electra_jax pre-training workdir / step dir or safetensors
    export (the joint model), or a Hugging Face discriminator directory (with
    `init_generator_from` a Hugging Face generator directory; without it the generator starts
    fresh). `OptimizerConfig.schedule_offset` says where the learning-rate schedule resumes.
  probe: a linear probe of the discriminator's frozen features on a labelled task at every
    evaluation, beside a randomly initialised network's (electra_jax.pretrain.probe; off unless
    ProbeConfig.task is set).
  """

  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  generator_hidden_fraction: float = 0.25
  generator_layer_fraction: float = 1.0
  embedding_sharing: str = "tied"
  objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
  optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
  mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
  log: LogConfig = dataclasses.field(default_factory=LogConfig)
  probe: ProbeConfig = dataclasses.field(default_factory=ProbeConfig)
  num_train_steps: Optional[int] = None
  init_from: Optional[str] = None
  init_generator_from: Optional[str] = None

  def __post_init__(self):
    if self.embedding_sharing not in EMBEDDING_SHARING:
      raise ValueError(f"TrainConfig.embedding_sharing={self.embedding_sharing!r}; expected one "
                       f"of {EMBEDDING_SHARING}")
    if self.num_train_steps is not None and self.num_train_steps <= 0:
      raise ValueError(f"TrainConfig.num_train_steps={self.num_train_steps} must be positive")
    if self.init_generator_from is not None and self.init_from is None:
      raise ValueError("TrainConfig.init_generator_from needs TrainConfig.init_from (the "
                       "discriminator) as well")
    if self.data.seq_len > self.model.max_position_embeddings:
      raise ValueError(f"DataConfig.seq_len={self.data.seq_len} exceeds "
                       f"ModelConfig.max_position_embeddings={self.model.max_position_embeddings}")
    self.generator  # validates the fractions

  @property
  def generator(self) -> ModelConfig:
    return generator_config(self.model, self.generator_hidden_fraction,
                            self.generator_layer_fraction)

  @property
  def train_steps(self) -> int:
    return self.num_train_steps or self.optimizer.total_steps

  def replace(self, **changes) -> "TrainConfig":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    """JSON-able nested dict; "generator" holds the derived generator ModelConfig fields."""
    d = dataclasses.asdict(self)
    d["generator"] = dataclasses.asdict(self.generator)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "TrainConfig":
    """Inverse of `to_dict` (the derived "generator" entry is checked, not read)."""
    d = dict(d)
    stored_gen = d.pop("generator", None)
    kwargs = {}
    for f in dataclasses.fields(cls):
      if f.name not in d:
        continue
      sub = _NESTED.get(f.name)
      kwargs[f.name] = _build(sub, d.pop(f.name)) if sub else _tuples(d.pop(f.name))
    if d:
      raise ValueError(f"unknown TrainConfig keys {sorted(d)}")
    config = cls(**kwargs)
    if stored_gen is not None and _build(ModelConfig, stored_gen) != config.generator:
      raise ValueError("stored generator config does not match the generator derived from "
                       "model + generator fractions")
    return config


_NESTED = {"model": ModelConfig, "objective": ObjectiveConfig, "optimizer": OptimizerConfig,
           "mesh": MeshConfig, "data": DataConfig, "checkpoint": CheckpointConfig,
           "log": LogConfig, "probe": ProbeConfig}


def _tuples(value: Any) -> Any:
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _build(cls, fields: dict):
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"unknown {cls.__name__} fields {unknown}")
  return cls(**{k: _tuples(v) for k, v in fields.items()})


def save_config_json(config: TrainConfig, path: str) -> None:
  """`config` as JSON into `path` (local or a tf.io.gfile URL, electra_jax.floor.fs)."""
  fs.write_text(path, config_json(config))


def config_json(config: TrainConfig) -> str:
  """The text of WORKDIR/config.json: `config.to_dict()` as indented JSON."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"


def load_config_json(path: str) -> TrainConfig:
  return TrainConfig.from_dict(json.loads(fs.read_text(path)))


# ---------------------------------------------------------------------------------------------
# Gin: used only at the command-line edge (electra_jax.runtime.gin).


def list_experiments() -> list[str]:
  """Names accepted by --experiment: paths of experiments/*.gin without the suffix (common.gin,
  the settings the sizes share, is not an experiment by itself)."""
  return sorted(str(p.relative_to(EXPERIMENTS_DIR).with_suffix(""))
                for p in EXPERIMENTS_DIR.rglob("*.gin") if p.name != "common.gin")


def experiment_path(name: str) -> Path:
  """experiments/NAME.gin; ValueError with close matches when there is none."""
  path = EXPERIMENTS_DIR / f"{name}.gin"
  if not path.is_file():
    names = list_experiments()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown experiment {name!r}.{hint} Available: {', '.join(names)}")
  return path


@functools.lru_cache(maxsize=1)
def _search_experiments() -> None:
  """Lets `include 'common.gin'` find experiments/ from any working directory (once)."""
  gin.add_config_file_search_path(str(EXPERIMENTS_DIR))


def _model_configurable():
  """ModelConfig's configurable also takes `size`, a name of PRESETS whose fields the other
  bindings then change (`ModelConfig.size = 'small'`)."""
  hints = {**typing.get_type_hints(ModelConfig), "size": Optional[str]}
  signature = inspect.signature(ModelConfig)
  size = inspect.Parameter("size", inspect.Parameter.KEYWORD_ONLY, default=None)
  signature = signature.replace(parameters=[*signature.parameters.values(), size])

  def build(size=None, **fields):
    return preset(size).model.replace(**fields) if size else ModelConfig(**fields)

  return gin_edge.configurable("ModelConfig", signature, hints, build)


def _train_scalar_fields() -> list[str]:
  return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NESTED]


def _train_configurable():
  """TrainConfig's configurable binds its scalar fields only and returns them as a dict."""
  scalars = _train_scalar_fields()
  params = [p for n, p in inspect.signature(TrainConfig).parameters.items() if n in scalars]
  return gin_edge.configurable("TrainConfig", inspect.Signature(params),
                               typing.get_type_hints(TrainConfig), lambda **kw: kw)


def _selector_fields() -> dict[str, list[str]]:
  """{gin selector: its field names} for every pre-training selector."""
  fields = {cls.__name__: gin_edge.field_names(cls) for cls in _NESTED.values()}
  fields["ModelConfig"].append("size")
  fields["TrainConfig"] = _train_scalar_fields()
  return fields


def resolve_config(experiment: Optional[str], gin_files: Sequence[str] = (),
                   gin_bindings: Sequence[str] = ()) -> TrainConfig:
  """Parses experiments/EXPERIMENT.gin, then `gin_files`, then `gin_bindings` (later wins),
  through `electra_jax.runtime.gin.parse` (its errors: unknown experiment, binding target or
  field with close matches, a binding gin would ignore, a value of the wrong type, a syntax
  error with the file and line)."""
  files = [str(experiment_path(experiment))] if experiment else []
  _search_experiments()
  configurables = {name: (_model_configurable() if cls is ModelConfig
                          else gin_edge.dataclass_configurable(cls))
                   for name, cls in _NESTED.items()}
  train = _train_configurable()

  def build() -> TrainConfig:
    nested = {name: make() for name, make in configurables.items()}
    scalars = train()
    size = gin_edge.query("ModelConfig.size")
    if size and "generator_hidden_fraction" not in scalars:
      scalars["generator_hidden_fraction"] = preset(size).generator_hidden_fraction
    return TrainConfig(**nested, **scalars)

  return gin_edge.parse([*files, *gin_files], gin_bindings, _selector_fields(), build, _NESTED)


def to_gin(config: TrainConfig) -> str:
  """Every field of `config` as gin bindings; `resolve_config(None, [file])` rebuilds it."""
  lines = ["# Resolved pre-training config (every field)."]
  for name, cls in _NESTED.items():
    sub = getattr(config, name)
    lines += [f"{cls.__name__}.{f.name} = {getattr(sub, f.name)!r}"
              for f in dataclasses.fields(sub)]
  lines += [f"TrainConfig.{n} = {getattr(config, n)!r}" for n in _train_scalar_fields()]
  return "\n".join(lines) + "\n"
