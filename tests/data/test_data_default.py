"""The quick-start data: built once from the builtin corpus, cached, readable."""

import os
import sys

import pytest

from data_pipelines import tokenizers
from data_pipelines.default_data import ensure_default_pretraining_data
from data_pipelines.pretraining_reader import PretrainingData


@pytest.mark.slow
def test_default_data_is_built_once_and_readable(tmp_path):
  data_dir = ensure_default_pretraining_data(str(tmp_path), seq_len=64, vocab_size=2000)
  python = f"{sys.version_info[0]}{sys.version_info[1]}"
  assert data_dir == os.path.join(str(tmp_path), f"builtin_py{python}_sp2000",
                                   "data_len64_packed")
  manifest_mtime = os.stat(os.path.join(data_dir, "manifest.json")).st_mtime_ns
  assert ensure_default_pretraining_data(str(tmp_path), seq_len=64, vocab_size=2000) == data_dir
  assert os.stat(os.path.join(data_dir, "manifest.json")).st_mtime_ns == manifest_mtime
  reader = PretrainingData(data_dir, global_batch_size=8, seed=0, process_index=0, process_count=1, seq_len=64)
  tok = tokenizers.load(reader.manifest["tokenizer"]["spec"])
  assert reader.manifest["tokenizer"]["fingerprint"] == tok.fingerprint()
  assert (tok.vocab_size, tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (2000, 0, 1, 2, 3, 4)
  assert len(reader.manifest["train_shards"]) == 7 and len(reader.manifest["eval_shards"]) == 1
  assert reader.num_examples > 1000
  batch = reader.batch(0)
  assert (batch["input_ids"][:, 0] == tok.cls_id).all()
  assert "return" in tok.decode(batch["input_ids"].ravel().tolist()).lower()


def test_a_bert_sized_vocab_on_the_smoke_test_corpus_is_refused_with_the_way_out(tmp_path):
  """`--experiment=small` without a data_dir asks the built-in corpus for 30522 pieces, more
  than SentencePiece can make from it: one clear error that says what to do instead."""
  with pytest.raises(ValueError, match=r"cannot serve a 30522-token vocabulary .*at most \d+ "
                                       r"pieces.*set DataConfig\.data_dir"):
    ensure_default_pretraining_data(str(tmp_path), seq_len=128, vocab_size=30522)
