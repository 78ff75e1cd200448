"""Fine-tuning from a model on a tf.io.gfile path (--init=gs://...): TensorFlow's in-memory file
system (ram://) stands in for gs:// (tests have no network). Its --data_dir and --workdir are
local paths only."""

import uuid

import jax.numpy as jnp

import electra_fixtures as F
from data_pipelines import fs, tokenizers
from electra_jax import export_hf
from electra_jax.finetune import train as ft
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig
from finetune_testlib import TINY, WORDS, finetune_config, sst2_dir, vocab  # noqa: F401 (fixture)


def test_init_from_a_ram_export_finds_its_weights_and_tokenizer(tmp_path, vocab):
  tokenizer = tokenizers.load(f"wordpiece:{vocab}")
  model = heads.ElectraForPreTraining(ModelConfig(vocab_size=5 + len(WORDS), **dict(TINY)))
  params = F.random_params(model, jnp.ones((1, 4), jnp.int32), seed=1)
  init = f"ram://{uuid.uuid4().hex}/electra"
  export_hf(model, params, init, tokenizer=tokenizer)
  config = finetune_config(vocab, sst2_dir(tmp_path / "glue"), init=init, tokenizer=None,
                           model_overrides=(), seeds=(1,), num_epochs=1.0)
  results = ft.finetune_and_evaluate(config, str(tmp_path / "work"))
  assert results["seeds"] == [1] and results["total_steps"] == 6
  saved = tokenizers.load_saved(str(tmp_path / "work" / tokenizers.SAVED_DIR))
  assert saved.fingerprint() == tokenizer.fingerprint()  # the one exported beside the weights
  assert fs.isfile(fs.join(init, "model.safetensors"))
