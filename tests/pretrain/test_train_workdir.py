"""One workdir, one run: a changed model or objective is refused on resume (and --overwrite starts
over), a second trainer on the same workdir is refused, and an unwritable workdir is one error."""

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from electra_jax.pretrain.config import load_config_json, save_config_json
from electra_jax.pretrain.train import (check_resume_config, lock_workdir, parse_args,
                                        train_and_evaluate)
from train_testlib import REPO, read_jsonl, tiny_bindings, tiny_config, train_subprocess


@pytest.mark.slow  # two training subprocesses, ~40 s
def test_changed_model_is_refused_on_resume_and_overwrite_starts_over(tmp_path, capsys):
  old = tiny_config(1)
  train_and_evaluate(old, tmp_path)
  metrics = (tmp_path / "metrics.jsonl").read_text()
  saved = sorted(p.name for p in (tmp_path / "checkpoints").rglob("*"))

  new = tiny_config(1, seq_len=32, ModelConfig__hidden_size=64)
  with pytest.raises(ValueError) as info:
    train_and_evaluate(new, tmp_path)
  assert str(info.value) == (
      f"workdir {tmp_path} holds checkpoints (latest step 1) of a run whose model or objective "
      "this config changes; resuming them would fail or mix two runs:\n"
      "  ModelConfig.hidden_size: 32 -> 64\n"
      "  DataConfig.seq_len: 64 -> 32\n"
      f"Old config: {tmp_path / 'config.json'}; resume with the old values, use another "
      "--workdir, or pass --overwrite to delete its checkpoints and metrics and start over")
  assert load_config_json(tmp_path / "config.json") == old  # nothing touched
  assert (tmp_path / "metrics.jsonl").read_text() == metrics
  assert sorted(p.name for p in (tmp_path / "checkpoints").rglob("*")) == saved

  assert parse_args(["--workdir=w", "--experiment=tiny", "--overwrite"]).overwrite
  capsys.readouterr()
  assert train_and_evaluate(new, tmp_path, overwrite=True)["step"] == 1
  assert "restored" not in capsys.readouterr().err  # a fresh start
  assert load_config_json(tmp_path / "config.json") == new
  assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1]

  # Extending the run and changing schedules, frequencies and batch resumes.
  longer = tiny_config(2, seq_len=32, batch=4, ModelConfig__hidden_size=64,
                       OptimizerConfig__learning_rate=1e-3, OptimizerConfig__weight_decay=0.02,
                       OptimizerConfig__clip_norm=0.5, LogConfig__log_every=2,
                       CheckpointConfig__save_every=1, ModelConfig__hidden_dropout_prob=0.0)
  assert train_and_evaluate(longer, tmp_path)["step"] == 2
  assert "restored step 1" in capsys.readouterr().err


def test_optimizer_slots_switched_on_or_off_are_refused(tmp_path):
  old = tiny_config(3)
  save_config_json(old, tmp_path / "config.json")
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  changed = dataclasses.replace(old.optimizer, clip_norm=None, weight_decay=0.0)
  with pytest.raises(ValueError, match=r"latest step 3\) .*:\n"
                                       r"  OptimizerConfig\.clip_norm: 1\.0 -> None\n"
                                       r"  OptimizerConfig\.weight_decay: 0\.01 -> 0\.0\n"):
    check_resume_config(old.replace(optimizer=changed), tmp_path)
  (tmp_path / "config.json").write_text('{"model": ')
  with pytest.raises(ValueError, match=r"config\.json \(the config of the checkpoints to resume\) "
                                       r"is not valid JSON .*--overwrite"):
    check_resume_config(old, tmp_path)
  (tmp_path / "checkpoints" / "3").rmdir()
  check_resume_config(old, tmp_path)  # nothing to resume: nothing compared


def test_second_trainer_on_a_workdir_is_refused(tmp_path):
  with lock_workdir(tmp_path):
    with pytest.raises(ValueError, match=rf"^workdir {tmp_path} is in use by another trainer "
                                         rf"\(pid {os.getpid()}, which holds .*train\.lock\); "
                                         r"wait for it to end or stop it, or use another "
                                         r"--workdir$"):
      train_and_evaluate(tiny_config(1), tmp_path)
  assert not (tmp_path / "config.json").exists()  # refused before writing anything


def test_cli_second_trainer_exits_2_and_a_killed_holder_does_not_block(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from pathlib import Path; "
       "from electra_jax.pretrain.train import lock_workdir; "
       "lock = lock_workdir(Path(sys.argv[1])); lock.__enter__(); print('locked', flush=True); "
       "time.sleep(600)", str(tmp_path)],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "locked\n"
    proc = train_subprocess(tmp_path, tiny_bindings(1))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    assert (f"error: workdir {tmp_path} is in use by another trainer (pid {holder.pid}, "
            f"which holds {tmp_path / 'train.lock'})") in out
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert (tmp_path / "train.lock").read_text() == f"{holder.pid}\n"  # stale file left behind
  with lock_workdir(tmp_path):
    assert (tmp_path / "train.lock").read_text() == f"{os.getpid()}\n"


def test_unwritable_workdir_is_one_error_before_training(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ValueError, match=rf"^cannot write to workdir {tmp_path}/file/run \(Not a "
                                       r"directory\); give a writable --workdir$"):
    train_and_evaluate(tiny_config(1), tmp_path / "file" / "run")


def test_read_only_workdir_is_one_error_before_training(tmp_path):
  tmp_path.chmod(0o555)
  try:
    if os.access(tmp_path, os.W_OK):
      pytest.skip("this user may write to read-only directories (root)")
    with pytest.raises(ValueError, match=rf"^cannot write to workdir {tmp_path} \(permission "
                                         r"denied\); give a writable --workdir$"):
      train_and_evaluate(tiny_config(1), tmp_path)
  finally:
    tmp_path.chmod(0o755)
