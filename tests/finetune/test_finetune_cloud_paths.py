"""Fine-tuning and electra-predict on tf.io.gfile paths: TensorFlow's in-memory file system
(ram://, alive only in this process) stands in for gs:// (tests have no network). --init, the
--data_dir files (GLUE TSV, SQuAD JSON, CoNLL), the whole --workdir, and electra-predict's
--model, --input and --output on ram:// give what the same local paths give."""

import json
import os
import uuid

import jax.numpy as jnp
import pytest

import electra_fixtures as F
from data_pipelines import fs, glue, squad, tagging, tokenizers
from electra_jax import export_hf
from electra_jax.finetune import predict, sweep
from electra_jax.finetune import train as ft
from electra_jax.finetune.runner import load_finetuned
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig
from finetune_testlib import TINY, WORDS, finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)


def test_init_from_a_ram_export_finds_its_weights_and_tokenizer(tmp_path, vocab):
  tokenizer = tokenizers.load(f"wordpiece:{vocab}")
  model = heads.ElectraForPreTraining(ModelConfig(vocab_size=5 + len(WORDS), **dict(TINY)))
  params = F.random_params(model, jnp.ones((1, 4), jnp.int32), seed=1)
  init = f"ram://{uuid.uuid4().hex}/electra"
  export_hf(model, params, init, tokenizer=tokenizer)
  config = finetune_config(vocab, sst2_dir(tmp_path / "glue"), init=init, tokenizer=None,
                           model_overrides=(), seeds=(1,), num_epochs=1.0)
  results = ft.finetune_and_evaluate(config, str(tmp_path / "work"))
  assert results["seeds"] == [1] and results["total_steps"] == 6
  saved = tokenizers.load_saved(str(tmp_path / "work" / tokenizers.SAVED_DIR))
  assert saved.fingerprint() == tokenizer.fingerprint()  # the one exported beside the weights
  assert fs.isfile(fs.join(init, "model.safetensors"))


def _ram(name):
  return f"ram://{uuid.uuid4().hex}/{name}"


@pytest.fixture(scope="module")
def local_and_ram_runs(tmp_path_factory, vocab):
  """(local WORKDIR, its results, ram:// WORKDIR, its results, the local SST-2 directory) of the
  same seed fine-tuned twice: on local data into a local workdir, and on a copy of the data on
  ram:// into a ram:// workdir. The current directory stays empty (no local "ram:" directory)."""
  root = tmp_path_factory.mktemp("cloud")
  data = sst2_dir(root / "glue")
  ram_data = _ram("glue")
  fs.makedirs(fs.join(ram_data, "SST-2"))
  for name in os.listdir(data / "SST-2"):
    fs.copy(str(data / "SST-2" / name), fs.join(ram_data, "SST-2", name))
  cwd = root / "cwd"
  cwd.mkdir()
  old_cwd = os.getcwd()
  os.chdir(cwd)
  try:
    local = str(root / "work")
    local_results = ft.finetune_and_evaluate(
        finetune_config(vocab, data, seeds=(1,), num_epochs=1.0), local)
    work = _ram("work")
    results = ft.finetune_and_evaluate(
        finetune_config(vocab, ram_data, seeds=(1,), num_epochs=1.0), work)
  finally:
    os.chdir(old_cwd)
  assert os.listdir(cwd) == []
  return local, local_results, work, results, data


def test_data_dir_and_workdir_on_ram_give_the_local_run(local_and_ram_runs):
  local, local_results, work, results, _ = local_and_ram_runs
  assert results["per_seed"] == local_results["per_seed"]  # same seed: the same numbers
  assert results["eval_history"] == local_results["eval_history"]
  assert json.loads(fs.read_text(fs.join(work, "results.json")))["per_seed"] == results["per_seed"]
  for name in ("seed_1/final/electra_jax.json", "seed_1/final/params.safetensors",
               "seed_1/metrics.jsonl", "seed_1/eval_metrics.jsonl", "seed_1/curves.png",
               "tokenizer/electra_jax_tokenizer.json"):
    assert fs.isfile(fs.join(work, name)), name
  assert sorted(fs.listdir(fs.join(work, "seed_1", "tensorboard"))) == ["eval", "train"]
  for name in ("dev_predictions.tsv", "SST-2.tsv", "eval_metrics.jsonl"):  # dev, test, scores
    assert fs.read_text(fs.join(work, "seed_1", name)) == \
        fs.read_text(os.path.join(local, "seed_1", name)), name
  assert tokenizers.find_saved(work).fingerprint() == tokenizers.find_saved(local).fingerprint()
  _, _, record = load_finetuned(fs.join(work, "seed_1", "final"))
  assert {k: [v] for k, v in record["scores"].items()} == results["per_seed"]
  closing = ft.closing_message(work, results)
  assert f"  results: {work}/results.json" in closing
  assert f"electra-predict --model={work} --input=FILE.tsv" in closing


def test_predict_with_model_input_and_output_on_ram(local_and_ram_runs, tmp_path, capsys):
  local, _, work, _, data = local_and_ram_runs
  rows = fs.read_text(str(data / "SST-2" / "dev.tsv"))
  source = _ram("in.tsv")
  fs.write_text(source, rows)
  (tmp_path / "in.tsv").write_text(rows)
  output = _ram("scored/out.tsv")
  assert predict.main(["--model", work, "--input", source, "--output", output]) == 0
  assert f"using {work}/seed_1/final: the best accuracy on dev" in capsys.readouterr().err
  assert predict.main(["--model", local, "--input", str(tmp_path / "in.tsv"),
                       "--output", str(tmp_path / "out.tsv")]) == 0
  scored = fs.read_text(output)
  assert scored == (tmp_path / "out.tsv").read_text()
  assert scored.splitlines()[0] == "sentence\tlabel\tprediction\tprobability_0\tprobability_1"


_QA = {"id": "q1", "question": "what city ?", "answers": [{"text": "paris", "answer_start": 0}]}
_SQUAD = json.dumps({"data": [{"paragraphs": [{"context": "paris is the capital of france .",
                                               "qas": [_QA]}]}]}, indent=1).replace("\n", "\r\n")
_CONLL = "-DOCSTART- O\r\n\r\nthe B-NP\r\ndog I-NP\r\nran B-VP\r\n\r\nparis B-NP\r\n"
_GLUE = "sentence\tlabel\r\na \"great\" movie\t1\r\nbad\t0\r\n"


@pytest.mark.parametrize("text, read", [
    (_SQUAD, squad.read_json),
    (_CONLL, tagging.read_conll),
    (_GLUE, lambda path: glue.read_tsv(path, "sst2", ("0", "1"))),
], ids=["squad", "conll", "glue"])
def test_readers_read_ram_files_as_local_ones(tmp_path, text, read):
  """The same bytes (UTF-8 byte-order mark, CRLF line ends) read from ram:// and from a local
  file give the same examples; a missing ram:// file is the reader's not-found error."""
  data = b"\xef\xbb\xbf" + text.encode()
  local, remote = str(tmp_path / "file"), _ram("file")
  fs.write_bytes(local, data)
  fs.write_bytes(remote, data)
  examples = read(remote)
  assert examples and examples == read(local)
  with pytest.raises(FileNotFoundError, match=r"file not found: ram://"):
    read(_ram("missing"))


@pytest.mark.slow  # two fine-tuning runs, ~15 s
def test_sweep_over_ram_checkpoints_into_a_ram_workdir(tmp_path, vocab):
  tokenizer = tokenizers.load(f"wordpiece:{vocab}")
  model = heads.ElectraForPreTraining(ModelConfig(vocab_size=5 + len(WORDS), **dict(TINY)))
  checkpoints = _ram("checkpoints")
  for step in (20, 10):
    params = F.random_params(model, jnp.ones((1, 4), jnp.int32), seed=step)
    export_hf(model, params, fs.join(checkpoints, str(step)), tokenizer=tokenizer)
  config = finetune_config(vocab, sst2_dir(tmp_path / "glue", n_train=32, n_dev=16, n_test=0),
                           tokenizer=None, model_overrides=(), num_epochs=1.0, seeds=(1,),
                           write_predictions=False, save_checkpoint=False)
  work = _ram("sweep")
  rows = sweep.sweep(config, fs.join(checkpoints, "*"), work)
  assert [r["step"] for r in rows] == [10, 20]
  lines = fs.read_text(fs.join(work, "sweep.tsv")).splitlines()
  assert lines[0] == "step\tflops\tmedian\tper_seed\tpath" and len(lines) == 3
  assert lines[1].endswith(f"\t{checkpoints}/10")
  assert fs.read_bytes(fs.join(work, "sweep.png"))[:8] == b"\x89PNG\r\n\x1a\n"
  assert fs.isfile(fs.join(work, "step_20", "results.json"))
