"""Rows of a user's labelled table: TSV, CSV, JSON Lines or Parquet, each row named for errors.

    columns, rows = read_table("data/train.csv")    # rows: [(where, {column: value})]

Formats by suffix: `.tsv` (header row, tab separated, no quote processing: GLUE's convention),
`.csv` (header row, RFC 4180 quoting: what pandas and spreadsheets write), `.jsonl`/`.json` (one
JSON object per line), `.parquet` (pyarrow). `where` is `file:line` for text formats (the line a
record starts on) and `file row N` (0-based) for Parquet, so every error can name its row.
`write_table` writes rows back in the format its suffix names. A path `-` is stdin / stdout
(`fmt` then names the format; default TSV).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Optional, Sequence

from electra_jax.floor import fs

SUFFIXES = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
            ".parquet": "parquet"}
STDIO = "-"


def format_of(path: str, fmt: Optional[str] = None) -> str:
  """tsv / csv / jsonl / parquet from `fmt` or the suffix of `path` (`-`: tsv)."""
  if fmt is not None:
    if fmt not in SUFFIXES.values():
      raise ValueError(f"format {fmt!r}; expected one of {sorted(set(SUFFIXES.values()))}")
    return fmt
  if path == STDIO:
    return "tsv"
  for suffix, name in SUFFIXES.items():
    if path.lower().endswith(suffix):
      return name
  raise ValueError(f"{path}: unknown table format; name the file .tsv, .csv, .jsonl or "
                   ".parquet")


def _text(path: str) -> str:
  if path == STDIO:
    return sys.stdin.read()
  if not fs.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  try:
    return fs.read_text(path, encoding="utf-8-sig")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not UTF-8 text ({e})") from None


def _delimited(path: str, text: str, fmt: str) -> tuple[list[str], list[tuple[str, dict]]]:
  name = "<stdin>" if path == STDIO else path
  if fmt == "tsv":
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
  else:
    reader = csv.reader(io.StringIO(text, newline=""))
  header, rows, start = None, [], 1
  for fields in reader:
    line, start = start, reader.line_num + 1
    if not any(f.strip() for f in fields):
      continue
    if header is None:
      header = fields
      continue
    if len(fields) != len(header):
      sep = "tab" if fmt == "tsv" else "comma"
      raise ValueError(f"{name}:{line}: expected {len(header)} {sep}-separated fields (the "
                       f"header's {header}), found {len(fields)}")
    rows.append((f"{name}:{line}", dict(zip(header, fields))))
  if header is None:
    raise ValueError(f"{name}: empty file")
  if not rows:
    raise ValueError(f"{name}: no rows below the header {header}")
  return header, rows


def _jsonl(path: str, text: str) -> tuple[list[str], list[tuple[str, dict]]]:
  name = "<stdin>" if path == STDIO else path
  columns, rows = {}, []
  for line_no, line in enumerate(io.StringIO(text, newline=""), start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError as e:
      raise ValueError(f"{name}:{line_no}: not valid JSON ({e})") from None
    if not isinstance(row, dict):
      raise ValueError(f"{name}:{line_no}: expected a JSON object, found {type(row).__name__}")
    columns.update(dict.fromkeys(row))
    rows.append((f"{name}:{line_no}", row))
  if not rows:
    raise ValueError(f"{name}: empty file")
  return list(columns), rows


def _parquet(path: str) -> tuple[list[str], list[tuple[str, dict]]]:
  import pyarrow.parquet as pq
  if path == STDIO:
    raise ValueError("Parquet cannot be read from stdin; give a file")
  if not fs.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  table = pq.read_table(io.BytesIO(fs.read_bytes(path)))
  return table.column_names, [(f"{path} row {i}", row) for i, row in enumerate(table.to_pylist())]


def read_table(path: str, fmt: Optional[str] = None) -> tuple[list[str], list[tuple[str, dict]]]:
  """(column names, [(where, {column: value})]) of a table file (see the module docstring).

  Raises FileNotFoundError for a missing file, ValueError naming the row for a malformed one.
  """
  fmt = format_of(path, fmt)
  if fmt == "parquet":
    return _parquet(path)
  text = _text(path)
  return _jsonl(path, text) if fmt == "jsonl" else _delimited(path, text, fmt)


def _field(value, fmt: str) -> str:
  text = f"{value:.7g}" if isinstance(value, float) else "" if value is None else str(value)
  if fmt == "tsv":  # no quoting in TSV: tabs and line breaks inside a field become spaces
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
  return text


def write_table(path: str, columns: Sequence[str], rows: Sequence[dict],
                fmt: Optional[str] = None) -> None:
  """Writes rows (dicts over `columns`) as TSV, CSV, JSON Lines or Parquet (`-`: stdout)."""
  fmt = format_of(path, fmt)
  if fmt == "parquet":
    import pyarrow as pa
    import pyarrow.parquet as pq
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), sink)
    fs.write_bytes(path, sink.getvalue())
    return
  out = io.StringIO(newline="")
  if fmt == "jsonl":
    for row in rows:
      out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")
  elif fmt == "tsv":
    for fields in [list(columns)] + [[row.get(c) for c in columns] for row in rows]:
      out.write("\t".join(_field(f, fmt) for f in fields) + "\n")
  else:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
      writer.writerow([_field(row.get(c), fmt) for c in columns])
  if path == STDIO:
    sys.stdout.write(out.getvalue())
    sys.stdout.flush()
  else:
    fs.write_text(path, out.getvalue())
