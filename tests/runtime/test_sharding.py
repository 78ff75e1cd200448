"""Mesh, logical-axis rules, batch placement, activation constraints that reach the lowered 8-device
step, and 8 simulated devices equal to 1 device."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from electra_jax.floor import sharding
from electra_jax.runtime import mesh as shd

REPO = Path(__file__).resolve().parents[2]


def test_mesh_config_resolution_and_errors():
  assert shd.MeshConfig().resolve(8) == (8, 1, 1)
  assert shd.MeshConfig(data=-1, fsdp=2, tensor=2).resolve(8) == (2, 2, 2)
  assert shd.MeshConfig(data=2, fsdp=-1, tensor=1).resolve(8) == (2, 4, 1)
  with pytest.raises(ValueError, match=r"data x fsdp x tensor = 4 but there are 8 devices"):
    shd.MeshConfig(data=2, fsdp=2, tensor=1).resolve(8)
  with pytest.raises(ValueError, match=r"8 devices are not divisible by the fixed axes' product 3"):
    shd.MeshConfig(data=-1, fsdp=3).resolve(8)
  with pytest.raises(ValueError, match="at most one axis may be -1"):
    shd.MeshConfig(data=-1, fsdp=-1)
  with pytest.raises(ValueError, match="sizes must be positive or -1"):
    shd.MeshConfig(tensor=0)
  mesh = shd.make_mesh(shd.MeshConfig())
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert dict(mesh.shape) == {"data": len(jax.devices()), "fsdp": 1, "tensor": 1}


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    init = nn.initializers.normal()
    w = self.param("w", nn.with_logical_partitioning(init, ("vocab", "embed")), (6, 4))
    k = self.param("k", nn.with_logical_partitioning(init, ("embed", "hidden")), (4, 4))
    b = self.param("b", nn.initializers.zeros, (4,))
    return x @ w @ k + b


def test_param_shardings_follow_rules_and_drop_non_dividing_axes():
  """Uses an abstract 4-device mesh so the rule table is checked without 4 devices."""
  mesh = jax.sharding.AbstractMesh((1, 2, 2), shd.MESH_AXES)
  boxed = jax.eval_shape(_Tiny().init, jax.random.PRNGKey(0), jnp.ones((1, 6)))["params"]
  specs = jax.tree.map(lambda s: s.spec, shd.param_shardings(boxed, mesh))
  assert specs["w"] == P("tensor", "fsdp")  # 6 % 2 == 0 and 4 % 2 == 0
  assert specs["k"] == P("fsdp", None)  # fsdp is taken by "embed" first
  assert specs["b"] == P()  # unboxed: replicated
  odd = jax.sharding.AbstractMesh((1, 1, 4), shd.MESH_AXES)
  specs = jax.tree.map(lambda s: s.spec, shd.param_shardings(boxed, odd))
  assert specs["w"] == P(None, "fsdp")  # 6 rows do not split 4 ways: not over tensor
  assert shd.logical_sharding(("batch", "length", "hidden"), (8, 3, 4), mesh).spec == \
      P(("data", "fsdp"), None, None)


def test_global_batch_places_rows_on_the_batch_axes():
  mesh = shd.make_mesh(shd.MeshConfig())
  local = {"input_ids": np.arange(12, dtype=np.int32).reshape(4, 3)}
  out = shd.global_batch(local, mesh)
  assert out["input_ids"].shape == (4 * jax.process_count(), 3)
  assert out["input_ids"].sharding == shd.batch_sharding(mesh)
  np.testing.assert_array_equal(np.asarray(out["input_ids"]), local["input_ids"])


def test_logical_constraint_drops_non_dividing_axes_and_is_inert_outside_the_rules():
  """Traced on an abstract 2x2x2 mesh: batch 2 keeps data but not fsdp, 1 head is not split over
  tensor=2 (flax's own with_logical_constraint keeps both, i.e. pads); no rules, no constraint."""
  mesh = jax.sharding.AbstractMesh((2, 2, 2), shd.MESH_AXES)
  axes = ("batch", "length", "heads", "kv")
  x = jax.ShapeDtypeStruct((2, 3, 1, 4), jnp.float32)

  def constraint_specs(fn):
    eqns = jax.make_jaxpr(fn)(x).eqns
    return [e.params["sharding"].spec for e in eqns if e.primitive.name == "sharding_constraint"]

  ours = lambda a: sharding.logical_constraint(a, axes)
  flax_own = lambda a: nn.with_logical_constraint(a, axes)
  assert constraint_specs(ours) == []  # neither mesh nor rules
  with nn.logical_axis_rules(shd.LOGICAL_AXIS_RULES):
    assert constraint_specs(ours) == []  # rules without a global mesh
  with jax.sharding.use_abstract_mesh(mesh), nn.logical_axis_rules(shd.LOGICAL_AXIS_RULES):
    assert constraint_specs(ours) == [P("data", None, None, None)]
    assert constraint_specs(flax_own) == [P(("data", "fsdp"), None, "tensor", None)]
    wide = jax.ShapeDtypeStruct((8, 3, 2, 4), jnp.float32)
    specs = [e.params["sharding"].spec for e in jax.make_jaxpr(ours)(wide).eqns]
    assert specs == [P(("data", "fsdp"), None, "tensor", None)]
    with pytest.raises(ValueError, match=r"name 2 dimensions but .* shape \(2, 3, 1, 4\)"):
      jax.make_jaxpr(lambda a: sharding.logical_constraint(a, ("batch", "length")))(x)


# Both 8-device scripts start here: the tiny joint model, its objective and optimizer.
_TINY_MODEL = textwrap.dedent('''
    import json, re, sys
    import jax, numpy as np
    from electra_jax.model.config import ModelConfig
    from electra_jax.pretrain import objective as ob
    from electra_jax.runtime import optim
    from electra_jax.runtime import mesh as shd
    from electra_jax.runtime import state as ts
    from electra_jax.runtime.step import make_train_step

    assert len(jax.devices()) == 8, jax.devices()
    disc = ModelConfig(vocab_size=256, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    gen = disc.replace(hidden_size=16, intermediate_size=64, num_attention_heads=1)
    special = ob.SpecialIds(pad=0, cls=1, sep=2, mask=3, vocab_size=256)
    objective = ob.ObjectiveConfig()
    model = ob.build_pretraining_model(disc, gen, "tied", objective)
    tx = optim.make_optimizer(optim.OptimizerConfig(learning_rate=1e-3, warmup_steps=1,
                                                    total_steps=100))
''')


_LOWER_EIGHT = _TINY_MODEL + textwrap.dedent('''
    mesh = shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2))
    state, shardings = ts.abstract_train_state(ob.init_fn(model, 32), tx, mesh)
    ids = jax.ShapeDtypeStruct((8, 32), "int32", sharding=shd.batch_sharding(mesh))
    batch = dict(input_ids=ids, attention_mask=ids, token_type_ids=ids)
    train = make_train_step(ob.loss_fn(model, objective, special), tx, mesh, shardings)
    evaluate = ob.make_eval_step(model, objective, special, mesh, shardings)
    pattern = re.compile(r"sdy.sharding_constraint %[^ ]+ (<@mesh, [^>]*>) : (tensor<[^>]*>)")
    found = lambda text: [" : ".join(m) for m in pattern.findall(text)]
    json.dump({"train": found(train.lower(state, batch).as_text()),
               "eval": found(evaluate.lower(state, batch).as_text()),
               "train_plain": found(train.jitted.lower(state, batch).as_text()),
               "eval_plain": found(evaluate.jitted.lower(state, batch).as_text())}, sys.stdout)
''')


def _eight_device_env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                      " --xla_backend_optimization_level=0")
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  env["TF_CPP_MIN_LOG_LEVEL"] = "1"  # XLA's warnings reach stderr (conftest mutes them)
  return env


def test_lowered_eight_device_steps_carry_the_activation_constraints():
  """On a data 2 x fsdp 2 x tensor 2 mesh the lowered train and eval steps hold the model's
  activation constraints (forward, and their transposes in the train step's backward pass); the
  same steps jitted without the mesh and rules hold none."""
  proc = subprocess.run([sys.executable, "-c", _LOWER_EIGHT], env=_eight_device_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout)
  assert out["train_plain"] == [] and out["eval_plain"] == []
  layers, models = 2, 2
  assert len(out["eval"]) >= models * (1 + 3 * layers), out["eval"]  # embeddings + 3 per layer
  assert len(out["train"]) == 2 * len(out["eval"]), (out["train"], out["eval"])
  for expected in (
      '<@mesh, [{"data", "fsdp"}, {}, {}]> : tensor<8x32x32xf32>',  # disc hidden [B,L,H]
      '<@mesh, [{"data", "fsdp"}, {}, {"tensor"}]> : tensor<8x32x64xf32>',  # FFN [B,L,mlp]
      '<@mesh, [{"data", "fsdp"}, {}, {"tensor"}, {}]> : tensor<8x32x2x16xf32>',  # disc heads
      '<@mesh, [{"data", "fsdp"}, {}, {}]> : tensor<8x32x16xf32>'):  # embeddings, gen hidden
    assert out["train"].count(expected) == 2 * out["eval"].count(expected) > 0, expected


_EIGHT_DEVICES = _TINY_MODEL + textwrap.dedent('''
    rs = np.random.RandomState(0)
    batches = []
    for _ in range(3):
      ids = rs.randint(5, 256, (8, 32)).astype(np.int32)
      mask = np.ones_like(ids)
      mask[::3, 20:] = 0
      ids[:, 0] = 1
      ids[mask == 0] = 0
      batches.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids)))

    def run(mesh):
      state, shardings = ts.create_train_state(ob.init_fn(model, 32), tx, mesh, seed=0)
      step = make_train_step(ob.loss_fn(model, objective, special), tx, mesh, shardings)
      metrics = []
      for b in batches:
        state, m = step(state, shd.global_batch(b, mesh))
        metrics.append({k: float(v) for k, v in m.items()})
      emb = state.params["embeddings"]["word_embeddings"]["embedding"]
      return metrics, jax.device_get(state.params), str(emb.sharding.spec)

    one = run(shd.make_mesh(shd.MeshConfig(data=1), devices=jax.devices()[:1]))
    eight = run(shd.make_mesh(shd.MeshConfig(data=2, fsdp=2, tensor=2)))
    errors = {jax.tree_util.keystr(path): float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
              for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one[1]),
                                      jax.tree.leaves(eight[1]))}
    json.dump({"metrics1": one[0], "metrics8": eight[0], "param_rel_err": errors,
               "spec8": eight[2]}, sys.stdout)
''')


@pytest.mark.slow
def test_eight_devices_match_one_device():
  proc = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES], env=_eight_device_env(),
                        capture_output=True, text=True, timeout=800)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Embedding gathers read whole rows, so XLA never replicates an activation to reshard it.
  assert "Involuntary full rematerialization" not in proc.stderr
  out = json.loads(proc.stdout)
  assert out["spec8"].endswith("('tensor', 'fsdp')")  # word table: vocab x embed
  for step, (m1, m8) in enumerate(zip(out["metrics1"], out["metrics8"])):
    for name in ("loss", "gen_loss", "disc_loss", "grad_norm", "gen_accuracy", "disc_accuracy",
                 "disc_auc", "replaced_fraction", "learning_rate"):
      assert m8[name] == pytest.approx(m1[name], rel=1e-5, abs=1e-7), (step, name)
  assert out["metrics1"][2]["loss"] != out["metrics1"][0]["loss"]  # the steps did train
  # The attention key bias gets a mathematically zero gradient (softmax ignores a per-query
  # constant): Adam normalises its ~1e-9 rounding noise to steps of +-lr whose sign depends on
  # the reduction order, so it is excluded; every other parameter agrees to 1e-5 relative.
  errors = {k: v for k, v in out["param_rel_err"].items() if "['key']['bias']" not in k}
  assert len(errors) > 40 and max(errors.values()) < 1e-5, errors
