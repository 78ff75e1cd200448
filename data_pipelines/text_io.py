"""Bounded-memory reading of UTF-8 text lines, with counts of everything odd in the input.

Lines are read in chunks of at most `CHUNK_BYTES` bytes, so a single multi-GB line never sits in
memory: such a line comes out as several pieces, cut at the last whitespace of each chunk (or
mid-word when a chunk has none). Invalid UTF-8 bytes become U+FFFD and are counted; a UTF-8
byte-order mark at the start of a file is dropped. `refuse_binary` turns away files that are not
text at all (Parquet, Arrow, archives, compressed data without the .gz suffix, NUL bytes),
naming for Parquet and Arrow the hf: corpus spec that reads them.
"""

import codecs
import dataclasses
import gzip
import os

CHUNK_BYTES = 1 << 20

_REPLACED_BYTES = [0]


def _count_and_replace(err):
  _REPLACED_BYTES[0] += err.end - err.start
  return "\ufffd", err.end


ERRORS = "data_pipelines.count_and_replace"
codecs.register_error(ERRORS, _count_and_replace)


def decode_utf8(data):
  """Decode bytes as UTF-8, replacing and counting invalid bytes: returns (text, n_replaced)."""
  before = _REPLACED_BYTES[0]
  text = data.decode("utf-8", errors=ERRORS)
  return text, _REPLACED_BYTES[0] - before


@dataclasses.dataclass
class InputStats:
  """Counts of what the readers saw; all fields are ints and add up across workers."""

  files: int = 0
  empty_files: int = 0
  lines: int = 0
  empty_lines: int = 0
  replaced_bytes: int = 0
  long_lines_split: int = 0
  skipped_files: int = 0
  bad_json_lines: int = 0
  missing_text_field: int = 0
  oversized_json_lines: int = 0

  def add(self, other):
    for field in dataclasses.fields(self):
      setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

  def as_dict(self):
    return dataclasses.asdict(self)


def open_binary(path):
  """Open a plain or gzip (by the .gz suffix) file for binary reading."""
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


SNIFF_BYTES = 1024

_HF = '(Hugging Face datasets: pip install "electra_jax[hf]")'
_ONLY_GZIP = "only gzip (.gz) is decompressed: decompress it, or recompress it with gzip"

# (leading bytes, what the file looks like, what to do instead: a format string of `path` and
# `arrow_spec`); longer magics before their prefixes.
_MAGIC = (
    (b"PAR1", "a Parquet file", "read Parquet with the spec hf:parquet?data_files={path} " + _HF),
    (b"ARROW1", "an Arrow IPC file", "read Arrow with the spec {arrow_spec} " + _HF),
    (
        b"\xff\xff\xff\xff",
        "an Arrow stream (e.g. a Hugging Face datasets cache file)",
        "read it with the spec {arrow_spec} " + _HF,
    ),
    (b"\x1f\x8b", "gzip data without the .gz suffix", "rename it to end in .gz"),
    (b"PK\x03\x04", "a zip archive", "zip is not supported: unzip it and give the text files"),
    (b"BZh", "bzip2 data", _ONLY_GZIP),
    (b"\xfd7zXZ\x00", "xz data", _ONLY_GZIP),
    (b"\x28\xb5\x2f\xfd", "zstd data", _ONLY_GZIP),
    (b"\xff\xfe", "UTF-16 text", "re-encode it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "re-encode it as UTF-8"),
)


def _arrow_spec(path):
  """The hf: spec that reads an Arrow file: its save_to_disk directory if it is in one."""
  directory = os.path.dirname(os.path.abspath(path))
  if os.path.isfile(os.path.join(directory, "state.json")):
    parent = os.path.dirname(directory)
    if os.path.isfile(os.path.join(parent, "dataset_dict.json")):
      return f"hf:{parent}?split={os.path.basename(directory)} (the DatasetDict saved there)"
    return f"hf:{directory} (the Dataset saved there)"
  return f"hf:arrow?data_files={path}"


def refuse_binary(path):
  """Raise ValueError naming `path` if its first KiB (decompressed for .gz) is not text.

  Refused: known binary formats by their leading bytes (Parquet, Arrow, gzip without the .gz
  suffix, zip, bzip2, xz, zstd, UTF-16) and NUL bytes anywhere in the first KiB. The message
  says what the file looks like and what to use instead (for Parquet and Arrow, the hf: corpus
  spec that reads the file: corpora.HFCorpus).
  """
  try:
    with open_binary(path) as f:
      head = f.read(SNIFF_BYTES)
  except gzip.BadGzipFile:
    raise ValueError(f"{path}: has the .gz suffix but is not gzip data") from None
  for magic, what, advice in _MAGIC:
    if head.startswith(magic):
      if "{" in advice:  # Parquet, Arrow: the hf: spec that reads it
        advice = advice.format(path=path, arrow_spec=_arrow_spec(path) if "{arrow_spec}" in advice else "")
        advice = "decompress it, then " + advice if path.endswith(".gz") else advice
      raise ValueError(f"{path}: looks like {what}, not UTF-8 text; {advice}")
  if b"\x00" in head:
    raise ValueError(
        f"{path}: has NUL bytes in its first {SNIFF_BYTES} bytes: binary data, not UTF-8 text; "
        "corpus files must be plain or gzip (.gz) UTF-8 text"
    )


def _skip_partial_line(f):
  while True:
    part = f.readline(CHUNK_BYTES)
    if not part or part.endswith(b"\n"):
      return


def iter_line_pieces(path, stats, start=0, end=None):
  """Yield (text, ends_line) for every line whose first byte lies in [start, end).

  `text` has no line terminator. A line longer than CHUNK_BYTES comes out as several pieces,
  all but the last with ends_line=False. `end=None` reads to the end of the file. Positions
  are byte offsets; `start > 0` needs a seekable (non-gzip) file.
  """
  before = _REPLACED_BYTES[0]
  with open_binary(path) as f:
    if start > 0:
      f.seek(start - 1)
      if f.read(1) != b"\n":
        _skip_partial_line(f)
    pos = f.tell()
    decoder = codecs.getincrementaldecoder("utf-8")(errors=ERRORS)
    carry = ""
    at_line_start = True
    at_file_start = start == 0
    while True:
      if at_line_start and end is not None and pos >= end:
        break
      raw = f.readline(CHUNK_BYTES)
      if not raw:
        break
      pos += len(raw)
      complete = raw.endswith(b"\n")
      final = complete or len(raw) < CHUNK_BYTES
      text = carry + decoder.decode(raw, final=final)
      if at_file_start:
        text, at_file_start = text.removeprefix("\ufeff"), False
      if final:
        decoder.reset()
        stats.lines += 1
        carry = ""
        at_line_start = True
        yield text.rstrip("\r\n"), True
        continue
      if at_line_start:
        stats.long_lines_split += 1
      at_line_start = False
      cut = max(text.rfind(" "), text.rfind("\t"))
      if cut > 0:
        carry = text[cut + 1 :]
        yield text[:cut], False
      else:
        carry = ""
        yield text, False
    if not at_line_start:  # EOF right after a full chunk of an unterminated line
      stats.lines += 1
      yield carry + decoder.decode(b"", final=True), True
  stats.replaced_bytes += _REPLACED_BYTES[0] - before
