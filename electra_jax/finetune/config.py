"""Fine-tuning configuration: one frozen dataclass plus the paper's per-size/per-task defaults.

Fields left as None take the ELECTRA paper's defaults (Table 7, and the official
configure_finetuning.py where the paper is silent):

  size                      small      base      large
  learning rate             3e-4       1e-4      5e-5
  layer-wise lr decay       0.8        0.8       0.9

  weight decay 0, batch 32, warmup 10% of the steps, epochs 3 (RTE and STS-B 10, SQuAD 2),
  max sequence length 128 (SQuAD 512, chunking 256), SQuAD doc stride 128, max query length 64,
  n-best 20, max answer length 30.

The size comes from `size`, or else from the initial model's hidden size (< 128 tiny, <= 256
small, <= 768 base, larger large). `size="tiny"` is the 2-layer, hidden-32 model of
config.PRESETS for CPU demos and tests (for random init); it fine-tunes with the small defaults.

Library code takes a `FinetuneConfig`; gin is read only by `resolve_config` at the command line:
bindings look like `FinetuneConfig.learning_rate = 1e-4`, `MeshConfig.fsdp = 2` or
`LogConfig.progress_bar = False` (the runtime's MeshConfig and LogConfig, which pre-training
shares, nested as `mesh` and `log`); one gin would ignore (a bare `learning_rate = 1e-4`), a
value of the wrong type or a syntax error is a ValueError with the right spelling
(electra_jax.runtime.gin, the gin edge pre-training shares).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
import warnings
from typing import Any, Optional, Sequence

from data_pipelines import hf_source
from electra_jax.finetune.tasks import Task, get_task, with_columns
from electra_jax.model import config as model_configs
from electra_jax.model.config import ModelConfig
from electra_jax.runtime import gin as gin_edge
from electra_jax.runtime.mesh import MeshConfig
from electra_jax.runtime.metrics import LogConfig

LEARNING_RATE = {"small": 3e-4, "base": 1e-4, "large": 5e-5}
LAYERWISE_LR_DECAY = {"small": 0.8, "base": 0.8, "large": 0.9}
SIZES = tuple(model_configs.PRESETS)
SELECT = ("final", "best")
# Fine-tuning's logging defaults: LogConfig's, but a record every 10 steps (pre-training: 100).
FINETUNE_LOG = LogConfig(log_every=10)
# The flat logging fields FinetuneConfig had before it nested LogConfig as `log`: old name ->
# LogConfig field. For one release they still work (keywords, attribute reads and gin bindings
# such as `FinetuneConfig.progress = False`), with a DeprecationWarning naming the new spelling.
DEPRECATED_LOG_FIELDS = {"progress": "progress_bar", "log_every": "log_every",
                         "tensorboard": "tensorboard", "curves": "curves",
                         "wandb_project": "wandb_project", "wandb_mode": "wandb_mode"}


def _warn_deprecated(name: str) -> None:
  """The DeprecationWarning for the old flat field `name` (DEPRECATED_LOG_FIELDS), attributed to
  the caller of the FinetuneConfig method that met it."""
  new = DEPRECATED_LOG_FIELDS[name]
  warnings.warn(f"FinetuneConfig.{name} is deprecated and goes in the next release; write "
                f"LogConfig.{new} (gin: `LogConfig.{new} = ...`; Python: "
                f"FinetuneConfig(log=dataclasses.replace(FINETUNE_LOG, {new}=...)), read as "
                f"config.log.{new})", DeprecationWarning, stacklevel=3)


def _accepts_deprecated_log_fields(cls):
  """Lets `cls.__init__` (and so `replace`) take the DEPRECATED_LOG_FIELDS keywords: each is
  applied to `log` (the one given, else the config's own default) with a DeprecationWarning."""
  init = cls.__init__

  @functools.wraps(init)
  def __init__(self, *args, **fields):
    flat = {name: fields.pop(name) for name in list(fields) if name in DEPRECATED_LOG_FIELDS}
    for name in flat:
      _warn_deprecated(name)
    if flat:
      fields["log"] = dataclasses.replace(
          fields.get("log", FINETUNE_LOG),
          **{DEPRECATED_LOG_FIELDS[name]: value for name, value in flat.items()})
    init(self, *args, **fields)

  cls.__init__ = __init__
  return cls


@_accepts_deprecated_log_fields
@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """One fine-tuning run (several seeds) of one task.

  task: a name from electra_jax.finetune.tasks (e.g. "sst2", "MNLI", "squad2.0", "chunk"), or
    for your own data "classification", "regression", "multilabel" or "tagging" (README
    "Fine-tune on your own data").
  text_column, text_pair_column, label_column: the columns of your data an own-data task reads
    (None: text / no pair / label; multilabel: labels; tagging: tokens and tags).
  init: a Hugging Face ELECTRA directory or Hub model id (ORG/NAME, e.g.
    "google/electra-small-discriminator": fetched into the Hugging Face cache), an official TF
    checkpoint, an electra_jax pre-training checkpoint (its discriminator), or "random"
    (architecture `size` + `model_overrides`, vocabulary size from the tokenizer).
  data_dir: directory holding the task's native files (GLUE: DATA_DIR/SST-2/train.tsv or
    DATA_DIR/train.tsv), or an hf: spec, the task's splits in a Hugging Face dataset
    (data_pipelines.hf_source, pip install "electra_jax[hf]"):
      hf:nyu-mll/glue (hf:OWNER/NAME or hf:NAME, a Hub dataset; its config the task's GLUE
        config, sst2, mnli, ...; hf:OWNER/NAME/CONFIG or ?config= names another),
        hf:rajpurkar/squad, hf:rajpurkar/squad_v2 (the default config); options config,
        data_dir, revision;
      hf:parquet|json|arrow|csv?data_files.SPLIT=PATTERN[,PATTERN...]&... (local files per
        split, e.g. data_files.train=/d/train.parquet&data_files.validation=/d/dev.parquet);
      hf:DIR (a DatasetDict.save_to_disk directory, or a directory of data files).
    Splits are named as in TFDS (Task.tfds_splits: train, validation, test; MNLI
    validation_matched, validation_mismatched, test_matched, test_mismatched); columns as in
    nyu-mll/glue (the GLUE text columns, label, idx) and rajpurkar/squad (id, question, context,
    answers); class ids map to labels as TFDS's do (Task.tfds_labels). A Hub dataset in the
    cache reads offline with HF_DATASETS_OFFLINE=1.
    tfds=True reads `task.tfds_name` instead (tfds_data_dir: TFDS's).
  tokenizer: spec for data_pipelines.tokenizers.load; None: the tokenizer saved with INIT
    (`tokenizers.find_saved`: a pre-training workdir, an export, an HF directory's vocab.txt).
  model_overrides: ((field, value), ...) ModelConfig changes for random init; dropout
    overrides apply to loaded models too.
  head: the classification head: "hf" (default; dense -> GELU -> dense on [CLS], transformers'
    ElectraForSequenceClassification, so `electra-convert` exports it and pipeline() runs it)
    or "official" (the paper's and the official code's dropout + linear on [CLS], for
    reproducing the paper; no transformers class holds it: convert exports its encoder only).
  seeds: one fine-tuning run per seed (head init, dropout, data order).
  select: which dev evaluation a seed reports (and whose parameters and predictions it writes):
    "final" (default; the paper's protocol and the official code's: the model at the last step)
    or "best" (the highest primary metric over the evaluations: an optimistic, dev-selected
    number, not comparable with the paper's).
  evals_per_epoch: dev evaluations per epoch, plus one at the last step; with select="final"
    the earlier ones are only logged (results.json "eval_history").
  layerwise_lr_mode: "correct" or "official" (see electra_jax.runtime.layerwise_lr).
  bias_correction: Adam's bias correction (default on, as pre-training; the official code has
    none, and under fine-tuning's 10% warmup of a short run its update overshoots the peak rate
    several-fold: electra_jax.runtime.optim.uncorrected_amplification).
  learning_rate, warmup_fraction, weight_decay, clip_norm, bias_correction: the optimizer
    fields build_runner passes to runtime.optim.OptimizerConfig (b1, b2, eps: its defaults).
    They stay flat rather than a nested OptimizerConfig because four of its fields have no
    value a fine-tuning config can hold: learning_rate (here None: the per-size default of the
    model loaded later), warmup_steps (here a fraction of a step count known once the data is
    read), total_steps (computed from num_epochs) and schedule_offset.
  double_unordered: for tasks whose pairs are unordered (Task.unordered_pair: MRPC, STS-B) train
    on each pair in both orders (the training set doubles, and so do the steps of an epoch);
    the official code's option, on by default there (configure_finetuning.py line 76 at
    google-research/electra commit 8a46635); off here unless set. Other tasks ignore it.
  max_train_examples / max_eval_examples: use only the first N examples (quick runs); with
    train_sample_seed, max_train_examples takes a random N training examples instead, drawn
    with that seed (the same subset for every fine-tuning seed and init). Doubling comes after
    the cap (N pairs -> 2N rows).
  save_checkpoint: write the selected model to WORKDIR/seed_S/{select}/ (native format).
  log: what each seed logs to WORKDIR/seed_S (electra_jax.runtime.metrics.LogConfig, the one
    pre-training uses, bound as `LogConfig.progress_bar = False` etc.; default FINETUNE_LOG,
    LogConfig's defaults with log_every 10, so in Python start from it:
    `log=dataclasses.replace(FINETUNE_LOG, progress_bar=False)`): a progress bar; a
    metrics.jsonl record (loss, grad_norm, learning_rate) every `log.log_every` steps and an
    eval_metrics.jsonl record per dev evaluation, mirrored in tensorboard/; curves.png at the
    end (loss and the task's primary dev metric against the step); with `log.wandb_project` one
    W&B run per seed, grouped by the workdir's name. `log.profile_steps` is refused
    (ValueError): fine-tuning writes no profiler trace. The flat names of before (progress,
    log_every, tensorboard, curves, wandb_project, wandb_mode: DEPRECATED_LOG_FIELDS) still work
    for one release, with a DeprecationWarning.
  squad_null_threshold: SQuAD 2.0 predicts no answer when null score - best span score exceeds it.
  mesh: the device mesh (electra_jax.runtime.mesh.MeshConfig), bound as `MeshConfig.fsdp = 2`
    etc.; by default every device does data parallelism.
  """

  task: str
  init: str
  data_dir: Optional[str] = None
  text_column: Optional[str] = None
  text_pair_column: Optional[str] = None
  label_column: Optional[str] = None
  tfds: bool = False
  tfds_data_dir: Optional[str] = None
  tokenizer: Optional[str] = None
  size: Optional[str] = None
  model_overrides: tuple = ()
  head: str = "hf"
  seeds: tuple = (1,)
  select: str = "final"
  learning_rate: Optional[float] = None
  layerwise_lr_decay: Optional[float] = None
  layerwise_lr_mode: str = "correct"
  weight_decay: float = 0.0
  warmup_fraction: float = 0.1
  clip_norm: float = 1.0
  bias_correction: bool = True
  batch_size: int = 32
  eval_batch_size: int = 32
  num_epochs: Optional[float] = None
  max_seq_length: Optional[int] = None
  classifier_dropout: Optional[float] = None
  evals_per_epoch: int = 1
  double_unordered: bool = False
  doc_stride: int = 128
  max_query_length: int = 64
  n_best_size: int = 20
  max_answer_length: int = 30
  squad_null_threshold: float = 0.0
  max_train_examples: Optional[int] = None
  max_eval_examples: Optional[int] = None
  train_sample_seed: Optional[int] = None
  on_malformed: str = "error"
  mesh: MeshConfig = MeshConfig()
  dtype: str = "float32"
  save_checkpoint: bool = True
  write_predictions: bool = True
  log: LogConfig = FINETUNE_LOG

  def __post_init__(self):
    if not self.seeds:
      raise ValueError("FinetuneConfig.seeds is empty")
    if self.size is not None and self.size not in SIZES:
      raise ValueError(f"FinetuneConfig.size={self.size!r}; expected one of {SIZES}")
    if self.head not in ("official", "hf"):
      raise ValueError(f"FinetuneConfig.head={self.head!r}; expected 'official' or 'hf'")
    if self.select not in SELECT:
      raise ValueError(f"FinetuneConfig.select={self.select!r}; expected one of {SELECT}")
    if self.log.profile_steps is not None:
      raise ValueError(f"LogConfig.profile_steps={self.log.profile_steps}: fine-tuning writes no "
                       "profiler trace (pre-training does); leave it unset")
    if self.layerwise_lr_mode not in ("correct", "official"):
      raise ValueError(f"FinetuneConfig.layerwise_lr_mode={self.layerwise_lr_mode!r}; "
                       "expected 'correct' or 'official'")
    for name in ("batch_size", "eval_batch_size", "evals_per_epoch", "doc_stride",
                 "max_query_length", "n_best_size", "max_answer_length"):
      if getattr(self, name) <= 0:
        raise ValueError(f"FinetuneConfig.{name}={getattr(self, name)} must be positive")
    if not 0 <= self.warmup_fraction <= 1:
      raise ValueError(f"FinetuneConfig.warmup_fraction={self.warmup_fraction} must be in [0, 1]")
    if self.train_sample_seed is not None and self.max_train_examples is None:
      raise ValueError("FinetuneConfig.train_sample_seed draws max_train_examples examples; "
                       "set max_train_examples too")
    if self.data_dir is None and not self.tfds:
      raise ValueError("FinetuneConfig needs data_dir=DIR, data_dir=hf:SPEC or tfds=True")
    if self.hf_data:
      if self.tfds:
        raise ValueError(f"FinetuneConfig: data_dir={self.data_dir!r} and tfds=True name two "
                         "sources of the task's data; give one")
      hf_source.task_options(self.data_dir)  # unknown options fail here, before any loading
    resolve_task(self)  # unknown tasks and misplaced column names fail here
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    bad = [k for k, _ in self.model_overrides if k not in known]
    if bad:
      raise ValueError(f"FinetuneConfig.model_overrides: unknown ModelConfig fields {bad}")

  def __getattr__(self, name: str):
    """The old flat logging names (DEPRECATED_LOG_FIELDS) read `log`'s fields, with a
    DeprecationWarning, for one release."""
    if name in DEPRECATED_LOG_FIELDS:
      _warn_deprecated(name)
      return getattr(self.log, DEPRECATED_LOG_FIELDS[name])
    raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

  @property
  def hf_data(self) -> bool:
    """data_dir is an hf: spec (a Hugging Face dataset), not a directory."""
    return self.data_dir is not None and self.data_dir.startswith("hf:")

  def replace(self, **changes) -> "FinetuneConfig":
    return dataclasses.replace(self, **changes)

  def random_init_config(self, vocab_size: int) -> ModelConfig:
    """The architecture for init="random": `size` (default small) + overrides + vocab size."""
    size = self.size or "small"
    return model_configs.PRESETS[size].model.replace(
        **{**dict(self.model_overrides), "vocab_size": vocab_size})


def resolve_task(config: FinetuneConfig) -> Task:
  """The task `config.task` names, reading the columns the config names (own-data tasks)."""
  return with_columns(get_task(config.task), config.text_column, config.text_pair_column,
                      config.label_column)


@dataclasses.dataclass(frozen=True)
class Hparams:
  """The concrete values a run uses (None fields of FinetuneConfig resolved)."""

  size: str
  learning_rate: float
  layerwise_lr_decay: float
  num_epochs: float
  max_seq_length: int


def size_of(model: ModelConfig) -> str:
  """tiny / small / base / large from the hidden size (< 128, <= 256, <= 768, larger); tiny is
  no paper size (config.PRESETS' CPU model; it fine-tunes with small's defaults)."""
  if model.hidden_size < 128:
    return "tiny"
  if model.hidden_size <= 256:
    return "small"
  return "base" if model.hidden_size <= 768 else "large"


def resolve_hparams(config: FinetuneConfig, task: Task, model: ModelConfig) -> Hparams:
  size = config.size or size_of(model)
  defaults = "small" if size == "tiny" else size
  max_len = config.max_seq_length or task.max_seq_length
  max_len = min(max_len, model.max_position_embeddings)
  return Hparams(
      size=size,
      learning_rate=config.learning_rate or LEARNING_RATE[defaults],
      layerwise_lr_decay=config.layerwise_lr_decay or LAYERWISE_LR_DECAY[defaults],
      num_epochs=config.num_epochs or task.epochs,
      max_seq_length=max_len)


# ---------------------------------------------------------------------------------------------
# Gin at the command-line edge.


_NESTED = {"mesh": MeshConfig, "log": LogConfig}  # bound through their own class
_FIELDS = {"FinetuneConfig": [f for f in gin_edge.field_names(FinetuneConfig) if f not in _NESTED],
           **{cls.__name__: gin_edge.field_names(cls) for cls in _NESTED.values()}}


def _finetune_configurable():
  """FinetuneConfig's configurable binds its fields except the nested ones, and for one release
  the DEPRECATED_LOG_FIELDS (with their LogConfig types), as a dict."""
  params = [p for n, p in inspect.signature(FinetuneConfig).parameters.items()
            if n not in _NESTED]
  params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
             for name in DEPRECATED_LOG_FIELDS]
  log_hints = typing.get_type_hints(LogConfig)
  hints = {**typing.get_type_hints(FinetuneConfig),
           **{old: log_hints[new] for old, new in DEPRECATED_LOG_FIELDS.items()}}
  return gin_edge.configurable("FinetuneConfig", inspect.Signature(params), hints,
                               lambda **kw: kw)


def _bound_log(configurable) -> LogConfig:
  """The LogConfig of the gin bindings (LogConfig's `configurable`) over FINETUNE_LOG: a field
  no binding names keeps fine-tuning's default, not LogConfig's (log_every 10, not 100)."""
  built = configurable()
  names = gin_edge.bound_fields("LogConfig", gin_edge.field_names(LogConfig))
  return dataclasses.replace(FINETUNE_LOG, **{name: getattr(built, name) for name in names})


def resolve_config(gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
                   **fields: Any) -> FinetuneConfig:
  """FinetuneConfig from gin files, then bindings (`FinetuneConfig.FIELD = VALUE`,
  `MeshConfig.FIELD = VALUE`, `LogConfig.FIELD = VALUE`), then `fields` (command-line flags;
  they win), through `electra_jax.runtime.gin.parse` (unknown fields raise ValueError with close
  matches; so do bindings gin would ignore, values of the wrong type and syntax errors). A
  deprecated flat binding (`FinetuneConfig.progress = False`: DEPRECATED_LOG_FIELDS) applies over
  the LogConfig bindings, and its DeprecationWarning is shown (at the command line too)."""
  finetune = _finetune_configurable()
  mesh = gin_edge.dataclass_configurable(MeshConfig)
  log = gin_edge.dataclass_configurable(LogConfig)
  bound = gin_edge.parse(gin_files, gin_bindings, _FIELDS,
                         lambda: {**finetune(), "mesh": mesh(), "log": _bound_log(log)}, _NESTED)
  bound.update({k: v for k, v in fields.items() if v is not None})
  for key in ("seeds", "model_overrides"):
    if isinstance(bound.get(key), list):
      bound[key] = tuple(tuple(v) if isinstance(v, list) else v for v in bound[key])
  gin_edge.check_value_types("FinetuneConfig", typing.get_type_hints(FinetuneConfig), bound)
  with warnings.catch_warnings():
    warnings.simplefilter("always", DeprecationWarning)
    return FinetuneConfig(**bound)
