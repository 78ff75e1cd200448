"""The user's journey end to end, without flags that name a tokenizer: pre-train (tiny, default
data), fine-tune from the workdir, convert to Hugging Face, and run transformers' AutoTokenizer
and fill-mask pipeline on the export."""

import dataclasses
import json

import numpy as np
import pytest

from data_pipelines import tokenizers
from electra_jax import load_tokenizer
from electra_jax.finetune import train as ft
from electra_jax.finetune.config import FINETUNE_LOG, FinetuneConfig
from electra_jax.io import convert
from electra_jax.pretrain.config import resolve_config
from electra_jax.pretrain.train import train_and_evaluate
from finetune_testlib import sst2_dir
from train_testlib import tiny_bindings


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pretrain")
  train_and_evaluate(resolve_config(None, gin_bindings=tiny_bindings(4)), workdir)
  return workdir


def test_the_workdir_keeps_the_tokenizer_of_its_shards(pretrained):
  config = json.loads((pretrained / "config.json").read_text())
  tok = load_tokenizer(str(pretrained))
  assert tok.vocab_size == config["model"]["vocab_size"]
  assert isinstance(tok, tokenizers.SentencePieceTokenizer)
  # Found from a step directory too (what convert and load_pretrained are often given).
  step_dir = next((pretrained / "checkpoints").iterdir())
  assert load_tokenizer(str(step_dir)).fingerprint() == tok.fingerprint()


def test_finetune_from_the_workdir_needs_no_tokenizer_flag(pretrained, tmp_path):
  data = sst2_dir(tmp_path / "glue", n_train=16, n_dev=8, n_test=0)
  config = FinetuneConfig(task="sst2", init=str(pretrained), data_dir=str(data), seeds=(1,),
                          num_epochs=1.0, batch_size=8, eval_batch_size=8, max_seq_length=32,
                          log=dataclasses.replace(FINETUNE_LOG, progress_bar=False,
                                                  tensorboard=False))
  results = ft.finetune_and_evaluate(config, str(tmp_path / "work"))
  assert results["train_rows"] == 16 and len(results["per_seed"]["accuracy"]) == 1
  saved = load_tokenizer(str(tmp_path / "work" / "seed_1" / "final"))
  assert saved.fingerprint() == load_tokenizer(str(pretrained)).fingerprint()


def test_exported_generator_runs_in_a_fill_mask_pipeline(pretrained, tmp_path):
  transformers = pytest.importorskip("transformers")
  assert convert.main([str(pretrained), str(tmp_path / "hf")]) == 0
  ours = load_tokenizer(str(pretrained))
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf" / "discriminator"))
  text = "Return the number of items in the list."
  assert theirs(text)["input_ids"] == [ours.cls_id] + ours.encode([text])[0] + [ours.sep_id]
  fill = transformers.pipeline("fill-mask", model=str(tmp_path / "hf" / "generator"),
                               device="cpu")
  predictions = fill("Return the [MASK] of items in the list.")
  assert len(predictions) == 5
  scores = [p["score"] for p in predictions]
  assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
  # The pipeline's top token is the generator's argmax at the mask, as electra_jax computes it.
  from electra_jax import load_pretrained
  import jax.numpy as jnp
  model, params = load_pretrained(str(pretrained), which="generator")
  ids = theirs("Return the [MASK] of items in the list.", return_tensors="np")
  logits = model.apply({"params": params}, jnp.asarray(ids["input_ids"]),
                       attention_mask=jnp.asarray(ids["attention_mask"]),
                       token_type_ids=jnp.asarray(ids["token_type_ids"]))
  at_mask = int(np.flatnonzero(ids["input_ids"][0] == ours.mask_id)[0])
  assert predictions[0]["token"] == int(np.argmax(np.asarray(logits)[0, at_mask]))
