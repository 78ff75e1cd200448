"""Checkpoint formats are registered objects (electra_jax.io.formats): a new one is one class and a
`register` call, and detect_format, load_pretrained and electra-convert take it without a
change. The toy here keeps an encoder in one NumPy archive, DIR/toy.npz (its config as JSON
beside the '/'-joined parameter paths; nothing pickled)."""

import dataclasses
import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from electra_jax.io import convert, formats, hf, load, native
from electra_jax.io.common import ImportReport, flatten, unflatten
from electra_jax.model import heads
from electra_jax.model.config import ModelConfig

CONFIG = ModelConfig(vocab_size=40, embedding_size=16, hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)


class ToyNpz(formats.CheckpointFormat):
  """An ElectraModel as DIR/toy.npz."""

  name = "toy_npz"
  title = "toy NumPy archive"
  writable = True

  def detect(self, path):
    return path.endswith("toy.npz") or (formats.fs.isdir(path)
                                        and formats.fs.exists(f"{path}/toy.npz"))

  def load(self, path, which, *, architecture, config, strict, progress, **overrides):
    file = path if path.endswith("toy.npz") else f"{path}/toy.npz"
    with np.load(file, allow_pickle=False) as archive:
      config = ModelConfig(**json.loads(str(archive["config"]))).replace(**overrides)
      params = unflatten({tuple(k.split("/")): archive[k] for k in archive.files
                          if k != "config"})
    report = ImportReport(source=path, source_format=self.name, architecture="ElectraModel",
                          tensors=len(flatten(params)))
    return heads.ElectraModel(config), params, report

  def save(self, model, params, src, dst, tokenizer, finetune, progress):
    formats.fs.makedirs(dst)
    flat = {"/".join(k): np.asarray(v) for k, v in flatten(params).items()}
    np.savez(f"{dst}/toy.npz", config=json.dumps(dataclasses.asdict(model.config)), **flat)
    return {"architecture": "ElectraModel", "tensors": len(flat),
            "parameters": sum(v.size for v in flat.values()), "path": dst}


@pytest.fixture
def toy_format():
  fmt = formats.register(ToyNpz())
  yield fmt
  del formats.FORMATS[fmt.name]


def test_a_registered_toy_format_is_detected_loaded_and_converted(tmp_path, toy_format):
  model = heads.ElectraModel(CONFIG)
  ids = np.zeros((1, 8), np.int32)
  params = nn.unbox(jax.jit(lambda key: model.init(key, ids)["params"])(jax.random.key(0)))
  native.save_safetensors(model, params, str(tmp_path / "native"))

  lines = convert.convert(str(tmp_path / "native"), str(tmp_path / "toy"), to=toy_format.name)
  assert f"-> {toy_format.name} ElectraModel at {tmp_path / 'toy'}" in lines[0]
  assert load.detect_format(str(tmp_path / "toy")) == toy_format.name
  loaded, back, report = load.load_pretrained(str(tmp_path / "toy"), as_numpy=True,
                                              return_report=True)
  assert type(loaded) is heads.ElectraModel and loaded.config == CONFIG
  assert report.source_format == toy_format.name
  for key, value in flatten(params).items():
    np.testing.assert_array_equal(flatten(back)[key], np.asarray(value))


def test_registration_refuses_a_taken_name_and_loading_lists_the_formats(tmp_path, toy_format):
  with pytest.raises(ValueError, match="'hf' is empty or taken"):
    formats.register(formats.HuggingFace())
  with pytest.raises(load.CheckpointError, match=r"format='nope'; expected one of .*'toy_npz'"):
    load.load_pretrained(str(tmp_path), format="nope")
  with pytest.raises(load.CheckpointError, match="electra_jax does not write official TF1"):
    formats.FORMATS["tf1"].save(None, None, "src", str(tmp_path / "x"), None, None, None)


def test_every_standalone_class_has_its_hugging_face_mapping():
  assert set(hf.HF_CLASSES) == set(heads.ARCHITECTURES)
  assert list(hf.HF_CLASSES)[-1] == "ElectraModel"  # detected when nothing else is
