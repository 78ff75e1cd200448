"""Train a SentencePiece tokenizer whose vocabulary has ELECTRA's special tokens.

  python -m data_pipelines.train_tokenizer --corpus SPEC --model_type unigram --vocab_size 8000 \
      --output PREFIX          # writes PREFIX.model and PREFIX.vocab

Ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]. [CLS] [SEP] [MASK] are control symbols: they have
ids but text never encodes to them, even if it contains the literal string "[MASK]".
Load the result with `tokenizers.load("sentencepiece:PREFIX.model")`.
"""

import argparse
import os
import re
import time

from data_pipelines import corpora, text_io

NUM_THREADS = 4  # fixed, not os.cpu_count(): the trained model must not depend on the machine


def _units(corpus, stats):
  for unit in corpus.iter_units([0], 1, stats):
    if unit:
      yield unit


def train_sentencepiece(
    corpus, output_prefix, vocab_size=8000, model_type="unigram", max_sentences=2_000_000,
    character_coverage=0.9995, seed=0,
):
  """Train on a corpus spec or corpora.Corpus; returns the path of the written .model file.

  Args:
    max_sentences: SentencePiece samples at most this many text units (bounded memory).
  """
  import sentencepiece as spm

  if model_type not in ("unigram", "bpe"):
    raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
  if vocab_size <= 5:
    raise ValueError(f"vocab_size must exceed the 5 special tokens, got {vocab_size}")
  corpus = corpora.load(corpus) if isinstance(corpus, str) else corpus
  directory = os.path.dirname(os.path.abspath(output_prefix))
  os.makedirs(directory, exist_ok=True)
  temp_prefix = os.path.join(directory, f".{os.path.basename(output_prefix)}.tmp-{os.getpid()}")
  stats = text_io.InputStats()
  spm.set_random_generator_seed(seed)
  try:
    _train(spm, corpus, stats, temp_prefix, vocab_size, model_type, character_coverage,
           max_sentences)
  except RuntimeError as err:
    limit = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)",
                      str(err))
    if limit is None:
      raise
    raise ValueError(f"vocab_size={vocab_size} is too large for corpus {corpus.spec}: "
                     f"SentencePiece can make at most {limit.group(1)} pieces from it") from None
  for suffix in (".vocab", ".model"):  # .model last: its presence means the pair is complete
    os.replace(temp_prefix + suffix, output_prefix + suffix)
  return output_prefix + ".model"


def _train(spm, corpus, stats, temp_prefix, vocab_size, model_type, character_coverage,
           max_sentences):
  spm.SentencePieceTrainer.train(
      sentence_iterator=_units(corpus, stats),
      model_prefix=temp_prefix,
      vocab_size=vocab_size,
      model_type=model_type,
      character_coverage=character_coverage,
      input_sentence_size=max_sentences,
      shuffle_input_sentence=True,
      pad_id=0,
      unk_id=1,
      bos_id=-1,
      eos_id=-1,
      pad_piece="[PAD]",
      unk_piece="[UNK]",
      control_symbols=["[CLS]", "[SEP]", "[MASK]"],
      num_threads=NUM_THREADS,
      minloglevel=2,
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--corpus", required=True, help="corpus spec (see data_pipelines.corpora)")
  parser.add_argument("--model_type", choices=("unigram", "bpe"), default="unigram")
  parser.add_argument("--vocab_size", type=int, default=8000)
  parser.add_argument("--output", required=True, help="output prefix: writes PREFIX.model and PREFIX.vocab")
  parser.add_argument("--max_sentences", type=int, default=2_000_000, help="text units sampled for training")
  parser.add_argument("--character_coverage", type=float, default=0.9995)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  started = time.perf_counter()
  path = train_sentencepiece(
      args.corpus, args.output, vocab_size=args.vocab_size, model_type=args.model_type,
      max_sentences=args.max_sentences, character_coverage=args.character_coverage, seed=args.seed,
  )
  print(f"wrote {path} ({args.model_type}, vocab {args.vocab_size}) in {time.perf_counter() - started:.1f}s")
  print(f"tokenizer spec: sentencepiece:{os.path.abspath(path)}")


if __name__ == "__main__":
  main()
