"""`python -m electra_jax.finetune.predict` end to end: a tiny model fine-tuned on the synthetic
SST-2 scores sentences through the command line (TSV and JSON Lines, a model directory or the
WORKDIR's best seed) exactly as fine-tuning scored its dev set; after `electra-convert`,
transformers' text-classification pipeline gives the same labels and probabilities; regression
on sentence pairs; one clear error line for each bad input."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import electra_fixtures as F
from data_pipelines import glue, tokenizers
from electra_jax.finetune import predict
from electra_jax.finetune import train as ft
from electra_jax.io import convert, native
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig
from finetune_testlib import TINY, finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
NEW_SENTENCES = ["the plot was very good", "awful film", "a great movie", "poor plot , bad film",
                 "the film is fine", "what a bad movie", "good good good", "the movie was"]


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory, vocab):
  """(WORKDIR, the dev sentences {guid: text}, dev predictions {guid: label}) of one seed
  fine-tuned with head="hf"."""
  root = tmp_path_factory.mktemp("predict")
  data = sst2_dir(root / "glue", n_test=0)
  workdir = root / "work"
  ft.finetune_and_evaluate(finetune_config(vocab, data, seeds=(1,), head="hf",
                                           learning_rate=1e-2), str(workdir))
  dev = glue.read_tsv(str(data / "SST-2" / "dev.tsv"), "sst2", ("0", "1"))
  with open(workdir / "seed_1" / "dev_predictions.tsv") as f:
    preds = {r["index"]: r["prediction"] for r in csv.DictReader(f, delimiter="\t")}
  return workdir, {e.guid: e.text_a for e in dev}, preds


def _read_tsv(path: Path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_cli_tsv_predictions_equal_the_dev_predictions(sst2_run, tmp_path):
  """New rows (the dev sentences, reversed, with an id column) through the command line: each
  prediction is the one fine-tuning wrote for that sentence; probabilities are a distribution
  whose argmax is the prediction; the id column is copied."""
  workdir, texts, dev_preds = sst2_run
  rows = ["id\tsentence"] + [f"{g}\t{t}" for g, t in reversed(texts.items())]
  (tmp_path / "in.tsv").write_text("\n".join(rows) + "\n")
  r = subprocess.run([sys.executable, "-m", "electra_jax.finetune.predict",
                      f"--model={workdir / 'seed_1' / 'final'}", f"--input={tmp_path / 'in.tsv'}",
                      f"--output={tmp_path / 'out.tsv'}", "--batch_size=16"],
                     capture_output=True, text=True, cwd=REPO, timeout=300,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 0, r.stderr
  assert "predicted 40 rows" in r.stderr
  # Featurised at the length fine-tuning recorded (16), not the task's default (128).
  assert predict.load_predictor(workdir / "seed_1" / "final").max_seq_length == 16
  out = _read_tsv(tmp_path / "out.tsv")
  assert list(out[0]) == ["id", "sentence", "prediction", "probability_0", "probability_1"]
  assert [row["id"] for row in out] == list(reversed(texts))
  assert {row["id"]: row["prediction"] for row in out} == dev_preds
  for row in out:
    probs = [float(row["probability_0"]), float(row["probability_1"])]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    assert str(int(np.argmax(probs))) == row["prediction"]


def test_workdir_jsonl_and_progress(sst2_run, tmp_path, capsys):
  """--model=WORKDIR uses its (only) seed and says so; JSON Lines in and out, extra keys kept;
  an input of several chunks shows a progress bar on stderr."""
  workdir, texts, dev_preds = sst2_run
  with open(tmp_path / "in.jsonl", "w") as f:
    for g, t in texts.items():
      f.write(json.dumps({"sentence": t, "guid": g}) + "\n")
  assert predict.main([f"--model={workdir}", f"--input={tmp_path / 'in.jsonl'}",
                       f"--output={tmp_path / 'out.jsonl'}", "--batch_size=2"]) == 0
  err = capsys.readouterr().err
  assert f"using {workdir / 'seed_1' / 'final'}: the best accuracy on dev" in err
  assert "predict: 100%" in err and "40/40" in err  # 40 rows in chunks of 2 x 16
  out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert [o["guid"] for o in out] == list(texts)
  assert {o["guid"]: o["prediction"] for o in out} == dev_preds
  assert all(set(o) == {"sentence", "guid", "prediction", "probability_0", "probability_1"}
             for o in out)


def test_workdir_picks_the_best_seed(sst2_run, tmp_path):
  """results.json decides: seed 2 (90) over seeds 1 (50) and 3 (70); only seed 2's model exists,
  so any other choice fails."""
  workdir, texts, dev_preds = sst2_run
  fake = tmp_path / "work"
  shutil.copytree(workdir / "seed_1" / "final", fake / "seed_2" / "final")
  shutil.copytree(workdir / "tokenizer", fake / "tokenizer")
  (fake / "results.json").write_text(json.dumps({
      "primary_metric": "accuracy", "select": "final", "seeds": [1, 2, 3],
      "per_seed": {"accuracy": [50.0, 90.0, 70.0]}}))
  (tmp_path / "in.tsv").write_text("sentence\n" + "\n".join(texts.values()) + "\n")
  notes = []
  assert predict.predict_file(str(fake), str(tmp_path / "in.tsv"), str(tmp_path / "out.tsv"),
                              log=notes.append) == 40
  assert notes[0].startswith(f"using {fake / 'seed_2' / 'final'}: the best accuracy on dev "
                             "(seed 1 50.00, seed 2 90.00, seed 3 70.00)")
  assert [r["prediction"] for r in _read_tsv(tmp_path / "out.tsv")] == list(dev_preds.values())


def test_hf_export_pipeline_gives_the_same_labels_and_probabilities(sst2_run, tmp_path):
  transformers = pytest.importorskip("transformers")
  workdir, _, _ = sst2_run
  final = workdir / "seed_1" / "final"
  assert convert.main([str(final), str(tmp_path / "hf")]) == 0
  classify = transformers.pipeline("text-classification", model=str(tmp_path / "hf"),
                                   device="cpu", top_k=None)
  (tmp_path / "in.jsonl").write_text("".join(json.dumps({"sentence": s}) + "\n"
                                             for s in NEW_SENTENCES))
  predict.predict_file(str(final), str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"),
                       log=lambda _: None)
  ours = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  theirs = classify(NEW_SENTENCES)
  assert len({o["prediction"] for o in ours}) == 2  # both classes occur: a real comparison
  # The export names SST-2's classes as the GLUE datasets do; predict writes GLUE's file labels.
  name = {"0": "negative", "1": "positive"}
  for o, t in zip(ours, theirs):
    assert name[o["prediction"]] == t[0]["label"]
    for entry in t:
      label = {v: k for k, v in name.items()}[entry["label"]]
      assert o[f"probability_{label}"] == pytest.approx(entry["score"], abs=1e-5)


@pytest.fixture(scope="module")
def stsb_model(tmp_path_factory, vocab):
  """(model dir, model, params) of an untrained STS-B (regression) model in the fine-tuned
  format, with its tokenizer, fine-tuned at max length 16."""
  cfg = ModelConfig(vocab_size=len(vocab.read_text().split()), **dict(TINY))
  model = heads.build("ElectraForSequenceClassification", cfg, num_labels=1, head="official")
  params = F.random_params(model, np.ones((1, 4), np.int32), seed=3)
  out = tmp_path_factory.mktemp("stsb") / "final"
  native.save_safetensors(model, params, str(out), tokenizer=tokenizers.load(f"wordpiece:{vocab}"),
                          finetune={"task": "stsb", "labels": [], "max_seq_length": 16})
  return out, model, params


def test_regression_on_sentence_pairs(stsb_model, vocab, tmp_path):
  """STS-B: the value the model gives each pair featurised as fine-tuning did, at the recorded
  max length 16 (the long pair is truncated there, not at the task's 128); TSV out."""
  model_dir, model, params = stsb_model
  pairs = [("the dog ran", "a big red dog ran far"), ("paris is a city", "the capital of france"),
           ("good movie", "bad film"), (" ".join(["the big red dog ran far away"] * 3), "a dog")]
  (tmp_path / "in.jsonl").write_text("".join(
      json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in pairs))
  predict.predict_file(str(model_dir), str(tmp_path / "in.jsonl"), str(tmp_path / "out.tsv"),
                       batch_size=2, log=lambda _: None)
  out = _read_tsv(tmp_path / "out.tsv")
  assert list(out[0]) == ["sentence1", "sentence2", "prediction"]
  feats = glue.featurize([glue.TextExample(str(i), a, b, None) for i, (a, b) in enumerate(pairs)],
                         tokenizers.load(f"wordpiece:{vocab}"), 16)
  want = np.asarray(model.apply({"params": params},
                                *(jnp.asarray(feats[k]) for k in ft.MODEL_INPUTS)))[:, 0]
  np.testing.assert_allclose([float(r["prediction"]) for r in out], want, rtol=1e-5, atol=1e-6)


def _error(argv, capsys) -> str:
  """The one stderr line of a failing command (exit code 2)."""
  assert predict.main(argv) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  return lines[0]


@pytest.mark.parametrize("name,text,message", [
    ("in.tsv", "id\ttext\n1\tgood movie\n",
     "in.tsv: no sst2 text column(s): found columns ['id', 'text'], sst2 needs 'sentence'"),
    ("in.jsonl", '{"text": "good"}\n', "found columns ['text'], sst2 needs 'sentence'"),
    ("in.tsv", "", "in.tsv: empty file"),
    ("in.jsonl", "\n\n", "in.jsonl: empty file"),
    ("in.tsv", "sentence\n", "in.tsv: no rows below the header ['sentence']"),
    ("in.tsv", "sentence\tid\ngood\n", "in.tsv:2: expected 2 tab-separated fields"),
    ("in.tsv", "sentence\n \ngood\na\tb\n", "in.tsv:4: expected 1 tab-separated fields"),
    ("in.jsonl", '{"sentence": "good"}\n{"sentence": \n', "in.jsonl:2: not valid JSON"),
    ("in.jsonl", '{"sentence": "good"}\n{"id": 3}\n', "in.jsonl:2: column 'sentence' holds None"),
    ("in.tsv", "sentence\tprediction\ngood\t1\n", "input columns ['prediction'] would be "
     "overwritten"),
])
def test_bad_input_is_one_error_line(sst2_run, tmp_path, capsys, name, text, message):
  workdir, _, _ = sst2_run
  (tmp_path / name).write_text(text)
  line = _error([f"--model={workdir / 'seed_1' / 'final'}", f"--input={tmp_path / name}",
                 f"--output={tmp_path / 'out.tsv'}"], capsys)
  assert message in line
  assert not (tmp_path / "out.tsv").exists()


def test_bad_model_is_one_error_line(sst2_run, stsb_model, tmp_path, capsys):
  workdir, _, _ = sst2_run
  (tmp_path / "in.tsv").write_text("sentence\ngood movie\n")
  io = [f"--input={tmp_path / 'in.tsv'}", f"--output={tmp_path / 'out.tsv'}"]
  assert "no such file or directory" in _error([f"--model={tmp_path / 'nope'}"] + io, capsys)
  (tmp_path / "empty").mkdir()
  line = _error([f"--model={tmp_path / 'empty'}"] + io, capsys)
  assert "neither a fine-tuned model directory" in line and "WORKDIR with results.json" in line
  # A workdir without results.json names the models it holds; a broken one is named.
  shutil.copytree(workdir / "seed_1", tmp_path / "run" / "seed_1")
  assert "it holds fine-tuned models ['seed_1/final']" in _error(
      [f"--model={tmp_path / 'run'}"] + io, capsys)
  (tmp_path / "run" / "results.json").write_text('{"seeds": [1]}')
  assert "results.json: not a fine-tuning results file (KeyError" in _error(
      [f"--model={tmp_path / 'run'}"] + io, capsys)
  broken = tmp_path / "broken"
  shutil.copytree(workdir / "seed_1" / "final", broken)
  (broken / "electra_jax.json").write_text("{not json")
  assert "electra_jax.json: invalid JSON" in _error([f"--model={broken}"] + io, capsys)
  (broken / "electra_jax.json").write_text((workdir / "seed_1" / "final" /
                                            "electra_jax.json").read_text())
  (broken / "params.safetensors").unlink()
  assert "params.safetensors: file not found" in _error([f"--model={broken}"] + io, capsys)
  pretrained = tmp_path / "pretrained"
  native.save_safetensors(stsb_model[1], stsb_model[2], str(pretrained))
  assert "has no 'finetune' record" in _error([f"--model={pretrained}"] + io, capsys)
  assert not (tmp_path / "out.tsv").exists()


def test_span_model_is_refused_with_what_to_do(tmp_path, capsys):
  cfg = ModelConfig(vocab_size=40, **dict(TINY))
  model = heads.build("ElectraForQuestionAnswering", cfg)
  native.save_safetensors(model, F.random_params(model, np.ones((1, 4), np.int32)),
                          str(tmp_path / "qa"), finetune={"task": "squad1.1", "labels": []})
  (tmp_path / "in.jsonl").write_text('{"question": "what", "context": "paris"}\n')
  line = _error([f"--model={tmp_path / 'qa'}", f"--input={tmp_path / 'in.jsonl'}",
                 f"--output={tmp_path / 'out.jsonl'}"], capsys)
  assert ("fine-tuned on squad1.1, a span task: predict scores classification, regression, "
          "multilabel") in line
  assert f"electra-convert {tmp_path / 'qa'} HF_DIR" in line and '"question-answering"' in line
