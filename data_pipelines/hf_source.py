"""hf: specs: Hugging Face `datasets` sources, shared by pre-training corpora and fine-tuning tasks.

A spec names a dataset and how to load it (`datasets` is an optional dependency:
pip install "electra_jax[hf]"):

  hf:NAME[/CONFIG], hf:OWNER/NAME/CONFIG, ...?config=CONFIG
      A dataset of the Hugging Face Hub (or of the datasets cache), through `datasets.load_dataset`.
  hf:parquet|json|arrow|csv|text?data_files=PATTERN[,PATTERN...]
      Local files through one of datasets' packaged builders (globs allowed).
  hf:DIR
      A local directory: one written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk` is
      read with `datasets.load_from_disk` (memory-mapped), any other through `load_dataset(DIR)`.

Options: config, data_files, data_dir (a directory inside the dataset, or a builder's files),
revision, streaming (an iterable dataset). Pre-training corpora (`corpora.HFCorpus`, which adds
split= and field=) read one split's text column. Fine-tuning tasks (`task_source`, the spec given
as FinetuneConfig.data_dir) read the task's splits: the body names the dataset alone (NAME,
OWNER/NAME; OWNER/NAME/CONFIG or config= for another config than the task's), and local files
are named per split, data_files.SPLIT=PATTERN[,PATTERN...] (e.g.
hf:parquet?data_files.train=/d/train.parquet&data_files.validation=/d/dev.parquet).

Local specs (a builder given local files, a directory) make no network request: the request that
datasets makes to count downloads, even of local files, is switched off while they load. For a
Hub dataset already in the cache set HF_DATASETS_OFFLINE=1 (and HF_HUB_OFFLINE=1).
"""

import contextlib
import glob
import os
import urllib.parse

INSTALL = 'pip install "electra_jax[hf]"'
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # DatasetDict / Dataset .save_to_disk
TASK_OPTIONS = ("config", "data_dir", "revision")  # and data_files.SPLIT
ROW_BATCH = 1024
_BUILDER_OF_SUFFIX = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}
# datasets' packaged builders that read local files (if datasets does not list them itself)
_FILE_BUILDERS = ("parquet", "json", "arrow", "csv", "text", "pandas", "webdataset", "xml", "hdf5", "lance")


def import_datasets(purpose):
  """The `datasets` module, or one ImportError saying that `purpose` needs it and how to install it."""
  try:
    import datasets
  except ModuleNotFoundError as e:
    if e.name != "datasets":
      raise
    raise ImportError(
        f"{purpose} Hugging Face datasets, and the datasets library is not installed: {INSTALL}"
    ) from None
  return datasets


def builders():
  """Names of datasets' packaged builders (hf:parquet, hf:json, ...)."""
  try:
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return set(_PACKAGED_DATASETS_MODULES)
  except ImportError:
    return set(_FILE_BUILDERS)


def parse(spec):
  """(body, options) of `hf:BODY?OPTIONS`; a "+" in an option stays a "+" (split=train+validation)."""
  body, _, query = spec.removeprefix("hf:").partition("?")
  return body, dict(urllib.parse.parse_qsl(query.replace("+", "%2B"), keep_blank_values=True))


def task_options(spec):
  """(body, HFSource keyword arguments) of a fine-tuning task's hf: spec; unknown options are a ValueError."""
  body, options = parse(spec)
  files = {key.removeprefix("data_files."): options.pop(key) for key in list(options) if key.startswith("data_files.")}
  unknown = sorted(set(options) - set(TASK_OPTIONS))
  if unknown:
    raise ValueError(
        f"{spec}: unknown options {unknown}: task data takes {list(TASK_OPTIONS)} and the files of each split as "
        "data_files.SPLIT=PATTERN (e.g. data_files.train=/d/train.parquet&data_files.validation=/d/dev.parquet)"
    )
  return body, {**options, "data_files": files or None}


def task_source(spec, default_config=None):
  """The HFSource of a fine-tuning task's spec (FinetuneConfig.data_dir); a Hub dataset named without
  a config takes `default_config` (the task's: GLUE's config names; None: the dataset's default)."""
  body, options = task_options(spec)
  if body in builders() and not options["data_files"] and "data_dir" not in options:
    raise ValueError(f"{spec}: hf:{body} reads local files: name each split's files with "
                     f"data_files.SPLIT=PATTERN (e.g. hf:{body}?data_files.train=/d/train.{body}"
                     f"&data_files.validation=/d/dev.{body})")
  return HFSource(body, "hf: task data reads", owner_name=True, default_config=default_config, **options)


class HFSource:
  """One dataset of an hf: spec, loaded when constructed.

  `loaded` is what datasets gave: a DatasetDict (IterableDatasetDict when streaming), or one
  Dataset for a directory written by Dataset.save_to_disk; `splits` lists its split names (None
  for one Dataset). `path` is the Hub id, builder name or directory, `config` the config (None: the
  default). `data_files`: a pattern string (comma-separated), or {split: patterns} for tasks.

  Naming: a Hub body NAME/CONFIG, or OWNER/NAME/CONFIG; with `owner_name` (tasks, whose config the
  task gives: `default_config`) a two-part body is OWNER/NAME instead. config= overrides the body.
  """

  def __init__(self, body, purpose, config=None, data_files=None, data_dir=None, revision=None, streaming=False,
               owner_name=False, default_config=None):
    self.datasets = import_datasets(purpose)
    if not body:
      raise ValueError("the hf: spec names no dataset: hf:NAME[/CONFIG], hf:parquet?data_files=PATH or hf:DIR")
    body = os.path.expanduser(body) if body.startswith("~") else body
    builder_names = builders()
    local_dir = body not in builder_names and os.path.isdir(body)
    self.from_disk = local_dir and any(os.path.isfile(os.path.join(body, m)) for m in _SAVED_MARKERS)
    self.builder = body in builder_names
    self.streaming, self.data_files, self.data_dir, self.revision = streaming, data_files, data_dir, revision
    patterns = list(data_files.values()) if isinstance(data_files, dict) else [data_files or ""]
    self._local_files = local_dir or (self.builder and "://" not in "".join(patterns) + (data_dir or ""))
    if self.from_disk:
      given = {"config": config, "data_files": data_files, "data_dir": data_dir, "revision": revision}
      given = sorted(k for k, v in given.items() if v is not None) + (["streaming"] if streaming else [])
      if given:
        raise ValueError(
            f"hf:{body} is a dataset saved with save_to_disk (read with datasets.load_from_disk, memory-mapped): "
            f"options {given} do not apply to it"
        )
      self.path, self.config = body, None
      self.loaded = self.datasets.load_from_disk(body)
      return
    if os.path.isfile(body):
      builder = _BUILDER_OF_SUFFIX.get(os.path.splitext(body)[1].lower(), "parquet|json|arrow|csv|text")
      raise ValueError(f"hf:{body} is a file: read it with the spec hf:{builder}?data_files={body}")
    if local_dir or self.builder:
      self.path, self.config = body, config or None
    else:
      self.path, self.config = hub_name(body, config, owner_name)
      if self.config is None:
        self.config = default_config
    self._check_files(patterns)
    self._load_kwargs = {k: v for k, v in {
        "name": self.config, "data_dir": data_dir, "revision": revision, "data_files": _file_lists(data_files),
    }.items() if v is not None}
    self._load_kwargs["streaming"] = streaming
    self.loaded = self.load()

  @property
  def splits(self):
    if isinstance(self.loaded, (self.datasets.Dataset, self.datasets.IterableDataset)):
      return None
    return list(self.loaded)

  def load(self, split=None):
    """`datasets.load_dataset` of this spec (`split`: one split or a split expression; None: all)."""
    with self._without_download_counts():
      return self.datasets.load_dataset(self.path, split=split, **self._load_kwargs)

  def _check_files(self, patterns):
    if not self.builder:
      return
    if not self.data_files and not self.data_dir:
      raise ValueError(
          f"hf:{self.path} reads local files: name them with ?data_files=PATH_OR_GLOB[,...] "
          f"(e.g. hf:{self.path}?data_files=/data/*.{self.path}&field=text)"
      )
    for pattern in ",".join(patterns).split(","):
      if pattern and "://" not in pattern and not self.data_dir and not glob.glob(pattern, recursive=True):
        raise FileNotFoundError(f"hf:{self.path}: data_files pattern {pattern!r} matches no file")

  @contextlib.contextmanager
  def _without_download_counts(self):
    """For local files, without the request datasets makes to count downloads even of those."""
    config = self.datasets.config
    if not self._local_files or not hasattr(config, "HF_UPDATE_DOWNLOAD_COUNTS"):
      yield
      return
    saved = config.HF_UPDATE_DOWNLOAD_COUNTS
    config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
      yield
    finally:
      config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def rows(dataset, columns):
  """One tuple per row of a map-style dataset: its values of `columns` (None: a column of Nones),
  read ROW_BATCH rows at a time."""
  present = [c for c in columns if c]
  for batch in dataset.select_columns(present).iter(batch_size=ROW_BATCH):
    n = len(batch[present[0]])
    yield from zip(*(batch[c] if c else [None] * n for c in columns))


def _file_lists(data_files):
  """data_files as load_dataset takes them: comma-separated patterns become lists (per split for a dict)."""
  if isinstance(data_files, dict):
    return {split: _file_lists(patterns) for split, patterns in data_files.items()}
  return data_files.split(",") if data_files and "," in data_files else data_files


def hub_name(body, config, owner_name=False):
  """(dataset path, config) of a Hub spec's body; `config` is the config= option (None: not given).

  NAME, NAME/CONFIG (OWNER/NAME with `owner_name`), OWNER/NAME/CONFIG.
  """
  if config is not None:
    return body, config or None
  pieces = body.split("/")
  if body.startswith((".", "/", "~")) or "" in pieces or len(pieces) > 3:
    forms = ("NAME, OWNER/NAME or OWNER/NAME/CONFIG" if owner_name else
             "NAME, NAME/CONFIG or OWNER/NAME/CONFIG (for an OWNER/NAME Hub id without a config add ?config=)")
    raise ValueError(f"hf:{body}: no such directory, and not a dataset {forms}")
  if len(pieces) == 1 or (owner_name and len(pieces) == 2):
    return body, None
  return "/".join(pieces[:-1]), pieces[-1]


def spec_body(path, config):
  """(spec body, config= option or None) that hub_name reads back as (path, config)."""
  if os.path.isdir(path):
    return path, config
  if config is None:
    return (path, None) if "/" not in path else (path, "")
  return (f"{path}/{config}", None) if path.count("/") <= 1 else (path, config)
