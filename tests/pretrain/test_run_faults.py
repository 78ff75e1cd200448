"""Faults around a pre-training run's records and checkpoints (issue 24): an evaluation lost to a
kill is redone on resume, a finished run reports its real metrics, health state survives a
resume, a damaged newest checkpoint is named and fallen back from, the changed-config check reads
the checkpoint's own config, a changed data_dir is warned and the old config kept."""

import dataclasses
import json
import os
import re
import signal

import numpy as np
import pytest

from electra_jax.io.common import CheckpointError
from electra_jax.io.native import read_pretraining_checkpoint
from electra_jax.pretrain import health
from electra_jax.pretrain.checkpoint import Checkpointer, PreemptionWatcher
from electra_jax.pretrain.config import ObjectiveConfig, OptimizerConfig, config_json, to_gin
from electra_jax.pretrain.train import (check_resume_config, keep_config_history,
                                       train_and_evaluate)
from electra_jax.runtime.metrics import MetricsWriter
from train_testlib import read_jsonl, tiny_bindings, tiny_config, train_subprocess


def _eval_config():
  """6 steps, saved and evaluated every 2, curves on."""
  return tiny_config(6, DataConfig__eval_every=2, DataConfig__eval_batches=1,
                     CheckpointConfig__save_every=2, LogConfig__curves=True)


def _killed_between_save_and_eval(workdir, monkeypatch, capsys) -> dict:
  """Runs _eval_config() in `workdir`, "killed" after step 4's checkpoint is complete and before
  its evaluation is written, then resumed to the end; returns the resumed run's result."""
  config = _eval_config()
  write_eval = MetricsWriter.write_eval

  def killed_at_4(self, step, metrics):
    if step == 4:
      raise KeyboardInterrupt("killed")
    write_eval(self, step, metrics)

  monkeypatch.setattr(MetricsWriter, "write_eval", killed_at_4)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(config, workdir)
  monkeypatch.setattr(MetricsWriter, "write_eval", write_eval)
  assert [r["step"] for r in read_jsonl(workdir / "eval_metrics.jsonl")] == [2]
  capsys.readouterr()
  resumed = train_and_evaluate(config, workdir)
  err = capsys.readouterr().err
  assert "restored step 4 " in err and "evaluating step 4: its checkpoint was saved" in err, err
  assert [r["step"] for r in read_jsonl(workdir / "eval_metrics.jsonl")] == [2, 4, 6]
  return resumed


@pytest.mark.slow  # the default suite's budget; the SIGKILL tests redo evals too
def test_eval_lost_to_a_kill_is_redone_and_a_finished_run_reports_its_metrics(
    tmp_path, monkeypatch, capsys):
  resumed = _killed_between_save_and_eval(tmp_path, monkeypatch, capsys)
  # The checkpoint carries the health monitor's state (the last 6 steps' values).
  position = json.loads((tmp_path / "checkpoints" / "6" / "data" / "metadata").read_text())
  assert position["health"]["status"] == "warmup" and len(position["health"]["window"]) == 6

  # Re-invoked when finished, after a kill that lost the final evaluation: it is evaluated, and
  # the run reports its real final metrics, not nulls.
  path = tmp_path / "eval_metrics.jsonl"
  full = path.read_bytes()
  path.write_bytes(b"".join(full.splitlines(keepends=True)[:-1]))
  again = train_and_evaluate(_eval_config(), tmp_path)
  err = capsys.readouterr().err
  assert "evaluating step 6" in err and (
      "nothing to do: step 6 >= num_train_steps 6; these are its final metrics") in err, err
  assert path.read_bytes() == full
  assert again["step"] == 6 and again["eval"] == resumed["eval"]
  assert again["train"] == {k: v for k, v in read_jsonl(tmp_path / "metrics.jsonl")[-1].items()
                            if k != "step"}
  assert again["train"]["health"] == "warmup" and again["train"]["loss"] is not None


@pytest.mark.slow  # a third run (~15 s on 2 idle cores); the SIGKILL test compares too
def test_evals_and_curves_of_a_run_killed_before_an_eval_equal_an_uninterrupted_runs(
    tmp_path, monkeypatch, capsys):
  straight = train_and_evaluate(_eval_config(), tmp_path / "straight")
  resumed = _killed_between_save_and_eval(tmp_path / "killed", monkeypatch, capsys)
  for name in ("eval_metrics.jsonl", "curves.png"):
    assert ((tmp_path / "killed" / name).read_bytes()
            == (tmp_path / "straight" / name).read_bytes()), name
  assert resumed["eval"] == straight["eval"]


def test_health_state_survives_a_resume():
  optimizer = OptimizerConfig(warmup_steps=0, total_steps=1000)
  at_prior = {"disc_loss": 0.5, "disc_prior_loss": 0.5, "disc_auc": 0.5, "gen_accuracy": 0.0,
              "mlm_accuracy": 0.0, "loss": 25.0}
  straight = health.HealthMonitor(optimizer, ObjectiveConfig(), 0.06)
  for step in range(1, 260):
    straight.update(step, at_prior)
  assert straight.status == "at_prior" and straight.warned
  # What the checkpoint stores goes through JSON; the resumed monitor goes on, without warmup.
  resumed = health.HealthMonitor(optimizer, ObjectiveConfig(), 0.06)
  resumed.load_state(json.loads(json.dumps(straight.state_dict())))
  assert resumed.status == "at_prior"
  assert resumed.update(260, at_prior) is None  # warned once, not again
  straight.update(260, at_prior)
  assert resumed.state_dict() == straight.state_dict()


def test_corrupted_line_in_the_middle_of_metrics_jsonl_names_file_and_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
  with pytest.raises(ValueError, match=rf"^{path}:2: not a metrics record .*delete or repair"):
    MetricsWriter(tmp_path, start_step=3, total_steps=9, is_main=True, tensorboard=False,
                  progress_bar=False)


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints.


def _two_steps(tmp_path):
  """A Checkpointer's directory holding steps 1 and 2 of a small state; its abstract state."""
  config = tiny_config(2)
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  for step in (1, 2):
    ckpt.save(step, {"w": np.arange(4.0) + step}, config.to_dict(), {"step": step})
  ckpt.close()
  return config, {"w": np.zeros(4)}


def _damage_data_file(step_dir):
  """Deletes the array data files of a step (as a bad disk or a careless rm would)."""
  for root, _, names in os.walk(step_dir / "state"):
    if os.path.basename(root) == "d":
      for name in names:
        os.remove(os.path.join(root, name))


@pytest.mark.parametrize("damage", ["data_file", "metadata_cut", "empty_step_dir"])
def test_damaged_newest_step_is_named_set_aside_and_the_previous_restored(tmp_path, damage):
  config, abstract = _two_steps(tmp_path)
  ckpt_dir = tmp_path / "checkpoints"
  newest, intact = 2, 1
  if damage == "data_file":
    _damage_data_file(ckpt_dir / "2")
    why = r"(ValueError|KeyError|FileNotFoundError|Error).*"
  elif damage == "metadata_cut":
    meta = ckpt_dir / "2" / "state" / "_METADATA"
    meta.write_bytes(meta.read_bytes()[:40])
    why = rf"{ckpt_dir}/2/state/_METADATA is not valid JSON, cut short"
  else:
    (ckpt_dir / "3").mkdir()
    newest, intact, why = 3, 2, rf"{ckpt_dir}/3/_CHECKPOINT_METADATA is missing"
  said = []
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  try:
    step, state, _, position = ckpt.restore_newest(abstract, said.append)
    assert step == intact and position == {"step": intact}
    assert list(state["w"]) == list(np.arange(4.0) + intact)
    assert ckpt.manager.all_steps() == list(range(1, intact + 1))
    assert ckpt.save(newest, {"w": np.zeros(4)}, config.to_dict(), {"step": newest})
  finally:
    ckpt.close()
  assert len(said) == 1, said
  assert said[0].startswith(f"warning: checkpoint step {newest} is damaged: ")
  assert re.search(why, said[0]), said[0]
  assert f"moved it to {ckpt_dir}/{newest}.damaged and restored step {intact}" in said[0]
  assert (ckpt_dir / f"{newest}.damaged").is_dir()


def test_no_intact_step_is_one_error_and_nothing_is_moved(tmp_path):
  config, abstract = _two_steps(tmp_path)
  for step in (1, 2):
    (tmp_path / "checkpoints" / str(step) / "data" / "metadata").unlink()
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  try:
    with pytest.raises(ValueError, match=r"^cannot restore checkpoint step 2 in .*: "
                                         r".*2/data/metadata is missing; no older step "
                                         r"restores either \(1 tried\).*--overwrite"):
      ckpt.restore_newest(abstract, print)
  finally:
    ckpt.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_init_from_a_workdir_with_a_damaged_newest_step_names_the_intact_one(tmp_path):
  config = tiny_config(2)
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  for step in (1, 2):
    ckpt.save(step, {"params": {"w": np.arange(4.0) + step}}, config.to_dict(), {"step": step})
  ckpt.close()
  _damage_data_file(tmp_path / "checkpoints" / "2")
  with pytest.raises(CheckpointError, match=r"the latest checkpoint step .*checkpoints/2 is "
                                            r"damaged \(.*\); the newest intact step is "
                                            r".*checkpoints/1: give that path"):
    read_pretraining_checkpoint(str(tmp_path))
  stored, params = read_pretraining_checkpoint(str(tmp_path / "checkpoints" / "1"))
  assert stored["model"]["hidden_size"] == 32 and list(params["w"]) == [1.0, 2.0, 3.0, 4.0]


def test_config_json_deleted_the_checkpoint_config_is_compared(tmp_path):
  old = tiny_config(2)
  ckpt = Checkpointer(tmp_path, old.checkpoint)
  ckpt.save(2, {"w": np.zeros(2)}, old.to_dict(), {"step": 2})
  ckpt.close()
  assert not (tmp_path / "config.json").exists()
  wider = tiny_config(2, ModelConfig__hidden_size=64)
  with pytest.raises(ValueError, match=r"  ModelConfig\.hidden_size: 32 -> 64\n"
                                       r"Old config: .*checkpoints/2/config/metadata"):
    check_resume_config(wider, tmp_path)


def test_changed_data_dir_on_resume_is_warned_and_the_old_config_kept(tmp_path):
  first = tiny_config(1)
  ckpt = Checkpointer(tmp_path, first.checkpoint)
  ckpt.save(1, {"w": np.zeros(2)}, first.to_dict(), {"step": 1})
  ckpt.close()
  (tmp_path / "config.json").write_text(config_json(first))
  (tmp_path / "config.gin").write_text(to_gin(first))
  moved = first.replace(data=dataclasses.replace(first.data, data_dir="/data/elsewhere"))
  assert check_resume_config(moved, tmp_path) == [
      "warning: DataConfig.data_dir changes on resume: None -> '/data/elsewhere'; from step 1 "
      "on the run reads other data (the earlier config is kept as config.until_step_1.json)"]
  keep_config_history(tmp_path, config_json(moved))
  assert (tmp_path / "config.until_step_1.json").read_text() == config_json(first)
  assert (tmp_path / "config.until_step_1.gin").read_text() == to_gin(first)
  assert check_resume_config(first, tmp_path) == []  # the same data: nothing to say


# ---------------------------------------------------------------------------------------------
# Ctrl-C.


@pytest.mark.slow  # a training subprocess (~20 s on 2 idle cores); the unit tests below cover
# the handler, test_train_resume the save-and-stop path it shares with SIGTERM
def test_ctrl_c_saves_the_current_step_and_exits_in_one_line(tmp_path):
  run = train_subprocess(tmp_path, tiny_bindings(2000))
  lines = []
  for line in run.stdout:
    lines.append(line)
    if line.startswith("step "):
      run.send_signal(signal.SIGINT)
      break
  out = "".join(lines) + run.communicate(timeout=120)[0]
  assert run.returncode == 0, out
  assert "interrupted: saving the current step, then exiting (Ctrl-C again" in out, out
  saved = re.search(r"^preempted: saved step (\d+) to ", out, re.M)
  assert saved and "Traceback" not in out and "KeyboardInterrupt" not in out, out
  assert (tmp_path / "checkpoints" / saved.group(1) / "commit_success.txt").is_file()
  assert json.loads([l for l in out.splitlines() if l.startswith("{")][-1])["preempted"]


def test_first_ctrl_c_asks_the_run_to_save_and_stop(capsys):
  previous = signal.getsignal(signal.SIGINT)
  with PreemptionWatcher() as watcher:
    assert not watcher.reached(1)
    os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the handler takes it
    assert watcher.reached(1)
  assert capsys.readouterr().err == (
      "interrupted: saving the current step, then exiting (Ctrl-C again to exit at once)\n")
  assert signal.getsignal(signal.SIGINT) is previous  # restored on exit


def test_second_ctrl_c_exits_at_once(monkeypatch, capsys):
  def exit_now(code):
    raise SystemExit(code)

  monkeypatch.setattr(os, "_exit", exit_now)
  with PreemptionWatcher() as watcher:
    os.kill(os.getpid(), signal.SIGINT)
    assert watcher.reached(1)
    with pytest.raises(SystemExit) as exited:
      os.kill(os.getpid(), signal.SIGINT)
  assert exited.value.code == 130
  assert capsys.readouterr().err.splitlines()[-1] == (
      "interrupted again: exiting now without saving (the last complete checkpoint is kept)")
