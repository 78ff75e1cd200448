"""Tokenizers behind one interface: BERT WordPiece and SentencePiece.

`load(spec)` is the only entry point the rest of the code needs:

  wordpiece:PATH/vocab.txt[?lowercase=false][&strip_accents=false]
      BERT WordPiece from a vocab file. BERT basic tokenization (clean control characters,
      split CJK ideographs and punctuation, optional lower-casing and accent stripping;
      `strip_accents` follows `lowercase` unless given), then greedy longest-match WordPiece
      with `##` continuations and 100-character words -> [UNK]. Ids are identical to
      transformers' `BertTokenizerFast` (including its rule that a literal "[MASK]" etc. in
      the text is the special token). Runs on the `tokenizers` Rust pipeline.
  sentencepiece:PATH/model
      A SentencePiece model that defines [PAD] [UNK] [CLS] [SEP] [MASK] as pieces (the ones
      `python -m data_pipelines.train_tokenizer` writes do).

Both give `encode` (no special tokens added), `encode_with_offsets` (character spans into
the original text), `decode`, the five special ids, `vocab_size` and `fingerprint()`, a
sha256 of the id-ordered token list stored in shard manifests.
"""

import abc
import hashlib
import os
import urllib.parse

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class Tokenizer(abc.ABC):
    """Common interface. Subclasses set `spec`, `vocab_size`, the special ids and `_tokens`."""

    spec: str
    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    _tokens: list

    @abc.abstractmethod
    def encode(self, texts):
        """Token ids of each text, no special tokens added: list[str] -> list[list[int]]."""

    @abc.abstractmethod
    def encode_with_offsets(self, texts):
        """Ids plus (start, end) character spans into each original text (end exclusive).

        Spans exclude the whitespace before a word.
        """

    @abc.abstractmethod
    def decode(self, ids):
        """Text for a sequence of ids; special tokens are skipped."""

    def fingerprint(self):
        """sha256 hex of the id-ordered token list: equal iff ids mean the same tokens."""
        digest = hashlib.sha256()
        for token in self._tokens:
            digest.update(token.encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()

    def special_ids(self):
        """{"pad_id": .., "unk_id": .., "cls_id": .., "sep_id": .., "mask_id": ..}."""
        return {name: getattr(self, name) for name in ("pad_id", "unk_id", "cls_id", "sep_id", "mask_id")}

    def __repr__(self):
        return f"{type(self).__name__}({self.spec!r}, vocab_size={self.vocab_size})"


def _special_ids_or_raise(token_to_id, source):
    missing = [tok for tok in SPECIAL_TOKENS if tok not in token_to_id]
    if missing:
        raise ValueError(f"{source} lacks the special tokens {missing}; ELECTRA needs all of {list(SPECIAL_TOKENS)}")
    return [token_to_id[tok] for tok in SPECIAL_TOKENS]


def _parse_bool(name, value, spec):
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"tokenizer spec {spec!r}: option {name}={value!r} is not true/false")


class WordPieceTokenizer(Tokenizer):
    """BERT WordPiece on the `tokenizers` Rust pipeline (BertNormalizer, BertPreTokenizer, WordPiece)."""

    def __init__(self, vocab_path, lowercase=True, strip_accents=None):
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers

        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"WordPiece vocab file not found: {vocab_path}")
        with open(vocab_path, encoding="utf-8-sig") as f:
            self._tokens = [line.rstrip("\n") for line in f]
        token_to_id = {}
        for index, token in enumerate(self._tokens):
            token_to_id[token] = index
        (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id) = _special_ids_or_raise(
            token_to_id, f"vocab {vocab_path}"
        )
        strip_accents = lowercase if strip_accents is None else strip_accents
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.vocab_size = len(self._tokens)
        self.spec = (
            f"wordpiece:{os.path.abspath(vocab_path)}?lowercase={str(lowercase).lower()}"
            f"&strip_accents={str(strip_accents).lower()}"
        )
        rust = RustTokenizer(models.WordPiece(token_to_id, unk_token="[UNK]", max_input_chars_per_word=100))
        rust.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
        )
        rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        rust.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        rust.add_special_tokens(list(SPECIAL_TOKENS))
        self._rust = rust

    def encode(self, texts):
        return [enc.ids for enc in self._rust.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, texts):
        encodings = self._rust.encode_batch(list(texts), add_special_tokens=False)
        return [(enc.ids, [tuple(span) for span in enc.offsets]) for enc in encodings]

    def decode(self, ids):
        return self._rust.decode([int(i) for i in ids], skip_special_tokens=True)


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model whose pieces include [PAD] [UNK] [CLS] [SEP] [MASK]."""

    def __init__(self, model_path):
        import sentencepiece as spm

        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"SentencePiece model file not found: {model_path}")
        self._sp = spm.SentencePieceProcessor(model_file=model_path)
        self.vocab_size = self._sp.get_piece_size()
        self._tokens = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
        token_to_id = {tok: i for i, tok in enumerate(self._tokens)}
        (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id) = _special_ids_or_raise(
            token_to_id, f"SentencePiece model {model_path}"
        )
        self._special = frozenset((self.pad_id, self.cls_id, self.sep_id, self.mask_id))
        self.spec = f"sentencepiece:{os.path.abspath(model_path)}"

    def encode(self, texts):
        return self._sp.encode(list(texts), out_type=int)

    def encode_with_offsets(self, texts):
        results = []
        for text, proto in zip(texts, self._sp.encode(list(texts), return_type="proto")):
            char_of_byte = _byte_to_char_offsets(text)
            ids, spans = [], []
            for piece in proto.pieces:
                start, end = char_of_byte[piece.begin], char_of_byte[piece.end]
                while start < end and text[start].isspace():  # "▁word" covers the space before it
                    start += 1
                ids.append(piece.id)
                spans.append((start, end))
            results.append((ids, spans))
        return results

    def decode(self, ids):
        return self._sp.decode([int(i) for i in ids if int(i) not in self._special])


def _byte_to_char_offsets(text):
    """list mapping each UTF-8 byte offset of `text` (0..len(bytes)) to its character offset."""
    data = text.encode("utf-8")
    if len(data) == len(text):
        return range(len(text) + 1)
    table = []
    for char_index, char in enumerate(text):
        table.extend([char_index] * len(char.encode("utf-8")))
    table.append(len(text))
    return table


def load(spec):
    """Build a `Tokenizer` from a spec string (see the module docstring)."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"tokenizer spec {spec!r} must look like 'wordpiece:PATH' or 'sentencepiece:PATH'")
    path, _, query = rest.partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if kind == "wordpiece":
        unknown = set(options) - {"lowercase", "strip_accents"}
        if unknown:
            raise ValueError(f"tokenizer spec {spec!r}: unknown options {sorted(unknown)}")
        lowercase = _parse_bool("lowercase", options.get("lowercase", "true"), spec)
        strip = options.get("strip_accents")
        strip_accents = None if strip is None else _parse_bool("strip_accents", strip, spec)
        return WordPieceTokenizer(path, lowercase=lowercase, strip_accents=strip_accents)
    if kind == "sentencepiece":
        if options:
            raise ValueError(f"tokenizer spec {spec!r}: sentencepiece takes no options, got {sorted(options)}")
        return SentencePieceTokenizer(path)
    raise ValueError(f"tokenizer spec {spec!r}: unknown kind {kind!r} (expected wordpiece or sentencepiece)")
