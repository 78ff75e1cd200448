"""Fine-tuning workdirs under faults (issue 24): a run killed mid-seed resumes per seed and ends
with the results of an uninterrupted run; the same command re-run reports the finished result;
another task or config in the workdir is refused, --overwrite starts over."""

import json

import pytest

from electra_jax.finetune import train as ft
from electra_jax.finetune.config import FinetuneConfig
from electra_jax.runtime.metrics import LogConfig, MetricsWriter
from finetune_testlib import finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)


def test_killed_run_resumes_per_seed_and_a_rerun_reports_the_finished_result(
    tmp_path, vocab, monkeypatch, capsys):
  data = sst2_dir(tmp_path / "glue", n_train=32, n_dev=16, n_test=0)
  cfg = finetune_config(vocab, data, seeds=(1, 2), num_epochs=2.0)
  straight = ft.finetune_and_evaluate(cfg, str(tmp_path / "straight"))

  # A "kill" during seed 2's first evaluation: seed 1 is finished, seed 2 is not.
  write_eval, seen = MetricsWriter.write_eval, []

  def killed_in_seed_2(self, step, metrics):
    seen.append(self.workdir)
    if self.workdir.endswith("seed_2"):
      raise KeyboardInterrupt("killed")
    write_eval(self, step, metrics)

  work = tmp_path / "work"
  monkeypatch.setattr(MetricsWriter, "write_eval", killed_in_seed_2)
  with pytest.raises(KeyboardInterrupt):
    ft.finetune_and_evaluate(cfg, str(work))
  monkeypatch.setattr(MetricsWriter, "write_eval", write_eval)
  assert (work / "seed_1" / "result.json").is_file()
  assert not (work / "seed_2" / "result.json").exists() and not (work / "results.json").exists()
  capsys.readouterr()

  resumed = ft.finetune_and_evaluate(cfg, str(work))
  out, err = capsys.readouterr()
  assert f"sst2 seed 1: finished earlier ({work}/seed_1/result.json); not run again" in err, err
  assert "sst2 seed 2: 4 steps" in err and "seed 2: finished earlier" not in err, (out, err)
  assert resumed == straight
  assert (work / "results.json").read_text() == (tmp_path / "straight" / "results.json").read_text()

  # The same command once more: nothing is trained, the finished result is reported.
  again = ft.finetune_and_evaluate(cfg, str(work))
  out, err = capsys.readouterr()
  assert "seed 1: finished earlier" in err and "seed 2: finished earlier" in err
  assert "steps" not in out, out
  assert again == straight

  # Another task or another config in this workdir is refused, and nothing is touched.
  before = (work / "results.json").read_text()
  with pytest.raises(ValueError, match=r"^workdir .* holds a fine-tuning run of task 'sst2' with "
                                       r"another config .*\n  task: 'sst2' -> 'cola'\n"
                                       r".*--overwrite"):
    ft.finetune_and_evaluate(cfg.replace(task="cola"), str(work))
  with pytest.raises(ValueError, match=r"\n  learning_rate: 0\.003 -> 0\.01\n"):
    ft.finetune_and_evaluate(cfg.replace(learning_rate=1e-2), str(work))
  assert (work / "results.json").read_text() == before


@pytest.mark.slow  # three fine-tuning runs (~20 s on 2 idle cores); the refusal itself is in
# the test above
def test_another_task_or_config_in_the_workdir_is_refused_and_overwrite_starts_over(
    tmp_path, vocab):
  data = sst2_dir(tmp_path / "glue", n_train=16, n_dev=8, n_test=0)
  cfg = finetune_config(vocab, data, seeds=(1,), num_epochs=1.0)
  work = str(tmp_path / "work")
  ft.finetune_and_evaluate(cfg, work)
  before = (tmp_path / "work" / "results.json").read_text()

  cola = cfg.replace(task="cola")
  with pytest.raises(ValueError, match=r"^workdir .* holds a fine-tuning run of task 'sst2' with "
                                       r"another config .*\n  task: 'sst2' -> 'cola'\n"
                                       r".*--overwrite"):
    ft.finetune_and_evaluate(cola, work)
  with pytest.raises(ValueError, match=r"\n  learning_rate: 0\.003 -> 0\.01\n"):
    ft.finetune_and_evaluate(cfg.replace(learning_rate=1e-2), work)
  assert (tmp_path / "work" / "results.json").read_text() == before  # untouched

  # Display settings and more seeds are not another run: seed 1 is read back, seed 2 runs.
  more = ft.finetune_and_evaluate(
      cfg.replace(seeds=(1, 2), log=LogConfig(log_every=1, progress_bar=False)), work)
  assert more["per_seed"]["accuracy"][0] == json.loads(before)["per_seed"]["accuracy"][0]

  lr = ft.finetune_and_evaluate(cfg.replace(learning_rate=1e-2), work, overwrite=True)
  assert lr["config"]["learning_rate"] == 1e-2 and lr["seeds"] == [1]
  assert sorted(p.name for p in (tmp_path / "work").glob("seed_*")) == ["seed_1"]


def test_a_workdir_of_the_last_release_resumes(tmp_path):
  """A run record written before FinetuneConfig nested LogConfig holds the flat logging fields
  (progress, log_every, ...): they are display settings, so the same run resumes."""
  config = FinetuneConfig(task="sst2", init="random", data_dir=str(tmp_path))
  flat = dict(progress=False, log_every=1, tensorboard=False, curves=False, wandb_project="p",
              wandb_mode="offline")
  (tmp_path / ft.RUN_RECORD).write_text(json.dumps({**ft._run_identity(config), **flat}))
  assert ft.claim_workdir(config, str(tmp_path))


def test_cli_refuses_another_task_in_one_line_and_names_the_flag(tmp_path, vocab, capsys):
  (tmp_path / "work").mkdir()
  (tmp_path / "work" / "results.json").write_text(json.dumps({"config": {"task": "sst2"}}))
  rc = ft.main(["--task=cola", "--init=random", f"--data_dir={tmp_path}",
                f"--workdir={tmp_path / 'work'}", "--size=tiny"])
  err = capsys.readouterr().err
  assert rc == 2 and err.startswith("error: workdir ") and "task: 'sst2' -> 'cola'" in err
  assert "--overwrite" in err and "Traceback" not in err
