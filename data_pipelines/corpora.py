"""Text corpora as streams of text units, split into any number of disjoint parts.

Corpus specs (`load(spec)`):

  PATTERN[,PATTERN...][?docs=blank|line]
      Local text files: a file, a directory (its files, recursively) or a glob (`**` allowed);
      plain or gzip (.gz). `docs=blank` (default): blank lines separate documents and every other
      line is a text unit; `docs=line`: every line is one document. `text:` may prefix the spec.
  jsonl:PATTERN[,PATTERN...][?field=text]
      JSON Lines, one document per line, its text in `field` (default "text"); the text's own
      lines are its units.
  wikiextractor:PATTERN[,PATTERN...]
      WikiExtractor's output of a Wikipedia dump (`<doc id=.. url=.. title=..>`, the title
      line, one paragraph a line, `</doc>`; files plain or .gz, e.g. DIR/AA/wiki_00): one
      document per article, its paragraphs the units; the markers and the title line are
      dropped. A plain-text spec given such files is refused with this spec's name.
  tfds:NAME[?split=train&field=text&data_dir=DIR&download=false]
      A TensorFlow Datasets dataset through `tfds.load` (e.g. tfds:c4/en, tfds:wikipedia/20230601.en,
      tfds:lm1b); each example is a document whose text lines are its units.
  hf:NAME[/CONFIG][?split=train&field=text&streaming=false&data_files=...&data_dir=DIR&revision=REV]
  hf:parquet|json|arrow|csv|text?data_files=PATTERN[,PATTERN...][&field=text&streaming=false]
  hf:DIR[?split=train&field=text]
      A Hugging Face `datasets` dataset (data_pipelines.hf_source; pip install "electra_jax[hf]"); each
      row is a document whose text lines (column `field`) are its units; rows whose text is null
      are skipped and counted (missing_text_field). NAME is a Hub dataset or a packaged builder
      given local files with `data_files` (globs allowed; e.g. hf:parquet?data_files=/d/*.parquet,
      hf:json?data_files=a.jsonl); through `datasets.load_dataset`, prepared into the datasets
      cache (HF_DATASETS_CACHE) or, with `streaming=true` (big Hub corpora), read as a stream.
      NAME/CONFIG: one slash separates the dataset and its config (hf:wikitext/wikitext-2-raw-v1),
      two slashes an OWNER/NAME Hub id and its config (hf:allenai/c4/en); a Hub id without a
      config takes `config=` (hf:HuggingFaceFW/fineweb-edu?config=, the empty config = the
      default one). DIR: an existing local directory; one written by `Dataset.save_to_disk` or
      `DatasetDict.save_to_disk` is read with `datasets.load_from_disk` (`split` picks a split
      of a DatasetDict; a single Dataset has none), any other through `load_dataset(DIR)`.
      `split` (default train) may be a split expression (train[:10%]+validation) when not
      streaming and not a saved directory. Nothing else reaches the network: set
      HF_DATASETS_OFFLINE=1 (and HF_HUB_OFFLINE=1) to make sure, e.g. on a machine without it.
  builtin
      The Python standard library's docstrings: a small smoke-test corpus (see builtin_corpus).

A corpus yields text units (stripped, non-empty strings) and "" at every document end. A corpus
is cut into `num_parts` parts (`iter_units(parts, num_parts, stats)` reads a set of them): plain
files by byte ranges of their concatenation (each line belongs to the part holding its first
byte), gzip and builtin source files whole (file j in part j % num_parts), TFDS by
`tfds.even_splits`, a Hugging Face dataset by contiguous row ranges (part p: rows
[p*n//num_parts, (p+1)*n//num_parts) of n) or, streaming, by its source shards (HFCorpus tells
how). The parts are disjoint and together cover the corpus exactly.

Loading a file corpus checks every file's first KiB and refuses, naming the file, anything that
is not text (Parquet, Arrow, zip, gzip without the .gz suffix, NUL bytes: text_io.refuse_binary,
which names the hf: spec that reads a Parquet or Arrow file); a text spec also refuses JSON Lines
files (.jsonl, .ndjson), which need the jsonl: spec.
"""

import abc
import functools
import glob
import itertools
import json
import operator
import os
import urllib.parse

from data_pipelines import builtin_corpus, hf_source, text_io

MAX_JSON_LINE_BYTES = 64 << 20
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class Corpus(abc.ABC):
  """A text corpus; `spec` is the canonical spec string recorded in manifests."""

  spec: str

  @abc.abstractmethod
  def iter_units(self, parts, num_parts, stats):
    """Yield the text units of parts `parts` (ints in [0, num_parts)); "" ends a document.

    Counts of the input read (files, lines, replaced bytes, ...) go into `stats`
    (a text_io.InputStats).
    """


def resolve_paths(patterns):
  """Expand comma-separated files / directories / globs into a sorted list of file paths.

  Raises:
    FileNotFoundError: a pattern matches no file (the message names the pattern).
  """
  paths = []
  for pattern in patterns.split(","):
    pattern = pattern.strip()
    if os.path.isdir(pattern):
      matches = [
          os.path.join(dirpath, name) for dirpath, _, names in os.walk(pattern) for name in names
      ]
    elif glob.has_magic(pattern):
      matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    else:
      matches = [pattern] if os.path.isfile(pattern) else []
    if not matches:
      raise FileNotFoundError(f"corpus pattern {pattern!r} matches no file")
    paths.extend(sorted(matches))
  return paths


def _file_format(path):
  """JSON Lines (by suffix), Parquet or Arrow (by leading bytes), else text: a file's format."""
  if path.removesuffix(".gz").endswith(JSONL_SUFFIXES):
    return "JSON Lines"
  try:
    with text_io.open_binary(path) as f:
      head = f.read(8)
  except (OSError, EOFError):
    return "text"  # refuse_binary names a broken gzip file
  if head.startswith(b"PAR1"):
    return "Parquet"
  if head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
    return "Arrow"
  return "text"


def check_one_format(paths, patterns):
  """ValueError when the files of one corpus spec mix formats that need different specs (JSON
  Lines with Parquet, Arrow or text; Parquet with Arrow): no single spec reads them, so none is
  suggested that would then fail. Text beside one binary file is left to text_io.refuse_binary,
  which names that file."""
  formats = {}
  for path in paths:
    formats.setdefault(_file_format(path), []).append(path)
  structured = set(formats) - {"text"}
  if len(structured) > 1 or ("JSON Lines" in formats and "text" in formats):
    found = "; ".join(f"{name}: {len(files)} file(s), e.g. {files[0]}"
                      for name, files in formats.items())
    raise ValueError(f"corpus {patterns} mixes file formats ({found}); a corpus spec reads one "
                     "format: convert the files to one format, or give a pattern that picks one "
                     "(e.g. jsonl:DIR/*.jsonl, hf:parquet?data_files=DIR/*.parquet) and build "
                     "each format's shards separately")


class _FileCorpus(Corpus):
  """Shared part logic for file corpora: byte ranges for plain files, whole gzip files."""

  def __init__(self, paths):
    for path in paths:
      text_io.refuse_binary(path)
    self.paths = paths
    self._plain = [(p, os.path.getsize(p)) for p in paths if not p.endswith(".gz")]
    self._gzip = [p for p in paths if p.endswith(".gz")]

  def _ranges(self, part, num_parts):
    """(path, start, end) byte ranges of one part, in corpus order."""
    total = sum(size for _, size in self._plain)
    lo, hi = part * total // num_parts, (part + 1) * total // num_parts
    ranges = []
    offset = 0
    for path, size in self._plain:
      start, end = max(lo, offset) - offset, min(hi, offset + size) - offset
      if start < end:
        ranges.append((path, start, end))
      offset += size
    ranges.extend((path, 0, None) for j, path in enumerate(self._gzip) if j % num_parts == part)
    return ranges

  def iter_units(self, parts, num_parts, stats):
    if 0 in parts:
      stats.empty_files += sum(1 for _, size in self._plain if size == 0)
    for part in parts:
      for path, start, end in self._ranges(part, num_parts):
        if start == 0:
          stats.files += 1
        yield from self._units_of_range(path, start, end, stats)
        yield ""

  @abc.abstractmethod
  def _units_of_range(self, path, start, end, stats):
    """Units of the lines starting in [start, end) of one file."""


class TextFiles(_FileCorpus):
  def __init__(self, patterns, docs="blank"):
    if docs not in ("blank", "line"):
      raise ValueError(f"corpus option docs={docs!r}: expected 'blank' or 'line'")
    paths = resolve_paths(patterns)
    check_one_format(paths, patterns)
    if any(_is_wikiextractor(path) for path in paths[:1]):
      raise ValueError(f"{paths[0]}: looks like WikiExtractor output (<doc id=...> lines); read "
                       f"it with the spec wikiextractor:{patterns} (one document per article, "
                       "markers and titles dropped)")
    for path in paths:
      if path.removesuffix(".gz").endswith(JSONL_SUFFIXES):
        raise ValueError(
            f"{path}: looks like JSON Lines, not plain text; read it with the spec "
            f"jsonl:{patterns} (text in the field 'text'; add ?field=NAME for another)"
        )
    super().__init__(paths)
    self.docs = docs
    self.spec = f"{patterns}?docs={docs}"

  def _units_of_range(self, path, start, end, stats):
    for text, ends_line in text_io.iter_line_pieces(path, stats, start, end):
      unit = text.strip()
      if unit:
        yield unit
      elif ends_line:
        stats.empty_lines += 1
        if self.docs == "blank":
          yield ""
      if ends_line and self.docs == "line":
        yield ""


def _is_wikiextractor(path):
  """Whether a file starts with a WikiExtractor document tag."""
  try:
    with text_io.open_binary(path) as f:
      return f.read(len(_DOC_OPEN)) == _DOC_OPEN
  except (OSError, EOFError):
    return False


_DOC_OPEN = b"<doc id="
_DOC_CLOSE = "</doc>"


class WikiExtractorFiles(_FileCorpus):
  """WikiExtractor files: a document per `<doc ...>` ... `</doc>`, its paragraph lines the
  units; the tag lines and the title line (the first non-blank line after `<doc`) are
  dropped. Parts are byte ranges as for text files; a range that starts just after a `<doc`
  line looks back to drop that article's title too."""

  def __init__(self, patterns):
    paths = resolve_paths(patterns)
    check_one_format(paths, patterns)
    super().__init__(paths)
    self.spec = f"wikiextractor:{patterns}"

  @staticmethod
  def _after_open_tag(path, start):
    """Whether the line holding byte start - 1 (the last line of the previous part: the range
    reads from the first line that starts at or after `start`) is a `<doc` tag."""
    lo = max(0, start - 4096)  # a tag line is far shorter
    with open(path, "rb") as f:
      f.seek(lo)
      before = f.read(start - lo)
    head = before[:-1] if before.endswith(b"\n") else before
    return head.rsplit(b"\n", 1)[-1].startswith(_DOC_OPEN)

  def _units_of_range(self, path, start, end, stats):
    title_next = start > 0 and self._after_open_tag(path, start)
    for text, ends_line in text_io.iter_line_pieces(path, stats, start, end):
      unit = text.strip()
      if not unit:
        if ends_line:
          stats.empty_lines += 1
        continue
      if unit.startswith("<doc ") or unit.startswith("<doc>"):
        title_next = True
      elif unit == _DOC_CLOSE:
        title_next = False
        yield ""
      elif title_next:
        title_next = not ends_line  # a title longer than a piece: drop all its pieces
      else:
        yield unit


class JsonlFiles(_FileCorpus):
  def __init__(self, patterns, field="text"):
    paths = resolve_paths(patterns)
    check_one_format(paths, patterns)
    super().__init__(paths)
    self.field = field
    self.spec = f"jsonl:{patterns}?field={field}"

  def _units_of_range(self, path, start, end, stats):
    pieces, size = [], 0
    for text, ends_line in text_io.iter_line_pieces(path, stats, start, end):
      if size <= MAX_JSON_LINE_BYTES:
        pieces.append(text)
        size += len(text)
      if not ends_line:
        continue
      line, pieces, oversized, size = "".join(pieces), [], size > MAX_JSON_LINE_BYTES, 0
      if oversized:
        stats.oversized_json_lines += 1
      elif not line.strip():
        stats.empty_lines += 1
      else:
        yield from self._units_of_json(line, stats)

  def _units_of_json(self, line, stats):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      stats.bad_json_lines += 1
      return
    text = record.get(self.field) if isinstance(record, dict) else None
    if not isinstance(text, str):
      stats.missing_text_field += 1
      return
    yield from _units_of_document(text)


def _units_of_document(text):
  for line in text.split("\n"):
    unit = line.strip()
    if unit:
      yield unit
  yield ""


class TfdsCorpus(Corpus):
  def __init__(self, name, split="train", field="text", data_dir=None, download=False):
    self.name, self.split, self.field, self.data_dir, self.download = name, split, field, data_dir, download
    options = {"split": split, "field": field, "download": str(download).lower()}
    if data_dir:
      options["data_dir"] = data_dir
    self.spec = f"tfds:{name}?{urllib.parse.urlencode(options)}"

  def iter_units(self, parts, num_parts, stats):
    from electra_jax.floor.tf_runtime import tensorflow

    tensorflow()
    import tensorflow_datasets as tfds

    subsplits = tfds.even_splits(self.split, n=num_parts)
    split = functools.reduce(operator.add, [subsplits[p] for p in sorted(parts)])
    dataset = tfds.load(
        self.name, split=split, data_dir=self.data_dir, shuffle_files=False, download=self.download
    )
    for example in tfds.as_numpy(dataset):
      if self.field not in example:
        raise ValueError(
            f"TFDS dataset {self.name!r} has no field {self.field!r}; it has {sorted(example)}"
        )
      value = example[self.field]
      if isinstance(value, bytes):
        value, replaced = text_io.decode_utf8(value)
        stats.replaced_bytes += replaced
      stats.lines += 1
      yield from _units_of_document(str(value))


HF_OPTIONS = ("config", "data_files", "data_dir", "revision", "split", "field", "streaming")
HF_ROW_BATCH = 256
_HF_TEXT_DTYPES = ("string", "large_string", "string_view", "binary", "large_binary", "binary_view")


class HFCorpus(Corpus):
  """A Hugging Face `datasets` split: each row a document, the text lines of column `field` its units.

  Loading (construction) loads the dataset (hf_source.HFSource), so a missing split or column is
  an error here, before any shard is built: a missing split lists the dataset's splits, a missing
  column its columns. Rows whose text is null are counted (missing_text_field) and skipped;
  `stats.lines` counts rows.

  Parts: a map-style dataset (streaming=false, or a saved directory) is cut into contiguous row
  ranges: part p of P holds rows [p*n//P, (p+1)*n//P) of the split's n rows. A streaming
  dataset is cut by its source shards (its files; Parquet row groups, through
  `IterableDataset.reshard`, when it has fewer files than P and datasets can reshard). With S
  shards and P <= S, part p reads shards [p*S//P, (p+1)*S//P) whole. With P > S, the parts p with
  p*S//P == s share shard s: the k-th row of shard s goes to the (k % c)-th of those c parts, each
  of which reads the whole shard and keeps its rows, so a stream with fewer shards than parts is
  read up to ceil(P/S) times over (fewer parts, i.e. a smaller --pieces_per_shard, or
  streaming=false avoid that). Either way the parts are disjoint and together cover the split
  exactly; read in order they give its rows in order, except in the P > S streaming case.
  """

  def __init__(self, body, config=None, data_files=None, data_dir=None, revision=None, split=None,
               field="text", streaming=False):
    self.source = hf_source.HFSource(body, "hf: corpora read", config=config, data_files=data_files,
                                     data_dir=data_dir, revision=revision, streaming=streaming)
    self.field, self.streaming = field, streaming
    self._resharded = None
    self.split, self._dataset = self._select_split(split)
    self.spec = self._canonical_spec()
    self._check_field()

  def _select_split(self, split):
    """(split name or None, the dataset of that split) of the loaded source."""
    source = self.source
    if source.splits is None:  # Dataset.save_to_disk
      if split is not None:
        raise ValueError(
            f"hf:{source.path} holds one Dataset (saved with Dataset.save_to_disk), not a DatasetDict: "
            f"it has no splits; drop ?split={split}"
        )
      return None, source.loaded
    split = split or "train"
    names = [piece.split("[")[0].strip() for piece in split.split("+")]
    missing = [name for name in names if name not in source.splits]
    if missing:
      raise ValueError(
          f"hf:{source.path}: no split {missing[0]!r}; the dataset has the splits {source.splits} "
          "(pick one with ?split=NAME)"
      )
    if split in source.splits:
      return split, source.loaded[split]
    if source.from_disk or self.streaming:
      raise ValueError(
          f"hf:{source.path}: the split expression {split!r} (slices, +) needs datasets.load_dataset without "
          f"streaming; here give one of the splits {source.splits}"
      )
    return split, source.load(split)

  def _canonical_spec(self):
    source, options = self.source, {}
    if source.from_disk:
      body = source.path
    else:
      body, config = hf_source.spec_body(source.path, source.config)
      if config is not None:
        options["config"] = config
      options.update({k: v for k, v in
                      (("data_files", source.data_files), ("data_dir", source.data_dir), ("revision", source.revision))
                      if v})
    if self.split is not None:
      options["split"] = self.split
    options["field"] = self.field
    if not source.from_disk:
      options["streaming"] = str(self.streaming).lower()
    # "+" stays literal in hf: specs (split expressions): load() reads it so
    return f"hf:{body}?{urllib.parse.urlencode(options, safe='/*,:[]+', quote_via=urllib.parse.quote)}"

  def _check_field(self):
    features = self._dataset.features  # None for a stream whose columns datasets does not know yet
    if features is None:
      return
    if self.field not in features:
      raise ValueError(
          f"{self.spec}: no column {self.field!r}; the columns are {list(features)} "
          "(pick the text column with ?field=NAME)"
      )
    feature, value = features[self.field], self.source.datasets.Value
    if not (isinstance(feature, value) and feature.dtype in _HF_TEXT_DTYPES):
      texts = [k for k, f in features.items() if isinstance(f, value) and f.dtype in _HF_TEXT_DTYPES]
      raise ValueError(f"{self.spec}: column {self.field!r} holds {feature}, not text; text columns: {texts}")

  def iter_units(self, parts, num_parts, stats):
    for part in parts:
      values = self._stream_part(part, num_parts) if self.streaming else self._map_part(part, num_parts)
      for value in values:
        stats.lines += 1
        if isinstance(value, bytes):
          value, replaced = text_io.decode_utf8(value)
          stats.replaced_bytes += replaced
        if value is None:
          stats.missing_text_field += 1
        elif isinstance(value, str):
          yield from _units_of_document(value)
        else:
          raise ValueError(f"{self.spec}: column {self.field!r} holds {type(value).__name__} values, not text")

  def _map_part(self, part, num_parts):
    dataset = self._dataset.select_columns([self.field])
    n = len(dataset)
    lo, hi = part * n // num_parts, (part + 1) * n // num_parts
    for start in range(lo, hi, HF_ROW_BATCH):
      yield from dataset[start : min(hi, start + HF_ROW_BATCH)][self.field]

  def _stream_part(self, part, num_parts):
    dataset = self._dataset
    if num_parts > dataset.num_shards and hasattr(dataset, "reshard"):
      if self._resharded is None:
        self._resharded = dataset.reshard()
      dataset = self._resharded
    n = dataset.num_shards
    if num_parts <= n:
      shards, offset, step = range(part * n // num_parts, (part + 1) * n // num_parts), 0, 1
    else:
      shard = part * n // num_parts
      first, end = -(-shard * num_parts // n), -(-(shard + 1) * num_parts // n)
      shards, offset, step = [shard], part - first, end - first
    for index in shards:
      rows = dataset.shard(n, index, contiguous=True)
      if dataset.features is not None:
        rows = rows.select_columns([self.field])
      yield from itertools.islice(self._values(rows), offset, None, step)

  def _values(self, rows):
    for row in rows:
      if self.field not in row:
        raise ValueError(
            f"{self.spec}: no column {self.field!r}; the rows have {list(row)} (pick the text column with ?field=NAME)"
        )
      yield row[self.field]


class BuiltinCorpus(Corpus):
  spec = "builtin"

  def __init__(self):
    self.paths = builtin_corpus.stdlib_source_files()

  def iter_units(self, parts, num_parts, stats):
    for part in parts:
      for path in self.paths[part::num_parts]:
        yield from builtin_corpus.docstring_units(path, stats)


def load(spec):
  """Build a Corpus from a spec string (see the module docstring)."""
  if spec == "builtin":
    return BuiltinCorpus()
  kind, sep, rest = spec.partition(":")
  if not sep or kind not in ("text", "jsonl", "wikiextractor", "tfds", "hf") \
      or os.path.exists(spec):
    kind, rest = "text", spec
  if kind == "hf":
    body, options = hf_source.parse(rest)
  else:
    body, _, query = rest.partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
  allowed = {
      "text": {"docs"}, "jsonl": {"field"}, "wikiextractor": set(),
      "tfds": {"split", "field", "data_dir", "download"}, "hf": set(HF_OPTIONS),
  }[kind]
  unknown = set(options) - allowed
  if unknown:
    raise ValueError(f"corpus spec {spec!r}: unknown options {sorted(unknown)} (allowed: {sorted(allowed)})")
  if kind == "text":
    return TextFiles(body, **options)
  if kind == "jsonl":
    return JsonlFiles(body, **options)
  if kind == "wikiextractor":
    return WikiExtractorFiles(body)
  if kind == "hf":
    streaming = options.pop("streaming", "false").lower()
    if streaming not in ("true", "false", "1", "0", "yes", "no"):
      raise ValueError(f"corpus spec {spec!r}: streaming={streaming!r}: expected true or false")
    return HFCorpus(body, streaming=streaming in ("true", "1", "yes"), **options)
  download = options.pop("download", "false").lower() in ("true", "1", "yes")
  return TfdsCorpus(body, download=download, **options)
