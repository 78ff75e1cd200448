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

Saved tokenizers: `tokenizer.save(DIR)` copies the vocabulary (vocab.txt or spm.model) into DIR
with SAVED_DESCRIPTION (kind, options, fingerprint) and the files Hugging Face's
`AutoTokenizer.from_pretrained(DIR)` reads (tokenizer_config.json, special_tokens_map.json; for a
SentencePiece unigram or BPE model also tokenizer.json, whose BPE merges are derived from the
pieces). Shard directories, pre-training workdirs and exported models carry their tokenizer this
way; `find_saved(PATH)` finds it again from any of them, without a spec. Every path here
(vocabulary files, DIR) may be local or a tf.io.gfile URL such as gs://bucket/dir
(electra_jax.floor.fs).
"""

import abc
import hashlib
import io
import json
import urllib.parse

import numpy as np

from electra_jax.floor import fs

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SAVED_DESCRIPTION = "electra_jax_tokenizer.json"
SAVED_FORMAT = "electra_jax.tokenizer/1"
SAVED_DIR = "tokenizer"  # the subdirectory of a shard directory or workdir that holds one
_HF_SPECIAL = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "mask_token": "[MASK]"}
_HF_INPUTS = {"model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}  # as BERT


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

  def __call__(self, texts, text_pairs=None, max_length=512, padding="longest"):
    """Model inputs for a batch: [CLS] a [SEP] (b [SEP]) per row, token types 0 for a and 1 for
    b, truncated to `max_length` tokens (a pair longest-first, as BERT does) and padded with
    the pad id to the longest row (padding="longest") or to max_length ("max_length").

    texts: list of N strings; text_pairs: None or N second texts (an entry None: no pair).
    Returns {"input_ids", "attention_mask", "token_type_ids"}: int32 arrays [N, L].
    """
    if isinstance(texts, str):
      raise TypeError("tokenizer(texts) takes a list of strings; wrap one text as [text]")
    if padding not in ("longest", "max_length"):
      raise ValueError(f"padding={padding!r}; expected 'longest' or 'max_length'")
    if max_length < 4:
      raise ValueError(f"max_length={max_length} is too short for [CLS] a [SEP] b [SEP]")
    texts = list(texts)
    pairs = [None] * len(texts) if text_pairs is None else list(text_pairs)
    if len(pairs) != len(texts):
      raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
    enc_a = self.encode(texts)
    paired = [i for i, b in enumerate(pairs) if b is not None]
    enc_b = dict(zip(paired, self.encode([pairs[i] for i in paired])))
    rows = []
    for i, a in enumerate(enc_a):
      a = list(a)
      if i in enc_b:
        b = list(enc_b[i])
        while len(a) + len(b) > max_length - 3:
          (a if len(a) >= len(b) else b).pop()
        rows.append(([self.cls_id] + a + [self.sep_id] + b + [self.sep_id],
                     [0] * (len(a) + 2) + [1] * (len(b) + 1)))
      else:
        seq = [self.cls_id] + a[:max_length - 2] + [self.sep_id]
        rows.append((seq, [0] * len(seq)))
    width = max_length if padding == "max_length" else max((len(s) for s, _ in rows), default=0)
    out = {"input_ids": np.full((len(rows), width), self.pad_id, np.int32),
           "attention_mask": np.zeros((len(rows), width), np.int32),
           "token_type_ids": np.zeros((len(rows), width), np.int32)}
    for i, (seq, types) in enumerate(rows):
      out["input_ids"][i, :len(seq)] = seq
      out["attention_mask"][i, :len(seq)] = 1
      out["token_type_ids"][i, :len(seq)] = types
    return out

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

  def save(self, directory, model_max_length=None):
    """Write this tokenizer into `directory` (created): its vocabulary file, SAVED_DESCRIPTION
    and the Hugging Face tokenizer files; `model_max_length` (the model's longest input, in
    tokens) goes into tokenizer_config.json, so that transformers truncates to it. Returns the
    names of the files written."""
    fs.makedirs(directory)
    hf_options = {} if model_max_length is None else {"model_max_length": int(model_max_length)}
    description = {"format": SAVED_FORMAT, "fingerprint": self.fingerprint(),
                   "vocab_size": self.vocab_size, **self._save_files(directory, hf_options)}
    _write_json(fs.join(directory, SAVED_DESCRIPTION), description)
    _write_json(fs.join(directory, "special_tokens_map.json"), _HF_SPECIAL)
    return sorted(fs.listdir(directory))

  @abc.abstractmethod
  def _save_files(self, directory, hf_options):
    """Write the vocabulary and the HF files (hf_options: more tokenizer_config.json entries);
    return the description's kind, file, options."""


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

    if not fs.isfile(vocab_path):
      raise FileNotFoundError(f"WordPiece vocab file not found: {vocab_path}")
    self._tokens = [line.rstrip("\n") for line in io.StringIO(fs.read_text(vocab_path, "utf-8-sig"))]
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
        f"wordpiece:{fs.abspath(vocab_path)}?lowercase={str(lowercase).lower()}"
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

  def _save_files(self, directory, hf_options):
    fs.write_text(fs.join(directory, "vocab.txt"), "".join(token + "\n" for token in self._tokens))
    _write_json(fs.join(directory, "tokenizer_config.json"),
                {"tokenizer_class": "ElectraTokenizer", "do_lower_case": self.lowercase,
                 "strip_accents": self.strip_accents, "tokenize_chinese_chars": True, **_HF_SPECIAL,
                 **hf_options})
    return {"kind": "wordpiece", "file": "vocab.txt", "lowercase": self.lowercase,
            "strip_accents": self.strip_accents}


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model whose pieces include [PAD] [UNK] [CLS] [SEP] [MASK]."""

  def __init__(self, model_path):
    import sentencepiece as spm

    if not fs.isfile(model_path):
      raise FileNotFoundError(f"SentencePiece model file not found: {model_path}")
    self._sp = spm.SentencePieceProcessor(model_proto=fs.read_bytes(model_path))
    self.vocab_size = self._sp.get_piece_size()
    self._tokens = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
    token_to_id = {tok: i for i, tok in enumerate(self._tokens)}
    (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id) = _special_ids_or_raise(
        token_to_id, f"SentencePiece model {model_path}"
    )
    self._special = frozenset((self.pad_id, self.cls_id, self.sep_id, self.mask_id))
    self.model_path = fs.abspath(model_path)
    self.spec = f"sentencepiece:{self.model_path}"

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

  def _save_files(self, directory, hf_options):
    fs.copy(self.model_path, fs.join(directory, "spm.model"))
    fast = self._hf_fast_tokenizer()
    if fast is not None:
      fs.write_text(fs.join(directory, "tokenizer.json"), fast.to_str(pretty=True))
      _write_json(fs.join(directory, "tokenizer_config.json"),
                  {"tokenizer_class": "PreTrainedTokenizerFast", **_HF_SPECIAL, **_HF_INPUTS,
                   **hf_options})
    return {"kind": "sentencepiece", "file": "spm.model"}

  def _hf_fast_tokenizer(self):
    """The unigram or BPE model as a `tokenizers` pipeline for Hugging Face (None for others).

    Same ids as SentencePiece on text (the model's own normalization table, runs of spaces
    collapsed, "▁" word prefixes, unknown characters as the model says: a run of them is one
    unknown piece, or with byte fallback each is its UTF-8 byte pieces), except that a literal
    "[MASK]" (etc.) in the text is the special token, as in WordPiece and as transformers'
    fill-mask pipeline needs; [CLS] A [SEP] (B [SEP]) framing.
    """
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(fs.read_bytes(self.model_path))
    spec = proto.trainer_spec
    if spec.model_type == spec.UNIGRAM:
      model = models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=spec.unk_id,
                             byte_fallback=spec.byte_fallback)
    elif spec.model_type == spec.BPE:
      model = models.BPE({p.piece: i for i, p in enumerate(proto.pieces)}, _bpe_merges(proto),
                         unk_token=proto.pieces[spec.unk_id].piece, fuse_unk=True,
                         byte_fallback=spec.byte_fallback)
    else:
      return None
    rust = RustTokenizer(model)
    charsmap = proto.normalizer_spec.precompiled_charsmap  # SentencePiece's own normalization
    rust.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap) if charsmap else normalizers.NFKC(),
         normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])
    rust.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    metaspace = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    rust.decoder = (decoders.Sequence([decoders.ByteFallback(), metaspace]) if spec.byte_fallback
                    else metaspace)
    rust.add_special_tokens(list(SPECIAL_TOKENS))
    cls, sep = ("[CLS]", self.cls_id), ("[SEP]", self.sep_id)
    rust.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep])
    return rust


def _bpe_merges(proto):
  """The merges of a SentencePiece BPE model, first applied first, for `tokenizers.models.BPE`.

  SentencePiece BPE starts from characters and repeatedly joins the adjacent pair whose
  concatenation is the best normal piece (its pieces are in merge order: scores fall with the
  id), whichever way that piece splits; `tokenizers` ranks (left, right) pairs. So every split
  of a normal piece into two normal pieces is a merge, in the order of the pieces.
  """
  pieces = [p.piece for p in proto.pieces if p.type == p.NORMAL]
  normal = set(pieces)
  return [(piece[:i], piece[i:]) for piece in pieces for i in range(1, len(piece))
          if piece[:i] in normal and piece[i:] in normal]


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


def _write_json(path, data):
  fs.write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_saved(directory):
  """The tokenizer `Tokenizer.save` wrote into `directory`; ValueError when its files do not
  match the description (another vocabulary than the one recorded)."""
  path = fs.join(directory, SAVED_DESCRIPTION)
  description = json.loads(fs.read_text(path))
  if description.get("format") != SAVED_FORMAT:
    raise ValueError(f"{path}: format {description.get('format')!r}, expected {SAVED_FORMAT!r}")
  file = fs.join(directory, description["file"])
  if description["kind"] == "wordpiece":
    tokenizer = WordPieceTokenizer(file, lowercase=description["lowercase"],
                                   strip_accents=description["strip_accents"])
  else:
    tokenizer = SentencePieceTokenizer(file)
  if tokenizer.fingerprint() != description["fingerprint"]:
    raise ValueError(f"{file} is not the vocabulary {path} describes (fingerprint "
                     f"{tokenizer.fingerprint()[:12]} != {description['fingerprint'][:12]})")
  return tokenizer


def find_saved(path):
  """The tokenizer saved with a checkpoint, shard directory or exported model at `path`, or None.

  Looks in `path` (or the directory of a file), its SAVED_DIR subdirectory, and the same in its
  parent and grandparent (a step directory WORKDIR/checkpoints/STEP finds WORKDIR/tokenizer).
  A Hugging Face directory with only vocab.txt (and maybe tokenizer_config.json's
  do_lower_case / strip_accents) is read as WordPiece.
  """
  start = fs.abspath(path if fs.isdir(path) else fs.dirname(path) or ".")
  ancestors = [start, fs.dirname(start), fs.dirname(fs.dirname(start))]
  for directory in ancestors:
    for candidate in (directory, fs.join(directory, SAVED_DIR)):
      if fs.isfile(fs.join(candidate, SAVED_DESCRIPTION)):
        return load_saved(candidate)
  vocab = fs.join(start, "vocab.txt")
  if fs.isfile(vocab):
    options = {}
    config = fs.join(start, "tokenizer_config.json")
    if fs.isfile(config):
      options = json.loads(fs.read_text(config))
    return WordPieceTokenizer(vocab, lowercase=options.get("do_lower_case", True),
                              strip_accents=options.get("strip_accents"))
  return None


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


def of_shards(data_dir, recorded):
  """The tokenizer that made the shards in `data_dir`, whose manifest records `recorded`
  ({spec, fingerprint, ...}): the one saved beside them (DATA_DIR/tokenizer), else the one the
  spec names. ValueError when neither exists or the vocabulary differs from the recorded one."""
  saved = fs.join(data_dir, SAVED_DIR)
  if fs.isfile(fs.join(saved, SAVED_DESCRIPTION)):
    tokenizer = load_saved(saved)
  else:
    try:
      tokenizer = load(recorded["spec"])
    except FileNotFoundError as err:
      raise ValueError(f"the tokenizer of the shards in {data_dir} is gone ({err}); put it "
                       f"back, or rebuild the shards (the builder now saves it in "
                       f"{saved})") from None
  if tokenizer.fingerprint() != recorded["fingerprint"]:
    raise ValueError(f"the tokenizer {tokenizer.spec} differs from the one that made the shards "
                     f"in {data_dir} (fingerprint {tokenizer.fingerprint()[:12]} != "
                     f"{recorded['fingerprint'][:12]}); restore the original vocabulary file")
  return tokenizer
