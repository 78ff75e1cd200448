"""Checkpoints survive faults: SIGKILL at random moments of a run that saves asynchronously every
step, and a full disk (refused before training when the free space is short; one clear error when
a save finds no room mid-run, with the previous checkpoint kept)."""

import os
import random
import re
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from flax import traverse_util

from electra_jax.io.native import read_pretraining_checkpoint
from electra_jax.pretrain import checkpoint as checkpointing
from electra_jax.pretrain.checkpoint import Checkpointer, TMP_SUFFIX, check_free_space
from electra_jax.pretrain.objective import build_pretraining_model, init_fn
from electra_jax.pretrain.train import train_and_evaluate
from electra_jax.runtime.mesh import make_mesh
from electra_jax.runtime.metrics import MetricsWriter
from electra_jax.runtime.optim import make_optimizer
from electra_jax.runtime.state import abstract_train_state
from train_testlib import (DETERMINISTIC_KEYS, REPO, read_jsonl, tiny_bindings, tiny_config,
                           train_subprocess)


@pytest.fixture
def cache_env(tmp_path_factory) -> dict:
  """A JAX compilation cache shared by this session's runs (saves a compile per run)."""
  return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "jax_cache"),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def _saving_bindings(steps: int) -> list[str]:
  """Saves every step asynchronously; evaluates every 4 steps (one batch) and draws curves.png."""
  return tiny_bindings(steps, CheckpointConfig__save_every=1, CheckpointConfig__async_save=True,
                       CheckpointConfig__keep_latest=2, DataConfig__eval_every=4,
                       DataConfig__eval_batches=1, LogConfig__curves=True)


def _step_dirs(workdir) -> tuple[list[int], list[str]]:
  """(finalized steps, names of unfinished tmp directories) under WORKDIR/checkpoints."""
  ckpt = workdir / "checkpoints"
  names = [p.name for p in ckpt.iterdir()] if ckpt.is_dir() else []
  return sorted(int(n) for n in names if n.isdigit()), sorted(n for n in names if TMP_SUFFIX in n)


def _flat_params(workdir) -> dict:
  _, params = read_pretraining_checkpoint(workdir)
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


class _Run:
  """A training subprocess whose merged stdout/stderr is collected by a thread."""

  def __init__(self, workdir, bindings, env):
    self.proc = train_subprocess(workdir, bindings, env)
    self.lines: list[str] = []
    self.training = threading.Event()  # set at the first "step N: ..." line of this run
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append(line)
      if line.startswith("step "):
        self.training.set()
    self.training.set()  # ended: nothing more to wait for

  def finish(self, timeout: float) -> str:
    self.proc.wait(timeout=timeout)
    self._reader.join(timeout=30)
    return "".join(self.lines)


def _kill_at_random_moments(tmp_path, env, *, steps: int, trials: int, seed: int):
  """`trials` runs on one workdir, each SIGKILLed 0-1.5 s (seeded) after its first step, then a
  run to the end; checks each resume and compares the result (metrics, evaluation records,
  curves.png, final params) with an uninterrupted run."""
  bindings = _saving_bindings(steps)
  straight = tmp_path / "straight"
  out = _Run(straight, bindings, env).finish(timeout=600)
  assert f'"step": {steps}' in out, out
  reference = read_jsonl(straight / "metrics.jsonl")

  workdir = tmp_path / "killed"
  rng = random.Random(seed)
  latest, kills, mid_save = None, 0, 0
  for trial in range(trials):
    run = _Run(workdir, bindings, env)
    assert run.training.wait(timeout=300), "".join(run.lines)
    delay = rng.uniform(0.0, 1.5)  # a step with its save takes ~0.3 s on 2 CPU cores
    time.sleep(delay)
    run.proc.kill()
    out = run.finish(timeout=60)
    # The run restored the newest complete step directory of the previous kill (orbax's latest).
    restored = re.findall(r"^restored step (\d+) from ", out, re.M)
    assert restored == ([str(latest)] if latest is not None else []), (trial, latest, out)
    assert run.proc.returncode in (-9, 0), out  # 0: it ended before the kill
    finalized, unfinished = _step_dirs(workdir)
    print(f"trial {trial}: resumed from {latest}, killed {delay:.2f} s into training; "
          f"complete steps {finalized}, unfinished {unfinished}")
    # Unfinished writes stay under their tmp name; the newest step directory is complete.
    assert all(re.fullmatch(rf"\d+{re.escape(TMP_SUFFIX)}", n) for n in unfinished), unfinished
    if finalized:
      newest = workdir / "checkpoints" / str(finalized[-1])
      assert all((newest / item / "commit_success.txt").is_file()
                 for item in checkpointing.ITEMS), (trial, sorted(os.listdir(newest)))
      assert (newest / "commit_success.txt").is_file()
      latest = finalized[-1]
    if run.proc.returncode == 0:
      break
    kills += 1
    mid_save += bool(unfinished)
  assert kills >= trials // 2, f"only {kills} of {trials} runs were killed before their end"
  assert mid_save, "no kill landed during a save"

  out = _Run(workdir, bindings, env).finish(timeout=600)
  assert f'"step": {steps}' in out and (latest is None or f"restored step {latest} " in out), out
  assert _step_dirs(workdir) == ([steps - 1, steps], [])
  resumed = read_jsonl(workdir / "metrics.jsonl")
  assert [r["step"] for r in resumed] == list(range(1, steps + 1))  # one continuous run
  for want, got in zip(reference, resumed):
    assert {k: got[k] for k in DETERMINISTIC_KEYS} == {k: want[k] for k in DETERMINISTIC_KEYS}, \
        f"step {want['step']} differs after {kills} kills"
  # Every evaluation is recorded once, as in the uninterrupted run, and so are the curves.
  for name in ("eval_metrics.jsonl", "curves.png"):
    assert (workdir / name).read_bytes() == (straight / name).read_bytes(), name
  want, got = _flat_params(straight), _flat_params(workdir)
  assert want.keys() == got.keys()
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.slow  # ~4 min; the default suite must stay under 15 minutes on CI's 2 cores
def test_sigkill_many_times_during_async_saves(tmp_path, cache_env):
  _kill_at_random_moments(tmp_path, cache_env, steps=80, trials=16, seed=1)


def test_unfinished_step_is_not_a_checkpoint_and_is_deleted(tmp_path):
  config = tiny_config(2)
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  ckpt.save(1, {"w": np.arange(4.0)}, config.to_dict(), {"step": 1})
  ckpt.close()
  unfinished = tmp_path / "checkpoints" / f"2{TMP_SUFFIX}"
  (unfinished / f"state{TMP_SUFFIX}").mkdir(parents=True)
  (unfinished / f"state{TMP_SUFFIX}" / "partial").write_bytes(b"\0" * 100)
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  try:
    assert ckpt.latest_step() == 1 and ckpt.manager.all_steps() == [1]
  finally:
    ckpt.close()
  assert _step_dirs(tmp_path) == ([1], [])


def test_resume_drops_metrics_past_the_checkpoint_and_a_record_cut_short(tmp_path):
  path = tmp_path / "metrics.jsonl"
  records = "".join(f'{{"step": {s}, "loss": 1.0}}\n' for s in range(1, 6))
  path.write_text(records + '{"step": 6, "lo')  # killed while writing step 6
  MetricsWriter(tmp_path, start_step=3, total_steps=9, is_main=True, tensorboard=False,
                progress_bar=False).close()
  assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]
  assert path.read_text().endswith("}\n") and sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]


# ---------------------------------------------------------------------------------------------
# A full disk.


def _abstract_state(config):
  model = build_pretraining_model(config.model, config.generator, config.embedding_sharing,
                                  config.objective)
  return abstract_train_state(init_fn(model, config.data.seq_len),
                              make_optimizer(config.optimizer), make_mesh(config.mesh))[0]


def test_short_free_space_is_refused_before_training(tmp_path, monkeypatch):
  config = tiny_config(2)
  abstract = _abstract_state(config)
  one = checkpointing.checkpoint_nbytes(abstract)
  params = sum(l.size * l.dtype.itemsize for l in jax.tree.leaves(abstract.params))
  assert 3 * params <= one < 3 * params + 1024  # params and two Adam slots per parameter
  keep = config.checkpoint.keep_latest
  need = one * (keep + 1)
  usage = checkpointing.shutil.disk_usage(tmp_path)
  monkeypatch.setattr(checkpointing.shutil, "disk_usage",
                      lambda path: usage._replace(free=need - 1))
  with pytest.raises(ValueError) as info:
    train_and_evaluate(config, tmp_path)
  mib = lambda b: f"{b / 2**20:.1f}"
  assert str(info.value) == (
      f"not enough disk space for checkpoints in {tmp_path.resolve() / 'checkpoints'}: "
      f"{mib(need - 1)} MiB free, but the run needs about {mib(need)} MiB ({keep} kept + 1 being "
      f"written, {mib(one)} MiB each: params and optimizer state); free space on that disk, "
      f"lower CheckpointConfig.keep_latest (now {keep}), or give another --workdir")
  assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()

  # Existing checkpoints count as room: the run replaces them.
  ckpt_dir = tmp_path / "checkpoints"
  (ckpt_dir / "5").mkdir(parents=True)
  (ckpt_dir / "5" / "blob").write_bytes(b"\0" * 10)
  monkeypatch.setattr(checkpointing.shutil, "disk_usage",
                      lambda path: usage._replace(free=need - 10))
  check_free_space(ckpt_dir, config.checkpoint, abstract)
  monkeypatch.setattr(checkpointing.shutil, "disk_usage",
                      lambda path: usage._replace(free=need - 11))
  with pytest.raises(ValueError, match=r" MiB free plus 0\.0 MiB held by the checkpoints it "
                                       r"replaces, but the run needs"):
    check_free_space(ckpt_dir, config.checkpoint, abstract)


# Runs the CLI with writes limited to LIMIT bytes per file from the save of step ARM_AT on
# (RLIMIT_FSIZE with SIGXFSZ ignored: the kernel fails the write with EFBIG, as a full disk fails
# it with ENOSPC); the checkpoint of step ARM_AT and later ones cannot be written.
_FILE_LIMIT_CLI = """
import resource, signal, sys
from electra_jax.pretrain import checkpoint as checkpointing
from electra_jax.pretrain import train
ARM_AT, LIMIT = int(sys.argv[1]), int(sys.argv[2])
save = checkpointing.Checkpointer.save
def limited_save(self, step, *args):
  if step == ARM_AT:
    self.wait()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
  return save(self, step, *args)
checkpointing.Checkpointer.save = limited_save
sys.exit(train.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("async_save", [True, False])
def test_save_that_finds_no_room_is_one_error_and_keeps_the_last_checkpoint(
    tmp_path, cache_env, async_save):
  bindings = tiny_bindings(6, CheckpointConfig__save_every=2,
                           CheckpointConfig__async_save=async_save)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2",
             **cache_env)
  proc = subprocess.run(
      [sys.executable, "-c", _FILE_LIMIT_CLI, "4", str(64 * 1024), f"--workdir={tmp_path}",
       *(f"--set={b}" for b in bindings)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=600)
  out = proc.stdout
  ckpt_dir = tmp_path.resolve() / "checkpoints"
  assert proc.returncode == 1, out
  errors = [l for l in out.splitlines() if l.startswith("error: ")]
  assert errors == [
      f"error: could not write checkpoint step 4 to {ckpt_dir}: File too large; the last "
      f"complete checkpoint, step 2 ({ckpt_dir / '2'}), is intact: the next run resumes from it, "
      "deleting the unfinished step. Free space on that disk (or raise the file size limit or "
      "quota), lower CheckpointConfig.keep_latest (now 3), or give another --workdir"], out
  for noise in ("Traceback", "os_error_code", "Event loop is closed", "never awaited"):
    assert noise not in out, out  # orbax's reports of the failed write, once per thread

  config = tiny_config(6)
  assert _step_dirs(tmp_path) == ([2], [f"4{TMP_SUFFIX}"])
  ckpt = Checkpointer(tmp_path, config.checkpoint)
  try:
    state, _, position = ckpt.restore(_abstract_state(config))
  finally:
    ckpt.close()
  assert int(state.step) == 2 and position["step"] == 2
  assert _step_dirs(tmp_path) == ([2], [])  # the unfinished step deleted
