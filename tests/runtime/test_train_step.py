"""The jitted train step: resumable bit for bit, abstract state, deterministic eval, activation
constraints that change no bit on one device, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from electra_jax.model.config import ModelConfig
from electra_jax.pretrain import objective as ob
from electra_jax.runtime import optim
from electra_jax.runtime import mesh as shd
from electra_jax.runtime import state as ts
from electra_jax.runtime.step import make_train_step

V, L, B = 128, 16, 4
SPECIAL = ob.SpecialIds(pad=0, cls=1, sep=2, mask=3, vocab_size=V)
DISC = ModelConfig(vocab_size=V, embedding_size=16, hidden_size=32, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GEN = DISC.replace(hidden_size=16, num_attention_heads=1)
OBJECTIVE = ob.ObjectiveConfig()
MODEL = ob.build_pretraining_model(DISC, GEN, "tied", OBJECTIVE)
TX = optim.make_optimizer(optim.OptimizerConfig(learning_rate=1e-3, warmup_steps=1,
                                                total_steps=50))


def batches(n):
  rs = np.random.RandomState(0)
  out = []
  for _ in range(n):
    ids = rs.randint(5, V, (B, L)).astype(np.int32)
    ids[:, 0], ids[:, -1] = SPECIAL.cls, SPECIAL.sep
    out.append(dict(input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids)))
  return out


@pytest.fixture(scope="module")
def setup():
  mesh = shd.make_mesh(shd.MeshConfig())
  state, shardings = ts.create_train_state(ob.init_fn(MODEL, L), TX, mesh, seed=3)
  step = make_train_step(ob.loss_fn(MODEL, OBJECTIVE, SPECIAL), TX, mesh, shardings)
  return mesh, state, shardings, step


def test_resumed_run_is_bitwise_identical(setup):
  mesh, _, shardings, step = setup
  data = [shd.global_batch(b, mesh) for b in batches(4)]
  fresh = lambda: ts.create_train_state(ob.init_fn(MODEL, L), TX, mesh, seed=3)[0]
  state, straight = fresh(), []
  for b in data:
    state, m = step(state, b)
    straight.append(jax.device_get(m))
  final = jax.device_get(state)

  state = fresh()
  for b in data[:2]:
    state, _ = step(state, b)
  saved = jax.device_get(state)  # what a checkpoint holds
  state = jax.device_put(saved, shardings)
  resumed = []
  for b in data[2:]:
    state, m = step(state, b)
    resumed.append(jax.device_get(m))
  for a, b in zip(straight[2:], resumed):
    assert a == b
  jax.tree.map(np.testing.assert_array_equal, final, jax.device_get(state))
  assert int(state.step) == 4
  assert straight[0]["learning_rate"] == 0.0 and straight[1]["learning_rate"] > 0
  assert straight[0]["loss"] != straight[1]["loss"]
  assert set(straight[0]) == set(ob.METRIC_NAMES) | {"grad_norm", "learning_rate"}
  assert straight[0]["grad_norm"] > 0


def test_abstract_state_matches_created_state(setup):
  mesh, state, shardings, _ = setup
  abstract, abstract_shardings = ts.abstract_train_state(ob.init_fn(MODEL, L), TX, mesh)
  assert jax.tree.structure(abstract) == jax.tree.structure(state)
  for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(state)):
    assert (a.shape, a.dtype) == (s.shape, s.dtype)
    assert a.sharding == s.sharding
  assert jax.tree.structure(abstract_shardings) == jax.tree.structure(shardings)
  assert state.params["embeddings"]["word_embeddings"]["embedding"].dtype == jnp.float32
  assert optax.tree_utils.tree_get(state.opt_state, "mu") is not None


def test_eval_step_is_deterministic(setup):
  mesh, state, shardings, _ = setup
  evaluate = ob.make_eval_step(MODEL, OBJECTIVE, SPECIAL, mesh, shardings)
  b = shd.global_batch(batches(1)[0], mesh)
  first, second = jax.device_get(evaluate(state, b)), jax.device_get(evaluate(state, b))
  assert first == second and set(first) == set(ob.METRIC_NAMES)
  assert first["loss"] > 0


def test_activation_constraints_change_nothing_on_one_device(setup):
  """The steps are traced under the mesh and the logical-axis rules, so their lowered StableHLO
  holds the model's activation constraints (forward; and backward in the train step); the train
  step jitted without them (`.jitted`) holds none and computes bit-identical results."""
  mesh, state, shardings, step = setup
  evaluate = ob.make_eval_step(MODEL, OBJECTIVE, SPECIAL, mesh, shardings)
  data = [shd.global_batch(b, mesh) for b in batches(2)]
  count = lambda lowered: lowered.as_text().count("sdy.sharding_constraint")
  n_train, n_eval = count(step.lower(state, data[0])), count(evaluate.lower(state, data[0]))
  assert n_eval >= 2 * (1 + 3 * DISC.num_hidden_layers)  # 2 models: embeddings + 3 per layer
  assert n_train == 2 * n_eval
  assert count(step.jitted.lower(state, data[0])) == 0
  assert count(evaluate.jitted.lower(state, data[0])) == 0

  initial = jax.device_get(state)
  runs = []
  for train_fn in (step, step.jitted):
    s = jax.device_put(initial, shardings)  # a copy: the step donates its input
    metrics = []
    for b in data:
      s, m = train_fn(s, b)
      metrics.append(jax.device_get(m))
    runs.append((metrics, jax.device_get(s)))
  assert runs[0][0] == runs[1][0]
  jax.tree.map(np.testing.assert_array_equal, runs[0][1], runs[1][1])


def test_errors(setup):
  mesh = jax.sharding.AbstractMesh((2, 2, 1), shd.MESH_AXES)
  shd.check_batch(mesh, 8)
  with pytest.raises(ValueError, match="global_batch_size=6 is not divisible by data x fsdp = 4"):
    shd.check_batch(mesh, 6)
  with pytest.raises(ValueError, match="the global batch of field 'input_ids'=6 is not divisible"):
    shd.global_batch({"input_ids": np.zeros((6, 4), np.int32)}, mesh)
  mesh = setup[0]
  with pytest.raises(ValueError, match="has no 'learning_rate' entry"):
    make_train_step(ob.loss_fn(MODEL, OBJECTIVE, SPECIAL), optax.adamw(1e-3), mesh, setup[2])
