"""runtime.state.warm_start, the one warm start of both pipelines: per tensor (pre-training's
init_from) or per top-level part (fine-tuning's encoder and heads)."""

import jax
import numpy as np

from electra_jax.runtime.state import warm_start


def _tree(head_shape=(4, 2)):
  return {"electra": {"a": np.zeros((3,), np.float32), "b": np.zeros((2, 2), np.float32)},
          "head": {"w": np.zeros(head_shape, np.float32)}}


def _shardings(tree):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda _: device, tree)


def test_per_part_takes_matching_parts_whole_and_reports_the_rest():
  fresh = _tree()
  source = jax.tree.map(lambda x: np.ones_like(x, np.float64), _tree(head_shape=(4, 3)))
  source["extra"] = {"z": np.ones((1,))}
  start = warm_start(fresh, source, _shardings(fresh), depth=1)
  assert start.taken == ["electra"] and start.fresh == []
  assert start.mismatched == {"head": "head/w has shape (4, 3), the configured model needs (4, 2)"}
  assert start.unused == ["extra/z"]
  np.testing.assert_array_equal(start.params["electra"]["b"], np.ones((2, 2)))
  assert start.params["electra"]["b"].dtype == np.float32
  assert isinstance(start.params["electra"]["a"], jax.Array)
  np.testing.assert_array_equal(start.params["head"]["w"], np.zeros((4, 2)))


def test_per_tensor_takes_each_tensor_the_source_has():
  fresh = _tree()
  source = {"electra": {"a": np.ones((3,))}}
  start = warm_start(fresh, source, _shardings(fresh))
  assert start.taken == ["electra/a"] and start.fresh == ["electra/b", "head/w"]
  assert not start.mismatched and not start.unused
  np.testing.assert_array_equal(start.params["electra"]["a"], np.ones(3))


def test_a_part_missing_a_tensor_is_mismatched():
  fresh = _tree()
  source = {"electra": {"a": np.ones((3,))}}
  start = warm_start(fresh, source, _shardings(fresh), depth=1)
  assert start.mismatched == {"electra": "electra/b is missing from the source"}
  assert start.fresh == ["head"] and start.taken == []
