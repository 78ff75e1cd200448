"""Self-attention paths (ModelConfig.attention): which path runs where, parity of the explicit and
XLA paths without dropout, the statistics of the explicit path's dropout, CPU "auto" bitwise as
before the choice existed, and the GPU script's CPU parts (its plan and trace summing).

Tolerances (stated): ||xla - explicit|| / ||explicit|| <= 1e-5 in float32 and <= 2e-2 with
bfloat16 operands (the probabilities are rounded to bfloat16 before the second matmul, so a
one-ulp difference in a probability is 2^-8). Measured on CPU for these tests' inputs: 1.2e-7 and
1.8e-7 in float32, exactly 0 in bfloat16.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from electra_jax import attention_benchmark as ab
from electra_jax.model import layers
from electra_jax.model.config import ModelConfig

H100, A100, V100 = ("cuda", (9, 0)), ("cuda", (8, 0)), ("cuda", (7, 0))


def path(choice, platform=H100, dtype="bfloat16", head_dim=64, seq_len=128, dropout=True):
  return layers.attention_path(choice, *platform, dtype, head_dim, seq_len, dropout)


# ---------------------------------------------------------------------------------------------
# Selection

@pytest.mark.parametrize("platform", [("cpu", None), ("tpu", None), ("rocm", None), H100, A100])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_auto_is_xla_without_dropout_and_explicit_with_it_on_every_backend(platform, dtype):
  """cuDNN's dropout masks do not follow the training rng (bitwise resume), so "auto" never
  takes it; it is only used when asked for."""
  assert path("auto", platform, dtype, 64, 128, True) == "explicit"
  assert path("auto", platform, dtype, 64, 128, False) == "xla"


@pytest.mark.parametrize("platform, dtype, head_dim, seq_len, dropout, runs", [
    (H100, "bfloat16", 64, 128, True, True),
    (H100, "float16", 64, 512, False, True),
    (H100, "float32", 64, 128, True, False),  # cuDNN takes bf16/fp16 only
    (H100, "bfloat16", 60, 128, True, False),  # head dim not a multiple of 8
    (H100, "bfloat16", 256, 128, True, True),  # Hopper: head dim up to 256
    (A100, "bfloat16", 256, 128, True, False),  # Ampere: up to 128
    (A100, "bfloat16", 128, 128, False, True),
    (H100, "bfloat16", 64, 127, True, False),  # odd length with a mask
    (V100, "bfloat16", 64, 128, False, False),  # no flash attention before sm80
    (("rocm", None), "bfloat16", 64, 128, True, False),
])
def test_cudnn_runs_only_where_its_constraints_hold(platform, dtype, head_dim, seq_len, dropout,
                                                    runs):
  if runs:
    assert path("cudnn", platform, dtype, head_dim, seq_len, dropout) == "cudnn"
  else:
    with pytest.raises(ValueError, match="attention='cudnn' cannot run here: "):
      path("cudnn", platform, dtype, head_dim, seq_len, dropout)


def test_explicit_and_forced_choices():
  assert path("explicit", H100) == "explicit"
  assert path("explicit", ("cpu", None), dropout=False) == "explicit"
  assert path("xla", H100, dropout=False) == "xla"
  assert path("cudnn", H100, dropout=False) == "cudnn"
  with pytest.raises(ValueError, match="attention='xla' .* has no attention-probability dropout"):
    path("xla", ("cpu", None), dropout=True)
  with pytest.raises(ValueError, match="attention='cudnn' cannot run here: cuDNN fused attention "
                                       "needs a CUDA GPU, not backend 'cpu'"):
    path("cudnn", ("cpu", None), dropout=False)
  with pytest.raises(ValueError, match="takes bfloat16/float16 operands, not dtype='float32'"):
    path("cudnn", H100, dtype="float32")
  with pytest.raises(ValueError, match="compute capability >= 8.0"):
    path("cudnn", V100)
  with pytest.raises(ValueError, match="attention='flash'; expected"):
    path("flash")


def test_config_validates_and_keeps_attention_out_of_hf_dicts():
  with pytest.raises(ValueError, match="attention='flash'; expected one of"):
    ModelConfig(attention="flash")
  cfg = ModelConfig(attention="explicit")
  assert "attention" not in cfg.to_hf_dict()
  assert ModelConfig.from_hf_dict({**cfg.to_hf_dict(), "attention": "cudnn"}).attention == "auto"


def test_module_raises_for_impossible_choices_on_cpu():
  cfg = ModelConfig(hidden_size=32, num_attention_heads=2, dtype="bfloat16")
  x, keep = jnp.ones((1, 8, 32)), ab.padding_keep(1, 8)
  params = layers.SelfAttention(cfg).init(jax.random.PRNGKey(0), x, keep, True)
  with pytest.raises(ValueError, match="attention='cudnn' cannot run here"):
    layers.SelfAttention(cfg.replace(attention="cudnn")).apply(params, x, keep, True)
  with pytest.raises(ValueError, match="attention='xla' .* has no attention-probability dropout"):
    layers.SelfAttention(cfg.replace(attention="xla")).apply(
        params, x, keep, False, rngs={"dropout": jax.random.PRNGKey(1)})
  # Without dropout (eval, or rate 0 in training) "xla" runs.
  layers.SelfAttention(cfg.replace(attention="xla", attention_probs_dropout_prob=0.0)).apply(
      params, x, keep, False)


# ---------------------------------------------------------------------------------------------
# Parity and CPU behaviour

@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
@pytest.mark.parametrize("mask", ["padding", "packed"])
def test_xla_path_matches_explicit_without_dropout(dtype, tol, mask):
  cfg = ModelConfig(hidden_size=64, num_attention_heads=4, dtype=dtype)
  keep = ab.padding_keep(4, 32) if mask == "padding" else ab.packed_keep(4, 32, seed=3)
  assert keep.shape == ((4, 1, 1, 32) if mask == "padding" else (4, 1, 32, 32))
  outs = ab.attention_outputs(cfg, ["explicit", "xla"], keep, seed=1)
  assert outs["xla"].dtype == jnp.float32 and outs["xla"].shape == (4, 32, 64)
  err = ab.relative_error(outs["xla"], outs["explicit"])
  assert err <= tol, err
  # The masks matter: dropping them changes the output far beyond the tolerance.
  unmasked = ab.attention_outputs(cfg, ["xla"], jnp.ones_like(keep), seed=1)["xla"]
  assert ab.relative_error(unmasked, outs["explicit"]) > 10 * tol


def test_auto_on_cpu_is_the_previous_paths_bitwise():
  """Before ModelConfig.attention: jax.nn.dot_product_attention without dropout, the explicit
  path with it; "auto" on CPU must give those outputs bit for bit."""
  cfg = ModelConfig(hidden_size=32, num_attention_heads=2)
  keep = ab.packed_keep(2, 16, seed=0)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 32))
  params = layers.SelfAttention(cfg).init(jax.random.PRNGKey(1), x, keep, True)
  run = lambda choice, det: layers.SelfAttention(cfg.replace(attention=choice)).apply(
      params, x, keep, det, rngs={"dropout": jax.random.PRNGKey(2)})
  np.testing.assert_array_equal(run("auto", True), run("xla", True))
  np.testing.assert_array_equal(run("auto", False), run("explicit", False))
  assert not np.array_equal(run("auto", False), run("explicit", True))  # dropout is on


# ---------------------------------------------------------------------------------------------
# Dropout statistics (explicit path; the GPU script runs the same on cuDNN)

def test_probe_reads_out_attention_probabilities():
  cfg = ab.probe_config("float32", 16, 0.1, "explicit")
  keep = ab.padding_keep(2, 16)  # row 1 has 13 real tokens
  p = layers.SelfAttention(cfg).apply(ab.probe_params(cfg, 0), ab.probe_input(2, 16), keep, True)
  np.testing.assert_allclose(np.asarray(p).sum(-1), 1.0, rtol=1e-5)
  assert np.all(np.asarray(p[1, :, 13:]) == 0)  # masked keys get no probability
  assert float(p[0].max()) > 5 * float(p[0].min()) > 0  # far from uniform, none underflows


@pytest.mark.parametrize("dtype, scale_tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_explicit_dropout_statistics(dtype, scale_tol):
  rate, n_keys = 0.1, 100
  s = ab.dropout_statistics(ab.probe_config(dtype, 32, rate, "explicit"), batch=4,
                            n_keys=n_keys, seed=0)
  assert abs(s["drop_fraction"] - rate) <= 5 * s["stderr"], s
  assert s["stderr"] < 0.002
  assert s["kept_scale_error"] <= scale_tol, s  # kept = p / (1 - rate)
  # The mean over keys approaches p at the rate dropout's variance allows (no bias).
  assert s["mean_error"] <= 2 * s["mean_expected"], s
  assert s["mean_expected"] < 0.04


# ---------------------------------------------------------------------------------------------
# The GPU script's CPU parts

def test_gpu_script_dry_run_plans_each_size_and_path(capsys):
  out = ab.main(["--dry_run", "--sizes", "small,base", "--paths", "explicit,xla,cudnn,auto"])
  rows = {(r["size"], r["path"]): r for r in out["plan"]}
  assert set(rows) == {(s, p) for s in ("small", "base")
                       for p in ("explicit", "xla", "cudnn", "auto")}
  assert (rows["base", "auto"]["batch"], rows["base", "auto"]["seq_len"]) == (64, 512)
  assert (rows["small", "auto"]["batch"], rows["small", "auto"]["seq_len"]) == (128, 128)
  for size in ("small", "base"):
    assert rows[size, "auto"]["here"] == "explicit"  # CPU, attention dropout 0.1
    assert rows[size, "auto"]["h100"] == "explicit"
    assert rows[size, "xla"]["here"] == rows[size, "xla"]["h100"] == "xla"  # planned without
    assert rows[size, "cudnn"]["here"].startswith("skip: attention='cudnn' cannot run here")
  assert "plan base 64x512 attention=auto: here -> explicit; H100 -> explicit" in (
      capsys.readouterr().out)


def test_gpu_script_rejects_unknown_sizes_and_paths():
  with pytest.raises(SystemExit):
    ab.main(["--dry_run", "--paths", "flash"])
  with pytest.raises(SystemExit):
    ab.main(["--dry_run", "--sizes", "huge"])


def test_device_events_are_summed_per_thread_and_step():
  meta = lambda kind, pid, tid, name: {"ph": "M", "name": kind, "pid": pid, "tid": tid,
                                       "args": {"name": name}}
  x = lambda pid, tid, name, dur: {"ph": "X", "pid": pid, "tid": tid, "name": name, "dur": dur}
  trace = {"traceEvents": [
      meta("process_name", 1, 0, "/device:GPU:0"), meta("process_name", 2, 0, "/host:CPU"),
      meta("thread_name", 1, 5, "XLA Ops"), meta("thread_name", 1, 6, "Stream #1"),
      x(1, 5, "fusion.1", 3000), x(1, 5, "fusion.1", 3000), x(1, 5, "cudnn-fmha", 1500),
      x(1, 6, "kernel_a", 9000), x(2, 0, "host_op", 99000)]}
  assert ab.sum_device_events(trace, steps=3) == [
      ("Stream #1: kernel_a", 3.0), ("XLA Ops: fusion.1", 2.0), ("XLA Ops: cudnn-fmha", 0.5)]
