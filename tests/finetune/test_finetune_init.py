"""Fine-tuning starts from the pre-trained network, every tensor of it: the encoder the task
model trains from is the checkpoint's discriminator encoder, bit for bit."""

import jax
import numpy as np
import pytest

from electra_jax.finetune.config import FinetuneConfig
from electra_jax.finetune.kinds import KINDS
from electra_jax.finetune.train import load_initial, warm_start_task_model
from electra_jax.model.pretraining import split_pretraining_params
from tests.io.test_convert import _pretraining, _write_electra_jax_checkpoint


def test_every_encoder_tensor_of_the_task_model_is_the_pretrained_one(tmp_path):
  joint, params = _pretraining("tied")
  workdir = tmp_path / "pretrained"
  _write_electra_jax_checkpoint(workdir, joint, params)
  _, disc = split_pretraining_params(params, "tied")

  config = FinetuneConfig(task="sst2", init=str(workdir), data_dir=str(tmp_path))
  model_config, initial = load_initial(config, joint.disc_config.vocab_size)
  model = KINDS["classification"].model(model_config, 2, "official", None)
  ids = np.zeros((1, 8), np.int32)
  fresh = jax.tree.map(np.asarray, model.init(jax.random.key(3), ids, ids, ids)["params"])
  fresh = jax.tree.map(lambda x: getattr(x, "value", x), fresh,
                       is_leaf=lambda x: hasattr(x, "value"))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  merged, taken = warm_start_task_model(fresh, initial, jax.tree.map(lambda _: device, fresh))

  assert taken == ["electra"]
  want = jax.tree_util.tree_leaves_with_path(disc["electra"])
  got = dict(jax.tree_util.tree_leaves_with_path(merged["electra"]))
  assert len(got) == len(want) > 0
  for path, value in want:
    np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(value),
                                  err_msg=jax.tree_util.keystr(path))
  # the head is fresh: a classifier has no pre-trained counterpart
  assert set(merged) - {"electra"} and not set(merged) - {"electra"} & set(initial)


def test_a_loaded_model_refuses_architecture_overrides(tmp_path):
  joint, params = _pretraining("tied")
  _write_electra_jax_checkpoint(tmp_path, joint, params)
  for field, value in (("hidden_act", "relu"), ("num_hidden_layers", 1)):
    config = FinetuneConfig(task="sst2", init=str(tmp_path), data_dir=str(tmp_path),
                            model_overrides=((field, value),))
    with pytest.raises(ValueError, match=rf"model_overrides \['{field}'\] change the architecture"):
      load_initial(config, joint.disc_config.vocab_size)
  config = FinetuneConfig(task="sst2", init=str(tmp_path), data_dir=str(tmp_path),
                          model_overrides=(("hidden_dropout_prob", 0.0),))
  assert load_initial(config, joint.disc_config.vocab_size)[0].hidden_dropout_prob == 0.0
