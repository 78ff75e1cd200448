"""The one run-to-exit-status block of both mains (runtime.launch.run_pipeline) and their closing
message (runtime.closing.Closing): the statuses and lines each end of a run gives."""

import argparse

import pytest

from electra_jax.floor import cli
from electra_jax.runtime.closing import Closing
from electra_jax.runtime.launch import run_pipeline

ARGS = argparse.Namespace(distributed=False, coordinator_address=None, num_processes=None,
                          process_id=None, cpu_collectives=False)


class Failed(RuntimeError):
  pass


def _run(run, resolve=lambda: "config"):
  return run_pipeline(ARGS, resolve, run, summary=lambda r: f"summary of {r}",
                      closing=lambda r: f"closing of {r}", interrupted="; KEPT",
                      failures=(Failed,))


def _interrupt(config):
  raise KeyboardInterrupt


def _fail(config):
  raise Failed("the loss is NaN at step 3")


@pytest.mark.parametrize("run, status, out, err", [
    (lambda config: f"run of {config}", 0, "summary of run of config\n",
     "closing of run of config\n"),
    (_interrupt, cli.EXIT_INTERRUPTED, "", "error: interrupted (Ctrl-C); KEPT\n"),
    (_fail, cli.EXIT_FAILED, "", "error: the loss is NaN at step 3\n"),
    (lambda config: 1 / 0, cli.EXIT_FAILED, "", "error: ZeroDivisionError: division by zero "
     f"({cli.DEBUG_ENV}=1 shows the traceback)\n"),
])
def test_each_end_of_a_run_is_its_status_and_lines(run, status, out, err, capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  monkeypatch.setenv("XLA_FLAGS", "")  # run_pipeline appends the CPU flags to it
  assert _run(run) == status
  assert capsys.readouterr() == (out, err)


def test_a_bad_config_is_bad_input_before_the_run(capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  monkeypatch.setenv("XLA_FLAGS", "")

  def resolve():
    raise ValueError("FinetuneConfig.batch_size=0 must be positive")

  assert _run(lambda config: pytest.fail("ran"), resolve) == cli.EXIT_BAD_INPUT
  assert capsys.readouterr().err == "error: FinetuneConfig.batch_size=0 must be positive\n"


def test_closing_lists_what_exists_then_the_next_commands(tmp_path):
  (tmp_path / "metrics.jsonl").write_text("")
  (tmp_path / "seed_1" / "tensorboard").mkdir(parents=True)
  (tmp_path / "seed_1" / "wandb" / "offline-run-1").mkdir(parents=True)
  closing = Closing(str(tmp_path))
  closing.output("results", "RESULTS")
  closing.output_if_exists("metrics", str(tmp_path / "metrics.jsonl"))
  closing.output_if_exists("curves", str(tmp_path / "curves.png"))  # absent: no line
  closing.tensorboard(str(tmp_path), runs=str(tmp_path / "seed_*" / "tensorboard"))
  closing.wandb_offline(str(tmp_path), "seed_*/wandb/offline-run-*")
  assert str(closing) == "\n".join([
      f"outputs in {tmp_path}:", "  results: RESULTS", f"  metrics: {tmp_path}/metrics.jsonl",
      f"  TensorBoard: tensorboard --logdir {tmp_path}",
      f"  upload offline W&B runs: wandb sync {tmp_path}/seed_*/wandb/offline-run-*"])
  closing.then("export", "electra-convert A B")
  assert str(closing).endswith("\nnext:\n  export: electra-convert A B")


def test_closing_quotes_paths_in_commands(tmp_path):
  logdir = tmp_path / "my run"
  logdir.mkdir()
  closing = Closing(str(logdir))
  closing.tensorboard(str(logdir), runs=str(logdir))
  assert str(closing).splitlines()[-1] == f"  TensorBoard: tensorboard --logdir '{logdir}'"
