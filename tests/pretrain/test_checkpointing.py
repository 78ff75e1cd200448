"""Checkpoints: retention policy, restore onto a different mesh, the read-only reader used by
conversion / fine-tuning, continued pre-training from a checkpoint, and SIGTERM handling."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import traverse_util

from electra_jax.io.native import read_pretraining_checkpoint
from electra_jax.pretrain.checkpoint import Checkpointer, PreemptionWatcher, load_init_params
from electra_jax.pretrain.config import CheckpointConfig
from electra_jax.pretrain.objective import build_pretraining_model, init_fn
from electra_jax.runtime.mesh import MeshConfig, make_mesh
from electra_jax.runtime.optim import make_optimizer
from electra_jax.runtime.state import abstract_train_state, create_train_state
from train_testlib import REPO, tiny_config

SEQ = 64


def _setup(config, mesh_config=MeshConfig()):
  model = build_pretraining_model(config.model, config.generator, config.embedding_sharing,
                                  config.objective)
  optimizer = make_optimizer(config.optimizer)
  return model, optimizer, make_mesh(mesh_config)


def _flat(tree):
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_keeps_latest_n_plus_every_kth(tmp_path):
  config = tiny_config(10)
  model, optimizer, mesh = _setup(config)
  state, _ = create_train_state(init_fn(model, SEQ), optimizer, mesh, seed=0)
  ckpt = Checkpointer(tmp_path, CheckpointConfig(keep_latest=2, keep_every=4, async_save=True))
  for step in range(1, 10):
    assert ckpt.save(step, state, config.to_dict(), {"step": step})
  assert not ckpt.save(9, state, config.to_dict(), {"step": 9})  # already there
  ckpt.close()
  kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert kept == [4, 8, 9]
  assert [ckpt.should_save(s, 10) for s in (3, 4, 10)] == [False, False, True]
  assert Checkpointer(tmp_path, CheckpointConfig(save_every=4)).should_save(8, 10)


_SAVE_ON_8_DEVICES = textwrap.dedent("""
    import sys, numpy as np, jax
    sys.path.insert(0, {tests!r})
    from flax import traverse_util
    from electra_jax.pretrain.checkpoint import Checkpointer
    from electra_jax.pretrain.objective import build_pretraining_model, init_fn
    from electra_jax.runtime.optim import make_optimizer
    from electra_jax.runtime.mesh import MeshConfig, make_mesh
    from electra_jax.pretrain.config import CheckpointConfig
    from electra_jax.runtime.state import create_train_state
    from train_testlib import tiny_config
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config(10)
    model = build_pretraining_model(config.model, config.generator, "tied", config.objective)
    optimizer = make_optimizer(config.optimizer)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    state, _ = create_train_state(init_fn(model, 64), optimizer, mesh, seed=3)
    flat = {{"/".join(k): v for k, v in traverse_util.flatten_dict(state.params).items()}}
    sharded = [k for k, v in flat.items() if not v.sharding.is_fully_replicated]
    print("sharded leaves:", len(sharded), "of", len(flat))
    np.savez({npz!r}, **{{k: np.asarray(v) for k, v in flat.items()}})
    ckpt = Checkpointer({workdir!r}, CheckpointConfig())
    ckpt.save(5, state, config.to_dict(), {{"step": 5, "seed": 0, "global_batch_size": 8}})
    ckpt.close()
    """)


@pytest.mark.slow
def test_checkpoint_saved_on_8_devices_restores_on_1_with_identical_params(tmp_path):
  npz = tmp_path / "params.npz"
  script = _SAVE_ON_8_DEVICES.format(tests=str(REPO / "tests"), npz=str(npz),
                                     workdir=str(tmp_path))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stdout + out.stderr
  sharded = int(out.stdout.split("sharded leaves:")[1].split()[0])
  assert sharded > 10  # the saved state really was split over the 8-device mesh

  assert jax.device_count() == 1
  config = tiny_config(10)
  model, optimizer, mesh = _setup(config)
  abstract, _ = abstract_train_state(init_fn(model, SEQ), optimizer, mesh)
  state, stored_config, position = Checkpointer(tmp_path, CheckpointConfig()).restore(abstract)
  assert position == {"step": 5, "seed": 0, "global_batch_size": 8}
  assert stored_config["model"] == config.to_dict()["model"]
  saved = dict(np.load(npz))
  restored = _flat(state.params)
  assert sorted(saved) == sorted(restored)
  for k in saved:
    np.testing.assert_array_equal(restored[k], saved[k], err_msg=k)
  leaf = jax.tree.leaves(state.params)[0]
  assert len(leaf.sharding.device_set) == 1


def test_reader_and_continued_pretraining_from_a_workdir(tmp_path):
  config = tiny_config(10)
  model, optimizer, mesh = _setup(config)
  state, shardings = create_train_state(init_fn(model, SEQ), optimizer, mesh, seed=1)
  ckpt = Checkpointer(tmp_path, CheckpointConfig())
  for step in (2, 4):
    ckpt.save(step, state, config.to_dict(), {"step": step})
  ckpt.close()

  config_dict, params = read_pretraining_checkpoint(tmp_path)  # workdir -> latest step
  assert config_dict["model"]["hidden_size"] == 32
  assert config_dict["generator"]["hidden_size"] == 16
  assert config_dict["embedding_sharing"] == "tied"
  want = _flat(state.params)
  got = _flat(params)
  assert sorted(got) == sorted(want)
  assert all(isinstance(v, np.ndarray) for v in jax.tree.leaves(params))
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  step_dir_config, _ = read_pretraining_checkpoint(tmp_path / "checkpoints" / "2")
  assert step_dir_config == config_dict

  # Continued pre-training: a fresh state (other seed) takes every tensor from the checkpoint.
  fresh, fresh_shardings = create_train_state(init_fn(model, SEQ), optimizer, mesh, seed=2)
  messages = []
  loaded = load_init_params(config.replace(init_from=str(tmp_path)), fresh.params,
                            fresh_shardings.params, messages.append)
  for k, v in _flat(loaded).items():
    np.testing.assert_array_equal(v, want[k], err_msg=k)
  assert messages and messages[0].startswith(f"initialised {len(want)} of {len(want)} tensors")


def test_reader_names_a_missing_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match="no pre-training checkpoint at"):
    read_pretraining_checkpoint(tmp_path)


def test_sigterm_sets_the_preemption_flag_and_the_handler_is_restored():
  before = signal.getsignal(signal.SIGTERM)
  with PreemptionWatcher() as watcher:
    assert not watcher.reached(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.reached(2)
  assert signal.getsignal(signal.SIGTERM) is before
