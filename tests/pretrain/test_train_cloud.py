"""Pre-training on tf.io.gfile paths. TensorFlow's in-memory file system (ram://) stands in for
gs:// (tests have no network): a run reads its shards, manifest and tokenizer from ram:// and
writes its workdir there, stops, resumes, and logs bitwise the metrics of a local run.

orbax cannot write ram:// (TensorStore has no driver for it; on gs:// it writes natively), so
in that run WORKDIR/checkpoints alone is a local directory (`checkpoint_dir` replaced); without
the replacement a ram:// workdir is refused before anything is written."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from data_pipelines import fs, tokenizers
from electra_jax.pretrain import checkpoint
from electra_jax.pretrain.config import CheckpointConfig
from electra_jax.pretrain.train import lock_workdir, open_data, train_and_evaluate
from train_testlib import DETERMINISTIC_KEYS, REPO, tiny_config

STEPS, STOP = 4, 2

# In one process (ram:// lives in its process): copy the shards to ram://data with their
# tokenizer beside them (the manifest's spec names a file that does not exist, so the tokenizer
# must come from ram://), run locally, then on ram:// to step STOP and resumed to STEPS.
_RUN = textwrap.dedent("""
    import hashlib, json, sys
    sys.path.insert(0, {tests!r})
    from data_pipelines import fs, tokenizers
    from electra_jax.pretrain import checkpoint, train
    from electra_jax.pretrain.config import config_json, resolve_config
    from train_testlib import tiny_bindings

    local_data, local_work, local_checkpoints = sys.argv[1:4]
    real_checkpoint_dir = checkpoint.checkpoint_dir
    checkpoint.checkpoint_dir = train.checkpoint_dir = lambda workdir: (
        local_checkpoints if str(workdir).startswith("ram://") else real_checkpoint_dir(workdir))

    data = "ram://bucket/data"
    fs.makedirs(data)
    for name in fs.listdir(local_data):
      if name.endswith(".tfrecord") or name == "manifest.json":
        fs.copy(fs.join(local_data, name), fs.join(data, name))
    manifest = json.loads(fs.read_text(fs.join(data, "manifest.json")))
    tokenizers.of_shards(local_data, manifest["tokenizer"]).save(fs.join(data, "tokenizer"))
    manifest["tokenizer"]["spec"] = "sentencepiece:/nowhere/spm.model"
    fs.write_text(fs.join(data, "manifest.json"), json.dumps(manifest))

    def config(data_dir, **more):
      return resolve_config(None, gin_bindings=tiny_bindings(
          {steps}, DataConfig__data_dir=data_dir, LogConfig__tensorboard=True,
          LogConfig__curves=True, **more))

    work = "ram://bucket/run"
    train.train_and_evaluate(config(local_data), local_work)
    train.train_and_evaluate(config(data, TrainConfig__num_train_steps={stop}), work)
    result = train.train_and_evaluate(config(data), work)
    read = lambda path: [json.loads(l) for l in fs.read_text(path).splitlines()]
    print("RESULT " + json.dumps({{
        "step": result["step"],
        "ram": read(fs.join(work, "metrics.jsonl")),
        "files": sorted(fs.listdir(work)),
        "tensorboard": sorted(fs.listdir(fs.join(work, "tensorboard", "train"))),
        "curves": hashlib.sha256(fs.read_bytes(fs.join(work, "curves.png"))).hexdigest(),
        "tokenizer": tokenizers.find_saved(work).fingerprint(),
        "config_json": fs.read_text(fs.join(work, "config.json")) == config_json(config(data)),
        "steps": checkpoint.saved_steps(work),
        "closing": train.closing_message(work),
    }}))
    """)


@pytest.mark.slow  # a whole training run; the default suite must stay under 15 min
def test_run_on_ram_data_and_workdir_resumes_bitwise_as_a_local_run(tmp_path, tmp_path_factory):
  local_data = open_data(tiny_config(1))[3]  # the default test data, built once
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  script = _RUN.format(tests=str(REPO / "tests"), steps=STEPS, stop=STOP)
  proc = subprocess.run([sys.executable, "-c", script, local_data, str(tmp_path / "local"),
                         str(tmp_path / "checkpoints")],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  result = json.loads(proc.stdout.splitlines()[-1].removeprefix("RESULT "))

  local = [json.loads(l) for l in (tmp_path / "local" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in result["ram"]] == [r["step"] for r in local] == [1, 2, 3, 4]
  for want, got in zip(local, result["ram"]):
    assert {k: got[k] for k in DETERMINISTIC_KEYS} == {k: want[k] for k in DETERMINISTIC_KEYS}
  assert result["step"] == STEPS and sorted(result["steps"]) == [STOP, STEPS]
  assert f"restored step {STOP} from {tmp_path / 'checkpoints'}" in proc.stderr
  # The resume extends num_train_steps: the first segment's config stays beside the new one.
  assert result["files"] == ["config.gin", "config.json", "config.until_step_2.gin",
                             "config.until_step_2.json", "curves.png", "metrics.jsonl",
                             "tensorboard", "tokenizer"]
  assert result["tensorboard"] and result["config_json"]
  # Files rewritten by the resumed run (curves.png, the tokenizer) are whole, as the local ones.
  assert result["curves"] == hashlib.sha256((tmp_path / "local" / "curves.png").read_bytes()
                                            ).hexdigest()
  assert result["tokenizer"] == tokenizers.find_saved(str(tmp_path / "local")).fingerprint()
  assert proc.stderr.count("note: workdir ram://bucket/run is not on a local file system: no "
                           "train.lock (flock) guards it") == 2
  assert result["closing"].splitlines()[-2:] == [  # the fine-tuning workdir beside the run
      "  fine-tune: electra-finetune --task=sst2 --init=ram://bucket/run --data_dir=GLUE_DIR "
      "--workdir=ram://bucket/run_sst2",
      "  export to Hugging Face: electra-convert ram://bucket/run OUT_DIR"]
  assert os.listdir(cwd) == []  # nothing written to a local "ram:" directory


def test_workdir_where_orbax_cannot_write_is_refused_before_anything(tmp_path):
  with pytest.raises(ValueError, match=r"^ram://refused/run: pre-training checkpoints "
                                       r"\(orbax-checkpoint\) can be read and written on a local "
                                       r"path or gs:// only .*no driver for ram://\); give a "
                                       r"local or gs:// path$"):
    train_and_evaluate(tiny_config(1), "ram://refused/run")
  assert not fs.exists("ram://refused/run")


def test_gs_paths_reach_orbax_whole_and_local_only_checks_are_skipped(tmp_path, capsys):
  assert checkpoint.checkpoint_dir("gs://bucket/run") == "gs://bucket/run/checkpoints"
  assert checkpoint.checkpoint_dir(tmp_path / "run") == str(tmp_path.resolve() / "run" /
                                                            "checkpoints")
  assert checkpoint.check_free_space("gs://bucket/run/checkpoints", CheckpointConfig(), {}) == (
      "note: gs://bucket/run/checkpoints is not on a local disk: its free space is not checked "
      "before training")
  workdir = "ram://lock/run"
  with lock_workdir(workdir):
    assert fs.isdir(workdir)
  assert capsys.readouterr().err == (
      "note: workdir ram://lock/run is not on a local file system: no train.lock (flock) guards "
      "it, so make sure no other trainer uses it\n")
