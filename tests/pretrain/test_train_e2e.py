"""End to end: a tiny ELECTRA pre-trained on real text (the built-in corpus of standard-library
docstrings) learns to detect replaced tokens, and the run leaves the files it promises."""

import json
import math
import os

import numpy as np
import pytest

from electra_jax.pretrain.config import load_config_json, resolve_config
from electra_jax.pretrain.train import NonFiniteError, main, train_and_evaluate
from train_testlib import read_jsonl, read_wandb_run, tiny_bindings, wandb_offline

STEPS = 250
REQUIRED = ("step", "loss", "gen_loss", "disc_loss", "gen_accuracy", "disc_accuracy",
            "disc_precision", "disc_recall", "disc_auc", "replaced_fraction", "learning_rate",
            "grad_norm", "step_time", "tokens_per_sec", "real_token_fraction",
            "real_tokens_per_sec")


def _tensorboard_scalars(directory):
  """{tag: {step: value}} from the event files in `directory`."""
  from data_pipelines.tf_runtime import tensorflow

  tf = tensorflow()
  out = {}
  for path in sorted(directory.glob("events.*")):
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
      event = tf.compat.v1.Event.FromString(raw)
      for value in event.summary.value:
        out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return out


@pytest.mark.slow
def test_tiny_run_learns_and_writes_metrics_config_and_checkpoint(tmp_path):
  bindings = tiny_bindings(
      STEPS, LogConfig__log_every=10, LogConfig__tensorboard=True,
      DataConfig__eval_every=STEPS, DataConfig__eval_batches=4,
      ObjectiveConfig__temperature=2.0, OptimizerConfig__learning_rate=3e-3,
      ModelConfig__hidden_dropout_prob=0.0, ModelConfig__attention_probs_dropout_prob=0.0)
  config = resolve_config(None, gin_bindings=bindings)
  result = train_and_evaluate(config, tmp_path)

  records = read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in records] == list(range(10, STEPS + 1, 10))
  for r in records:
    assert set(REQUIRED) <= set(r), set(REQUIRED) - set(r)
    assert all(math.isfinite(r[k]) for k in REQUIRED)
  first, last = records[0], records[-1]
  assert last["tokens_per_sec"] == pytest.approx(8 * 64 / last["step_time"], rel=1e-6)
  assert last["learning_rate"] < first["learning_rate"]  # linear decay towards 0
  late_auc = np.mean([r["disc_auc"] for r in records[-5:]])
  assert late_auc > 0.62, [r["disc_auc"] for r in records]  # replaced tokens are detected
  # The generator learned far beyond chance (1/4000); single batches are noisy: average.
  assert np.mean([r["gen_accuracy"] for r in records[-5:]]) > 0.03
  assert np.mean([r["loss"] for r in records[-5:]]) < first["loss"]

  evals = read_jsonl(tmp_path / "eval_metrics.jsonl")
  assert [e["step"] for e in evals] == [STEPS]
  assert evals[0]["eval_disc_auc"] > 0.65 and evals[0]["eval_gen_accuracy"] > 0.03
  assert result["step"] == STEPS and not result["preempted"]
  assert result["eval"]["disc_auc"] == pytest.approx(evals[0]["eval_disc_auc"])

  assert load_config_json(tmp_path / "config.json") == config
  assert resolve_config(None, [str(tmp_path / "config.gin")]) == config
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [str(STEPS)]

  scalars = _tensorboard_scalars(tmp_path / "tensorboard" / "train")
  assert scalars["loss"] == {r["step"]: pytest.approx(r["loss"]) for r in records}
  assert _tensorboard_scalars(tmp_path / "tensorboard" / "eval")["disc_auc"] == {
      STEPS: pytest.approx(evals[0]["eval_disc_auc"])}  # the train tag: one chart for both

  again = train_and_evaluate(config, tmp_path)  # finished run: restores and does nothing
  assert again["step"] == STEPS
  assert len(read_jsonl(tmp_path / "metrics.jsonl")) == len(records)


@pytest.mark.slow  # a whole training run; the default suite must stay under 15 min
def test_cli_names_its_outputs_and_next_commands_after_the_json_line(tmp_path, monkeypatch,
                                                                   capsys):
  """`electra-train` on a tiny run with evaluation, TensorBoard, curves.png and an offline W&B
  run: stdout ends with the JSON line as before; stderr ends with where each output is and the
  commands that use the run next."""
  wandb_offline(monkeypatch, tmp_path / "home")
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main appends to it
  work = tmp_path / "run"
  bindings = tiny_bindings(4, DataConfig__eval_every=4, DataConfig__eval_batches=1,
                           CheckpointConfig__save_every=2, LogConfig__tensorboard=True,
                           LogConfig__curves=True, LogConfig__wandb_project="electra-test",
                           LogConfig__wandb_mode="offline")
  assert main([f"--workdir={work}", *(f"--gin_bindings={b}" for b in bindings)]) == 0
  out, err = capsys.readouterr()
  final = json.loads(out.splitlines()[-1])
  assert set(final) == {"step", "preempted", "loss", "disc_auc", "gen_accuracy", "health",
                        "eval_loss", "eval_disc_auc"} and final["step"] == 4
  assert err.endswith("\n".join([
      f"outputs in {work}:",
      f"  checkpoints: {work}/checkpoints (latest step 4)",
      f"  training metrics: {work}/metrics.jsonl",
      f"  evaluation metrics: {work}/eval_metrics.jsonl",
      f"  curves: {work}/curves.png",
      f"  tokenizer: {work}/tokenizer",
      f"  Weights & Biases runs: {work}/wandb",
      f"  TensorBoard: tensorboard --logdir {work}/tensorboard",
      f"  upload offline W&B runs: wandb sync {work}/wandb/offline-run-*",
      "next:",
      f"  fine-tune: electra-finetune --task=sst2 --init={work} --data_dir=GLUE_DIR "
      f"--workdir={work}_sst2",
      f"  export to Hugging Face: electra-convert {work} OUT_DIR"]) + "\n"), err
  assert (work / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert (work / "tokenizer").is_dir() and (work / "checkpoints" / "4").is_dir()

  (run_dir,) = (work / "wandb").glob("offline-run-*")
  config, history = read_wandb_run(run_dir)
  assert config["model"] == json.loads((work / "config.json").read_text())["model"]
  records = read_jsonl(work / "metrics.jsonl")
  evals = read_jsonl(work / "eval_metrics.jsonl")
  assert [h["_step"] for h in history] == [1, 2, 3, 4]
  for row, record in zip(history, records):  # the jsonl numbers, under the jsonl keys
    assert {k: row[k] for k in REQUIRED if k != "step"} == pytest.approx(
        {k: record[k] for k in REQUIRED if k != "step"})
  assert history[-1]["eval_disc_auc"] == pytest.approx(evals[0]["eval_disc_auc"])


def test_nonfinite_loss_stops_the_run_naming_step_and_metric(tmp_path):
  config = resolve_config(None, gin_bindings=tiny_bindings(
      20, OptimizerConfig__learning_rate=1e30, OptimizerConfig__warmup_steps=0,
      CheckpointConfig__save_every=1))
  with pytest.raises(NonFiniteError, match=r"non-finite (loss|grad_norm|\w+) = (nan|inf|-inf) "
                                           r"at step (\d+)") as info:
    train_and_evaluate(config, tmp_path)
  bad_step = int(info.value.args[0].split(" at step ")[1].split()[0])
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == list(range(1, bad_step))  # every sane step saved, the corrupted one not
  assert f"the last checkpoint (step {bad_step - 1})" in str(info.value)


def test_data_that_does_not_match_the_config_is_refused(tmp_path):
  config = resolve_config(None, gin_bindings=tiny_bindings(5))
  data_dir = _built_data_dir(config)
  with pytest.raises(ValueError, match=r"vocabulary mismatch: ModelConfig.vocab_size=5000 "
                                       r"but the shards in .* use a 4000-token vocabulary"):
    train_and_evaluate(resolve_config(None, gin_bindings=tiny_bindings(
        5, DataConfig__data_dir=data_dir, ModelConfig__vocab_size=5000)), tmp_path / "a")
  with pytest.raises(ValueError, match=r"seq_len mismatch: the run uses seq_len=32 but the "
                                       r"shards in .* have seq_len=64"):
    train_and_evaluate(resolve_config(None, gin_bindings=tiny_bindings(
        5, DataConfig__data_dir=data_dir, DataConfig__seq_len=32)), tmp_path / "b")
  with pytest.raises(ValueError, match=r"layout mismatch: DataConfig.layout = 'unpacked' but the "
                                       r"shards in .* have packed rows; build them with `python -m "
                                       r"data_pipelines.build_pretraining_data ... --layout "
                                       r"unpacked` or unset DataConfig.layout"):
    train_and_evaluate(resolve_config(None, gin_bindings=tiny_bindings(
        5, DataConfig__data_dir=data_dir, DataConfig__layout="unpacked")), tmp_path / "c")
  with pytest.raises(ValueError, match=r"DataConfig.layout='rows'; expected None, 'packed' or "
                                       r"'unpacked'"):
    resolve_config(None, gin_bindings=tiny_bindings(5, DataConfig__layout="rows"))


def test_train_log_reports_the_real_token_fraction(tmp_path, capsys):
  """The default data is packed: metrics.jsonl has real_token_fraction (real tokens over the
  batch's token slots) and real_tokens_per_sec; the start-up line names the layout."""
  result = train_and_evaluate(resolve_config(None, gin_bindings=tiny_bindings(2)), tmp_path)
  assert result["step"] == 2
  assert "(packed rows, real-token fraction 0.9" in capsys.readouterr().err
  for record in read_jsonl(tmp_path / "metrics.jsonl"):
    assert 0.9 < record["real_token_fraction"] <= 1.0
    assert record["real_tokens_per_sec"] == pytest.approx(
        record["tokens_per_sec"] * record["real_token_fraction"])


def test_mesh_that_does_not_fit_the_devices_is_refused(tmp_path):
  config = resolve_config(None, gin_bindings=tiny_bindings(5, MeshConfig__data=4))
  with pytest.raises(ValueError, match=r"data x fsdp x tensor = 4 but there are 1 devices"):
    train_and_evaluate(config, tmp_path)


def _built_data_dir(config) -> str:
  from electra_jax.pretrain.train import open_data

  return open_data(config)[3]
