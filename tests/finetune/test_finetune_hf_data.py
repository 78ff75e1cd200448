"""Fine-tuning data from hf: specs (Hugging Face datasets) on local files the tests write, never
the network: GLUE (SST-2, MNLI matched/mismatched) and SQuAD splits read from local Parquet /
JSON files per split and from save_to_disk directories equal those read from the equivalent TSV
and SQuAD JSON files, featurised; a Hub spec loads the task's config; one tiny fine-tune from an
hf: source; the errors (splits, columns, labels, options)."""

import json
import re
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datasets
from data_pipelines import tokenizers
from electra_jax.finetune import train as ft
from electra_jax.finetune.config import FinetuneConfig, Hparams
from electra_jax.finetune.kinds import KINDS, has_split
from electra_jax.finetune.tasks import get_task
from finetune_testlib import finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)
from hf_testlib import offline  # noqa: F401 (autouse fixture: no network)

SST2_CLASSES = datasets.ClassLabel(names=["negative", "positive"])
MNLI_CLASSES = datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])
HP = Hparams(size="tiny", learning_rate=1e-3, layerwise_lr_decay=1.0, num_epochs=1.0,
             max_seq_length=16)


def _tsv_rows(path):
  """{column: values} of a TSV file with a header."""
  header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
  return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def _save(splits, root, name):
  """The splits ({split: Dataset}) as Parquet files per split (Dataset.to_parquet keeps the
  features) and as a DatasetDict.save_to_disk directory; returns the two hf: specs."""
  files = root / f"{name}_parquet"
  files.mkdir()
  options = []
  for split, dataset in splits.items():
    dataset.to_parquet(str(files / f"{split}.parquet"))
    options.append(f"data_files.{split}={files}/{split}.parquet")
  datasets.DatasetDict(splits).save_to_disk(str(root / f"{name}_saved"))
  return {"parquet": "hf:parquet?" + "&".join(options), "saved": f"hf:{root}/{name}_saved"}


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
  """SST-2 as TSV files (finetune_testlib.sst2_dir) and the same rows in the GLUE layout."""
  root = tmp_path_factory.mktemp("sst2")
  tsv = sst2_dir(root / "glue", n_train=24, n_dev=12, n_test=6) / "SST-2"
  features = datasets.Features({"sentence": datasets.Value("string"), "label": SST2_CLASSES,
                                "idx": datasets.Value("int32")})
  splits = {}
  for split, name in (("train", "train"), ("validation", "dev")):
    rows = _tsv_rows(tsv / f"{name}.tsv")
    n = len(rows["sentence"])  # no index column: the TSV reader numbers the rows from 1
    splits[split] = datasets.Dataset.from_dict(
        {"sentence": rows["sentence"], "label": [int(y) for y in rows["label"]],
         "idx": list(range(1, n + 1))}, features=features)
  rows = _tsv_rows(tsv / "test.tsv")
  splits["test"] = datasets.Dataset.from_dict(
      {"sentence": rows["sentence"], "label": [-1] * len(rows["sentence"]),
       "idx": [int(i) for i in rows["index"]]}, features=features)
  return {"tsv": str(root / "glue"), **_save(splits, root, "sst2")}


@pytest.fixture(scope="module")
def mnli(tmp_path_factory):
  """MNLI TSV files (train, dev_matched, dev_mismatched, test_matched; no test_mismatched) and
  the same rows in the GLUE layout (premise, hypothesis, label ids entailment, neutral,
  contradiction)."""
  root = tmp_path_factory.mktemp("mnli")
  tsv = root / "glue" / "MNLI"
  tsv.mkdir(parents=True)
  rng = np.random.default_rng(1)
  words = "the cat sat on a mat dog ran far away paris is big city red".split()
  labels = ("contradiction", "entailment", "neutral")
  features = datasets.Features({"premise": datasets.Value("string"),
                                "hypothesis": datasets.Value("string"), "label": MNLI_CLASSES,
                                "idx": datasets.Value("int32")})
  splits = {}
  for name, split, n in (("train", "train", 18), ("dev_matched", "validation_matched", 7),
                         ("dev_mismatched", "validation_mismatched", 5),
                         ("test_matched", "test_matched", 4)):
    test = name.startswith("test")
    pairs = [(" ".join(rng.choice(words, 5)), " ".join(rng.choice(words, 3))) for _ in range(n)]
    gold = [labels[i] for i in rng.integers(0, 3, n)]
    lines = ["index\tsentence1\tsentence2" + ("" if test else "\tgold_label")]
    lines += [f"{i}\t{a}\t{b}" + ("" if test else f"\t{y}")
              for i, ((a, b), y) in enumerate(zip(pairs, gold))]
    (tsv / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    splits[split] = datasets.Dataset.from_dict(
        {"premise": [a for a, _ in pairs], "hypothesis": [b for _, b in pairs],
         "label": [-1 if test else MNLI_CLASSES.str2int(y) for y in gold],
         "idx": list(range(n))}, features=features)
  return {"tsv": str(root / "glue"), **_save(splits, root, "mnli")}


@pytest.fixture(scope="module")
def tok(vocab):
  return tokenizers.load(f"wordpiece:{vocab}")


def _config(task, data_dir, **kw):
  return FinetuneConfig(task=task, init="random", data_dir=data_dir, **kw)


def _assert_same_task_data(got, want):
  assert got.labels == want.labels
  for mine, theirs in [(got.train, want.train), *zip(got.dev, want.dev, strict=True),
                       *zip(got.test, want.test, strict=True)]:
    assert mine.name == theirs.name and mine.examples == theirs.examples
    assert sorted(mine.arrays) == sorted(theirs.arrays)
    for key, array in theirs.arrays.items():
      np.testing.assert_array_equal(mine.arrays[key], array, err_msg=f"{mine.name} {key}")
    assert mine.extra == theirs.extra


@pytest.mark.parametrize("form", ["parquet", "saved"])
@pytest.mark.parametrize("task_name", ["sst2", "mnli"])
def test_glue_splits_equal_the_tsv_files(request, tok, task_name, form):
  data = request.getfixturevalue(task_name)
  task = get_task(task_name)
  want = ft.load_task_data(task, _config(task_name, data["tsv"]), HP, tok)
  got = ft.load_task_data(task, _config(task_name, data[form]), HP, tok)
  _assert_same_task_data(got, want)
  # every split the task reads, MNLI's matched and mismatched dev splits, the test splits present
  names = {"sst2": (["dev"], ["test"]), "mnli": (["dev_matched", "dev_mismatched"],
                                                 ["test_matched"])}[task_name]
  assert ([s.name for s in got.dev], [s.name for s in got.test]) == names
  assert got.train.size == len(got.train.examples) > 0 and "labels" in got.train.arrays
  assert all(e.label is None for s in got.test for e in s.examples)


def _squad_questions(version):
  context = "paris is the capital of france . the big red dog ran far away ."
  qas = [("q1", "what is the capital of france ?", [("paris", 0)]),
         ("q2", "what ran ?", [("big red dog", context.index("big red dog")),
                               ("red dog", context.index("red dog"))]),
         ("q3", "where did the dog run ?", [("far away", context.index("far away"))])]
  if version == "v2.0":
    qas.append(("q4", "where is the cat ?", []))
  return context, qas


def _squad_files(root, version):
  """A SQuAD JSON train and dev file, and the same questions in the rajpurkar/squad layout as
  JSON Lines and Parquet files per split; returns {form: data_dir}."""
  context, qas = _squad_questions(version)
  rows, articles = [], []
  for qid, question, answers in qas:
    rows.append({"id": qid, "title": "t", "context": context, "question": question,
                 "answers": {"text": [t for t, _ in answers],
                             "answer_start": [s for _, s in answers]}})
    articles.append({"id": qid, "question": question, "is_impossible": not answers,
                     "answers": [{"text": t, "answer_start": s} for t, s in answers]})
  suffix = version.removeprefix("v")
  (root / "squad").mkdir(parents=True)
  spec = {"json": "hf:json?", "parquet": "hf:parquet?"}
  for split, name in (("train", "train"), ("validation", "dev")):
    data = {"version": version, "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": articles}]}]}
    (root / "squad" / f"{name}-v{suffix}.json").write_text(json.dumps(data))
    (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    datasets.Dataset.from_list(rows).to_parquet(str(root / f"{split}.parquet"))
    for form in spec:
      spec[form] += f"&data_files.{split}={root}/{split}.{'jsonl' if form == 'json' else form}"
  return {"native": str(root), **spec}


@pytest.mark.parametrize("task_name, form", [("squad1.1", "parquet"), ("squad2.0", "json")])
def test_squad_splits_equal_the_json_files(tmp_path, tok, task_name, form):
  task = get_task(task_name)
  data = _squad_files(tmp_path, task.squad_version)
  settings = dict(doc_stride=4, max_query_length=8)  # several windows per question
  want = ft.load_task_data(task, _config(task_name, data["native"], **settings), HP, tok)
  got = ft.load_task_data(task, _config(task_name, data[form], **settings), HP, tok)
  _assert_same_task_data(got, want)
  assert len(got.train.extra) > len(got.train.examples)  # windows
  assert [e.is_impossible for e in got.dev[0].examples] == (
      [False] * 3 + [True] * (task.squad_version == "v2.0"))


@pytest.mark.parametrize("form", ["parquet", "saved"])
def test_local_forms_reach_no_network_even_when_not_offline(monkeypatch, sst2, form):
  import huggingface_hub.constants

  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  assert len(_read(sst2[form])) == 24  # the offline fixture fails the test on any lookup


def test_hub_spec_loads_the_tasks_config(monkeypatch, sst2, mnli):
  """hf:nyu-mll/glue loads the task's GLUE config (sst2, mnli), hf:OWNER/NAME/CONFIG and
  config= name another; load_dataset is replaced by the local copies (no network)."""
  saved = {"sst2": datasets.load_from_disk(sst2["saved"].removeprefix("hf:")),
           "mnli": datasets.load_from_disk(mnli["saved"].removeprefix("hf:"))}
  calls = []

  def load_dataset(path, split=None, **kwargs):
    calls.append((path, kwargs["name"]))
    return saved[kwargs["name"]]

  monkeypatch.setattr(datasets, "load_dataset", load_dataset)
  read = KINDS["classification"].read
  want = read(get_task("mnli"), _config("mnli", mnli["tsv"]), "dev_mismatched", None)
  assert read(get_task("mnli"), _config("mnli", "hf:nyu-mll/glue"), "dev_mismatched", None) == want
  want = read(get_task("sst2"), _config("sst2", sst2["tsv"]), "train", 5)
  assert read(get_task("sst2"), _config("sst2", "hf:nyu-mll/glue"), "train", 5) == want
  assert read(get_task("sst2"), _config("sst2", "hf:glue"), "train", 5) == want
  for other in ("hf:nyu-mll/glue/mnli", "hf:nyu-mll/glue?config=mnli"):  # MNLI's columns
    with pytest.raises(ValueError, match="no column 'sentence'"):
      read(get_task("sst2"), _config("sst2", other), "train", 5)
  assert calls == [("nyu-mll/glue", "mnli"), ("nyu-mll/glue", "sst2"), ("glue", "sst2"),
                   ("nyu-mll/glue", "mnli"), ("nyu-mll/glue", "mnli")]


@pytest.mark.slow  # a whole training run; the default suite must stay under 15 min
def test_tiny_finetune_from_an_hf_source_writes_results(tmp_path, vocab, sst2):
  cfg = finetune_config(vocab, sst2["saved"], seeds=(1,), num_epochs=1.0,
                        save_checkpoint=False, tensorboard=False)
  results = ft.finetune_and_evaluate(cfg, str(tmp_path))
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["task"] == "sst2"
  assert on_disk["per_seed"]["accuracy"] == results["per_seed"]["accuracy"]
  assert results["dev_rows"] == {"dev": 12} and results["total_steps"] == 2  # 24 rows, batch 16
  submission = (tmp_path / "seed_1" / "SST-2.tsv").read_text().splitlines()  # the HF test split
  assert submission[0] == "index\tprediction" and [l.split("\t")[0] for l in submission[1:]] == [
      str(i) for i in range(6)]


# --- errors ---------------------------------------------------------------------------------


def _sst2_dict(root, name="bad", **splits):
  datasets.DatasetDict(splits).save_to_disk(str(root / name))
  return f"hf:{root}/{name}"


def _sst2_rows(n=3, labels=None, feature=SST2_CLASSES, **columns):
  rows = {"sentence": [f"good movie {i}" for i in range(n)],
          "label": labels if labels is not None else [i % 2 for i in range(n)],
          "idx": list(range(n)), **columns}
  features = {"sentence": datasets.Value("string"), "label": feature,
              "idx": datasets.Value("int32")}
  return datasets.Dataset.from_dict(rows, features=datasets.Features(
      {k: features.get(k, datasets.Value("string")) for k in rows}))


def _read(spec, task="sst2", split="train", **kw):
  return KINDS[get_task(task).kind].read(get_task(task), _config(task, spec, **kw), split, None)


def test_unknown_split_lists_the_splits(tmp_path, sst2):
  spec = _sst2_dict(tmp_path, train=_sst2_rows(), dev=_sst2_rows())
  with pytest.raises(ValueError, match=re.escape(
      f"{spec}: no split 'validation' (task sst2's dev split); the dataset has the splits "
      "['train', 'dev']: task sst2 reads the splits ['train', 'validation'] and ['test'] when "
      "present")):
    _read(spec, split="dev")
  train_only = sst2["parquet"].split("&")[0]
  with pytest.raises(ValueError, match=re.escape(
      "the dataset has the splits ['train']: task mnli reads the splits ['train', "
      "'validation_matched', 'validation_mismatched'] and ['test_matched', 'test_mismatched'] "
      "when present; name its files with data_files.validation_matched=PATTERN")):
    _read(train_only, task="mnli", split="dev_matched")
  assert not has_split(get_task("sst2"), _config("sst2", spec), "test")
  _sst2_rows().save_to_disk(str(tmp_path / "one"))
  with pytest.raises(ValueError, match=re.escape(
      f"hf:{tmp_path}/one holds one Dataset (saved with Dataset.save_to_disk), not a DatasetDict "
      "of splits: task sst2 reads the splits")):
    _read(f"hf:{tmp_path}/one")


def test_missing_column_lists_the_columns_and_what_the_task_reads(tmp_path):
  spec = _sst2_dict(tmp_path, train=_sst2_rows())
  with pytest.raises(ValueError, match=re.escape(
      f"{spec} split 'train': no column 'premise': the columns are ['sentence', 'label', 'idx']; "
      "task mnli reads the columns ['premise', 'hypothesis', 'idx', 'label'] (the GLUE layout")):
    _read(spec, task="mnli")
  no_idx = _sst2_dict(tmp_path, "no_idx", train=_sst2_rows().remove_columns("idx"))
  with pytest.raises(ValueError, match=r"no column 'idx': the columns are \['sentence', 'label'\]"):
    _read(no_idx)
  unlabelled = _sst2_dict(tmp_path, "unlabelled", train=_sst2_rows().remove_columns("label"),
                          test=_sst2_rows().remove_columns("label"))
  with pytest.raises(ValueError, match=r"no column 'label'"):
    _read(unlabelled)
  assert [e.label for e in _read(unlabelled, split="test")] == [None] * 3  # test splits need none
  squad = tmp_path / "squad.jsonl"
  squad.write_text(json.dumps({"id": "q", "question": "what ?", "context": "paris",
                               "answers": [{"text": "paris", "answer_start": 0}]}) + "\n")
  with pytest.raises(ValueError, match=re.escape(
      "split 'train': the answers column holds List({'text': Value('string'), 'answer_start': "
      "Value('int64')}); SQuAD reads {'text': [...], 'answer_start': [...]} per question")):
    _read(f"hf:json?data_files.train={squad}", task="squad1.1")
  squad.write_text(json.dumps({"id": "q", "question": "what ?", "context": "paris",
                               "answers": {"text": ["paris"], "answer_start": [3]}}) + "\n")
  with pytest.raises(ValueError, match=re.escape(
      "split 'train' row 0: answer 'paris' is not at answer_start=3")):  # checked in training data
    _read(f"hf:json?data_files.train={squad}", task="squad1.1")
  squad.write_text(json.dumps({"id": "q", "question": "what ?", "passage": "paris"}) + "\n")
  with pytest.raises(ValueError, match=re.escape(
      "no column 'context': the columns are ['id', 'question', 'passage']; SQuAD reads the "
      "columns ['id', 'question', 'context', 'answers']")):
    _read(f"hf:json?data_files.train={squad}", task="squad1.1")


def test_label_ids_outside_the_tasks_labels(tmp_path, capsys):
  path = tmp_path / "train.parquet"  # plain integers, no ClassLabel
  pq.write_table(pa.table({"sentence": ["good", "bad", "fine"], "label": [1, 2, 0],
                           "idx": [0, 1, 2]}), path)
  spec = f"hf:parquet?data_files.train={path}"
  with pytest.raises(ValueError, match=re.escape(
      f"{spec} split 'train' row 1: label id 2 is outside the sst2 class ids 0..1 "
      "(labels ['0', '1']) (pass on_malformed='skip'")):
    _read(spec)
  assert [(e.guid, e.label) for e in _read(spec, on_malformed="skip")] == [("0", "1"), ("2", "0")]
  assert "split 'train' row 1: label id 2" in capsys.readouterr().err
  no_label = _sst2_dict(tmp_path, train=_sst2_rows(labels=[0, -1, 1]))
  with pytest.raises(ValueError, match=re.escape(
      "split 'train' row 1: no label (label -1, as in the GLUE test splits): train and dev "
      "splits need their labels")):
    _read(no_label)
  empty = _sst2_dict(tmp_path, "empty", train=_sst2_rows(sentence=["good", " ", "bad"]))
  with pytest.raises(ValueError, match=r"split 'train' row 1: empty text field"):
    _read(empty)


def test_class_names_must_agree_with_the_tasks(tmp_path):
  swapped = datasets.ClassLabel(names=["positive", "negative"])
  spec = _sst2_dict(tmp_path, train=_sst2_rows(feature=swapped))
  with pytest.raises(ValueError, match=re.escape(
      f"{spec} split 'train': the label column's classes are ['positive', 'negative'], not task "
      "sst2's: its class ids 0..1 are the classes ['negative', 'positive'], read as the labels "
      "['0', '1'] (relabel the column")):
    _read(spec)
  # named as the task's own labels (in the TFDS order) is as good: ids map through tfds_labels
  own = _sst2_dict(tmp_path, "own", train=_sst2_rows(feature=datasets.ClassLabel(names=["0", "1"])))
  assert [e.label for e in _read(own)] == ["0", "1", "0"]
  sorted_mnli = datasets.ClassLabel(names=sorted(get_task("mnli").labels))  # the TSV labels, sorted
  pairs = _sst2_rows(feature=sorted_mnli, premise=["a"] * 3, hypothesis=["b"] * 3)
  with pytest.raises(ValueError, match=r"the label column's classes are \['contradiction', "):
    _read(_sst2_dict(tmp_path, "mnli", train=pairs), task="mnli")
  texts = _sst2_dict(tmp_path, "texts", train=_sst2_rows(labels=["0", "1", "1"],
                                                         feature=datasets.Value("string")))
  with pytest.raises(ValueError, match=re.escape(
      "the label column holds Value('string'); task sst2 reads class ids (integers or a "
      "ClassLabel)")):
    _read(texts)


def test_spec_options_sources_and_the_datasets_library(tmp_path, sst2, monkeypatch):
  with pytest.raises(ValueError, match=re.escape(
      "hf:parquet?data_files=x.parquet: unknown options ['data_files']: task data takes ['config', "
      "'data_dir', 'revision'] and the files of each split as data_files.SPLIT=PATTERN")):
    _config("sst2", "hf:parquet?data_files=x.parquet")  # refused with the config, before loading
  with pytest.raises(ValueError, match=re.escape(
      "hf:parquet: hf:parquet reads local files: name each split's files with "
      "data_files.SPLIT=PATTERN (e.g. hf:parquet?data_files.train=/d/train.parquet&")):
    _read("hf:parquet")
  with pytest.raises(ValueError, match=re.escape("and tfds=True name two sources")):
    _config("sst2", "hf:nyu-mll/glue", tfds=True)
  with pytest.raises(ValueError, match=re.escape(
      "task chunk: tagging reads native CoNLL files only; pass --data_dir=DIR (not --tfds or an "
      "hf: spec)")):
    _read(sst2["saved"], task="chunk")
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"hf:parquet: data_files pattern '{tmp_path}/nothing.parquet' matches no file")):
    _read(f"hf:parquet?data_files.train={tmp_path}/nothing.parquet")
  with pytest.raises(ValueError, match=re.escape(
      f"hf:{tmp_path}/nothing: no such directory, and not a dataset NAME, OWNER/NAME or "
      "OWNER/NAME/CONFIG")):
    _read(f"hf:{tmp_path}/nothing")
  monkeypatch.setitem(sys.modules, "datasets", None)
  with pytest.raises(ImportError, match=re.escape(
      "hf: task data reads Hugging Face datasets, and the datasets library is not installed: "
      'pip install "electra_jax[hf]"')):
    _read(sst2["saved"])


def test_hub_dataset_offline_fails_without_touching_the_network():
  with pytest.raises(Exception, match="nyu-mll/glue"):
    _read("hf:nyu-mll/glue")
