"""A run stopped by SIGTERM and resumed replays exactly the steps of an uninterrupted run."""

import os
import signal
import time

import pytest

from train_testlib import DETERMINISTIC_KEYS, read_jsonl, tiny_bindings, train_subprocess

STEPS = 200
CACHE_ENV = {}


def _run_to_end(workdir, bindings):
  proc = train_subprocess(workdir, bindings, CACHE_ENV)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  return out


@pytest.mark.slow
def test_sigterm_then_resume_gives_bitwise_the_same_metrics(tmp_path, tmp_path_factory):
  CACHE_ENV["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "jax_cache")
  CACHE_ENV["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  bindings = tiny_bindings(STEPS)

  straight = tmp_path / "straight"
  _run_to_end(straight, bindings)
  reference = read_jsonl(straight / "metrics.jsonl")
  assert [r["step"] for r in reference] == list(range(1, STEPS + 1))

  interrupted = tmp_path / "interrupted"
  proc = train_subprocess(interrupted, bindings, CACHE_ENV)
  metrics_file = interrupted / "metrics.jsonl"
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and proc.poll() is None:
    if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3:
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the run ended before it could be interrupted"
  os.kill(proc.pid, signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out  # a clean exit, not a kill
  saved = sorted(int(p.name) for p in (interrupted / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert len(saved) == 1 and 3 <= saved[0] < STEPS, (saved, out)
  stopped_at = saved[0]
  assert f"preempted: saved step {stopped_at}" in out
  before = read_jsonl(metrics_file)
  assert before[-1]["step"] == stopped_at  # every step up to the save is logged

  out = _run_to_end(interrupted, bindings)
  assert f"restored step {stopped_at}" in out
  resumed = read_jsonl(metrics_file)
  assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
  for want, got in zip(reference, resumed):
    assert {k: got[k] for k in DETERMINISTIC_KEYS} == {k: want[k] for k in DETERMINISTIC_KEYS}, \
        f"step {want['step']} differs (stopped at {stopped_at})"
