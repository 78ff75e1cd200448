"""The checkpoint sweep (table + plot against steps/FLOPs) and the quality script (medians
table, random-init baseline of the same architecture), on tiny Hugging Face checkpoints."""

import json

import numpy as np
import pytest

from electra_jax import quality
from electra_jax.finetune import sweep as finetune_sweep
from finetune_testlib import WORDS, finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _hf_checkpoint(path, vocab_path, seed):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(seed)
  cfg = transformers.ElectraConfig(vocab_size=len(WORDS) + 5, embedding_size=32, hidden_size=32,
                                   intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, max_position_embeddings=64)
  transformers.ElectraForPreTraining(cfg).save_pretrained(str(path))
  (path / "vocab.txt").write_text(vocab_path.read_text())
  return path


def test_checkpoint_step_parsing():
  assert finetune_sweep.checkpoint_step("runs/small_2/checkpoints/12000") == 12000
  with pytest.raises(ValueError, match="cannot read a step number"):
    finetune_sweep.checkpoint_step("runs/final")


def test_sweep_table_and_plot(tmp_path, vocab):
  for step in (200, 50):
    _hf_checkpoint(tmp_path / "ckpts" / str(step), vocab, step)
  data = sst2_dir(tmp_path / "glue", n_train=32, n_dev=16, n_test=0)
  cfg = finetune_config(vocab, data, init="random", size=None, model_overrides=(), num_epochs=1.0,
                        write_predictions=False, save_checkpoint=False)
  rows = finetune_sweep.sweep(cfg, str(tmp_path / "ckpts" / "*"), str(tmp_path / "sweep"),
                              flops_per_step=1e9)
  assert [r["step"] for r in rows] == [50, 200]
  lines = (tmp_path / "sweep" / "sweep.tsv").read_text().splitlines()
  assert lines[0] == "step\tflops\tmedian\tper_seed\tpath"
  for line, r in zip(lines[1:], rows):
    step, flops, median, _, path = line.split("\t")
    assert int(step) == r["step"] and float(flops) == r["step"] * 1e9
    results = json.loads((tmp_path / "sweep" / f"step_{step}" / "results.json").read_text())
    assert float(median) == pytest.approx(results["median"]["accuracy"], abs=0.005)
  assert (tmp_path / "sweep" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_with_random_baseline(tmp_path, vocab, capsys):
  ckpt = _hf_checkpoint(tmp_path / "my_model", vocab, 0)
  data = sst2_dir(tmp_path / "glue", n_train=32, n_dev=16, n_test=0)
  base = finetune_config(vocab, data, init=str(ckpt), tokenizer=None, size=None,
                         model_overrides=(), num_epochs=1.0, seeds=(1, 2), write_predictions=False,
                         save_checkpoint=False)
  rows = quality.run_quality(base, ["sst2"], str(tmp_path / "q"), random_baseline=True)
  assert [(r["init"], r["task"], r["metric"]) for r in rows] == [
      ("my_model", "sst2", "accuracy"), ("random", "sst2", "accuracy")]
  for r in rows:
    assert len(r["values"]) == 2 and r["median"] == pytest.approx(np.median(r["values"]))
  # The baseline used the checkpoint's architecture, randomly initialised.
  res = json.loads((tmp_path / "q" / "random" / "sst2" / "results.json").read_text())
  assert dict(res["config"]["model_overrides"])["hidden_size"] == 32
  assert res["config"]["init"] == "random"
  table = quality.format_table(rows)
  assert f"| random | sst2 | accuracy | {' '.join(f'{v:.2f}' for v in rows[1]['values'])} |" in table
  assert table.count("| average |") == 2
