"""Pre-training configuration: frozen dataclasses, their JSON form, and gin resolution.

`TrainConfig` composes the discriminator `ModelConfig` (the generator is derived from it by
`generator_hidden_fraction` / `generator_layer_fraction`), the objective, optimizer, mesh, data,
checkpoint and logging settings. Library code takes a `TrainConfig`; gin is read only by
`resolve_config`, which the command line (`electra_jax.train.main`) calls:

    config = resolve_config("small", gin_files=[], gin_bindings=["ModelConfig.hidden_size = 64"])

Gin selectors are the class names: ModelConfig, ObjectiveConfig, OptimizerConfig, MeshConfig,
DataConfig, CheckpointConfig, LogConfig, TrainConfig (scalar fields of TrainConfig only). Every
binding applies or is refused with the right spelling: a bare `hidden_size = 64` (which gin alone
would read as an unused macro and ignore), a scoped binding, an unknown selector or field, a value
of the wrong type and a syntax error are ValueErrors (see `check_bindings`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import logging
import re
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

import gin
from gin import config_parser

from electra_jax.config import ModelConfig, generator_config, preset
from electra_jax.modeling import EMBEDDING_SHARING
from electra_jax.objective import ObjectiveConfig
from electra_jax.optim import OptimizerConfig
from electra_jax.sharding import MeshConfig

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"  # shipped as package data


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where pre-training batches come from and how held-out evaluation reads them.

  data_dir: a shard directory built by `data_pipelines` (with its manifest). None: the built-in
    default data (small public-domain corpus + SentencePiece tokenizer trained on it), built on
    first use under `cache_dir` (None: ~/.cache/electra_jax).
  seq_len: tokens per example; global_batch_size: examples per step over all processes.
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

  def __post_init__(self):
    for name in ("seq_len", "global_batch_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"DataConfig.{name}={getattr(self, name)} must be positive")
    if self.on_corrupt_shard not in ("error", "skip"):
      raise ValueError(f"DataConfig.on_corrupt_shard={self.on_corrupt_shard!r}; expected 'error' "
                       "or 'skip'")
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
class LogConfig:
  """log_every: steps between metric records (metrics.jsonl, TensorBoard, console).
  profile_steps: (first, last) step of a JAX profiler trace written to WORKDIR/profile; None: off.
  """

  log_every: int = 100
  tensorboard: bool = True
  progress_bar: bool = True
  profile_steps: Optional[tuple] = None

  def __post_init__(self):
    if self.log_every <= 0:
      raise ValueError(f"LogConfig.log_every={self.log_every} must be positive")
    if self.profile_steps is not None:
      if len(self.profile_steps) != 2 or not 0 < self.profile_steps[0] <= self.profile_steps[1]:
        raise ValueError(f"LogConfig.profile_steps={self.profile_steps}: expected (first, last) "
                         "with 0 < first <= last")


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
           "log": LogConfig}


def _tuples(value: Any) -> Any:
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _build(cls, fields: dict):
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"unknown {cls.__name__} fields {unknown}")
  return cls(**{k: _tuples(v) for k, v in fields.items()})


def save_config_json(config: TrainConfig, path: Path) -> None:
  Path(path).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def load_config_json(path: Path) -> TrainConfig:
  return TrainConfig.from_dict(json.loads(Path(path).read_text()))


# ---------------------------------------------------------------------------------------------
# Gin: used only at the command-line edge.

_GIN_CLASSES = (ModelConfig, ObjectiveConfig, OptimizerConfig, MeshConfig, DataConfig,
                CheckpointConfig, LogConfig)


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


def _fits(value: Any, hint: Any) -> bool:
  """Whether `value` may be bound to a field annotated `hint` (ints fit floats, bools fit only
  bools, lists fit tuples)."""
  if typing.get_origin(hint) is typing.Union:
    return any(_fits(value, h) for h in typing.get_args(hint))
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is tuple:
    return isinstance(value, (tuple, list))
  return not isinstance(hint, type) or isinstance(value, hint)


def check_value_types(selector: str, hints: dict, values: dict) -> None:
  """ValueError naming `selector.FIELD`, the value and the expected type for a value of `values`
  that does not fit its field's annotation in `hints` (e.g. `hidden_size = "64"`, which would
  otherwise fail deep inside validation, or `tensorboard = "no"`, which would read as True)."""
  for name, value in values.items():
    hint = hints.get(name)
    if hint is None or _fits(value, hint):
      continue
    expected = " or ".join("None" if t is type(None) else t.__name__
                           for t in typing.get_args(hint) or (hint,))
    unquoted = ""
    if isinstance(value, str):
      try:
        fits_unquoted = _fits(ast.literal_eval(value), hint)
      except (ValueError, SyntaxError):
        fits_unquoted = False
      if fits_unquoted:
        unquoted = f"; without the quotes: {selector}.{name} = {value}"
    raise ValueError(f"{selector}.{name} = {value!r}: expected {expected}{unquoted}")


def _gin_factory(cls):
  """A function with `cls`'s signature that builds a plain `cls` (so gin validates names, and
  `check_value_types` the values). ModelConfig's also takes `size`, a name of config.PRESETS
  whose fields the other bindings then change (`ModelConfig.size = 'small'`)."""
  hints = typing.get_type_hints(cls)
  signature = inspect.signature(cls)
  if cls is ModelConfig:
    hints["size"] = Optional[str]
    size = inspect.Parameter("size", inspect.Parameter.KEYWORD_ONLY, default=None)
    signature = signature.replace(parameters=[*signature.parameters.values(), size])

  def factory(**kwargs):
    check_value_types(cls.__name__, hints, kwargs)
    size = kwargs.pop("size", None)
    return preset(size).model.replace(**kwargs) if size else cls(**kwargs)

  factory.__signature__ = signature
  factory.__name__ = cls.__name__
  return factory


def _train_scalar_fields() -> list[str]:
  return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NESTED]


def _gin_train_factory():
  scalars = _train_scalar_fields()
  params = [p for n, p in inspect.signature(TrainConfig).parameters.items() if n in scalars]
  hints = typing.get_type_hints(TrainConfig)

  def factory(**kwargs):
    check_value_types("TrainConfig", hints, kwargs)
    return kwargs

  factory.__signature__ = inspect.Signature(params)
  factory.__name__ = "TrainConfig"
  return factory


def _fields_of(selector: str) -> list[str]:
  if selector == "TrainConfig":
    return _train_scalar_fields()
  for cls in _GIN_CLASSES:
    if cls.__name__ == selector:
      return [f.name for f in dataclasses.fields(cls)] + (["size"] if cls is ModelConfig else [])
  return []


def _selector_fields() -> dict[str, list[str]]:
  """{gin selector: its field names} for every pre-training selector."""
  return {s: _fields_of(s) for s in [c.__name__ for c in _GIN_CLASSES] + ["TrainConfig"]}


def _owners(field: str, fields: dict) -> list[str]:
  return [selector for selector, names in fields.items() if field in names]


def _with_quotes(line: str, fields: dict) -> Optional[str]:
  """`line` (`SELECTOR.FIELD = VALUE`) with VALUE quoted as a string, and a bare FIELD given the
  one selector that has it; None when `line` is no such assignment."""
  key, eq, value = (part.strip() for part in line.partition("="))
  if not eq or not value or not re.fullmatch(r"[A-Za-z_][\w./]*", key):
    return None
  owners = _owners(key, fields)
  if "." not in key and len(owners) == 1:
    key = f"{owners[0]}.{key}"
  unquoted = value.strip("'\"")
  return f"{key} = {json.dumps(unquoted)}"


def _bare_field_hint(field: str, value: str, fields: dict) -> str:
  """'did you mean SELECTOR.FIELD = VALUE?' for a field given without its selector."""
  candidates = [(s, field) for s in _owners(field, fields)]
  unknown = ""
  if not candidates:
    every = sorted({name for names in fields.values() for name in names})
    close = difflib.get_close_matches(field, every, n=3, cutoff=0.6)
    candidates = [(s, name) for name in close for s in _owners(name, fields)]
    unknown = f"no config has a field {field!r}; "
  if not candidates:
    return (f"{unknown}bindings look like SELECTOR.FIELD = VALUE with SELECTOR one of "
            f"{', '.join(fields)}")
  return unknown + "did you mean " + " or ".join(f"'{s}.{name} = {value}'"
                                                 for s, name in candidates) + "?"


def _syntax_message(err: SyntaxError) -> str:
  """Gin's syntax error message without the Python-parser line before its last."""
  return err.msg.strip().splitlines()[-1].strip()


def check_bindings(bindings: Sequence[str], fields: dict) -> None:
  """Refuses, before gin reads them, the bindings that gin would ignore or cannot parse.

  `fields`: {gin selector: its field names}. Accepted: `SELECTOR.FIELD = VALUE` (gin then checks
  SELECTOR and FIELD, the factories the value's type) and `include 'FILE.gin'`. ValueError with
  the right spelling for a bare `FIELD = VALUE` (gin reads it as a macro, which no config uses,
  and ignores it), a scoped `scope/SELECTOR.FIELD = VALUE` (no config is built in a scope), an
  import, and a syntax error (values are Python literals: a string needs quotes). Macros are
  not bindings; define them in a gin file.
  """

  class Unresolved(config_parser.ParserDelegate):
    """Parses @references and %macros without resolving them (gin does that later)."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
      return None

    def macro(self, macro_name):
      return None

  for binding in bindings:
    try:
      statements = list(config_parser.ConfigParser(binding, Unresolved()))
    except SyntaxError as err:
      fixed = _with_quotes(binding, fields)
      hint = (f"values are Python literals, so a string needs quotes inside the shell's: "
              f"'{fixed}'" if fixed else
              f"bindings look like SELECTOR.FIELD = VALUE with SELECTOR one of "
              f"{', '.join(fields)}")
      raise ValueError(f"cannot parse gin binding {binding!r} ({_syntax_message(err)}); "
                       f"{hint}") from None
    for st in statements:
      if isinstance(st, (config_parser.IncludeStatement, config_parser.BlockDeclaration)):
        continue
      if not isinstance(st, config_parser.BindingStatement):
        raise ValueError(f"gin binding {binding!r}: only SELECTOR.FIELD = VALUE bindings and "
                         "include 'FILE.gin' are accepted")
      value = st.location.line_content.partition("=")[2].strip()
      if not st.arg_name:  # gin's macro syntax: `NAME = VALUE`
        raise ValueError(f"gin binding {binding!r} names no config, so gin would read it as an "
                         f"unused macro and ignore it; "
                         f"{_bare_field_hint(st.selector, value, fields)}")
      if st.scope:
        raise ValueError(f"gin binding {binding!r}: no config is built in scope "
                         f"{st.scope!r}, so gin would ignore it; write "
                         f"'{st.selector}.{st.arg_name} = {value}'")


def explain_gin_syntax_error(err: SyntaxError, fields: dict) -> ValueError:
  """A gin file's syntax error as one ValueError naming the file and line, with the quoting a
  string value needs when that is the likely fix."""
  line = (err.text or "").strip()
  fixed = _with_quotes(line, fields)
  hint = f"\nValues are Python literals, so a string needs quotes: {fixed}" if fixed else ""
  return ValueError(f"cannot parse gin file {err.filename}, line {err.lineno} "
                    f"({_syntax_message(err)}):\n  {line}{hint}")


def explain_gin_error(err: Exception, fields: dict, nested: Optional[dict] = None) -> Exception:
  """Rewrites gin's errors as one clear ValueError: syntax errors in files, unknown selectors and
  parameters (with close matches), undefined macros, and our own validation errors (without
  gin's "In call to configurable" suffix). Other errors come back unchanged. `fields`: {gin
  selector: its field names}; `nested`: {TrainConfig field: its config class} (pre-training),
  for the hint that nested configs bind through their own class. Pre-training and fine-tuning
  both explain their errors here."""
  nested = nested or {}
  if isinstance(err, SyntaxError):
    return explain_gin_syntax_error(err, fields)
  text = str(err)
  selectors = list(fields)
  m = re.search(r"No configurable matching '([^']+)'", text)
  if m:
    attr = nested.get(m.group(1))
    close = ([attr.__name__] if attr else []) or difflib.get_close_matches(
        m.group(1), selectors, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown gin binding target {m.group(1)!r}.{hint} Known: "
                      f"{', '.join(selectors)}.\n{text}")
  m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", text)
  if m:
    close = difflib.get_close_matches(m.group(2), fields.get(m.group(1), []), n=3, cutoff=0.5)
    close += [f"{s}.{m.group(2)}" for s in _owners(m.group(2), fields)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    nested = (" (nested configs are bound through their own class, e.g. ModelConfig.hidden_size)"
              if m.group(2) in nested else "")
    return ValueError(f"unknown gin binding {m.group(1)}.{m.group(2)}.{hint}{nested} "
                      f"Fields: {', '.join(fields.get(m.group(1), []))}.\n{text}")
  m = re.search(r"In call to configurable 'macro' .* in scope '([^']+)'", text)
  if isinstance(err, TypeError) and m:
    return ValueError(f"gin macro %{m.group(1)} is used but never defined; define it in a gin "
                      f"file ({m.group(1)} = VALUE) or bind the field directly")
  if isinstance(err, ValueError) and "\n  In call to configurable" in text:
    return ValueError(text.split("\n  In call to configurable")[0])
  return err


@functools.lru_cache(maxsize=1)
def _register_gin() -> tuple[dict, Any]:
  """Registers one gin configurable per config class (once per process)."""
  gin.add_config_file_search_path(str(EXPERIMENTS_DIR))
  factories = {cls.__name__: gin.external_configurable(_gin_factory(cls), name=cls.__name__)
               for cls in _GIN_CLASSES}
  return factories, gin.external_configurable(_gin_train_factory(), name="TrainConfig")


def _quiet_include_search(record: logging.LogRecord) -> bool:
  """Drops gin's "Path not found" log lines: an `include 'base.gin'` is looked up in the working
  directory before experiments/, and each miss is logged although the include then succeeds."""
  return not str(record.msg).startswith("Path not found")


def _bound(name: str) -> Any:
  """The value gin binds to `name` (SELECTOR.FIELD), or None."""
  try:
    return gin.query_parameter(name)
  except ValueError:
    return None


def resolve_config(experiment: Optional[str], gin_files: Sequence[str] = (),
                   gin_bindings: Sequence[str] = ()) -> TrainConfig:
  """Parses experiments/EXPERIMENT.gin, then `gin_files`, then `gin_bindings` (later wins).

  Raises ValueError naming an unknown experiment, binding target or field (with close matches),
  a binding gin would ignore (`check_bindings`), a value of the wrong type, or a syntax error
  (with the file and line, or the binding). Gin's bindings are cleared before and after, so
  nothing leaks into library code.
  """
  files = [str(experiment_path(experiment))] if experiment else []
  for f in gin_files:
    if not Path(f).is_file():
      raise FileNotFoundError(f"gin file {f} does not exist")
    files.append(str(f))
  check_bindings(gin_bindings, _selector_fields())
  factories, train_factory = _register_gin()
  gin.clear_config()
  root_logger = logging.getLogger()
  root_logger.addFilter(_quiet_include_search)
  try:
    gin.parse_config_files_and_bindings(files, list(gin_bindings), finalize_config=False)
    nested = {name: factories[cls.__name__]() for name, cls in _NESTED.items()}
    scalars = train_factory()
    size = _bound("ModelConfig.size")
    if size and "generator_hidden_fraction" not in scalars:
      scalars["generator_hidden_fraction"] = preset(size).generator_hidden_fraction
    return TrainConfig(**nested, **scalars)
  except (ValueError, SyntaxError, TypeError) as err:
    raise explain_gin_error(err, _selector_fields(), _NESTED) from None
  finally:
    root_logger.removeFilter(_quiet_include_search)
    gin.clear_config()


def to_gin(config: TrainConfig) -> str:
  """Every field of `config` as gin bindings; `resolve_config(None, [file])` rebuilds it."""
  lines = ["# Resolved pre-training config (every field)."]
  for name, cls in _NESTED.items():
    sub = getattr(config, name)
    lines += [f"{cls.__name__}.{f.name} = {getattr(sub, f.name)!r}"
              for f in dataclasses.fields(sub)]
  lines += [f"TrainConfig.{n} = {getattr(config, n)!r}" for n in _train_scalar_fields()]
  return "\n".join(lines) + "\n"
