"""MetricsWriter's outputs beside the jsonl files: TensorBoard tags shared by train and eval,
WORKDIR/curves.png (and a run without matplotlib), the Weights & Biases run, and a remote
WORKDIR (TensorFlow's in-memory file system ram:// standing in for gs://)."""

import struct
import sys
import uuid

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from data_pipelines import fs
from electra_jax.runtime.metrics import (LaggedMetrics, MetricsWriter, WandbRun, note,
                                        reference_values, wandb_enabled, write_curves)
from train_testlib import read_jsonl, read_wandb_run, wandb_offline

TRAIN = [(1, {"loss": 9.0, "disc_auc": 0.5, "gen_accuracy": 0.0, "health": "warmup"}),
         (2, {"loss": 7.5, "disc_auc": 0.6, "gen_accuracy": 0.1, "health": "ok"})]
EVAL = (2, {"loss": 8.0, "disc_auc": 0.55, "unigram_accuracy": 0.05})


def _write_run(workdir, **kw):
  writer = MetricsWriter(workdir, start_step=0, total_steps=2, is_main=True, progress_bar=False,
                         **kw)
  for step, metrics in TRAIN:
    writer.write_train(step, metrics)
  writer.write_eval(*EVAL)
  writer.close()


def _scalars(directory) -> dict:
  """{tag: {step: value}} of the scalar summaries in `directory`, read by TensorBoard itself."""
  events = EventAccumulator(str(directory))
  events.Reload()
  return {tag: {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
          for tag in events.Tags()["tensors"]}


def test_eval_scalars_use_the_train_tags_so_tensorboard_overlays_them(tmp_path):
  _write_run(tmp_path, tensorboard=True)
  train = _scalars(tmp_path / "tensorboard" / "train")
  evals = _scalars(tmp_path / "tensorboard" / "eval")
  assert set(train) == {"loss", "disc_auc", "gen_accuracy"}  # strings ("health") left out
  assert set(evals) == {"loss", "disc_auc", "unigram_accuracy"}
  assert train["loss"] == {1: 9.0, 2: 7.5}
  assert evals["loss"] == {2: 8.0} and evals["disc_auc"] == {2: pytest.approx(0.55)}
  # The jsonl files keep their keys: eval ones prefixed.
  assert read_jsonl(tmp_path / "eval_metrics.jsonl") == [
      {"step": 2, "eval_disc_auc": 0.55, "eval_loss": 8.0, "eval_unigram_accuracy": 0.05}]
  assert read_jsonl(tmp_path / "metrics.jsonl")[1]["health"] == "ok"


def _png_size(path) -> tuple[int, int]:
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
  return struct.unpack(">II", data[16:24])


def test_curves_png_plots_the_named_metrics(tmp_path):
  _write_run(tmp_path, tensorboard=False, curves=("loss", "disc_auc", "gen_accuracy", "absent"))
  width, height = _png_size(tmp_path / "curves.png")
  assert width == 3 * 450 and height == 350  # one 4.5 x 3.5 in panel per metric found, 100 dpi


def test_without_curves_or_records_no_png_is_written(tmp_path):
  _write_run(tmp_path / "a", tensorboard=False)
  MetricsWriter(tmp_path / "b", start_step=0, total_steps=2, is_main=True, tensorboard=False,
                progress_bar=False, curves=("loss",)).close()
  assert not (tmp_path / "a" / "curves.png").exists()
  assert not (tmp_path / "b" / "curves.png").exists()


def test_without_matplotlib_the_run_ends_with_one_warning_and_no_png(tmp_path, monkeypatch,
                                                                     capsys):
  for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
    monkeypatch.delitem(sys.modules, name)
  monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` fails
  _write_run(tmp_path, tensorboard=False, curves=("loss",))
  assert not (tmp_path / "curves.png").exists()
  assert capsys.readouterr().err.splitlines() == [
      f"warning: matplotlib is not installed; no {tmp_path / 'curves.png'} "
      "(pip install matplotlib)"]


def test_wandb_run_logs_the_jsonl_numbers_by_step_and_the_config(tmp_path, monkeypatch):
  wandb_offline(monkeypatch, tmp_path)
  config = {"model": {"hidden_size": 32}, "seed": 3}
  _write_run(tmp_path / "run", tensorboard=False,
             wandb=WandbRun("electra-test", "offline", name="run", config=config))
  (run_dir,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
  logged_config, history = read_wandb_run(run_dir)
  assert {k: logged_config[k] for k in config} == config
  assert history == [
      {"_step": 1, "loss": 9.0, "disc_auc": 0.5, "gen_accuracy": 0.0},
      {"_step": 2, "loss": 7.5, "disc_auc": 0.6, "gen_accuracy": 0.1,
       "eval_loss": 8.0, "eval_disc_auc": 0.55, "eval_unigram_accuracy": 0.05}]


def test_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)
  with pytest.raises(ValueError, match=r"^Weights & Biases logging \(project 'p'\) needs the "
                                       r'wandb package: pip install "electra_jax\[wandb\]"'):
    MetricsWriter(tmp_path, start_step=0, total_steps=1, is_main=True, tensorboard=False,
                  progress_bar=False, wandb=WandbRun("p", "offline"))


def test_other_processes_start_no_wandb_run_and_write_nothing(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # would raise if process 1 imported it
  writer = MetricsWriter(tmp_path / "w", start_step=0, total_steps=1, is_main=False,
                         curves=("loss",), wandb=WandbRun("p", "offline"))
  writer.write_train(1, {"loss": 1.0})
  writer.close()
  assert not (tmp_path / "w").exists()


def test_remote_workdir_holds_what_a_local_one_holds_and_a_resume_trims_it(tmp_path):
  remote = f"ram://{uuid.uuid4().hex}/run"
  for workdir in (tmp_path, remote):
    _write_run(workdir, tensorboard=True, curves=("loss", "disc_auc"))
  for name in ("metrics.jsonl", "eval_metrics.jsonl", "curves.png"):
    assert fs.read_bytes(fs.join(remote, name)) == (tmp_path / name).read_bytes(), name
  assert len(fs.listdir(fs.join(remote, "tensorboard", "train"))) == 1

  MetricsWriter(remote, start_step=1, total_steps=2, is_main=True, tensorboard=False,
                progress_bar=False).close()  # a run resumed at step 1 drops the later records
  assert fs.read_text(fs.join(remote, "metrics.jsonl")) == (
      (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)[0])
  assert fs.read_text(fs.join(remote, "eval_metrics.jsonl")) == ""
  assert sorted(fs.listdir(remote)) == ["curves.png", "eval_metrics.jsonl", "metrics.jsonl",
                                        "tensorboard"]  # no .tmp left


def test_wandb_files_of_a_remote_workdir_go_to_wandb_dir_with_a_note(tmp_path, monkeypatch,
                                                                     capsys):
  wandb_offline(monkeypatch, tmp_path)
  monkeypatch.chdir(tmp_path)
  remote = f"ram://{uuid.uuid4().hex}/run"
  _write_run(remote, tensorboard=False, wandb=WandbRun("electra-test", "offline", name="run"))
  local = tmp_path / "wandb"  # ./wandb
  assert (f"note: {remote} is not local and wandb writes local files only: the W&B run's files "
          f"go to {local}\n") in capsys.readouterr().err
  (run_dir,) = local.glob("offline-run-*")
  assert [h["_step"] for h in read_wandb_run(run_dir)[1]] == [1, 2]


def test_wandb_honours_its_environment(tmp_path, monkeypatch):
  """WANDB_MODE=offline with only a project configured (mode unset) makes an offline run (the
  code used to pass mode="online" over it and die asking for an API key); WANDB_PROJECT alone
  turns logging on; WANDB_DIR moves the run's files; a configured mode still wins."""
  wandb_offline(monkeypatch, tmp_path)
  _write_run(tmp_path / "a", tensorboard=False, wandb=WandbRun("electra-test", name="a"))
  (run_dir,) = (tmp_path / "a" / "wandb").glob("offline-run-*")
  assert [h["_step"] for h in read_wandb_run(run_dir)[1]] == [1, 2]
  assert not wandb_enabled(None)
  monkeypatch.setenv("WANDB_PROJECT", "from-env")
  assert wandb_enabled(None)
  monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
  _write_run(tmp_path / "b", tensorboard=False, wandb=WandbRun(name="b"))
  assert len(list((tmp_path / "elsewhere" / "wandb").glob("offline-run-*"))) == 1
  assert not (tmp_path / "b" / "wandb").exists()
  monkeypatch.setenv("WANDB_MODE", "disabled")
  _write_run(tmp_path / "c", tensorboard=False, wandb=WandbRun(mode="offline", name="c"))
  assert len(list((tmp_path / "elsewhere" / "wandb").glob("offline-run-*"))) == 2


def test_curves_draw_reference_lines(tmp_path, monkeypatch):
  """A run that learned nothing is seen as such: the disc loss panel gets the prior loss (mean
  of the logged disc_prior_loss), the generator accuracy panel the unigram accuracy (from the
  eval records), a fine-tuning panel a constant (the majority class)."""
  from matplotlib.axes import Axes
  train = [{"step": 1, "disc_loss": 0.5, "disc_prior_loss": 0.4},
           {"step": 2, "disc_loss": 0.45, "disc_prior_loss": 0.42}]
  evals = [{"step": 2, "eval_gen_accuracy": 0.1, "eval_unigram_accuracy": 0.06}]
  refs = {"disc_loss": [("prior", "disc_prior_loss")],
          "gen_accuracy": [("unigram", "unigram_accuracy")], "accuracy": [("majority", 51.7)],
          "absent": [("never logged", "nothing")]}
  assert reference_values(train, evals, refs) == {
      "disc_loss": [("prior", pytest.approx(0.41))], "gen_accuracy": [("unigram", 0.06)],
      "accuracy": [("majority", 51.7)]}
  drawn = []
  original = Axes.axhline
  monkeypatch.setattr(Axes, "axhline", lambda ax, y, **kw: drawn.append((y, kw["label"]))
                      or original(ax, y, **kw))
  assert write_curves(str(tmp_path / "c.png"), train, evals, ("disc_loss", "gen_accuracy"), refs)
  assert drawn == [(pytest.approx(0.41), "prior 0.41"), (0.06, "unigram 0.06")]
  assert (tmp_path / "c.png").stat().st_size > 0


def test_a_note_is_one_stderr_line_and_keeps_the_progress_bar_whole(tmp_path, capsys):
  writer = MetricsWriter(tmp_path, start_step=0, total_steps=4, is_main=True, tensorboard=False,
                         progress_bar=True)
  writer.advance(1)
  note("restored step 1")
  writer.write_eval(1, {"loss": 2.0})
  writer.close()
  out, err = capsys.readouterr()
  assert out == ""
  lines = err.replace("\r", "\n").splitlines()
  assert "restored step 1" in lines and "eval at step 1: loss=2" in lines


def test_lagged_metrics_are_read_one_step_late_and_once():
  read = []
  lagged = LaggedMetrics(lambda step, metrics: read.append((step, metrics)))
  lagged.flush()  # nothing held: nothing read
  lagged.push(1, "m1")
  assert read == []
  lagged.push(2, "m2")
  assert read == [(1, "m1")]
  lagged.flush()
  lagged.flush()
  lagged.push(3, "m3")
  assert read == [(1, "m1"), (2, "m2")]
  lagged.flush()
  assert read == [(1, "m1"), (2, "m2"), (3, "m3")]
