"""hf: corpora (Hugging Face datasets) on local files the tests write, never the network.

Units and document ends against the plain-text corpus, parts (map-style row ranges, streaming
source shards, row groups and shared shards), canonical specs, error messages, binary files
given as text, and an end-to-end shard build from an hf:parquet spec.
"""

import collections
import json
import re
import string
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datasets
from data_pipelines import build_pretraining_data as builder
from data_pipelines import corpora, hf_source, shard_format, text_io
from data_pipelines.tf_runtime import tensorflow
from hf_testlib import offline  # noqa: F401 (autouse fixture: no network)

N_DOCS = 40
SEQ_LEN = 32


def _docs():
  """Multi-line documents with padded lines and non-ASCII text, no blank lines inside."""
  return [
      "\n".join(f"  doc {d} line {i} ünï {'x' * (d * 7 % 11)}  " for i in range(d % 4 + 1)) for d in range(N_DOCS)
  ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """The documents as plain text and in every local form an hf: spec reads; returns {form: spec}."""
  d = tmp_path_factory.mktemp("hf_data")
  docs = _docs()
  (d / "docs.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
  rows = {"id": list(range(N_DOCS)), "text": docs, "title": [f"title {i}" for i in range(N_DOCS)]}
  table = pa.table(rows)
  # two Parquet files of several row groups each: 2 streaming shards, 8 after reshard
  pq.write_table(table.slice(0, 25), d / "part-0.parquet", row_group_size=7)
  pq.write_table(table.slice(25), d / "part-1.parquet", row_group_size=4)
  with open(d / "docs.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(docs))
  with pa.ipc.new_stream(str(d / "docs.arrow"), table.schema) as writer:
    writer.write_table(table)
  dataset = datasets.Dataset.from_dict(rows)
  dataset.save_to_disk(str(d / "saved_dataset"))
  datasets.DatasetDict({"train": dataset, "validation": dataset.select(range(3))}).save_to_disk(str(d / "saved_dict"))
  return {
      "dir": d,
      "parquet": f"hf:parquet?data_files={d}/part-*.parquet",
      "json": f"hf:json?data_files={d}/docs.jsonl",
      "arrow": f"hf:arrow?data_files={d}/docs.arrow",
      "saved_dataset": f"hf:{d}/saved_dataset",
      "saved_dict": f"hf:{d}/saved_dict?split=train",
      "parquet_streaming": f"hf:parquet?data_files={d}/part-*.parquet&streaming=true",
      "json_streaming": f"hf:json?data_files={d}/docs.jsonl&streaming=true",
      "arrow_streaming": f"hf:arrow?data_files={d}/docs.arrow&streaming=true",
  }


FORMS = ["parquet", "json", "arrow", "saved_dataset", "saved_dict", "parquet_streaming", "json_streaming",
         "arrow_streaming"]


def _units(corpus, parts=(0,), num_parts=1):
  stats = text_io.InputStats()
  return list(corpus.iter_units(list(parts), num_parts, stats)), stats


def _documents(units):
  docs, current = [], []
  for unit in units:
    if unit:
      current.append(unit)
    else:
      docs.append(tuple(current))
      current = []
  assert not current, "units after the last document end"
  return docs


@pytest.mark.parametrize("form", FORMS)
def test_units_and_document_ends_equal_the_plain_text_corpus(data, form):
  expected, _ = _units(corpora.load(str(data["dir"] / "docs.txt")))
  corpus = corpora.load(data[form])
  units, stats = _units(corpus)
  assert units == expected
  assert len(_documents(units)) == N_DOCS and stats.lines == N_DOCS and stats.missing_text_field == 0
  assert corpora.load(corpus.spec).spec == corpus.spec  # shard workers reload the recorded spec


@pytest.mark.parametrize("num_parts", [1, 2, 3])
@pytest.mark.parametrize("form", FORMS)
def test_parts_are_disjoint_and_cover_the_split_exactly(data, form, num_parts):
  corpus = corpora.load(data[form])
  whole = _documents(_units(corpus)[0])
  parts = [_documents(_units(corpus, [p], num_parts)[0]) for p in range(num_parts)]
  assert all(parts)
  assert collections.Counter(sum(parts, [])) == collections.Counter(whole)  # the docs are all distinct
  if not corpus.streaming or form == "parquet_streaming":  # contiguous rows / shards / row groups
    assert sum(parts, []) == whole
  if num_parts > 1:
    several, _ = _units(corpus, [num_parts - 1, 0], num_parts)  # a set of parts, in the order given
    assert _documents(several) == parts[-1] + parts[0]


def test_streaming_cuts_by_shards_row_groups_or_shared_shards(data):
  parquet = corpora.load(data["parquet_streaming"])
  assert parquet._dataset.num_shards == 2  # two files
  rows = [[int(u.split()[1]) for u in _units(parquet, [p], 3)[0] if " line 0 " in u]
          for p in range(3)]
  assert parquet._resharded.num_shards == 8  # 3 parts > 2 files: by row groups (4 of 7 rows, 4 of 4)
  assert sum(rows, []) == list(range(N_DOCS)) and [len(r) for r in rows] == [14, 15, 11]
  json_stream = corpora.load(data["json_streaming"])  # one shard: row k goes to part k % 3
  rows = [[int(u.split()[1]) for u in _units(json_stream, [p], 3)[0] if " line 0 " in u] for p in range(3)]
  assert rows == [list(range(p, N_DOCS, 3)) for p in range(3)]
  map_style = corpora.load(data["json"])  # contiguous row ranges [p*n//P, (p+1)*n//P)
  rows = [[int(u.split()[1]) for u in _units(map_style, [p], 3)[0] if " line 0 " in u] for p in range(3)]
  assert rows == [list(range(0, 13)), list(range(13, 26)), list(range(26, 40))]


def test_canonical_specs(data):
  d = data["dir"]
  assert corpora.load(data["parquet"]).spec == (
      f"hf:parquet?data_files={d}/part-*.parquet&split=train&field=text&streaming=false"
  )
  assert corpora.load(data["json_streaming"]).spec == (
      f"hf:json?data_files={d}/docs.jsonl&split=train&field=text&streaming=true"
  )
  assert corpora.load(data["saved_dataset"]).spec == f"hf:{d}/saved_dataset?field=text"
  assert corpora.load(f"hf:{d}/saved_dict?field=title&split=validation").spec == (
      f"hf:{d}/saved_dict?split=validation&field=title"
  )
  split = "train[:10%]+train[-2:]"
  corpus = corpora.load(f"hf:json?data_files={d}/docs.jsonl&split={split}")
  assert corpus.spec == f"hf:json?data_files={d}/docs.jsonl&split=train[:10%25]+train[-2:]&field=text&streaming=false"
  units, _ = _units(corpora.load(corpus.spec))
  assert [int(u.split()[1]) for u in units if " line 0 " in u] == [0, 1, 2, 3, 38, 39]


@pytest.mark.parametrize(
    "body, options, path, config, canonical",
    [
        ("wikitext/wikitext-2-raw-v1", None, "wikitext", "wikitext-2-raw-v1", "wikitext/wikitext-2-raw-v1"),
        ("allenai/c4/en", None, "allenai/c4", "en", "allenai/c4/en"),
        ("HuggingFaceFW/fineweb-edu", "", "HuggingFaceFW/fineweb-edu", None, "HuggingFaceFW/fineweb-edu?config="),
        ("HuggingFaceFW/fineweb-edu", "sample-10BT", "HuggingFaceFW/fineweb-edu", "sample-10BT",
         "HuggingFaceFW/fineweb-edu/sample-10BT"),
        ("org/name/with/slashes", "cfg", "org/name/with/slashes", "cfg", "org/name/with/slashes?config=cfg"),
        ("lm1b", None, "lm1b", None, "lm1b"),
    ],
)
def test_hub_names_and_configs_read_back_the_same(body, options, path, config, canonical):
  assert hf_source.hub_name(body, options) == (path, config)
  spec_body, config_option = hf_source.spec_body(path, config)
  assert spec_body + ("" if config_option is None else f"?config={config_option}") == canonical
  assert hf_source.hub_name(spec_body, config_option) == (path, config)


@pytest.mark.parametrize("form", FORMS)
def test_local_forms_reach_no_network_even_when_not_offline(data, form, monkeypatch):
  import huggingface_hub.constants

  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  corpus = corpora.load(data[form])  # the offline fixture fails the test on any lookup or connection
  assert len(_documents(_units(corpus, [1], 2)[0])) > 0


def test_directory_of_data_files_reads_through_load_dataset(tmp_path, monkeypatch):
  import huggingface_hub.constants

  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # and still no network: local files
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  docs = _docs()
  pq.write_table(pa.table({"text": docs[:30]}), tmp_path / "a.parquet")
  pq.write_table(pa.table({"text": docs[30:]}), tmp_path / "b.parquet")
  (tmp_path / "docs.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
  expected, _ = _units(corpora.load(str(tmp_path / "docs.txt")))
  corpus = corpora.load(f"hf:{tmp_path}")
  assert corpus.spec == f"hf:{tmp_path}?split=train&field=text&streaming=false"
  assert not corpus.source.from_disk and _units(corpus)[0] == expected


def test_hub_dataset_offline_fails_without_touching_the_network():
  with pytest.raises(Exception, match="wikitext"):
    corpora.load("hf:wikitext/wikitext-2-raw-v1?split=train")


def test_stream_of_unknown_columns_checks_the_field_on_its_rows(data):
  corpus = corpora.load(data["json_streaming"])
  corpus._dataset = datasets.IterableDataset.from_generator(lambda: iter([{"body": "words"}]))
  assert corpus._dataset.features is None  # columns unknown until read
  with pytest.raises(ValueError, match=re.escape("no column 'text'; the rows have ['body'] (pick the text column")):
    _units(corpus)


def test_rows_are_documents_nulls_are_counted_bytes_decoded(tmp_path):
  path = tmp_path / "odd.parquet"
  pq.write_table(pa.table({
      "text": ["para one\n\n  para two ", None, "", "last"],
      "raw": [b"bad \xff byte", b"ok", None, b"x\ny"],
  }), path)
  units, stats = _units(corpora.load(f"hf:parquet?data_files={path}"))
  assert units == ["para one", "para two", "", "", "last", ""]
  assert (stats.lines, stats.missing_text_field) == (4, 1)
  units, stats = _units(corpora.load(f"hf:parquet?data_files={path}&field=raw&streaming=true"))
  assert units == ["bad \ufffd byte", "", "ok", "", "x", "y", ""]
  assert (stats.lines, stats.missing_text_field, stats.replaced_bytes) == (4, 1, 1)


def test_bad_field_lists_the_columns(data):
  for form in ("parquet", "parquet_streaming", "saved_dict"):
    spec = data[form] + ("&" if "?" in data[form] else "?") + "field=body"
    with pytest.raises(ValueError, match=re.escape(
        "field=body: no column 'body'; the columns are ['id', 'text', 'title'] (pick the text column with ?field=NAME)"
    ).replace("field=body:", "field=body[^ ]*:")) as error:
      corpora.load(spec)
    assert str(error.value).startswith("hf:")  # the canonical spec
  with pytest.raises(ValueError, match=re.escape(
      "column 'id' holds Value('int64'), not text; text columns: ['text', 'title']"
  )):
    corpora.load(data["parquet"] + "&field=id")


def test_missing_split_lists_the_splits(data):
  d = data["dir"]
  with pytest.raises(ValueError, match=re.escape(
      f"hf:{d}/saved_dict: no split 'test'; the dataset has the splits ['train', 'validation'] "
      "(pick one with ?split=NAME)"
  )):
    corpora.load(f"hf:{d}/saved_dict?split=test")
  for builder_name, spec in [("parquet", data["parquet"]), ("json", data["json_streaming"])]:
    with pytest.raises(ValueError, match=re.escape(
        f"hf:{builder_name}: no split 'validation'; the dataset has the splits ['train']"
    )):
      corpora.load(spec + "&split=validation")
  with pytest.raises(ValueError, match=re.escape(
      f"hf:{d}/saved_dataset holds one Dataset (saved with Dataset.save_to_disk), not a DatasetDict: "
      "it has no splits; drop ?split=train"
  )):
    corpora.load(f"hf:{d}/saved_dataset?split=train")
  with pytest.raises(ValueError, match=re.escape(
      "the split expression 'train[:5]' (slices, +) needs datasets.load_dataset without streaming"
  )):
    corpora.load(data["json_streaming"] + "&split=train[:5]")


def test_missing_and_unknown_options_are_clear_errors(data, tmp_path):
  d = data["dir"]
  with pytest.raises(ValueError, match=re.escape(
      "hf:parquet reads local files: name them with ?data_files=PATH_OR_GLOB[,...] "
      "(e.g. hf:parquet?data_files=/data/*.parquet&field=text)"
  )):
    corpora.load("hf:parquet?field=text")
  with pytest.raises(ValueError, match=r"unknown options \['bogus', 'shuffle'\] \(allowed: \['config', 'data_dir', "):
    corpora.load(data["parquet"] + "&bogus=1&shuffle=true")
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"hf:parquet: data_files pattern '{tmp_path}/*.parquet' matches no file"
  )):
    corpora.load(f"hf:parquet?data_files={tmp_path}/*.parquet")
  with pytest.raises(ValueError, match=r"streaming='maybe': expected true or false"):
    corpora.load(data["parquet"] + "&streaming=maybe")
  with pytest.raises(ValueError, match=re.escape(
      f"hf:{d}/saved_dict is a dataset saved with save_to_disk (read with datasets.load_from_disk, memory-mapped): "
      "options ['data_files', 'streaming'] do not apply to it"
  )):
    corpora.load(f"hf:{d}/saved_dict?streaming=true&data_files=x")
  with pytest.raises(ValueError, match=re.escape(
      f"hf:{d}/part-0.parquet is a file: read it with the spec hf:parquet?data_files={d}/part-0.parquet"
  )):
    corpora.load(f"hf:{d}/part-0.parquet")
  with pytest.raises(ValueError, match=re.escape(f"hf:{tmp_path}/nothing: no such directory")):
    corpora.load(f"hf:{tmp_path}/nothing")
  with pytest.raises(ValueError, match="the hf: spec names no dataset"):
    corpora.load("hf:?split=train")


def test_missing_datasets_library_says_how_to_install_it(data, monkeypatch):
  monkeypatch.setitem(sys.modules, "datasets", None)
  with pytest.raises(ImportError, match=re.escape(
      'hf: corpora read Hugging Face datasets, and the datasets library is not installed: '
      'pip install "electra_jax[hf]"'
  )):
    corpora.load(data["parquet"])


def _suggested_spec(message):
  return re.search(r"with the spec (\S+)", message).group(1)


def test_parquet_or_arrow_given_as_text_names_the_file_and_the_hf_spec(data):
  d = data["dir"]
  expected, _ = _units(corpora.load(str(d / "docs.txt")))
  parquet = d / "part-0.parquet"
  for spec in (str(parquet), f"text:{parquet}", f"jsonl:{parquet}", f"{d}/*.parquet"):
    with pytest.raises(ValueError, match=re.escape(
        f"{parquet}: looks like a Parquet file, not UTF-8 text; read Parquet with the spec "
        f"hf:parquet?data_files={parquet} (Hugging Face datasets: pip install \"electra_jax[hf]\")"
    )):
      corpora.load(spec)
  arrow = d / "docs.arrow"
  saved_file = next((d / "saved_dataset").glob("*.arrow"))
  dict_file = next((d / "saved_dict" / "train").glob("*.arrow"))
  for path, spec in [
      (arrow, f"hf:arrow?data_files={arrow}"),
      (saved_file, f"hf:{d}/saved_dataset"),
      (dict_file, f"hf:{d}/saved_dict?split=train"),
  ]:
    with pytest.raises(ValueError, match=re.escape(f"{path}: looks like an Arrow stream")) as error:
      corpora.load(str(path))
    assert _suggested_spec(str(error.value)) == spec
    assert _units(corpora.load(spec))[0] == expected  # the spec it names reads the file
  with pytest.raises(ValueError, match=re.escape(f"{d}/saved_dataset/data-00000-of-00001.arrow: looks like an Arrow")):
    corpora.load(f"{d}/saved_dataset")  # a save_to_disk directory given as text


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
  """A character-level WordPiece vocab: specials, a-z, ##a-##z, digits."""
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tokens += list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase + string.digits]
  tokens += list(string.digits)
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return str(path)


def _decoded_words(ids, vocab):
  return " ".join(vocab[i] for i in ids).replace(" ##", "").split()


def test_build_pretraining_data_from_an_hf_parquet_spec(vocab_path, tmp_path):
  # one line a row: each example then holds the tokens of one row, in order, so the decoded shards
  # read as the rows (the packer may move a later unit of a document ahead of an earlier one)
  words = "the quick brown fox jumps over lazy dogs while seven wizards quietly hex jolly boxers".split()
  texts = [" ".join(words[(d * 3 + k) % len(words)] for k in range(d % 9 + 2)) + f" doc{d}" for d in range(30)]
  pq.write_table(pa.table({"text": texts[:17]}), tmp_path / "a.parquet", row_group_size=5)
  pq.write_table(pa.table({"text": texts[17:]}), tmp_path / "b.parquet")
  spec = f"hf:parquet?data_files={tmp_path}/*.parquet"
  num_shards, pieces = 3, 4
  manifest = builder.build_pretraining_data(
      spec, f"wordpiece:{vocab_path}", str(tmp_path / "out"), seq_len=SEQ_LEN, num_shards=num_shards,
      eval_shards=1, pieces_per_shard=pieces, progress=False, layout="unpacked",  # rows in order
  )
  canonical = f"hf:parquet?data_files={tmp_path}/*.parquet&split=train&field=text&streaming=false"
  assert manifest["build"]["corpus"] == canonical
  assert json.loads((tmp_path / "out" / "manifest.json").read_text())["build"]["corpus"] == canonical
  summary = manifest["build"]["summary"]
  assert summary["input"]["lines"] == len(texts) and summary["packing"]["documents"] == len(texts)  # rows
  vocab = open(vocab_path, encoding="utf-8").read().split("\n")
  tf = tensorflow()
  num_parts, n = num_shards * pieces, len(texts)
  all_words = []
  for index, entry in enumerate(manifest["shards"]):
    ids = []
    for record in tf.data.TFRecordDataset(str(tmp_path / "out" / entry["file"])):
      example = shard_format.parse_examples(tf, tf.constant([record.numpy()]), SEQ_LEN)
      row, mask = example["input_ids"].numpy()[0], example["attention_mask"].numpy()[0]
      ids += [int(i) for i in row[mask == 1] if i not in (2, 3)]  # content tokens, in order
    # shard i holds parts i, i + 3, i + 6, i + 9 of 12, part p the rows [p*n//12, (p+1)*n//12)
    parts = [index + k * num_shards for k in range(pieces)]
    rows = [r for p in parts for r in range(p * n // num_parts, (p + 1) * n // num_parts)]
    expected = " ".join(texts[r] for r in rows).split()
    assert expected and _decoded_words(ids, vocab) == expected
    all_words += expected
  assert sorted(all_words) == sorted(" ".join(texts).split())


def test_builder_help_lists_the_hf_spec(capsys):
  with pytest.raises(SystemExit):
    builder.main(["--help"])
  assert "hf:NAME[/CONFIG]" in capsys.readouterr().out
