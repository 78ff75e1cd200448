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
bindings look like `FinetuneConfig.learning_rate = 1e-4` or `MeshConfig.fsdp = 2`; one gin would
ignore (a bare `learning_rate = 1e-4`), a value of the wrong type or a syntax error is a ValueError
with the right spelling (electra_jax.runtime.gin, the gin edge pre-training shares).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Optional, Sequence

from data_pipelines import hf_source
from electra_jax.finetune.tasks import Task, get_task, with_columns
from electra_jax.model import config as model_configs
from electra_jax.model.config import ModelConfig
from electra_jax.runtime import gin as gin_edge
from electra_jax.runtime.mesh import MeshConfig
from electra_jax.runtime.metrics import WANDB_MODES

LEARNING_RATE = {"small": 3e-4, "base": 1e-4, "large": 5e-5}
LAYERWISE_LR_DECAY = {"small": 0.8, "base": 0.8, "large": 0.9}
SIZES = tuple(model_configs.PRESETS)
SELECT = ("final", "best")


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
  double_unordered: for tasks whose pairs are unordered (Task.unordered_pair: MRPC, STS-B) train
    on each pair in both orders (the training set doubles, and so do the steps of an epoch);
    the official code's option, on by default there (configure_finetuning.py line 76 at
    google-research/electra commit 8a46635); off here unless set. Other tasks ignore it.
  max_train_examples / max_eval_examples: use only the first N examples (quick runs); with
    train_sample_seed, max_train_examples takes a random N training examples instead, drawn
    with that seed (the same subset for every fine-tuning seed and init). Doubling comes after
    the cap (N pairs -> 2N rows).
  save_checkpoint: write the selected model to WORKDIR/seed_S/{select}/ (native format).
  progress / log_every / tensorboard: a progress bar; a WORKDIR/seed_S/metrics.jsonl record
    (loss, grad_norm, learning_rate) every `log_every` steps and WORKDIR/seed_S/eval_metrics.jsonl
    per dev evaluation, mirrored in WORKDIR/seed_S/tensorboard/ (the pre-training MetricsWriter).
  curves: WORKDIR/seed_S/curves.png at the end of each seed (loss and the task's primary dev
    metric against the step).
  wandb_project: also log each seed to this Weights & Biases project (one run per seed, grouped
    by the workdir's name: the jsonl numbers by step and the resolved config; needs
    `pip install "electra_jax[wandb]"`); None: $WANDB_PROJECT when set, else off. wandb_mode:
    "online" or "offline" (runs stay in WORKDIR/seed_S/wandb/ until `wandb sync`); None:
    $WANDB_MODE, else online. $WANDB_DIR moves the runs' files (metrics.WandbRun).
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
  progress: bool = True
  log_every: int = 10
  tensorboard: bool = True
  curves: bool = True
  wandb_project: Optional[str] = None
  wandb_mode: Optional[str] = None

  def __post_init__(self):
    if not self.seeds:
      raise ValueError("FinetuneConfig.seeds is empty")
    if self.size is not None and self.size not in SIZES:
      raise ValueError(f"FinetuneConfig.size={self.size!r}; expected one of {SIZES}")
    if self.head not in ("official", "hf"):
      raise ValueError(f"FinetuneConfig.head={self.head!r}; expected 'official' or 'hf'")
    if self.select not in SELECT:
      raise ValueError(f"FinetuneConfig.select={self.select!r}; expected one of {SELECT}")
    if self.wandb_mode is not None and self.wandb_mode not in WANDB_MODES:
      raise ValueError(f"FinetuneConfig.wandb_mode={self.wandb_mode!r}; expected one of "
                       f"{WANDB_MODES}")
    if self.layerwise_lr_mode not in ("correct", "official"):
      raise ValueError(f"FinetuneConfig.layerwise_lr_mode={self.layerwise_lr_mode!r}; "
                       "expected 'correct' or 'official'")
    for name in ("batch_size", "eval_batch_size", "evals_per_epoch", "log_every", "doc_stride",
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


_FIELDS = {"FinetuneConfig": [f for f in gin_edge.field_names(FinetuneConfig) if f != "mesh"],
           "MeshConfig": gin_edge.field_names(MeshConfig)}


def _finetune_configurable():
  """FinetuneConfig's configurable binds its fields except the nested mesh, as a dict."""
  params = [p for n, p in inspect.signature(FinetuneConfig).parameters.items() if n != "mesh"]
  return gin_edge.configurable("FinetuneConfig", inspect.Signature(params),
                               typing.get_type_hints(FinetuneConfig), lambda **kw: kw)


def resolve_config(gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
                   **fields: Any) -> FinetuneConfig:
  """FinetuneConfig from gin files, then bindings (`FinetuneConfig.FIELD = VALUE`,
  `MeshConfig.FIELD = VALUE`), then `fields` (command-line flags; they win), through
  `electra_jax.runtime.gin.parse` (unknown fields raise ValueError with close matches; so do
  bindings gin would ignore, values of the wrong type and syntax errors)."""
  finetune = _finetune_configurable()
  mesh = gin_edge.dataclass_configurable(MeshConfig)
  bound = gin_edge.parse(gin_files, gin_bindings, _FIELDS,
                         lambda: {**finetune(), "mesh": mesh()}, {"mesh": MeshConfig})
  bound.update({k: v for k, v in fields.items() if v is not None})
  for key in ("seeds", "model_overrides"):
    if isinstance(bound.get(key), list):
      bound[key] = tuple(tuple(v) if isinstance(v, list) else v for v in bound[key])
  gin_edge.check_value_types("FinetuneConfig", typing.get_type_hints(FinetuneConfig), bound)
  return FinetuneConfig(**bound)
