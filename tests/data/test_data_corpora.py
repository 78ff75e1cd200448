"""Corpora: document/unit rules, parts, bad input (encoding, empty, huge lines, globs), TFDS."""

import gzip
import json
import re
import tracemalloc

import pytest

from data_pipelines import corpora, text_io


def _units(corpus, parts=(0,), num_parts=1):
  stats = text_io.InputStats()
  return list(corpus.iter_units(list(parts), num_parts, stats)), stats


def test_blank_lines_separate_documents(tmp_path):
  path = tmp_path / "a.txt"
  path.write_text("first line\n  second line  \n\nnext doc\n \n\t\nlast\n", encoding="utf-8")
  units, stats = _units(corpora.load(str(path)))
  assert units == ["first line", "second line", "", "next doc", "", "", "last", ""]
  assert (stats.files, stats.lines, stats.empty_lines, stats.replaced_bytes) == (1, 7, 3, 0)


def test_one_document_per_line_and_gzip_read_the_same(tmp_path):
  text = "doc one\n\ndoc two\nlast doc without newline"
  (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
  with gzip.open(tmp_path / "packed.txt.gz", "wt", encoding="utf-8") as f:
    f.write(text)
  expected = ["doc one", "", "", "doc two", "", "last doc without newline", ""]
  plain, _ = _units(corpora.load(f"{tmp_path / 'plain.txt'}?docs=line"))
  packed, stats = _units(corpora.load(f"text:{tmp_path / 'packed.txt.gz'}?docs=line"))
  assert plain == expected + [""]
  assert packed == expected + [""]
  assert stats.empty_lines == 1


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
  path = tmp_path / "bad.txt"
  path.write_bytes(b"good \xff\xfe bad\ncut \xe2\x82 here\nok \xc3\xa9\n")
  units, stats = _units(corpora.load(str(path)))
  assert units == ["good \ufffd\ufffd bad", "cut \ufffd here", "ok é", ""]
  assert stats.replaced_bytes == 4


def test_empty_files_and_blank_lines_are_counted_not_fatal(tmp_path):
  (tmp_path / "empty.txt").write_bytes(b"")
  (tmp_path / "blank.txt").write_text("\n\n   \n", encoding="utf-8")
  (tmp_path / "real.txt").write_text("words\n", encoding="utf-8")
  units, stats = _units(corpora.load(str(tmp_path / "*.txt")))
  assert [u for u in units if u] == ["words"]
  assert (stats.empty_files, stats.empty_lines, stats.files) == (1, 3, 2)


def test_glob_matching_nothing_names_the_pattern(tmp_path):
  pattern = str(tmp_path / "*.nothing")
  with pytest.raises(FileNotFoundError, match=re.escape(f"corpus pattern {pattern!r} matches no file")):
    corpora.load(pattern)
  with pytest.raises(FileNotFoundError, match="matches no file"):
    corpora.load(f"jsonl:{tmp_path / 'missing.jsonl'}")


def test_utf8_bom_and_crlf_line_ends_are_accepted(tmp_path):
  bom = b"\xef\xbb\xbf"
  (tmp_path / "a.txt").write_bytes(bom + b"first line\r\nsecond\r\n\r\nnext doc\r\n")
  (tmp_path / "b.txt.gz").write_bytes(gzip.compress(bom + b"zipped\r\n"))
  units, stats = _units(corpora.load(str(tmp_path / "*.txt*")))
  assert units == ["first line", "second", "", "next doc", "", "zipped", ""]
  assert stats.replaced_bytes == 0
  (tmp_path / "d.jsonl").write_bytes(bom + b'{"text": "one"}\r\n{"text": "two"}\r\n')
  units, stats = _units(corpora.load(f"jsonl:{tmp_path / 'd.jsonl'}"))
  assert units == ["one", "", "two", "", ""]  # each document ends, then the file
  assert stats.bad_json_lines == 0


NOT_TEXT = "not UTF-8 text; "


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("data.parquet", b"PAR1\x15\x04",
         "looks like a Parquet file, " + NOT_TEXT + "read Parquet with the spec hf:parquet?data_files="),
        ("data.arrow", b"ARROW1\x00\x00",
         "looks like an Arrow IPC file, " + NOT_TEXT + "read Arrow with the spec hf:arrow?data_files="),
        ("cache.arrow", b"\xff\xff\xff\xff\x88", "looks like an Arrow stream (e.g. a Hugging Face datasets"),
        ("packed.txt", gzip.compress(b"text\n", mtime=0), "looks like gzip data without the .gz suffix, " + NOT_TEXT),
        ("text.zip", b"PK\x03\x04\x14\x00", "looks like a zip archive, " + NOT_TEXT + "zip is not supported"),
        ("text.bz2", b"BZh91AY&SY", "looks like bzip2 data, " + NOT_TEXT + "only gzip (.gz) is decompressed"),
        ("utf16.txt", "text\n".encode("utf-16"), "looks like UTF-16 text, " + NOT_TEXT + "re-encode it as UTF-8"),
        ("odd.bin", b"hello\x00\x00world\n", "has NUL bytes in its first 1024 bytes: binary data, not UTF-8 text"),
        ("fake.txt.gz", b"plain text\n", "has the .gz suffix but is not gzip data"),
        ("inner.txt.gz", gzip.compress(b"PAR1\x00", mtime=0),
         "looks like a Parquet file, " + NOT_TEXT + "decompress it, then read"),
    ],
)
def test_binary_files_given_as_text_are_refused_naming_the_file(tmp_path, name, data, message):
  (tmp_path / "good.txt").write_text("fine text\n", encoding="utf-8")
  path = tmp_path / name
  path.write_bytes(data)
  for spec in (str(tmp_path), f"jsonl:{path}"):
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
      corpora.load(spec)


def test_jsonl_file_given_as_text_names_the_jsonl_spec(tmp_path):
  path = tmp_path / "docs.jsonl"
  path.write_text('{"text": "one"}\n', encoding="utf-8")
  with pytest.raises(ValueError, match=re.escape(
      f"{path}: looks like JSON Lines, not plain text; read it with the spec jsonl:{path} "
      "(text in the field 'text'; add ?field=NAME for another)"
  )):
    corpora.load(str(path))
  units, _ = _units(corpora.load(f"jsonl:{path}"))
  assert [u for u in units if u] == ["one"]


def test_long_line_is_cut_into_bounded_pieces_at_whitespace(tmp_path, monkeypatch):
  monkeypatch.setattr(text_io, "CHUNK_BYTES", 64)
  words = " ".join(f"w{i}é" for i in range(300))
  nospace = "é" * 150  # 300 bytes, multibyte characters straddle chunk edges
  path = tmp_path / "long.txt"
  path.write_text(f"{words}\n{nospace}\nshort\n", encoding="utf-8")
  units, stats = _units(corpora.load(str(path)))
  assert all(len(u.encode()) <= 2 * 64 for u in units)  # a chunk plus the carried-over word
  joined = " ".join(u for u in units if u.startswith("w"))
  assert joined == words
  assert "".join(u for u in units if u.startswith("é")) == nospace
  assert units[-2:] == ["short", ""]
  assert (stats.long_lines_split, stats.lines, stats.replaced_bytes) == (2, 3, 0)


def test_multi_megabyte_single_line_uses_bounded_memory(tmp_path):
  path = tmp_path / "huge.txt"
  block = ("lorem ipsum dolor sit amet " * 40_000).encode()  # ~1.1 MB
  with open(path, "wb") as f:
    for _ in range(24):
      f.write(block)
  corpus = corpora.load(str(path))
  stats = text_io.InputStats()
  tracemalloc.start()
  total = 0
  for unit in corpus.iter_units([0], 1, stats):
    total += unit.count("lorem")
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert total == 24 * 40_000  # cuts fall on whitespace: no word is broken
  assert peak < 8 * text_io.CHUNK_BYTES
  assert (stats.lines, stats.long_lines_split) == (1, 1)


def test_jsonl_line_over_the_limit_is_counted_and_skipped_in_bounded_memory(tmp_path, monkeypatch):
  monkeypatch.setattr(corpora, "MAX_JSON_LINE_BYTES", 4 << 20)
  path = tmp_path / "huge.jsonl"
  with open(path, "w", encoding="utf-8") as f:
    f.write(json.dumps({"text": "before"}) + '\n{"text": "')
    for _ in range(40):
      f.write("lorem ipsum " * (text_io.CHUNK_BYTES // 12))  # 40 MiB in one JSON line
    f.write('"}\n' + json.dumps({"text": "after"}) + "\n")
  stats = text_io.InputStats()
  tracemalloc.start()
  units = list(corpora.load(f"jsonl:{path}").iter_units([0], 1, stats))
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert units == ["before", "", "after", "", ""]
  assert (stats.oversized_json_lines, stats.long_lines_split, stats.lines) == (1, 1, 3)
  assert peak < 4 * corpora.MAX_JSON_LINE_BYTES  # the line itself is 10x the limit


@pytest.mark.parametrize("num_parts", [2, 3, 7, 64])
def test_parts_are_disjoint_and_cover_the_corpus_in_order(tmp_path, num_parts):
  docs = [f"doc {d} line {i} " + "x" * (d * 7 % 23) for d in range(40) for i in range(d % 4 + 1)]
  (tmp_path / "a.txt").write_text("\n".join(docs[:70]) + "\n", encoding="utf-8")
  (tmp_path / "b.txt").write_text("\n".join(docs[70:]), encoding="utf-8")
  with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as f:
    f.write("gz one\ngz two\n")
  with gzip.open(tmp_path / "d.txt.gz", "wt", encoding="utf-8") as f:
    f.write("gz three\n")
  corpus = corpora.load(f"{tmp_path}/a.txt,{tmp_path}/b.txt,{tmp_path}/*.gz?docs=line")
  whole, _ = _units(corpus)
  pieces = []
  for part in range(num_parts):
    units, _ = _units(corpus, [part], num_parts)
    pieces.extend(u for u in units if u)
  plain = [u for u in whole if u and not u.startswith("gz")]
  gz = [u for u in whole if u.startswith("gz")]
  assert [u for u in pieces if not u.startswith("gz")] == plain
  assert sorted(u for u in pieces if u.startswith("gz")) == sorted(gz)
  assert len(plain) == len(docs) and len(gz) == 3


def test_jsonl_text_field_and_bad_lines(tmp_path):
  path = tmp_path / "data.jsonl"
  lines = [
      json.dumps({"body": "para one\n\npara two", "id": 1}),
      "{not json",
      json.dumps({"title": "no body"}),
      "",
      json.dumps(["not", "a", "dict"]),
      json.dumps({"body": "ünïcode ok"}),
  ]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  units, stats = _units(corpora.load(f"jsonl:{path}?field=body"))
  assert units == ["para one", "para two", "", "ünïcode ok", "", ""]
  assert (stats.bad_json_lines, stats.missing_text_field, stats.empty_lines) == (1, 2, 1)


def test_unknown_options_are_rejected():
  with pytest.raises(ValueError, match=r"unknown options \['bogus'\]"):
    corpora.load("tfds:lm1b?bogus=1")
  with pytest.raises(ValueError, match=r"unknown options \['field'\]"):
    corpora.load(f"{__file__}?field=text")
  with pytest.raises(ValueError, match=r"docs='paragraph': expected 'blank' or 'line'"):
    corpora.load(f"{__file__}?docs=paragraph")


def test_builtin_corpus_is_deterministic_python_docstrings():
  corpus = corpora.load("builtin")
  assert all(p.endswith(".py") for p in corpus.paths) and len(corpus.paths) > 200
  first, stats = _units(corpus, [3], 60)
  again, _ = _units(corpus, [3], 60)
  assert first == again
  assert first.count("") == len(corpus.paths[3::60]) - stats.skipped_files
  assert sum(len(u) for u in first) > 5_000
  assert not any("\n" in u for u in first)


def _tfds_mock_texts():
  return [f"example {i} first line\nexample {i} second line".encode() for i in range(9)] + [b"bad \xff byte"]


def test_tfds_corpus_under_mock_data_reads_the_requested_even_splits():
  from data_pipelines.tf_runtime import tensorflow

  tf = tensorflow()
  import tensorflow_datasets as tfds

  texts = _tfds_mock_texts()

  def as_dataset(self, split, *args, **kwargs):
    rows = []
    for index, count in re.findall(r"index=(\d+), count=(\d+)", str(split)):
      index, count = int(index), int(count)
      rows.extend(texts[index * len(texts) // count : (index + 1) * len(texts) // count])
    return tf.data.Dataset.from_tensor_slices({"text": tf.constant(rows, dtype=tf.string)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    corpus = corpora.load("tfds:lm1b?split=train")
    whole, stats = _units(corpus)
    parts = [_units(corpus, [p], 4)[0] for p in range(4)]
    pair, _ = _units(corpus, [1, 3], 4)
  expected = []
  for text in texts[:9]:
    expected += text.decode().split("\n") + [""]
  expected += ["bad \ufffd byte", ""]
  assert whole == expected
  assert sum(parts, []) == expected
  assert pair == parts[1] + parts[3]
  assert (stats.lines, stats.replaced_bytes) == (10, 1)
  assert corpus.spec == "tfds:lm1b?split=train&field=text&download=false"


def test_a_folder_mixing_jsonl_and_parquet_is_one_error_naming_both(tmp_path):
  """It used to suggest jsonl:DIR, a spec that then failed on the Parquet file."""
  pa = pytest.importorskip("pyarrow")
  import pyarrow.parquet as pq
  (tmp_path / "a.jsonl").write_text('{"text": "hello world"}\n')
  pq.write_table(pa.Table.from_pylist([{"text": "x y"}]), tmp_path / "b.parquet")
  for spec in (str(tmp_path), f"jsonl:{tmp_path}"):
    with pytest.raises(ValueError, match=r"mixes file formats \(JSON Lines: 1 file\(s\), e\.g\. "
                       r".*a\.jsonl; Parquet: 1 file\(s\), e\.g\. .*b\.parquet\)"):
      corpora.load(spec)


WIKI = ('<doc id="1" url="http://en.wikipedia.org/wiki?curid=1" title="Cats">\nCats\n\n'
        'Cats purr.\nThey sleep a lot.\n</doc>\n'
        '<doc id="2" url="http://en.wikipedia.org/wiki?curid=2" title="Dogs">\nDogs\n\n'
        'Dogs bark.\n</doc>\n')


def test_wikiextractor_spec_one_document_per_article_markers_and_titles_dropped(tmp_path):
  """Every split into parts (a boundary at every byte, e.g. just after a <doc> line) gives the
  same units: no tag, no title, a document end after each article."""
  (tmp_path / "AA").mkdir()
  (tmp_path / "AA" / "wiki_00").write_text(WIKI)
  (tmp_path / "AA" / "wiki_01.gz").write_bytes(gzip.compress(WIKI.replace("Cats", "Owls")
                                                             .encode()))
  corpus = corpora.load(f"wikiextractor:{tmp_path}")
  want = ["Cats purr.", "They sleep a lot.", "", "Dogs bark.", "", "",
          "Owls purr.", "They sleep a lot.", "", "Dogs bark.", "", ""]
  assert list(corpus.iter_units([0], 1, text_io.InputStats())) == want
  for n in range(2, len(WIKI) + 1):
    units = [u for p in range(n) for u in corpus.iter_units([p], n, text_io.InputStats())]
    assert sorted(u for u in units if u) == sorted(u for u in want if u), n  # parts reorder
  with pytest.raises(ValueError, match=r"looks like WikiExtractor output .* spec wikiextractor:"):
    corpora.load(str(tmp_path))
