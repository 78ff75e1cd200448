"""`python -m electra_jax.quality --pretrain_data`: ELECTRA and the MLM baseline pre-trained at
equal analytic FLOPs on tiny shards, then ELECTRA, MLM and random init fine-tuned on a tiny
SST-2 with three seeds; the table, the curves PNG and the JSON of all numbers."""

import json
import types
from pathlib import Path

import numpy as np
import pytest

from data_pipelines import build_pretraining_data as builder
from electra_jax import quality
from electra_jax.pretrain import flops
from electra_jax.pretrain.config import load_config_json
from finetune_testlib import WORDS, sst2_dir, vocab  # noqa: F401 (fixture)

ELECTRA_STEPS = 3
PRETRAIN_SET = ["ModelConfig.num_hidden_layers = 1", "DataConfig.global_batch_size = 8",
                "DataConfig.eval_every = 2", "DataConfig.eval_batches = 1",
                "CheckpointConfig.save_every = 0",
                "CheckpointConfig.async_save = False", "LogConfig.log_every = 1",
                "LogConfig.tensorboard = False", "LogConfig.progress_bar = False"]
FINETUNE_SET = ["FinetuneConfig.max_seq_length = 16", "FinetuneConfig.batch_size = 16",
                "FinetuneConfig.eval_batch_size = 16", "FinetuneConfig.num_epochs = 1.0",
                "LogConfig.progress_bar = False", "FinetuneConfig.write_predictions = False",
                "FinetuneConfig.save_checkpoint = False"]


def _shards(root, vocab_path):
  rng = np.random.default_rng(0)
  text = "\n\n".join("\n".join(" ".join(rng.choice(WORDS, 12)) for _ in range(4))
                     for _ in range(60))
  (root / "corpus.txt").write_text(text + "\n")
  out = root / "shards"
  builder.build_pretraining_data(str(root / "corpus.txt"), f"wordpiece:{vocab_path}", str(out),
                                 seq_len=32, num_shards=2, eval_shards=1, pieces_per_shard=1,
                                 progress=False)
  return out


def _argv(shards, glue, workdir, steps=ELECTRA_STEPS):
  return (["--pretrain_data", str(shards), "--experiment", "tiny",
           "--pretrain_steps", str(steps), "--tasks", "sst2", "--seeds", "1,2,3",
           "--data_dir", str(glue), "--workdir", str(workdir)]
          + [a for b in PRETRAIN_SET for a in ("--pretrain_set", b)]
          + [a for b in FINETUNE_SET for a in ("--gin_bindings", b)])


@pytest.mark.slow
def test_pretraining_mode_end_to_end(tmp_path, vocab, capsys):
  shards = _shards(tmp_path, vocab)
  glue = sst2_dir(tmp_path / "glue", n_train=32, n_dev=16, n_test=0)
  work = tmp_path / "claim"
  assert quality.main(_argv(shards, glue, work)) == 0

  # Equal analytic FLOPs: the MLM run's steps (and schedule) from the two configs' FLOPs.
  electra, mlm = (load_config_json(work / run / "config.json") for run in ("electra", "mlm"))
  f_electra, f_mlm = (flops.training_flops_per_step(c.model, c.generator, c.objective, 8, 32)
                      for c in (electra, mlm))
  mlm_steps = round(ELECTRA_STEPS * f_electra / f_mlm)
  assert mlm_steps > ELECTRA_STEPS  # the generator makes an ELECTRA step dearer
  assert (electra.objective.kind, electra.train_steps, electra.optimizer.total_steps) == (
      "electra", ELECTRA_STEPS, ELECTRA_STEPS)
  assert (mlm.objective.kind, mlm.train_steps, mlm.optimizer.total_steps) == (
      "mlm", mlm_steps, mlm_steps)
  assert electra.model == mlm.model and electra.model.vocab_size == len(WORDS) + 5
  assert electra.optimizer.bias_correction and mlm.optimizer.bias_correction
  assert electra.data.data_dir == mlm.data.data_dir == str(shards)
  report = json.loads((work / "quality.json").read_text())
  runs = report["pretraining"]
  assert runs["mlm"]["steps"] == mlm_steps and runs["electra"]["steps"] == ELECTRA_STEPS
  assert runs["electra"]["flops_per_step"] == pytest.approx(f_electra)
  assert abs(runs["electra"]["total_flops"] - runs["mlm"]["total_flops"]) <= f_mlm / 2
  assert [r["step"] for r in runs["mlm"]["train"]] == list(range(1, mlm_steps + 1))
  assert [r["step"] for r in runs["electra"]["eval"]] == [2, 3]
  assert runs["electra"]["eval"][0]["eval_disc_auc"] > 0 and runs["mlm"]["eval"]

  # Fine-tuning: three inits x one task x three seeds, final-checkpoint scores.
  rows = report["rows"]
  assert [(r["init"], r["task"], r["metric"], r["select"]) for r in rows] == [
      (init, "sst2", "accuracy", "final") for init in ("electra", "mlm", "random")]
  for r in rows:
    assert len(r["values"]) == 3 and r["median"] == pytest.approx(np.median(r["values"]))
    assert report["averages"][r["init"]] == pytest.approx(r["median"])
  spec = json.loads((shards / "manifest.json").read_text())["tokenizer"]["spec"]
  for init, want in (("electra", str(work / "electra")), ("mlm", str(work / "mlm")),
                     ("random", "random")):
    res = json.loads((work / "finetune" / init / "sst2" / "results.json").read_text())
    assert (res["config"]["init"], res["config"]["tokenizer"]) == (want, spec)
  res = json.loads((work / "finetune" / "random" / "sst2" / "results.json").read_text())
  assert dict(res["config"]["model_overrides"])["hidden_size"] == electra.model.hidden_size

  out = capsys.readouterr().out
  assert "Dev scores: dev score of the final checkpoint" in out
  for r in rows:
    seeds = " ".join(f"{v:.2f}" for v in r["values"])
    assert f"| {r['init']} | sst2 | accuracy | {seeds} | {r['median']:.2f} |" in out
  assert out.count("| average |") == 3
  assert (work / "pretraining_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # A second call with another step count refuses to resume the runs with the wrong config.
  assert quality.main(_argv(shards, glue, work, steps=ELECTRA_STEPS + 1)) == 2
  assert "holds a pre-training run with another config" in capsys.readouterr().err


def test_mlm_experiment_is_not_the_electra_run(tmp_path, vocab):
  shards = _shards(tmp_path, vocab)
  with pytest.raises(ValueError, match="the MLM baseline is the second run"):
    quality.pretraining_configs(str(shards), "ablations/mlm", 3, ["ModelConfig.dtype = 'float32'"])


def test_a_cloud_workdir_is_refused_before_any_work(capsys):
  with pytest.raises(SystemExit) as exit_info:
    quality.main(["--init=random", "--size=tiny", "--data_dir=unused", "--workdir=gs://b/q"])
  assert exit_info.value.code == 2
  assert ("--workdir gs://b/q: electra_jax.quality writes a local workdir only"
          in capsys.readouterr().err)


def test_a_preempted_pretraining_stops_the_quality_run(tmp_path, monkeypatch):
  """SIGTERM / Ctrl-C saves the running pre-training and ends electra-quality there: it does
  not go on to the next run (which then trained on a machine meant to be stopping)."""
  ran = []

  def fake_train(config, workdir):
    ran.append(workdir)
    return {"step": 7, "preempted": True, "train": {}, "eval": {}}

  monkeypatch.setattr(quality, "train_and_evaluate", fake_train)
  monkeypatch.setattr(quality, "_check_reusable", lambda workdir, config: None)
  with pytest.raises(quality.Preempted, match="run the same command to resume"):
    run = types.SimpleNamespace(objective=types.SimpleNamespace(kind="electra"), train_steps=10)
    quality.pretrain({"electra": run, "mlm": run}, str(tmp_path))
  assert ran == [str(tmp_path / "electra")]


def test_objectives_mlm_pretrains_and_finetunes_the_mlm_run_only(tmp_path, vocab, monkeypatch):
  """--objectives mlm: only WORKDIR/mlm is pre-trained (for the steps that match the ELECTRA
  steps' FLOPs) and fine-tuned, beside random init; a name that is neither run is refused."""
  shards = _shards(tmp_path, vocab)
  trained, finetuned = [], []

  def fake_train(config, workdir):
    trained.append((Path(workdir).name, config.objective.kind, config.train_steps))
    Path(workdir).mkdir(parents=True)
    return {"step": config.train_steps, "preempted": False, "train": {}, "eval": {}}

  def fake_run_quality(base, tasks, workdir, random_baseline=False, inits=None, data_dirs=None):
    finetuned.append((base.init, dict(inits), random_baseline))
    return [{"init": name, "task": "sst2", "metric": "accuracy", "select": "final",
             "values": [50.0], "median": 50.0, "per_seed": {}} for name in inits]

  monkeypatch.setattr(quality, "train_and_evaluate", fake_train)
  monkeypatch.setattr(quality, "run_quality", fake_run_quality)
  monkeypatch.setattr(quality, "plot_curves", lambda summary, path, x: path)
  base = types.SimpleNamespace(tokenizer=None, select="final", seeds=(1,),
                               replace=lambda **kw: types.SimpleNamespace(
                                   select="final", seeds=(1,), **kw))
  set_ = PRETRAIN_SET + ["ModelConfig.dtype = 'float32'"]
  configs = quality.pretraining_configs(str(shards), "tiny", ELECTRA_STEPS, set_)
  report = quality.run_pretraining_quality(base, ["sst2"], str(shards), "tiny", ELECTRA_STEPS,
                                           set_, str(tmp_path / "q"), objectives=("mlm",))
  assert trained == [("mlm", "mlm", configs["mlm"].train_steps)]
  assert configs["mlm"].train_steps > ELECTRA_STEPS
  assert finetuned == [(str(tmp_path / "q" / "mlm"), {"mlm": str(tmp_path / "q" / "mlm")}, True)]
  assert list(report["pretraining"]) == ["mlm"]
  with pytest.raises(ValueError, match=r"objectives \['bert'\]: pick one or both of"):
    quality.run_pretraining_quality(base, ["sst2"], str(shards), "tiny", ELECTRA_STEPS, set_,
                                    str(tmp_path / "q2"), objectives=("bert",))


def test_objectives_flag_names_the_runs(capsys):
  with pytest.raises(SystemExit) as exit_info:
    quality.main(["--pretrain_data=unused", "--objectives=electra,bert", "--data_dir=unused"])
  assert exit_info.value.code == 2
  assert "--objectives electra,bert: electra, mlm or electra,mlm" in capsys.readouterr().err
