"""Fine-tuning on fixtures with a tiny model: initialisation from a Hugging Face directory,
SQuAD 2.0 and chunking scores consistent with the written prediction files, CLI errors."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from electra_jax.finetune import squad_eval
from electra_jax.finetune import metrics as glue_metrics
from electra_jax.finetune import train as ft
from electra_jax.finetune.runner import load_finetuned
from electra_jax.finetune.tasks import get_task
from finetune_testlib import TINY, WORDS, finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def test_init_from_hf_directory_keeps_encoder(tmp_path, vocab):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from electra_jax.io.load import load_pretrained

  torch.manual_seed(0)
  hf_cfg = transformers.ElectraConfig(vocab_size=len(WORDS) + 5, embedding_size=32,
                                      hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=64)
  src = tmp_path / "disc"
  transformers.ElectraForPreTraining(hf_cfg).save_pretrained(str(src))
  (src / "vocab.txt").write_text(vocab.read_text())
  data = sst2_dir(tmp_path / "glue", n_train=16, n_dev=16, n_test=0)
  cfg = finetune_config(vocab, data, init=str(src), tokenizer=None, size=None, model_overrides=(),
                        learning_rate=1e-12, num_epochs=1.0, write_predictions=False)
  ft.finetune_and_evaluate(cfg, str(tmp_path / "work"))
  model, params, _ = load_finetuned(str(tmp_path / "work" / "seed_1" / "final"))
  _, source = load_pretrained(str(src), as_numpy=True)
  assert model.config.hidden_size == 32 and model.head == "hf"  # the default head
  got, want = jax.tree.leaves(params["electra"]), jax.tree.leaves(source["electra"])
  assert len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-9)


SQUAD_CONTEXT = "paris is the capital of france . the big red dog ran ."


def _squad_file(path: Path, n: int, version: str):
  qas = []
  for i in range(n):
    if version == "v2.0" and i % 3 == 2:
      qas.append({"id": f"q{i}", "question": "who ran ?", "answers": [], "is_impossible": True})
    else:
      qas.append({"id": f"q{i}", "question": "what is the capital of france ?",
                  "answers": [{"text": "paris", "answer_start": 0}]})
  data = {"data": [{"title": "t", "paragraphs": [{"context": SQUAD_CONTEXT, "qas": qas}]}]}
  path.write_text(json.dumps(data))


@pytest.mark.parametrize("task,version", [("squad2.0", "v2.0")])
def test_squad_scores_match_written_predictions(tmp_path, vocab, task, version):
  d = tmp_path / "squad"
  d.mkdir()
  _squad_file(d / f"train-{version}.json", 32, version)
  _squad_file(d / f"dev-{version}.json", 9, version)
  cfg = finetune_config(vocab, tmp_path, task=task, max_seq_length=24, doc_stride=8, num_epochs=1.0,
                        model_overrides=TINY)
  results = ft.finetune_and_evaluate(cfg, str(tmp_path / "work"))
  preds = json.loads((tmp_path / "work" / "seed_1" / "dev_predictions.json").read_text())
  odds = json.loads((tmp_path / "work" / "seed_1" / "dev_null_odds.json").read_text())
  assert sorted(preds) == [f"q{i}" for i in range(9)] and sorted(odds) == sorted(preds)
  gold = {f"q{i}": ([] if i % 3 == 2 else ["paris"]) for i in range(9)}
  want = squad_eval.evaluate(gold, preds, version)
  assert results["per_seed"]["f1"][0] == pytest.approx(want["f1"])
  assert results["per_seed"]["exact_match"][0] == pytest.approx(want["exact_match"])
  # Every answer is a substring of the context (cut by the offset mapping) or "".
  assert all(p in SQUAD_CONTEXT for p in preds.values())


def test_chunking_scores_match_written_predictions(tmp_path, vocab):
  d = tmp_path / "conll2000"
  d.mkdir()
  sent = "the DT B-NP\nbig JJ I-NP\ndog NN I-NP\nran VBD B-VP\n. . O\n\n"
  (d / "train.txt").write_text(sent * 12)
  (d / "test.txt").write_text(sent * 3)
  cfg = finetune_config(vocab, tmp_path, task="chunk", num_epochs=2.0)
  results = ft.finetune_and_evaluate(cfg, str(tmp_path / "work"))
  # CoNLL-2000's fixed inventory, not just the tags of this training file
  assert results["labels"] == list(get_task("chunk").labels) and len(results["labels"]) == 23
  assert results["labels"][0] == "O" and {"B-NP", "I-NP", "B-VP", "I-LST"} <= set(results["labels"])
  blocks = (tmp_path / "work" / "seed_1" / "dev_predictions.txt").read_text().strip().split("\n\n")
  gold = [[l.split()[1] for l in b.splitlines()] for b in blocks]
  pred = [[l.split()[2] for l in b.splitlines()] for b in blocks]
  assert len(gold) == 3 and all(len(g) == 5 for g in gold)
  assert results["per_seed"]["f1"][0] == pytest.approx(100 * glue_metrics.span_f1(gold, pred)["f1"])


def test_cli_errors(tmp_path, vocab, capsys, monkeypatch):
  data = sst2_dir(tmp_path / "glue", n_train=4, n_dev=4, n_test=0)
  base = ["--init=random", f"--data_dir={data}", f"--workdir={tmp_path / 'w'}",
          f"--tokenizer=wordpiece:{vocab}"]
  assert ft.main(["--task=sst-3"] + base) == 2
  assert "unknown task 'sst-3'. Did you mean sst2" in capsys.readouterr().err
  assert ft.main(["--task=cola"] + base) == 2
  assert f"no train file: looked for {data}/CoLA/train.tsv" in capsys.readouterr().err
  (data / "SST-2" / "dev.tsv").write_text("sentence\tlabel\ngood movie\t2\n")
  assert ft.main(["--task=sst2"] + base) == 2
  assert "dev.tsv:2: label '2' is not one of the sst2 labels ['0', '1']" in capsys.readouterr().err
  assert ft.main(["--task=sst2", "--gin_bindings=FinetuneConfig.learning_rat = 1.0"] + base) == 2
  assert "Did you mean learning_rate" in capsys.readouterr().err
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub dataset that is not cached: one error line
  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  hub = [f"--data_dir=hf:electra-jax-test/no-such-dataset"] + base[:1] + base[2:]
  assert ft.main(["--task=sst2"] + hub) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "electra-jax-test/no-such-dataset" in err, err
  assert "Traceback" not in err
