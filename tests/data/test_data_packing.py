"""Packing of token streams into [CLS] A [SEP] B [SEP] examples, and of examples into rows:
invariants and statistics."""

import random

import pytest

from data_pipelines.packing import ExamplePacker, RowPacker

CLS, SEP = 2, 3


def _pack(seq_len, documents, seed=0):
  """documents: list of lists of units (token lists). Returns (examples, example_doc, packer)."""
  packer = ExamplePacker(seq_len, CLS, SEP, random.Random(seed))
  examples, owners = [], []
  for doc_index, units in enumerate(documents):
    for unit in units:
      made = packer.add(unit)
      examples += made
      owners += [doc_index] * len(made)
    made = packer.end_document()
    examples += made
    owners += [doc_index] * len(made)
  return examples, owners, packer


def _synthetic_documents(seed, n_docs=400):
  rng = random.Random(seed)
  next_token = [1000]
  docs = []
  for _ in range(n_docs):
    units = []
    for _ in range(rng.randint(1, 12)):
      length = rng.choice([0, 1, 3, rng.randint(1, 40), rng.randint(30, 400)])
      units.append(list(range(next_token[0], next_token[0] + length)))
      next_token[0] += length
    docs.append(units)
  return docs


@pytest.mark.parametrize("seq_len", [8, 32, 128])
def test_examples_are_well_formed_and_conserve_every_token_in_order(seq_len):
  docs = _synthetic_documents(seed=seq_len)
  examples, owners, packer = _pack(seq_len, docs)
  doc_tokens = [{t for unit in doc for t in unit} for doc in docs]
  content = []
  for (ids, segments), owner in zip(examples, owners):
    assert len(ids) == len(segments) <= seq_len
    assert ids[0] == CLS and ids[-1] == SEP
    n_a = segments.count(0)
    assert segments == [0] * n_a + [1] * (len(ids) - n_a)
    assert ids[n_a - 1] == SEP  # segment A ends with [SEP]
    body = [t for t in ids if t not in (CLS, SEP)]
    assert len(body) == len(ids) - (2 if n_a == len(ids) else 3)
    assert len(body) >= 1
    assert set(body) <= doc_tokens[owner]  # an example never mixes documents
    content += sorted(body)  # A/B assignment may reorder units within an example (official rule)
  assert content == [t for doc in docs for unit in doc for t in unit]  # each example: a contiguous slice
  assert packer.stats.tokens == len(content)
  assert packer.stats.examples == len(examples)
  assert packer.stats.documents == len(docs)


def test_segment_and_length_statistics_follow_the_official_rates():
  docs = [[list(range(i * 10_000 + j * 20, i * 10_000 + j * 20 + 20)) for j in range(400)] for i in range(40)]
  examples, _, packer = _pack(128, docs, seed=3)
  n = len(examples)
  assert n > 2000
  assert 0.07 < packer.stats.single_segment_examples / n < 0.13  # official: 10% single-segment
  assert 0.03 < packer.stats.short_target_examples / n < 0.07  # official: 5% random length
  full = sum(1 for ids, _ in examples if len(ids) == 128)
  assert full / n > 0.8


def test_packing_is_deterministic_for_a_seed():
  docs = _synthetic_documents(seed=1, n_docs=50)
  assert _pack(64, docs, seed=5)[0] == _pack(64, docs, seed=5)[0]
  assert _pack(64, docs, seed=5)[0] != _pack(64, docs, seed=6)[0]


def test_seq_len_below_five_is_rejected():
  with pytest.raises(ValueError, match="seq_len must be >= 5, got 4"):
    ExamplePacker(4, CLS, SEP, random.Random(0))


def _pack_rows(sizes, seq_len=128, open_rows=64):
  packer = RowPacker(seq_len, open_rows)
  rows = []
  for index, size in enumerate(sizes):
    rows += packer.add(index, size)
  return rows + packer.finish()


def _skewed_sizes(n, seed=0):
  """Example lengths like the shared corpus: many short (headings, paragraph ends), many full."""
  rng = random.Random(seed)
  return [rng.choice([rng.randint(3, 20), rng.randint(3, 127), 128, 128]) for _ in range(n)]


def test_rows_hold_every_example_once_in_order_and_fill_up():
  sizes = _skewed_sizes(3000)
  rows = _pack_rows(sizes)
  assert sorted(i for row in rows for i in row) == list(range(len(sizes)))
  assert all(row == sorted(row) for row in rows)  # a row keeps its examples in arrival order
  assert all(sum(sizes[i] for i in row) <= 128 for row in rows)
  fill = sum(sizes) / (128 * len(rows))
  assert fill > 0.98, fill  # one example per row: sum(sizes) / (128 x 3000), about 0.6
  assert len(rows) < 0.7 * len(sizes)
  assert _pack_rows(sizes) == rows  # a pure function of the example sequence


def test_open_rows_bound_the_lookahead():
  """With one open row, packing is in order (next fit); with more, an example goes to the open
  row with the least room that holds it, the fullest row closes when a new one is needed, and a
  row with room under MIN_EXAMPLE_TOKENS (3: [CLS] token [SEP]) closes at once."""
  sizes = [100, 20, 30, 126, 60, 60, 7]
  assert _pack_rows(sizes, open_rows=1) == [[0, 1], [2], [3], [4, 5, 6]]  # 126, 127: room < 3
  # 2 rows: 30 opens row B; 126 closes the fullest (row A: 0, 1) and fills a row alone; 60 goes
  # to B, the next 60 opens row D, 7 goes to the tighter fit B (room 38 < 68).
  assert _pack_rows(sizes, open_rows=2) == [[0, 1], [3], [2, 4, 6], [5]]
  sizes = _skewed_sizes(2000, seed=1)
  fills = [sum(sizes) / (128 * len(_pack_rows(sizes, open_rows=k))) for k in (1, 4, 64)]
  assert fills[0] < fills[1] < fills[2]


def test_row_packer_rejects_examples_that_do_not_fit():
  with pytest.raises(ValueError, match="an example of 129 tokens does not fit a row of 128"):
    RowPacker(128).add("x", 129)
  with pytest.raises(ValueError, match="open_rows must be >= 1, got 0"):
    RowPacker(128, open_rows=0)
