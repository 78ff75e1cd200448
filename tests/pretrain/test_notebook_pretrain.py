"""notebooks/pretrain_tpu.ipynb runs top to bottom on CPU with the tiny experiment (a few steps)
and plots the curves of the metrics it logged."""

import json
from pathlib import Path

import pytest

from train_testlib import read_jsonl, tiny_bindings

ROOT = Path(__file__).resolve().parents[2]
STEPS = 8


@pytest.mark.slow
def test_pretraining_notebook_executes_on_cpu(tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  work = tmp_path / "work"
  bindings = tiny_bindings(STEPS, LogConfig__log_every=2, DataConfig__eval_every=STEPS,
                           DataConfig__eval_batches=1)
  for k, v in {"PT_EXPERIMENT": "tiny", "PT_WORKDIR": str(work),
               "PT_BINDINGS": "; ".join(bindings), "PYTHONPATH": str(ROOT),
               "JAX_PLATFORMS": "cpu"}.items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(ROOT / "notebooks" / "pretrain_tpu.ipynb", as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "accelerator: cpu" in printed
  records = read_jsonl(work / "metrics.jsonl")
  assert [r["step"] for r in records] == [2, 4, 6, 8]
  assert f"4 logged steps, last: step 8 disc_auc {records[-1]['disc_auc']:.3f}" in printed
  assert (work / "curves.png").stat().st_size > 10_000
  assert json.loads((work / "config.json").read_text())["optimizer"]["total_steps"] == STEPS
