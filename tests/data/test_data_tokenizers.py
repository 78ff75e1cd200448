"""Tokenizers: WordPiece parity with transformers' BertTokenizerFast, SentencePiece training."""

import hashlib
import itertools
import re
from pathlib import Path

import pytest
import sentencepiece as spm

from data_pipelines import tokenizers
from data_pipelines.train_tokenizer import main as train_tokenizer_main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
VOCAB = SHARED / "vocab" / "bert-uncased-vocab.txt"
needs_shared = pytest.mark.skipif(not VOCAB.is_file(), reason=f"shared test data not found at {SHARED}")

FIXTURES = [
    "Héllo Wörld! Ça va? naïve café résumé Ångström",
    "東京は日本の首都です。中文字符和English混合",
    "한국어 텍스트와 ひらがな カタカナ",
    "punctuation:;!?...--(brackets)[square]{curly}\"quotes\" 'single' $100 50% a/b\\c @#&*",
    "control\x00chars\x07and\ttabs\r\nnewlines\x0bvertical\x1funit sep\u200bzero width",
    "soft\u00adhyphen, nbsp\u00a0space, em\u2014dash, ellipsis\u2026, “curly” ‘quotes’",
    "UPPER lower MiXeD CamelCase HTTPServer iPhone",
    "supercalifragilisticexpialidocious " + "x" * 120 + " pneumonoultramicroscopicsilicovolcanoconiosis",
    "Ελληνικά Русский текст עברית العربية हिन्दी",
    "emoji 😀👍🏽 and math ∑∫√ symbols ≤≥≠",
    "",
    "   leading and trailing spaces   ",
]


def _real_lines():
  files = [SHARED / "wikitext2" / "wiki.valid.raw"] + sorted((SHARED / "pretrain_corpus").glob("*/*.txt"))
  lines = []
  for path in files:
    with open(path, encoding="utf-8", errors="replace") as f:
      lines.extend(itertools.islice((line for line in f if line.strip()), 400))
  return lines


@pytest.fixture(scope="module")
def hf_tokenizers():
  from transformers import BertTokenizerFast

  return {lower: BertTokenizerFast(str(VOCAB), do_lower_case=lower) for lower in (True, False)}


@needs_shared
@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_ids_match_bert_tokenizer_fast_on_real_text(hf_tokenizers, lowercase):
  lines = _real_lines()
  assert len(lines) >= 1000
  ours = tokenizers.load(f"wordpiece:{VOCAB}?lowercase={str(lowercase).lower()}")
  expected = hf_tokenizers[lowercase](lines, add_special_tokens=False)["input_ids"]
  got = ours.encode(lines)
  mismatches = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
  assert mismatches == []
  assert sum(map(len, got)) > 50_000


@needs_shared
@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_ids_and_offsets_match_on_fixtures(hf_tokenizers, lowercase):
  ours = tokenizers.load(f"wordpiece:{VOCAB}?lowercase={str(lowercase).lower()}")
  hf = hf_tokenizers[lowercase](FIXTURES, add_special_tokens=False, return_offsets_mapping=True)
  got = ours.encode_with_offsets(FIXTURES)
  assert [ids for ids, _ in got] == hf["input_ids"]
  assert [[tuple(s) for s in spans] for _, spans in got] == [[tuple(s) for s in m] for m in hf["offset_mapping"]]
  assert ours.encode(FIXTURES) == hf["input_ids"]


@needs_shared
def test_wordpiece_accent_stripping_is_switchable(hf_tokenizers):
  keep = tokenizers.load(f"wordpiece:{VOCAB}?lowercase=true&strip_accents=false")
  strip = tokenizers.load(f"wordpiece:{VOCAB}")
  from transformers import BertTokenizerFast

  hf_keep = BertTokenizerFast(str(VOCAB), do_lower_case=True, strip_accents=False)
  assert keep.encode(FIXTURES) == hf_keep(FIXTURES, add_special_tokens=False)["input_ids"]
  assert keep.encode(["café"]) != strip.encode(["café"])
  assert strip.encode(["café"]) == strip.encode(["cafe"])


@needs_shared
def test_wordpiece_special_ids_vocab_size_fingerprint_decode(hf_tokenizers):
  tok = tokenizers.load(f"wordpiece:{VOCAB}")
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
  assert tok.vocab_size == 30522
  assert tok.fingerprint() == hashlib.sha256(VOCAB.read_bytes()).hexdigest()
  ids = tok.encode(["The quick brown fox, isn't it?"])[0]
  with_specials = [tok.cls_id] + ids + [tok.sep_id]
  assert tok.decode(with_specials) == hf_tokenizers[True].decode(with_specials, skip_special_tokens=True)
  assert tok.decode(with_specials) == "the quick brown fox, isn ' t it?"


def test_vocab_without_special_tokens_is_a_clear_error(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("[PAD]\n[UNK]\n[CLS]\nhello\nworld\n", encoding="utf-8")
  with pytest.raises(ValueError, match=re.escape(
      f"vocab {vocab} lacks the special tokens ['[SEP]', '[MASK]']; ELECTRA needs all of "
      "['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']"
  )):
    tokenizers.load(f"wordpiece:{vocab}")
  vocab.write_bytes(b"\xef\xbb\xbf[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello\r\n")  # BOM, CRLF
  tok = tokenizers.load(f"wordpiece:{vocab}")
  assert (tok.pad_id, tok.mask_id, tok.encode(["hello"])) == (0, 4, [[5]])


def test_bad_specs_name_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match="WordPiece vocab file not found: /nonexistent/vocab.txt"):
    tokenizers.load("wordpiece:/nonexistent/vocab.txt")
  with pytest.raises(ValueError, match="unknown kind 'bytes'"):
    tokenizers.load("bytes:/x")
  with pytest.raises(ValueError, match=r"option lowercase='maybe' is not true/false"):
    tokenizers.load("wordpiece:/x?lowercase=maybe")


def _toy_corpus(path):
  words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
  lines = [" ".join(words[(i * k) % len(words)] for k in range(1, 9)) + f" number {i}." for i in range(400)]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_train_load_special_ids(tmp_path, model_type, capsys):
  corpus = tmp_path / "corpus.txt"
  _toy_corpus(corpus)
  prefix = tmp_path / f"sp_{model_type}"
  train_tokenizer_main(["--corpus", str(corpus), "--model_type", model_type, "--vocab_size", "70",
                        "--output", str(prefix)])
  assert f"sentencepiece:{prefix}.model" in capsys.readouterr().out
  tok = tokenizers.load(f"sentencepiece:{prefix}.model")
  assert tok.vocab_size == 70
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
  text = "alpha beta gamma number 7."
  (ids, spans), = tok.encode_with_offsets([text])
  assert ids == tok.encode([text])[0]
  assert all(i >= 5 for i in ids)  # text never encodes to a special id
  assert tok.decode([tok.cls_id] + ids + [tok.sep_id, tok.pad_id]) == text
  assert "".join(text[a:b] for a, b in spans) == text.replace(" ", "")
  assert 2 not in tok.encode(["[CLS] [MASK]"])[0] and 4 not in tok.encode(["[CLS] [MASK]"])[0]
  pieces = [spm.SentencePieceProcessor(model_file=f"{prefix}.model").id_to_piece(i) for i in range(70)]
  assert tok.fingerprint() == hashlib.sha256("".join(p + "\n" for p in pieces).encode()).hexdigest()


def test_sentencepiece_offsets_are_character_spans_for_non_ascii(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("héllo wörld ünïcode façade\n" * 50 + "plain ascii words here\n" * 50, encoding="utf-8")
  prefix = tmp_path / "sp"
  from data_pipelines.train_tokenizer import train_sentencepiece

  train_sentencepiece(str(corpus), str(prefix), vocab_size=25, character_coverage=1.0)
  tok = tokenizers.load(f"sentencepiece:{prefix}.model")
  text = "héllo wörld façade"
  (ids, spans), = tok.encode_with_offsets([text])
  assert "".join(text[a:b] for a, b in spans) == "héllowörldfaçade"
  assert spans[0][0] == 0 and spans[-1][1] == len(text)


def test_sentencepiece_model_without_special_pieces_is_a_clear_error(tmp_path):
  corpus = tmp_path / "corpus.txt"
  _toy_corpus(corpus)
  spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "plain"), vocab_size=60,
                                 minloglevel=2)
  with pytest.raises(ValueError, match=r"lacks the special tokens \['\[PAD\]', '\[UNK\]', '\[CLS\]', '\[SEP\]', '\[MASK\]'\]"):
    tokenizers.load(f"sentencepiece:{tmp_path / 'plain.model'}")


def test_sentencepiece_vocab_larger_than_the_corpus_allows_is_a_clear_error(tmp_path):
  from data_pipelines.train_tokenizer import train_sentencepiece

  corpus = tmp_path / "small.txt"
  corpus.write_text("the cat sat on the mat\n\nthe dog sat on the log\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"vocab_size=5000 is too large for corpus .*small\.txt"
                                       r".*: SentencePiece can make at most \d+ pieces from it"):
    train_sentencepiece(str(corpus), str(tmp_path / "spm"), vocab_size=5000)
  assert not (tmp_path / "spm.model").exists()


def _hf_ids(directory, texts):
  from transformers import AutoTokenizer

  hf = AutoTokenizer.from_pretrained(str(directory))
  return hf, [hf(text)["input_ids"] for text in texts]


@needs_shared
@pytest.mark.parametrize("lowercase", [True, False])
def test_saved_wordpiece_reloads_and_autotokenizer_gives_the_same_ids(tmp_path, lowercase):
  tok = tokenizers.load(f"wordpiece:{VOCAB}?lowercase={str(lowercase).lower()}")
  saved = tmp_path / "workdir" / tokenizers.SAVED_DIR
  tok.save(saved)
  step_dir = tmp_path / "workdir" / "checkpoints" / "100"
  step_dir.mkdir(parents=True)
  for where in (saved, tmp_path / "workdir", step_dir):
    again = tokenizers.find_saved(str(where))
    assert (again.fingerprint(), again.lowercase, again.strip_accents) == (
        tok.fingerprint(), tok.lowercase, tok.strip_accents)
  texts = _real_lines()[:300] + FIXTURES
  hf, ids = _hf_ids(saved, texts)
  assert ids == [[tok.cls_id] + x + [tok.sep_id] for x in tok.encode(texts)]
  assert hf.mask_token_id == tok.mask_id and hf.pad_token_id == tok.pad_id


def test_saved_sentencepiece_unigram_reloads_and_autotokenizer_gives_the_same_ids(tmp_path):
  corpus = tmp_path / "corpus.txt"
  _toy_corpus(corpus)
  prefix = tmp_path / "sp"
  train_tokenizer_main(["--corpus", str(corpus), "--vocab_size", "70", "--output", str(prefix)])
  tok = tokenizers.load(f"sentencepiece:{prefix}.model")
  tok.save(tmp_path / "export")
  (prefix.with_suffix(".model")).unlink()  # the saved copy stands alone
  assert tokenizers.find_saved(str(tmp_path / "export")).fingerprint() == tok.fingerprint()
  texts = [line for line in corpus.read_text().splitlines()[:200]] + [
      "  alpha\tbeta  gamma  ", "Unknown wörds 42", "ｆｕｌｌｗｉｄｔｈ alpha", ""]
  hf, ids = _hf_ids(tmp_path / "export", texts)
  assert ids == [[tok.cls_id] + x + [tok.sep_id] for x in tok.encode(texts)]
  assert hf("alpha [MASK] gamma")["input_ids"].count(tok.mask_id) == 1  # fill-mask needs this
  a, b = tok.encode(["alpha beta", "gamma"])
  pair = hf("alpha beta", "gamma")
  assert pair["input_ids"] == [tok.cls_id] + a + [tok.sep_id] + b + [tok.sep_id]
  assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
  assert hf.mask_token_id == tok.mask_id and hf.pad_token_id == tok.pad_id
  assert hf.decode(ids[0], skip_special_tokens=True) == texts[0]


@needs_shared
def test_saved_sentencepiece_bpe_autotokenizer_gives_the_same_ids_on_real_text(tmp_path):
  prefix = tmp_path / "bpe"
  train_tokenizer_main(["--corpus", str(SHARED / "pretrain_corpus" / "inaugural"), "--model_type", "bpe",
                        "--vocab_size", "2000", "--output", str(prefix)])
  tok = tokenizers.load(f"sentencepiece:{prefix}.model")
  tok.save(tmp_path / "export")
  from transformers import AutoTokenizer

  hf = AutoTokenizer.from_pretrained(str(tmp_path / "export"))
  sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
  lines = _real_lines()[::40]  # including lines with U+FFFD (latin-1 bytes read as UTF-8)
  assert len(lines) >= 300 and any("\ufffd" in line for line in lines)
  texts = lines + ["  alpha\tbeta  gamma  ", "Shikamaru Nara 奈良 シカマル", "ｆｕｌｌｗｉｄｔｈ", ""]
  expected = tok.encode(texts)
  assert [hf(text)["input_ids"] for text in texts] == [[tok.cls_id] + x + [tok.sep_id] for x in expected]
  space = sp.piece_to_id("▁")
  assert expected[-3][-4:] == [space, tok.unk_id, space, tok.unk_id]  # a run of unknowns is one [UNK]
  firsts, seconds = lines[0:-1:2], lines[1::2]
  pairs = hf(firsts, seconds)
  both = list(zip(tok.encode(firsts), tok.encode(seconds)))
  assert pairs["input_ids"] == [[tok.cls_id] + a + [tok.sep_id] + b + [tok.sep_id] for a, b in both]
  assert pairs["token_type_ids"] == [[0] * (len(a) + 2) + [1] * (len(b) + 1) for a, b in both]
  known = [ids for ids in expected if tok.unk_id not in ids]
  assert [hf.decode(ids) for ids in known] == [tok.decode(ids) for ids in known]


def _toy_model_with_specials(tmp_path, **options):
  """SentencePiece trained on the toy corpus with ELECTRA's special pieces, plus `options`."""
  corpus = tmp_path / "corpus.txt"
  _toy_corpus(corpus)
  prefix = tmp_path / "sp"
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(prefix), pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
      pad_piece="[PAD]", unk_piece="[UNK]", minloglevel=2,
      **{"control_symbols": ["[CLS]", "[SEP]", "[MASK]"], **options})
  return tokenizers.load(f"sentencepiece:{prefix}.model"), spm.SentencePieceProcessor(model_file=f"{prefix}.model")


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_saved_sentencepiece_with_byte_fallback_autotokenizer_gives_the_same_ids(tmp_path, model_type):
  tok, sp = _toy_model_with_specials(tmp_path, model_type=model_type, vocab_size=300, byte_fallback=True)
  tok.save(tmp_path / "export")
  texts = ["alpha Ωmega 😀 beta", "Unknown wörds 奈良 number 42.", "alpha beta gamma"]
  hf, ids = _hf_ids(tmp_path / "export", texts)
  expected = tok.encode(texts)
  assert ids == [[tok.cls_id] + x + [tok.sep_id] for x in expected]
  assert sp.piece_to_id("<0xF0>") in expected[0] and tok.unk_id not in sum(expected, [])
  assert [hf.decode(x, skip_special_tokens=True) for x in ids] == texts


def test_saved_sentencepiece_bpe_never_merges_into_a_control_piece(tmp_path):
  # "t" and "a" are pieces, "ta" a control symbol: SentencePiece never makes it from text.
  tok, sp = _toy_model_with_specials(tmp_path, model_type="bpe", vocab_size=70,
                                     control_symbols=["[CLS]", "[SEP]", "[MASK]", "ta"])
  assert sp.piece_to_id("t") != tok.unk_id and sp.piece_to_id("a") != tok.unk_id
  tok.save(tmp_path / "export")
  texts = ["beta theta zeta", "alpha beta"]
  _, ids = _hf_ids(tmp_path / "export", texts)
  assert ids == [[tok.cls_id] + x + [tok.sep_id] for x in tok.encode(texts)]


def test_saved_tokenizer_with_another_vocabulary_is_refused(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(tokenizers.SPECIAL_TOKENS + ("a", "b")) + "\n")
  tokenizers.load(f"wordpiece:{vocab}").save(tmp_path / "saved")
  (tmp_path / "saved" / "vocab.txt").write_text("\n".join(tokenizers.SPECIAL_TOKENS + ("b", "a")) + "\n")
  with pytest.raises(ValueError, match=r"vocab.txt is not the vocabulary .*electra_jax_tokenizer.json describes"):
    tokenizers.find_saved(str(tmp_path / "saved"))
  (tmp_path / "a" / "b" / "c").mkdir(parents=True)
  assert tokenizers.find_saved(str(tmp_path / "a" / "b" / "c")) is None
