"""Fine-tuning on your own labelled data: a 3-class CSV, a regression JSONL, a multi-label
JSONL, a tagging Parquet file and an hf: spec, with the label set read from the training split
and one-line errors naming the row."""

import csv
import io
import json
import shlex

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import electra_jax
from electra_jax.finetune import predict
from electra_jax.finetune import train as ft
from electra_jax.io import convert
from electra_jax.finetune.config import resolve_task
from finetune_testlib import finetune_config, vocab  # noqa: F401 (fixture)

CLASSES = {"good": "pos", "bad": "neg", "fine": "meh"}


def _sentence(rng, word):
  filler = list(rng.choice(["the", "movie", "film", "plot", "was", "very"], 3))
  filler.insert(int(rng.integers(0, 4)), word)
  return " ".join(filler)


def three_class_csv(root, n_train=48, n_dev=12):
  """train.csv / dev.csv with columns review, stars (names pos / neg / meh), commas quoted."""
  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  for name, n in (("train", n_train), ("dev", n_dev)):
    with open(root / f"{name}.csv", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["id", "review", "stars"])
      for i in range(n):
        word = list(CLASSES)[i % 3]
        w.writerow([i, _sentence(rng, word) + " , a", CLASSES[word]])
  return root


def regression_jsonl(root, n_train=32, n_dev=8):
  rng = np.random.default_rng(1)
  root.mkdir(parents=True, exist_ok=True)
  for name, n in (("train", n_train), ("validation", n_dev)):
    with open(root / f"{name}.jsonl", "w") as f:
      for i in range(n):
        word = ["good", "bad"][i % 2]
        f.write(json.dumps({"text": _sentence(rng, word), "score": 4.5 if word == "good" else 1.0})
                + "\n")
  return root


def _run(tmp_path, vocab, data, task, **kw):
  kw = {"num_epochs": 2.0, "write_predictions": False, **kw}
  cfg = finetune_config(vocab, data, task=task, **kw)
  return ft.finetune_and_evaluate(cfg, str(tmp_path / "work")), cfg


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory, vocab):
  """(workdir, results, closing message) of the 3-class CSV fine-tuned with the defaults."""
  root = tmp_path_factory.mktemp("three")
  data = three_class_csv(root / "data")
  results, _ = _run(root, vocab, data, "classification", text_column="review",
                    label_column="stars")
  return root / "work", results, ft.closing_message(str(root / "work"), results)


def test_three_class_csv_labels_from_training_split(three_class_run):
  workdir, results, _ = three_class_run
  assert results["labels"] == ["meh", "neg", "pos"]  # sorted names, recorded
  assert results["metric_names"] == ["accuracy", "macro_f1", "mcc"]
  record = json.loads((workdir / "seed_1" / "final" / "electra_jax.json").read_text())["finetune"]
  assert record["labels"] == record["label_names"] == ["meh", "neg", "pos"]
  assert record["columns"] == ["review", None, "stars"]


def test_closing_message_export_runs_in_a_pipeline(three_class_run, tmp_path):
  """The command the closing message proposes works, and its output runs in
  pipeline("text-classification") with the class names, on a text longer than the model's 64
  positions (tokenizer_config.json carries model_max_length)."""
  transformers = pytest.importorskip("transformers")
  workdir, _, closing = three_class_run
  command = next(line for line in closing.splitlines() if "electra-convert" in line)
  args = shlex.split(command.split(": ", 1)[1])[1:]
  assert args[1] == "OUT_DIR"
  assert convert.main([args[0], str(tmp_path / "hf")] + args[2:]) == 0
  assert "pipeline('text-classification', model='OUT_DIR')" in closing
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert config["id2label"] == {"0": "meh", "1": "neg", "2": "pos"}
  assert config["problem_type"] == "single_label_classification"
  classify = transformers.pipeline("text-classification", model=str(tmp_path / "hf"),
                                   device="cpu")
  assert classify.tokenizer.model_max_length == 64
  out = classify(["good film " * 100, "bad plot"], truncation=True)
  assert {o["label"] for o in out} <= {"meh", "neg", "pos"}


def test_regression_jsonl_reads_numbers_and_names_a_bad_row(tmp_path, vocab):
  from electra_jax.finetune.kinds import KINDS
  data = regression_jsonl(tmp_path / "reg")
  cfg = finetune_config(vocab, data, task="regression", label_column="score")
  task = resolve_task(cfg)
  examples = KINDS["regression"].read(task, cfg, "dev", None)
  assert [e.label for e in examples[:2]] == [4.5, 1.0] and task.metrics == ("spearman", "pearson")
  with open(data / "validation.jsonl", "a") as f:
    f.write(json.dumps({"text": "a film", "score": "high"}) + "\n")
  with pytest.raises(ValueError, match=r"validation.jsonl:9: column 'score': label 'high' is not "
                                       "a number"):
    KINDS["regression"].read(task, cfg, "dev", None)


@pytest.mark.slow
def test_regression_jsonl_fine_tunes(tmp_path, vocab):
  data = regression_jsonl(tmp_path / "reg")
  results, _ = _run(tmp_path, vocab, data, "regression", label_column="score")
  assert results["metric_names"] == ["spearman", "pearson"] and results["labels"] == []


def _multilabel_dir(root):
  root.mkdir()
  rows = [{"text": "good film", "labels": ["pos", "film"]}, {"text": "bad plot", "labels": []},
          {"text": "good plot", "labels": ["pos"]}, {"text": "bad film", "labels": ["film"]}]
  for name in ("train", "dev"):
    (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
  return root


def test_multilabel_labels_targets_and_scores(tmp_path, vocab):
  """The class set is the union of the training lists; targets are 0/1 rows; a class is
  predicted where its logit > 0; a CSV cell lists classes separated by commas."""
  from data_pipelines import tokenizers
  from electra_jax.finetune.config import resolve_hparams
  from electra_jax.finetune.kinds import KINDS
  from electra_jax.model.config import PRESETS
  cfg = finetune_config(vocab, _multilabel_dir(tmp_path / "multi"), task="multilabel")
  task = resolve_task(cfg)
  data = ft.load_task_data(task, cfg, resolve_hparams(cfg, task, PRESETS["tiny"].model),
                           tokenizers.load(f"wordpiece:{vocab}"))
  assert data.labels == ("film", "pos")
  assert data.dev[0].arrays["labels"][:4].tolist() == [[1, 1], [0, 0], [0, 1], [1, 0]]
  kind = KINDS["multilabel"]
  logits = np.array([[2.0, 1.0], [-1.0, -3.0], [-0.5, 0.5], [0.5, 0.5]] * 4)
  scores, preds = kind.score(task, cfg, data.labels, data.dev[0], logits)
  assert scores == {"micro_f1": pytest.approx(100 * 8 / 9),  # tp 4, fp 1 per 4 rows
                    "macro_f1": pytest.approx(100 * (4 / 5 + 1) / 2), "exact_match": 75.0}
  assert kind._format(data.labels, preds[0]) == "film,pos"
  (tmp_path / "csv").mkdir()
  (tmp_path / "csv" / "train.csv").write_text('text,labels\ngood,"pos, film"\nbad,\n')
  (tmp_path / "csv" / "dev.csv").write_text("text,labels\ngood,pos\n")
  cfg = finetune_config(vocab, tmp_path / "csv", task="multilabel")
  assert KINDS["multilabel"].read(task, cfg, "train", None)[0].label == ("film", "pos")


@pytest.mark.slow
def test_multilabel_learns(tmp_path, vocab):
  results, _ = _run(tmp_path, vocab, _multilabel_dir(tmp_path / "multi"), "multilabel",
                    learning_rate=1e-2, batch_size=4, num_epochs=4.0)
  assert results["metric_names"] == ["micro_f1", "macro_f1", "exact_match"]
  assert results["median"]["micro_f1"] > 50.0  # above "film" everywhere: the words tell


@pytest.mark.slow
def test_tagging_parquet_any_tag_set(tmp_path, vocab):
  data = tmp_path / "tags"
  data.mkdir()
  rows = [{"tokens": ["the", "dog", "ran"], "tags": ["DET", "NOUN", "VERB"]},
          {"tokens": ["a", "city"], "tags": ["DET", "NOUN"]}] * 8
  for name in ("train", "dev"):
    pq.write_table(pa.Table.from_pylist(rows), data / f"{name}.parquet")
  results, _ = _run(tmp_path, vocab, data, "tagging", learning_rate=1e-2, batch_size=4,
                    num_epochs=4.0)
  assert results["labels"] == ["DET", "NOUN", "VERB"]
  assert results["median"]["accuracy"] == 100.0
  transformers = pytest.importorskip("transformers")
  assert convert.main([str(tmp_path / "work" / "seed_1" / "final"), str(tmp_path / "hf")]) == 0
  tag = transformers.pipeline("token-classification", model=str(tmp_path / "hf"), device="cpu")
  assert [t["entity"] for t in tag("the dog ran")] == ["DET", "NOUN", "VERB"]


@pytest.mark.slow
def test_hf_spec_with_classlabel_names(tmp_path, vocab):
  datasets = pytest.importorskip("datasets")
  features = datasets.Features({"sentence": datasets.Value("string"),
                                "topic": datasets.ClassLabel(names=["sport", "art", "food",
                                                                    "war", "sea"])})
  rows = {"sentence": ["the dog ran", "big red city", "paris france", "the plot", "a film"] * 4,
          "topic": [0, 1, 2, 3, 4] * 4}
  ds = datasets.Dataset.from_dict(rows, features=features)
  datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "hf"))
  results, _ = _run(tmp_path, vocab, f"hf:{tmp_path / 'hf'}", "classification",
                    text_column="sentence", label_column="topic")
  assert results["labels"] == ["art", "food", "sea", "sport", "war"]


@pytest.mark.parametrize("dev,message", [
    ("id,review,stars\n1,good movie,pos\n2,the plot,great\n",
     r"dev.csv:3: label 'great' of the dev split never occurs in the training split"),
    ("id,review,stars\n1,good movie,pos\n2, ,neg\n", r"dev.csv:3: empty text in column 'review'"),
    ("id,text,stars\n1,good movie,pos\n", r"dev.csv: no column 'review': the columns are"),
])
def test_errors_name_the_row(tmp_path, vocab, dev, message):
  data = three_class_csv(tmp_path / "data", n_train=6)
  (data / "dev.csv").write_text(dev)
  with pytest.raises(ValueError, match=message):
    _run(tmp_path, vocab, data, "classification", text_column="review", label_column="stars")


def test_columns_apply_to_own_data_tasks_only(tmp_path, vocab):
  with pytest.raises(ValueError, match="task sst2 reads its benchmark's own columns"):
    finetune_config(vocab, tmp_path, text_column="review")
  cfg = finetune_config(vocab, tmp_path, task="classification", text_pair_column="b")
  assert resolve_task(cfg).columns == ("text", "b", "label")


def test_python_api_scores_texts_and_pairs(three_class_run):
  """load_classifier + one call: batched (batch 2 over 5 texts), padded, truncated (a text far
  longer than the 16 tokens fine-tuning used), pairs too; the result equals electra-predict's."""
  workdir, _, _ = three_class_run
  clf = electra_jax.load_classifier(str(workdir), batch_size=2)
  texts = ["good movie", "bad plot , a", "fine film", "the plot was very " * 40, "good"]
  out = clf(texts)
  assert [set(o) for o in out] == [{"label", "score", "scores"}] * 5
  assert all(o["label"] in ("meh", "neg", "pos") for o in out)
  logits = clf.logits(texts)
  assert logits.shape == (5, 3)
  assert [o["label"] for o in out] == [("meh", "neg", "pos")[i] for i in logits.argmax(-1)]
  paired = clf.logits(texts[:2], text_pairs=["the film", "a plot"])
  assert paired.shape == (2, 3) and not np.allclose(paired, logits[:2])
  with pytest.raises(TypeError, match="pass a list of texts"):
    clf("good movie")


def test_tokenizer_batch_call_pads_and_truncates(vocab):
  from data_pipelines import tokenizers
  tok = tokenizers.load(f"wordpiece:{vocab}")
  batch = tok(["good movie", "the plot was very bad"], text_pairs=[None, "a film"], max_length=8)
  assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == np.int32
  assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0, 0], [1] * 8]
  assert batch["token_type_ids"][1].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]  # longest-first cut
  assert tok.decode(batch["input_ids"][1]) == "the plot was a film"
  assert tok(["good"], max_length=8, padding="max_length")["input_ids"].shape == (1, 8)
  assert tok(["good", "a"])["input_ids"].shape == (2, 3)  # padded to the longest row


def test_predict_stdin_stdout_and_csv(three_class_run, tmp_path, monkeypatch, capsys):
  workdir, _, _ = three_class_run
  monkeypatch.setattr("sys.stdin", io.StringIO("review\tid\ngood movie\t7\nbad , plot\t8\n"))
  assert predict.main([f"--model={workdir}", "--input=-", "--output=-"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "review\tid\tprediction\tprobability_meh\tprobability_neg\tprobability_pos"
  assert [line.split("\t")[:2] for line in lines[1:]] == [["good movie", "7"], ["bad , plot", "8"]]
  (tmp_path / "in.csv").write_text('review,id\n"good, fine movie",1\n')
  assert predict.main([f"--model={workdir}", f"--input={tmp_path / 'in.csv'}",
                       f"--output={tmp_path / 'out.csv'}"]) == 0
  rows = list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
  assert rows[0]["review"] == "good, fine movie" and rows[0]["prediction"] in ("meh", "neg", "pos")


def test_curves_reference_is_the_majority_class(tmp_path, vocab):
  """The dev accuracy of always predicting the most frequent training class: a flat curve at
  it has learned nothing."""
  from data_pipelines import tokenizers
  from electra_jax.finetune.config import resolve_hparams
  from electra_jax.finetune.kinds import KINDS
  from electra_jax.model.config import PRESETS
  data = tmp_path / "d"
  data.mkdir()
  (data / "train.csv").write_text("text,label\n" + "good,a\n" * 3 + "bad,b\n")
  (data / "dev.csv").write_text("text,label\ngood,a\nbad,b\nbad,b\nfine,a\nfine,b\n")
  cfg = finetune_config(vocab, data, task="classification")
  task = resolve_task(cfg)
  hp = resolve_hparams(cfg, task, PRESETS["tiny"].model)
  d = ft.load_task_data(task, cfg, hp, tokenizers.load(f"wordpiece:{vocab}"))
  assert KINDS["classification"].references(task, d.labels, d.train, d.dev[0]) == {
      "accuracy": [("majority class", 40.0)]}


@pytest.mark.slow
def test_quality_and_sweep_take_own_data_tasks(three_class_run, tmp_path, vocab):
  """electra_jax.quality and the sweep fine-tune an own-data task through the same config
  (columns as FinetuneConfig fields)."""
  from electra_jax import quality
  from electra_jax.finetune import sweep
  workdir, _, _ = three_class_run
  data = three_class_csv(tmp_path / "data", n_train=12, n_dev=6)
  cfg = finetune_config(vocab, data, task="classification", text_column="review",
                        label_column="stars", num_epochs=1.0, write_predictions=False)
  rows = quality.run_quality(cfg, ["classification"], str(tmp_path / "q"))
  assert [(r["task"], r["metric"]) for r in rows] == [("classification", "accuracy")]
  rows = sweep.sweep(cfg.replace(tokenizer=None, size=None, model_overrides=()),
                     str(workdir / "seed_1" / "final"),
                     str(tmp_path / "s"))
  assert len(rows) == 1 and rows[0]["metric"] == "accuracy"
