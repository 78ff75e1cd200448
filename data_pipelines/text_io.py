"""Bounded-memory reading of UTF-8 text lines, with counts of everything odd in the input.

Lines are read in chunks of at most `CHUNK_BYTES` bytes, so a single multi-GB line never sits in
memory: such a line comes out as several pieces, cut at the last whitespace of each chunk (or
mid-word when a chunk has none). Invalid UTF-8 bytes become U+FFFD and are counted.
"""

import codecs
import dataclasses
import gzip

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
