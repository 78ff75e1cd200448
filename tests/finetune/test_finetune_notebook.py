"""notebooks/finetune.ipynb runs top to bottom on CPU (tiny random model, small SST-2-format
slice) and reports the scores it wrote to results.json."""

import json
from pathlib import Path

import pytest

from finetune_testlib import sst2_dir, vocab  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_notebook_executes(tmp_path, vocab, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  data = sst2_dir(tmp_path / "glue", n_train=48, n_dev=16, n_test=0)
  env = {"FT_TASK": "sst2", "FT_INIT": "random", "FT_DATA_DIR": str(data),
         "FT_TOKENIZER": f"wordpiece:{vocab}", "FT_WORKDIR": str(tmp_path / "work"),
         "FT_SEEDS": "1", "FT_SIZE": "tiny", "FT_EPOCHS": "1", "FT_MAX_LEN": "16",
         "FT_MAX_TRAIN": "48", "PYTHONPATH": str(ROOT)}
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(ROOT / "notebooks" / "finetune.ipynb", as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT)}}).execute()
  results = json.loads((tmp_path / "work" / "results.json").read_text())
  assert results["task"] == "sst2" and results["train_rows"] == 48
  printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert f"median {results['median']['accuracy']:6.2f}" in printed
  assert "dev_predictions.tsv" in printed and "'final'" in printed
