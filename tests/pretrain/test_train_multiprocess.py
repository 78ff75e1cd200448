"""Two processes on localhost (jax.distributed, gloo CPU collectives) train like one process.

The reference is one process with two CPU devices: the same ("data": 2) mesh and global batch,
so the two runs differ only in where the devices live. Each of the two processes reads its own
half of every global batch. Dropout stays on (the default 0.1): its masks come from the
sharding-independent threefry bits, so they match across the two layouts too.
"""

import json

import numpy as np
import pytest

from train_testlib import (DETERMINISTIC_KEYS, free_port, read_jsonl, tiny_bindings,
                           train_subprocess)

STEPS = 6


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  bindings = tiny_bindings(STEPS, CheckpointConfig__save_every=3)

  # All three processes start together, so they import the same source even while it is being
  # edited (run one after the other, the two layouts once ran different code and disagreed).
  single, multi = tmp_path / "single", tmp_path / "multi"
  port = free_port()
  procs = [train_subprocess(single, bindings,
                            {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})]
  procs += [train_subprocess(multi, bindings, {"XLA_FLAGS": ""},
                             extra_args=(f"--coordinator_address=localhost:{port}",
                                         "--num_processes=2", f"--process_id={i}"))
            for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  assert "devices: 2 x cpu over 1 process(es); mesh {'data': 2" in outs[0]
  assert "devices: 2 x cpu over 2 process(es); mesh {'data': 2" in outs[1]
  assert "devices:" not in outs[2]  # only process 0 logs

  # Same resolved config, with dropout on.
  config = json.loads((single / "config.json").read_text())
  assert json.loads((multi / "config.json").read_text()) == config
  model = config["model"]
  assert model["hidden_dropout_prob"] == model["attention_probs_dropout_prob"] == 0.1
  want = read_jsonl(single / "metrics.jsonl")
  got = read_jsonl(multi / "metrics.jsonl")
  assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, STEPS + 1))
  for w, g in zip(want, got):
    for k in DETERMINISTIC_KEYS:
      np.testing.assert_allclose(g[k], w[k], rtol=1e-5, atol=1e-7,
                                 err_msg=f"step {w['step']} {k}")
  saved = sorted(p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == ["3", "6"]
