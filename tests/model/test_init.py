"""model.init.init_on_dummy, the one model init of both pipelines: the parameters of a task
model and of the joint pre-training model, as each pipeline initialised them before."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from electra_jax.model.config import PRESETS
from electra_jax.model.heads import build
from electra_jax.model.init import init_on_dummy
from electra_jax.model.pretraining import ElectraPretrainingModel


def _same(a, b):
  for x, y in zip(jax.tree.leaves(nn.unbox(a)), jax.tree.leaves(nn.unbox(b)), strict=True):
    np.testing.assert_array_equal(x, y)


def test_task_and_joint_models_init_as_each_pipeline_did():
  cfg = PRESETS["tiny"].model
  key = jax.random.key(5)
  task = build("ElectraForSequenceClassification", cfg, 3)
  ids = jnp.zeros((1, 16), jnp.int32)
  _same(init_on_dummy(task, 16)(key), task.init(key, ids, ids, ids)["params"])
  joint = ElectraPretrainingModel(cfg, PRESETS["tiny"].generator)
  want = joint.init({"params": key}, ids, jnp.ones_like(ids), ids, jnp.zeros((1, 1), jnp.int32),
                    deterministic=True)["params"]
  _same(init_on_dummy(joint, 16)(key), want)
