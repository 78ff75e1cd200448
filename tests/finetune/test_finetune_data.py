"""Fine-tuning readers on fixtures: GLUE TSV, SQuAD JSON, CoNLL; malformed rows name file and
line; SQuAD windows/offsets/answers; tagging first-piece labels; TFDS under mock_data."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from data_pipelines import glue, squad, tagging, tokenizers
from electra_jax.finetune import train as ft
from electra_jax.finetune.config import FinetuneConfig, Hparams
from electra_jax.finetune.kinds import KINDS
from electra_jax.finetune.tasks import get_task

WORDS = ("the cat sat on mat dog ran far away paris is capital of france where what "
         "city big red . , ? ! run ##ning ##s a an").split()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
  return tokenizers.load(f"wordpiece:{path}")


def _write(path: Path, text: str) -> str:
  path.write_text(text)
  return str(path)


# --- GLUE -----------------------------------------------------------------------------------

def test_sst2_tsv_and_features(tmp_path, tok):
  f = _write(tmp_path / "train.tsv", "sentence\tlabel\nthe cat sat \t1\na dog ran far\t0\n")
  ex = glue.read_tsv(f, "sst2", ("0", "1"))
  assert [(e.text_a, e.label) for e in ex] == [("the cat sat ", "1"), ("a dog ran far", "0")]
  feats = glue.featurize(ex, tok, 8)
  cls, sep = tok.cls_id, tok.sep_id
  the, cat, sat = tok.encode(["the cat sat"])[0]
  assert feats["input_ids"][0].tolist() == [cls, the, cat, sat, sep, 0, 0, 0]
  assert feats["attention_mask"][0].tolist() == [1] * 5 + [0] * 3
  assert feats["token_type_ids"].sum() == 0


def test_pair_truncation_longest_first(tmp_path, tok):
  ex = [glue.TextExample("0", "the cat sat on the mat", "dog ran", "entailment")]
  feats = glue.featurize(ex, tok, 8)  # budget 5 tokens: 6+2 -> 3+2
  ids = feats["input_ids"][0].tolist()
  assert ids == [tok.cls_id] + tok.encode(["the cat sat"])[0] + [tok.sep_id] \
      + tok.encode(["dog ran"])[0] + [tok.sep_id]
  assert feats["token_type_ids"][0].tolist() == [0] * 5 + [1] * 3


def test_cola_without_header_and_qqp_ids(tmp_path):
  f = _write(tmp_path / "dev.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
  ex = glue.read_tsv(f, "cola", ("0", "1"))
  assert [(e.guid, e.text_a, e.label) for e in ex] == [("1", "The cat sat.", "1"),
                                                       ("2", "Cat the sat.", "0")]
  q = _write(tmp_path / "qqp.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
             '7\t1\t2\tWhat "is" it?\tIs it?\t1\n')
  (e,) = glue.read_tsv(q, "qqp", ("0", "1"))
  assert (e.guid, e.text_a, e.text_b, e.label) == ("7", 'What "is" it?', "Is it?", "1")


def test_test_split_has_no_labels_and_stsb_floats(tmp_path):
  f = _write(tmp_path / "test.tsv", "index\tsentence\n0\tgood\n1\tbad\n")
  assert [e.label for e in glue.read_tsv(f, "sst2", ("0", "1"))] == [None, None]
  s = _write(tmp_path / "sts.tsv", "index\tgenre\tsentence1\tsentence2\tscore\n"
             "0\tx\ta b\tc d\t3.800\n")
  assert glue.read_tsv(s, "stsb", None)[0].label == pytest.approx(3.8)


def test_bom_and_crlf_mrpc_tsv(tmp_path):

  # The official MRPC train.tsv starts with a UTF-8 byte-order mark; Windows copies end in CRLF.
  (tmp_path / "MRPC").mkdir()
  (tmp_path / "MRPC" / "train.tsv").write_bytes(
      b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
      b"1\t11\t12\tthe cat sat\ta dog ran\r\n0\t13\t14\tparis\tfrance\r\n")
  cfg = FinetuneConfig(task="mrpc", init="random", data_dir=str(tmp_path))
  ex = ft._train_examples(get_task("mrpc"), cfg)
  assert [(e.guid, e.text_a, e.text_b, e.label) for e in ex] == [
      ("1", "the cat sat", "a dog ran", "1"), ("2", "paris", "france", "0")]


def test_labelled_split_without_label_column_fails_at_load(tmp_path):

  (tmp_path / "SST-2").mkdir()
  for split in ("train", "test"):
    _write(tmp_path / "SST-2" / f"{split}.tsv", "index\tsentence\n0\tgood\n")
  cfg = FinetuneConfig(task="sst2", init="random", data_dir=str(tmp_path))
  train = tmp_path / "SST-2" / "train.tsv"
  with pytest.raises(ValueError, match=re.escape(
      f"{train}: no sst2 label column 'label': found columns ['index', 'sentence'], expected "
      "['sentence', 'label'] (train and dev files need their labels)")):
    ft._train_examples(get_task("sst2"), cfg)
  assert [e.label for e in KINDS["classification"].read(get_task("sst2"), cfg, "test", None)] == [None]


def test_malformed_rows_name_file_and_line(tmp_path, capsys):
  f = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nno label here\nbad\t0\n")
  with pytest.raises(ValueError, match=r"train\.tsv:3: expected 2 tab-separated fields, found 1"):
    glue.read_tsv(f, "sst2", ("0", "1"))
  ex = glue.read_tsv(f, "sst2", ("0", "1"), on_malformed="skip")
  assert [e.text_a for e in ex] == ["good", "bad"]
  assert "train.tsv:3" in capsys.readouterr().err


def test_label_outside_task_label_set(tmp_path):
  f = _write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
  with pytest.raises(ValueError, match=r"dev\.tsv:2: label 'neutral' is not one of the rte labels"):
    glue.read_tsv(f, "rte", get_task("rte").labels)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.tsv"):
    glue.read_tsv(str(tmp_path / "nope.tsv"), "sst2", ("0", "1"))


def test_double_unordered_appends_swapped_pairs():
  ex = [glue.TextExample("0", "the cat", "a dog", "1"), glue.TextExample("1", "paris", "france",
                                                                         "0")]
  doubled = glue.double_unordered(ex)
  assert doubled[:2] == ex
  assert [(e.guid, e.text_a, e.text_b, e.label) for e in doubled[2:]] == [
      ("0-swapped", "a dog", "the cat", "1"), ("1-swapped", "france", "paris", "0")]
  with pytest.raises(ValueError, match="needs sentence pairs"):
    glue.double_unordered([glue.TextExample("0", "the cat", None, "1")])


def _glue_dirs(root: Path) -> Path:
  """MRPC (pairs, unordered), RTE (pairs, ordered) and SST-2 (single sentences), 6 rows each."""
  pairs = [("the cat sat", "a dog ran"), ("paris is big", "france"), ("what city", "where"),
           ("the mat", "a cat"), ("red dog", "big cat"), ("run", "the dog ran far")]
  (root / "MRPC").mkdir(parents=True)
  _write(root / "MRPC" / "train.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(
      f"{i % 2}\t{i}\t{i + 9}\t{a}\t{b}\n" for i, (a, b) in enumerate(pairs)))
  (root / "RTE").mkdir()
  _write(root / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n" + "".join(
      f"{i}\t{a}\t{b}\tentailment\n" for i, (a, b) in enumerate(pairs)))
  (root / "SST-2").mkdir()
  _write(root / "SST-2" / "train.tsv", "sentence\tlabel\n" + "".join(
      f"{a}\t{i % 2}\n" for i, (a, _) in enumerate(pairs)))
  return root


def test_double_unordered_doubles_mrpc_training_only(tmp_path, tok):

  data = _glue_dirs(tmp_path)
  cfg = FinetuneConfig(task="mrpc", init="random", data_dir=str(data), max_train_examples=4,
                       double_unordered=True)
  mrpc = ft._train_examples(get_task("mrpc"), cfg)
  # The cap applies first (4 pairs), then each pair comes again with its sentences swapped.
  assert [(e.text_a, e.text_b) for e in mrpc] == [
      ("the cat sat", "a dog ran"), ("paris is big", "france"), ("what city", "where"),
      ("the mat", "a cat"), ("a dog ran", "the cat sat"), ("france", "paris is big"),
      ("where", "what city"), ("a cat", "the mat")]
  assert [e.label for e in mrpc] == ["0", "1", "0", "1"] * 2
  feats = glue.featurize(mrpc, tok, 12)
  cls, sep = tok.cls_id, tok.sep_id
  dog, cat = tok.encode(["a dog ran"])[0], tok.encode(["the cat sat"])[0]
  assert feats["input_ids"][4].tolist() == [cls, *dog, sep, *cat, sep, 0, 0, 0]
  assert feats["token_type_ids"][4].tolist() == [0] * 5 + [1] * 4 + [0] * 3
  # Off by default; ordered pairs (RTE) and single sentences (SST-2) are never doubled.
  assert len(ft._train_examples(get_task("mrpc"), cfg.replace(double_unordered=False))) == 4
  assert len(ft._train_examples(get_task("rte"), cfg.replace(task="rte"))) == 4
  assert len(ft._train_examples(get_task("sst2"), cfg.replace(task="sst2"))) == 4
  assert [t for t in ("mrpc", "stsb", "qqp", "rte", "mnli") if get_task(t).unordered_pair] == [
      "mrpc", "stsb"]


def test_random_training_subset(tmp_path):

  data = _glue_dirs(tmp_path)
  cfg = FinetuneConfig(task="sst2", init="random", data_dir=str(data), max_train_examples=3)
  everything = [e.text_a for e in ft._train_examples(get_task("sst2"), cfg.replace(
      max_train_examples=None))]
  assert [e.text_a for e in ft._train_examples(get_task("sst2"), cfg)] == everything[:3]
  subsets = {tuple(e.text_a for e in ft._train_examples(get_task("sst2"), cfg.replace(
      train_sample_seed=s, seeds=(s + 1,)))) for s in range(6)}
  # Each draw is 3 distinct rows in file order; the draws depend on train_sample_seed only.
  assert len(subsets) > 1
  for subset in subsets:
    assert len(set(subset)) == 3 and list(subset) == sorted(subset, key=everything.index)
  again = ft._train_examples(get_task("sst2"), cfg.replace(train_sample_seed=2, seeds=(7, 8)))
  assert tuple(e.text_a for e in again) in subsets


def test_tfds_glue_under_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  task = get_task("glue/mnli")
  with tfds.testing.mock_data(num_examples=7):
    ex = glue.read_tfds("glue/mnli", "validation_matched", "mnli", task.tfds_labels)
    ds = tfds.as_numpy(tfds.load("glue/mnli", split="validation_matched"))
    raw = list(ds)
  assert len(ex) == 7
  names = ("entailment", "neutral", "contradiction")
  for e, r in zip(ex, raw):
    assert e.text_a == r["premise"].decode() and e.text_b == r["hypothesis"].decode()
    assert e.label == names[r["label"]] and e.guid == str(r["idx"])
    assert e.label in task.labels


def test_tfds_sst2_task_data_under_mock_data(tok, monkeypatch):
  """--tfds for sst2 on the reading side, no network: the task's train/dev/test splits through
  Classification.read (max_eval_examples=5 asks TFDS for "validation[:5]"; mock_data ignores
  the slice) and featurisation. Also the builder's download checksums, which TFDS reads from
  beside the dataset's code when it prepares GLUE on a fresh install: finding them imports
  importlib_resources (a pyproject dependency: tensorflow-datasets 4.9.10 uses it without
  declaring it on Python >= 3.9)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  task = get_task("sst2")
  cfg = FinetuneConfig(task="sst2", init="random", tfds=True, max_eval_examples=5)
  hp = Hparams(size="small", learning_rate=1e-4, layerwise_lr_decay=0.8, num_epochs=1.0,
               max_seq_length=16)
  splits = []
  load = tfds.load
  monkeypatch.setattr(tfds, "load", lambda name, split, **kw: splits.append((name, split))
                      or load(name, split=split, **kw))
  with tfds.testing.mock_data(num_examples=9):
    data = ft.load_task_data(task, cfg, hp, tok)
    raw_dev = list(tfds.as_numpy(load("glue/sst2", split="validation")))
  assert splits == [("glue/sst2", "train"), ("glue/sst2", "validation[:5]"),
                    ("glue/sst2", "test[:5]")]
  assert data.labels == ("0", "1") and data.train.size == 9
  dev = data.dev[0]
  assert dev.name == "dev" and dev.arrays["input_ids"].shape == (9, 16)
  for e, r in zip(dev.examples, raw_dev):
    assert e.text_a == r["sentence"].decode() and e.text_b is None
    assert e.label == str(r["label"]) and e.guid == str(r["idx"])
  np.testing.assert_array_equal(dev.arrays["labels"], [int(r["label"]) for r in raw_dev])
  assert [s.name for s in data.test] == ["test"]
  assert "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip" in tfds.builder_cls("glue").url_infos


# --- SQuAD ----------------------------------------------------------------------------------

CONTEXT = "paris is the capital of france . the big red dog ran far away ."


def _squad_json(tmp_path, qas, context=CONTEXT):
  data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
      {"context": context, "qas": qas}]}]}
  return _write(tmp_path / "train.json", json.dumps(data))


def test_squad_reader_and_answer_check(tmp_path):
  good = {"id": "q1", "question": "what is the capital of france ?",
          "answers": [{"text": "paris", "answer_start": 0}]}
  none = {"id": "q2", "question": "where is the cat ?", "answers": [], "is_impossible": True}
  ex = squad.read_json(_squad_json(tmp_path, [good, none]))
  assert ex[0].answers == ("paris",) and not ex[0].is_impossible
  assert ex[1].is_impossible and ex[1].answers == ()
  bad = dict(good, answers=[{"text": "paris", "answer_start": 5}])
  with pytest.raises(ValueError, match=r"train\.json:data\[0\]\.paragraphs\[0\]\.qas\[1\]: "
                                       r"answer 'paris' is not at answer_start=5"):
    squad.read_json(_squad_json(tmp_path, [good, bad]))


def test_squad_windows_offsets_and_postprocess(tmp_path, tok):
  ans_start = CONTEXT.index("big red dog")
  qa = {"id": "q1", "question": "what ran ?",
        "answers": [{"text": "big red dog", "answer_start": ans_start}]}
  (ex,) = squad.read_json(_squad_json(tmp_path, [qa]))
  # question 3 tokens -> room for 16 - 3 - 3 = 10 context tokens per window, stride 4.
  arrays, feats = squad.featurize([ex], tok, max_seq_length=16, doc_stride=4,
                                  max_query_length=64, training=True)
  n_ctx = len(tok.encode([CONTEXT])[0])  # 15 tokens
  assert n_ctx == 15
  assert len(feats) == 3  # windows start at 0, 4, 8 (8 + 10 >= 15)
  # Every context token is max-context in exactly one window.
  counts = {}
  for f in feats:
    for off, mc in zip(f.offsets, f.max_context):
      if off is not None and mc:
        counts[off] = counts.get(off, 0) + 1
  assert len(counts) == n_ctx and set(counts.values()) == {1}
  # The answer (context tokens 8-10) lies in windows 2 and 3; window 1 (tokens 0-9) cuts it.
  starts, ends = arrays["start_positions"].tolist(), arrays["end_positions"].tolist()
  assert starts[0] == 0 and ends[0] == 0
  first = 1 + 3 + 1
  assert (starts[1], ends[1]) == (first + 8 - 4, first + 10 - 4)
  for i in (1, 2):
    s, e = starts[i], ends[i]
    assert CONTEXT[feats[i].offsets[s][0]:feats[i].offsets[e][1]] == "big red dog"
  assert arrays["token_type_ids"][0].tolist() == [0] * 5 + [1] * 11
  # Postprocess: put the highest logits on the gold span of window 2.
  L = 16
  start = np.zeros((3, L), np.float32)
  end = np.zeros((3, L), np.float32)
  start[1, starts[1]] = 5.0
  end[1, ends[1]] = 5.0
  preds, diffs = squad.postprocess([ex], feats, start, end, version="v2.0")
  assert preds == {"q1": "big red dog"} and diffs["q1"] == pytest.approx(-10.0)
  start[:, 0] = end[:, 0] = 6.0  # null score 12 > 10: v2.0 abstains, v1.1 never does
  assert squad.postprocess([ex], feats, start, end, version="v2.0")[0] == {"q1": ""}
  assert squad.postprocess([ex], feats, start, end, version="v1.1")[0] == {"q1": "big red dog"}


def test_tfds_squad_under_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=4):
    ex = squad.read_tfds("squad/v2.0", "validation")
    raw = list(tfds.as_numpy(tfds.load("squad/v2.0", split="validation")))
  assert [e.qid for e in ex] == [r["id"].decode() for r in raw]
  for e, r in zip(ex, raw):
    assert e.is_impossible == bool(r["is_impossible"])
    want = () if e.is_impossible else tuple(t.decode() for t in r["answers"]["text"])
    assert e.answers == want and e.context == r["context"].decode()


# --- Tagging --------------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- O O

the DT B-NP
running VBG I-NP
cat NN I-NP
sat VBD B-VP

dogs NNS B-NP
ran VBD B-VP
"""


def test_conll_reader_and_first_piece_labels(tmp_path, tok):
  f = _write(tmp_path / "train.txt", CONLL)
  sents = tagging.read_conll(f)
  assert [s.words for s in sents] == [("the", "running", "cat", "sat"), ("dogs", "ran")]
  assert sents[0].tags == ("B-NP", "I-NP", "I-NP", "B-VP")
  tag_to_id = {"O": 0, "B-NP": 1, "I-NP": 2, "B-VP": 3}
  arrays, owners = tagging.featurize(sents, tok, 8, tag_to_id)
  # "running" -> run ##ning: its label sits on "run", "##ning" is ignored (-1).
  assert tok.encode(["running"])[0] == [WORDS.index("run") + 5, WORDS.index("##ning") + 5]
  assert arrays["labels"][0].tolist() == [-1, 1, 2, -1, 2, 3, -1, -1]
  assert arrays["word_index"][0].tolist() == [-1, 0, 1, -1, 2, 3, -1, -1]
  assert owners == [0, 1]
  # A sentence longer than the budget is split at word boundaries: every word once.
  arrays, owners = tagging.featurize(sents, tok, 5, tag_to_id)  # budget 3 pieces
  assert owners == [0, 0, 1]
  preds = np.where(arrays["labels"] >= 0, arrays["labels"], 0)
  id_to_tag = sorted(tag_to_id, key=tag_to_id.get)
  back = tagging.assemble(sents, owners, arrays["word_index"], preds, id_to_tag)
  assert back == [list(s.tags) for s in sents]


def test_conll_malformed_line_and_unknown_tag(tmp_path, tok):
  f = _write(tmp_path / "bad.txt", "the DT B-NP\ncat I-NP\n")
  with pytest.raises(ValueError, match=r"bad\.txt:2: expected 3 columns, found 2"):
    tagging.read_conll(f)
  sents = tagging.read_conll(_write(tmp_path / "ok.txt", "cat NN B-XX\n"))
  with pytest.raises(ValueError, match=r"tags \['B-XX'\] are not in the task's tag set"):
    tagging.featurize(sents, tok, 8, {"O": 0})


def test_squad_and_conll_accept_bom_and_crlf(tmp_path):
  qa = {"id": "q1", "question": "what ?", "answers": [{"text": "paris", "answer_start": 0}]}
  path = Path(_squad_json(tmp_path, [qa]))
  path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
  assert squad.read_json(str(path))[0].answers == ("paris",)
  conll = tmp_path / "train.txt"
  conll.write_bytes(b"\xef\xbb\xbfthe DT B-NP\r\ncat NN I-NP\r\n\r\nran VB O\r\n")
  sentences = tagging.read_conll(str(conll))
  assert [(s.words, s.tags) for s in sentences] == [(("the", "cat"), ("B-NP", "I-NP")),
                                                    (("ran",), ("O",))]


def test_unknown_task_suggests_close_match():
  with pytest.raises(ValueError, match="unknown task 'sst3'. Did you mean sst2"):
    get_task("sst3")
  assert get_task("SST-2").name == "sst2" and get_task("squad/v2.0").name == "squad2.0"
  assert get_task("glue/mnli").name == "mnli"
