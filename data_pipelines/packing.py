"""Pack tokenized text units into `[CLS] A [SEP] B [SEP]` pre-training examples.

The segment rules are those of the official ELECTRA `build_pretraining_dataset.py`:
- with probability 0.1 an example has one segment only; otherwise units go to segment A while
  it stays under (target - 3) // 2 tokens (a unit that would push it past still goes to A with
  probability 0.5 while B is empty), the rest to B;
- after each example the next target length is seq_len, or with probability 0.05 a random
  length in [5, seq_len].
Two deliberate differences, so that no token is ever dropped:
- a unit longer than (seq_len - 3) // 2 tokens is first cut into pieces of that size (so a
  paragraph-per-line corpus still gets two-segment examples);
- an example closes when its units reach target - 3 tokens, and the unit that crosses that
  budget is split: its head fills the example, its tail starts the next example of the same
  document. (The official code closes at >= target and truncates the overflow, which loses
  about a quarter of the tokens on paragraph-per-line text.)
So the content tokens of the examples, read in order, are exactly the input tokens in order.
"""

import dataclasses
import random


@dataclasses.dataclass
class PackingStats:
  """Counts of documents, units, examples and tokens (content tokens, specials excluded)."""

  documents: int = 0
  units: int = 0
  tokens: int = 0
  examples: int = 0
  single_segment_examples: int = 0
  short_target_examples: int = 0
  split_long_units: int = 0

  def add(self, other):
    for field in dataclasses.fields(self):
      setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

  def as_dict(self):
    return dataclasses.asdict(self)


class ExamplePacker:
  """Turns token-id lists of text units, with document ends, into unpadded examples.

  `add(ids)` and `end_document()` return the examples they complete: a list of
  (input_ids, segment_ids) pairs of python int lists, equal length, at most seq_len.
  """

  def __init__(self, seq_len, cls_id, sep_id, rng: random.Random):
    if seq_len < 5:
      raise ValueError(f"seq_len must be >= 5, got {seq_len}")
    self.seq_len, self.cls_id, self.sep_id, self.rng = seq_len, cls_id, sep_id, rng
    self.stats = PackingStats()
    self._units = []
    self._length = 0
    self._target = seq_len
    self._in_document = False
    self._piece_limit = max(1, (seq_len - 3) // 2)

  def add(self, ids):
    """Add one text unit's token ids; returns the examples it completes."""
    self.stats.units += 1
    self.stats.tokens += len(ids)
    self._in_document = True
    limit = self._piece_limit
    if len(ids) > limit:
      self.stats.split_long_units += 1
    done = []
    for start in range(0, len(ids), limit):
      piece = ids[start : start + limit]
      while piece:
        budget = self._target - 3
        head = piece[: budget - self._length]
        self._units.append(head)
        self._length += len(head)
        piece = piece[len(head) :]
        if self._length >= budget:
          done.append(self._make_example())
    return done

  def end_document(self):
    """Close the current document; returns its last example if it has tokens left."""
    if self._in_document:
      self.stats.documents += 1
      self._in_document = False
    return [self._make_example()] if self._length > 0 else []

  def _make_example(self):
    rng = self.rng
    single = rng.random() < 0.1
    first_target = float("inf") if single else (self._target - 3) // 2
    first, second = [], []
    for unit in self._units:
      if (
          not first
          or len(first) + len(unit) < first_target
          or (not second and len(first) < first_target and rng.random() < 0.5)
      ):
        first += unit
      else:
        second += unit
    self.stats.examples += 1
    self.stats.short_target_examples += self._target < self.seq_len
    self._units, self._length = [], 0
    self._target = rng.randint(5, self.seq_len) if rng.random() < 0.05 else self.seq_len
    input_ids = [self.cls_id] + first + [self.sep_id]
    segment_ids = [0] * len(input_ids)
    if second:
      input_ids += second + [self.sep_id]
      segment_ids += [1] * (len(second) + 1)
    else:
      self.stats.single_segment_examples += 1
    return input_ids, segment_ids
