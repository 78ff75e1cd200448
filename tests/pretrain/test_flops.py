"""electra_jax.pretrain.flops and the benchmark: the analytic count that every printed MFU
divides by equals the matmul FLOPs of the traced train-step gradient, for each objective kind,
and the benchmark's figures follow from its measurements."""

import json
import math
import os
import string
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.build_pretraining_data import build_pretraining_data
from electra_jax import benchmark
from electra_jax.model import config as config_lib
from electra_jax.model.config import ModelConfig
from electra_jax.pretrain import flops
from electra_jax.pretrain import objective as ob

REPO = Path(__file__).resolve().parents[2]

SPECIAL = ob.SpecialIds(pad=0, cls=1, sep=2, mask=3, vocab_size=97)


def _dot_flops(jaxpr) -> float:
  """2 x multiply-adds of every dot_general in a jaxpr, sub-jaxprs included."""
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
      lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
      rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
      total += 2.0 * math.prod(lhs) * math.prod(rhs_free)
    for sub in jax.core.jaxprs_in_params(eqn.params):
      total += _dot_flops(sub)
  return total


@pytest.mark.parametrize("kind, embedding_size", [  # E < H adds embeddings_project
    ("electra", 16), ("electra", 32), ("electra_15", 16), ("mlm", 16), ("replace_mlm", 16),
    ("all_tokens_mlm", 16)])
def test_analytic_flops_equal_traced_matmul_flops(kind, embedding_size):
  disc = ModelConfig(vocab_size=97, embedding_size=embedding_size, hidden_size=32,
                     num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=64)
  gen = disc.replace(hidden_size=16, num_attention_heads=2, intermediate_size=32)
  objective = ob.ObjectiveConfig(kind=kind)
  batch, seq_len = 3, 24
  model = ob.build_pretraining_model(disc, gen, "tied", objective)
  rs = np.random.RandomState(0)
  ids = jnp.asarray(rs.randint(4, 97, (batch, seq_len)), jnp.int32)
  data = {"input_ids": ids, "attention_mask": jnp.ones_like(ids), "token_type_ids": jnp.zeros_like(ids)}
  params = model.init(jax.random.key(0), ids, data["attention_mask"], data["token_type_ids"],
                      jnp.zeros((batch, objective.num_predictions(seq_len)), jnp.int32))["params"]

  def loss(p):
    return ob.pretraining_loss(p, data, jax.random.key(1), model=model, objective=objective,
                               special=SPECIAL, deterministic=False)[0]

  traced = _dot_flops(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  analytic = flops.training_flops_per_step(disc, gen, objective, batch, seq_len)
  assert analytic == pytest.approx(traced, rel=1e-9)


@pytest.mark.slow
def test_benchmark_figures_on_two_simulated_cpu_devices():
  """Tokens/s, MFU and the PyTorch ratio follow from the timed step; the two simulated devices
  share the host's cores, so the measured matmul ceiling is not counted twice."""
  code = ("import json; from electra_jax import benchmark; r = benchmark.main(['--size', 'small', "
          "'--batch', '4', '--seq_len', '16', '--steps', '1', '--warmup', '0', "
          "'--compare_torch', '--no_cpu_flags']); print('RESULT', json.dumps(r))")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads(out.stdout.split("RESULT ", 1)[1])
  assert r["devices"] == 2 and r["device_kind"] == "cpu"
  disc, gen = config_lib.PRESETS["small"].model, config_lib.PRESETS["small"].generator
  assert r["flops_per_step"] == flops.training_flops_per_step(disc, gen, ob.ObjectiveConfig(), 4, 16)
  assert r["tokens_per_s"] == pytest.approx(4 * 16 / r["step_s"])
  assert r["mfu_vs_measured_matmul"] == pytest.approx(
      r["flops_per_step"] / r["step_s"] / r["matmul_flops_per_s"])
  assert r["speedup_vs_torch"] == pytest.approx(r["torch_step_s"] / r["step_s"])
  assert "mfu_vs_peak" not in r  # no listed peak for a CPU
  assert "GFLOP/s on the host" in out.stdout


def test_benchmark_reports_real_tokens_of_a_shard_batch(tmp_path, monkeypatch):
  """--data times the first batch of built shards (packed rows as built, the shards' special
  ids): real-token fraction = its non-pad share, real tokens/s = tokens/s x that fraction. The
  step and the matmul ceiling are stubbed (the figures are arithmetic on their timings)."""
  vocab = tmp_path / "vocab.txt"  # character-level WordPiece
  letters = string.ascii_lowercase
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters,
                              *(f"##{c}" for c in letters)]))
  words = "the quick brown fox jumps over lazy dogs".split()
  corpus = tmp_path / "corpus.txt"  # short documents of one to three lines
  corpus.write_text("\n\n".join("\n".join(" ".join(words[(d + k) % 8:][:d % 5 + 1])
                                           for k in range(d % 3 + 1)) for d in range(200)))
  timed = []

  def half_a_second(disc, gen, batch, steps, warmup, sampler, special):
    timed.append((disc, batch, special))
    return {"step_s": 0.5, "compile_s": 1.0, "loss": 1.0, "flops": 1e9}

  monkeypatch.setattr(benchmark, "measure_matmul_flops", lambda n, dtype: 1e11)
  monkeypatch.setattr(benchmark, "time_jax_step", half_a_second)
  fractions = {}
  for layout in ("packed", "unpacked"):
    build_pretraining_data(str(corpus), f"wordpiece:{vocab}", str(tmp_path / layout),
                           seq_len=32, num_shards=2, pieces_per_shard=2, progress=False,
                           layout=layout)
    r = benchmark.main(["--size", "tiny", "--batch", "4", "--no_cpu_flags",
                        "--data", str(tmp_path / layout)])
    disc, batch, special = timed[-1]
    want, _ = benchmark.shard_batch(str(tmp_path / layout), 4)
    assert batch.keys() == want.keys() and all(np.array_equal(batch[k], want[k]) for k in want)
    assert ("example_ids" in batch) == (layout == "packed") == r["packed"]
    assert (disc.vocab_size, special.cls, special.sep, r["seq_len"]) == (57, 2, 3, 32)
    assert r["tokens_per_s"] == 4 * 32 / 0.5
    assert r["real_token_fraction"] == pytest.approx(np.mean(want["attention_mask"]))
    assert r["real_tokens_per_s"] == pytest.approx(r["tokens_per_s"] * r["real_token_fraction"])
    fractions[layout] = r["real_token_fraction"]
  assert fractions["packed"] > fractions["unpacked"]


def test_benchmark_set_overrides_the_discriminator(monkeypatch):
  """--set FIELD=VALUE changes the size's discriminator before the generator is derived (the
  4-layer x 128 quality model with an 8000-piece vocabulary); an unknown field is an error."""
  timed = []
  monkeypatch.setattr(benchmark, "measure_matmul_flops", lambda n, dtype: 1e11)
  monkeypatch.setattr(benchmark, "time_jax_step",
                      lambda disc, gen, batch, steps, warmup, sampler, special: timed.append(
                          (disc, gen, batch, special)) or {"step_s": 0.5, "compile_s": 1.0,
                                                           "loss": 1.0, "flops": 1e9})
  benchmark.main(["--size", "small", "--batch", "2", "--seq_len", "16", "--no_cpu_flags",
                  "--set", "num_hidden_layers=4", "--set", "hidden_size=128",
                  "--set", "num_attention_heads=2", "--set", "intermediate_size=512",
                  "--set", "vocab_size=8000", "--set", "attention=explicit"])
  disc, gen, batch, special = timed[-1]
  assert (disc.num_hidden_layers, disc.hidden_size, disc.num_attention_heads,
          disc.intermediate_size, disc.vocab_size, disc.attention) == (4, 128, 2, 512, 8000,
                                                                       "explicit")
  assert (gen.hidden_size, gen.num_hidden_layers, gen.vocab_size) == (32, 4, 8000)
  assert special.vocab_size == 8000 and batch["input_ids"].max() < 8000
  with pytest.raises(ValueError, match="num_layers"):
    benchmark.main(["--size", "tiny", "--no_cpu_flags", "--set", "num_layers=4"])
