"""Fine-tuning task kinds are registered objects (electra_jax.finetune.kinds): a new kind is one
class and a `register` call, and the loop, scoring, prediction files, the closing message and
electra-predict take it without a change. The toy here is binary classification with one logit
and sigmoid cross-entropy, on own data (a TSV with text and label columns)."""

import csv
import json

import jax
import numpy as np
import optax
import pytest

from electra_jax.finetune import kinds, predict, tasks
from electra_jax.finetune import train as ft
from electra_jax.finetune.config import resolve_hparams, resolve_task
from electra_jax.finetune.runner import Runner
from electra_jax.runtime import mesh as shd
from finetune_testlib import finetune_config, vocab  # noqa: F401 (fixture)


class OneLogit(kinds.Classification):
  """Two classes from one logit: the second class where the logit > 0."""

  name = "toy_one_logit"
  unordered_pairs = False

  def num_outputs(self, labels):
    return 1

  def loss(self, outputs, batch):
    return optax.sigmoid_binary_cross_entropy(outputs[:, 0], batch["labels"]).mean()

  def eval_outputs(self, outputs):
    return outputs[:, 0]

  def predictions(self, outputs):
    return (np.asarray(outputs) > 0).astype(np.int32)

  def table_fields(self, labels, outputs):
    p = 1 / (1 + np.exp(-np.asarray(outputs, np.float64)))
    return [{"prediction": labels[int(q > 0.5)], f"probability_{labels[0]}": 1 - q,
             f"probability_{labels[1]}": q} for q in p]


@pytest.fixture
def toy_task(monkeypatch):
  kind = kinds.register(OneLogit())
  task = tasks.Task("toy", kind.name, (), ("accuracy", "mcc"), "accuracy", "", {},
                    tfds_splits={"train": "train", "dev": "validation"}, test_splits=(),
                    columns=("text", None, "label"))
  monkeypatch.setitem(tasks.TASKS, "toy", task)
  yield task
  del kinds.KINDS[kind.name]


def _toy_data(root):
  rng = np.random.default_rng(0)
  root.mkdir()
  for name, n in (("train", 32), ("dev", 16)):
    rows = ["text\tlabel"]
    for i in range(n):
      word = ["good", "bad"][i % 2]
      rows.append(f"{' '.join(rng.choice(['the', 'movie', 'was'], 3))} {word}\t{word}")
    (root / f"{name}.tsv").write_text("\n".join(rows) + "\n")
  return root


def test_a_registered_toy_kind_reads_predicts_and_scores(tmp_path, vocab, toy_task):
  """Without the train step (the slow test below trains): the task's data, the predict step of
  its model, its metrics, its prediction file and what electra-predict writes of its outputs."""
  config = finetune_config(vocab, _toy_data(tmp_path / "data"), task="toy")
  task = resolve_task(config)
  tokenizer = ft.resolve_tokenizer(config)
  model_config, _ = ft.load_initial(config, tokenizer.vocab_size)
  hp = resolve_hparams(config, task, model_config)
  data = ft.load_task_data(task, config, hp, tokenizer)
  assert data.labels == ("bad", "good") and data.train.arrays["labels"][:2].tolist() == [1, 0]
  kind = kinds.KINDS[task.kind]
  model = kind.model(model_config, kind.num_outputs(data.labels), config.head, None)
  runner = Runner(model, kind, shd.make_mesh(shd.MeshConfig()), None, hp.max_seq_length)
  dummy = np.zeros((1, hp.max_seq_length), np.int32)
  params = jax.jit(lambda key: model.init(key, dummy, dummy, dummy)["params"],
                   out_shardings=runner.param_shardings)(jax.random.key(0))
  out = runner.predict(params, data.dev[0].arrays, 16)
  assert out.shape == (16,)
  scores, preds = kind.score(task, config, data.labels, data.dev[0], out)
  assert set(scores) == {"accuracy", "mcc"} and set(preds.tolist()) <= {0, 1}
  path = kind.write_predictions(task, data.labels, data.dev[0], preds, str(tmp_path / "out"))
  with open(path) as f:
    assert {r["prediction"] for r in csv.DictReader(f, delimiter="\t")} <= {"bad", "good"}
  fields = kind.table_fields(data.labels, out)
  assert sorted(fields[0]) == kind.output_columns(data.labels)
  assert fields[0]["probability_good"] == pytest.approx(1 - fields[0]["probability_bad"])


@pytest.mark.slow
def test_a_registered_toy_kind_fine_tunes_and_predicts(tmp_path, vocab, toy_task):
  data = _toy_data(tmp_path / "data")
  work = tmp_path / "work"
  config = finetune_config(vocab, data, task="toy", seeds=(1,), num_epochs=1.0)
  results = ft.finetune_and_evaluate(config, str(work))
  assert results["labels"] == ["bad", "good"] and results["total_steps"] == 2
  assert set(results["per_seed"]) == {"accuracy", "mcc"}
  with open(work / "seed_1" / "dev_predictions.tsv") as f:
    written = list(csv.DictReader(f, delimiter="\t"))
  assert len(written) == 16 and {r["prediction"] for r in written} <= {"bad", "good"}
  assert "electra-predict" in ft.closing_message(str(work), results)

  (tmp_path / "new.tsv").write_text("text\ngood movie\nbad movie\n")
  assert predict.predict_file(str(work), str(tmp_path / "new.tsv"), str(tmp_path / "out.jsonl"),
                              log=lambda _: None) == 2
  rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert [sorted(r) for r in rows] == [["prediction", "probability_bad", "probability_good",
                                        "text"]] * 2


def test_registration_refuses_a_taken_name_and_tasks_name_registered_kinds(toy_task):
  with pytest.raises(ValueError, match="'classification' is empty or taken"):
    kinds.register(kinds.Classification())
  with pytest.raises(ValueError, match=r"kind='toy_other'; expected one of .*'toy_one_logit'"):
    tasks.Task("other", "toy_other", (), ("accuracy",), "accuracy", "", {})
  with pytest.raises(ValueError, match="unordered_pair needs a sentence-pair GLUE task"):
    tasks.Task("other", toy_task.kind, (), ("accuracy",), "accuracy", "", {}, unordered_pair=True)
