"""Text corpora as streams of text units, split into any number of disjoint parts.

Corpus specs (`load(spec)`):

  PATTERN[,PATTERN...][?docs=blank|line]
      Local text files: a file, a directory (its files, recursively) or a glob (`**` allowed);
      plain or gzip (.gz). `docs=blank` (default): blank lines separate documents and every other
      line is a text unit; `docs=line`: every line is one document. `text:` may prefix the spec.
  jsonl:PATTERN[,PATTERN...][?field=text]
      JSON Lines, one document per line, its text in `field` (default "text"); the text's own
      lines are its units.
  tfds:NAME[?split=train&field=text&data_dir=DIR&download=false]
      A TensorFlow Datasets dataset through `tfds.load` (e.g. tfds:c4/en, tfds:wikipedia/20230601.en,
      tfds:lm1b); each example is a document whose text lines are its units.
  builtin
      The Python standard library's docstrings: a small smoke-test corpus (see builtin_corpus).

A corpus yields text units (stripped, non-empty strings) and "" at every document end. A corpus
is cut into `num_parts` parts (`iter_units(parts, num_parts, stats)` reads a set of them): plain
files by byte ranges of their concatenation (each line belongs to the part holding its first
byte), gzip and builtin source files whole (file j in part j % num_parts), TFDS by
`tfds.even_splits`. The parts are disjoint and together cover the corpus exactly.

Loading a file corpus checks every file's first KiB and refuses, naming the file, anything that
is not text (Parquet, Arrow, zip, gzip without the .gz suffix, NUL bytes: text_io.refuse_binary);
a text spec also refuses JSON Lines files (.jsonl, .ndjson), which need the jsonl: spec.
"""

import abc
import functools
import glob
import json
import operator
import os
import urllib.parse

from data_pipelines import builtin_corpus, text_io

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


class JsonlFiles(_FileCorpus):
  def __init__(self, patterns, field="text"):
    super().__init__(resolve_paths(patterns))
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
    from data_pipelines.tf_runtime import tensorflow

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
  if not sep or kind not in ("text", "jsonl", "tfds") or os.path.exists(spec):
    kind, rest = "text", spec
  body, _, query = rest.partition("?")
  options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
  allowed = {"text": {"docs"}, "jsonl": {"field"}, "tfds": {"split", "field", "data_dir", "download"}}[kind]
  unknown = set(options) - allowed
  if unknown:
    raise ValueError(f"corpus spec {spec!r}: unknown options {sorted(unknown)} (allowed: {sorted(allowed)})")
  if kind == "text":
    return TextFiles(body, **options)
  if kind == "jsonl":
    return JsonlFiles(body, **options)
  download = options.pop("download", "false").lower() in ("true", "1", "yes")
  return TfdsCorpus(body, download=download, **options)
