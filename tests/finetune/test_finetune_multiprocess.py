"""Fine-tuning over two processes (jax.distributed, gloo CPU collectives) equals one process
with two devices: the same ("data": 2) mesh and batches, so the runs differ only in where the
devices live. Each process feeds its half of every batch; predictions are gathered for scoring."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from finetune_testlib import sst2_dir
from finetune_testlib import vocab  # noqa: F401 (fixture)
from train_testlib import REPO, free_port, read_jsonl

pytestmark = pytest.mark.slow
TINY = ["FinetuneConfig.model_overrides = (('hidden_size', 32), ('embedding_size', 32), "
        "('intermediate_size', 64), ('num_attention_heads', 2), ('num_hidden_layers', 2))",
        "FinetuneConfig.max_seq_length = 16", "FinetuneConfig.batch_size = 8",
        "FinetuneConfig.eval_batch_size = 8", "FinetuneConfig.num_epochs = 2.0",
        "FinetuneConfig.learning_rate = 0.01", "LogConfig.log_every = 1",
        "LogConfig.progress_bar = False", "LogConfig.tensorboard = False"]


def _finetune(workdir, data, vocab, xla_flags, extra=()):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2",
             XLA_FLAGS=xla_flags)
  cmd = [sys.executable, "-m", "electra_jax.finetune", "--task=sst2", "--init=random",
         "--size=tiny", f"--data_dir={data}", f"--tokenizer=wordpiece:{vocab}",
         f"--workdir={workdir}", "--seeds=1", *extra, *(f"--set={b}" for b in TINY)]
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_two_processes_match_one_process(tmp_path, vocab):
  data = sst2_dir(tmp_path / "glue", n_train=32, n_dev=20, n_test=0)
  single, multi = tmp_path / "single", tmp_path / "multi"
  port = free_port()
  procs = [_finetune(single, data, vocab, "--xla_force_host_platform_device_count=2")]
  procs += [_finetune(multi, data, vocab, "", (f"--coordinator_address=localhost:{port}",
                                                "--num_processes=2", f"--process_id={i}"))
            for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  assert "devices: 2 x cpu over 1 process(es); mesh {'data': 2" in outs[0]
  assert "devices: 2 x cpu over 2 process(es); mesh {'data': 2" in outs[1]
  assert "results:" in outs[1] and "devices:" not in outs[2]  # only process 0 reports

  want = json.loads((single / "results.json").read_text())
  got = json.loads((multi / "results.json").read_text())
  assert got["dev_rows"] == want["dev_rows"] == {"dev": 20}  # 2 x 8 + 4: padding rows dropped
  assert got["per_seed"] == want["per_seed"]
  for w, g in zip(read_jsonl(single / "seed_1" / "metrics.jsonl"),
                  read_jsonl(multi / "seed_1" / "metrics.jsonl")):
    assert g["step"] == w["step"]
    for k in ("loss", "grad_norm", "learning_rate"):
      np.testing.assert_allclose(g[k], w[k], rtol=1e-5, atol=1e-7, err_msg=f"step {w['step']} {k}")
  assert (multi / "seed_1" / "dev_predictions.tsv").read_text() == (
      single / "seed_1" / "dev_predictions.tsv").read_text()
