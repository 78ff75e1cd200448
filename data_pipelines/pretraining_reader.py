"""Deterministic, seekable, multi-process reader of pre-training shards.

Rows: a record of the shards is one row of a batch, one example (layout "unpacked") or several
packed examples (layout "packed", with example_ids and position_ids; shard_format.py). Below,
"example" means a row.

Order ("block shuffle"): the split's examples form an endless stream of epochs. In epoch e the
shards are permuted with a key derived from (seed, e); consecutive groups of `window_shards`
shards in that order form windows, and the examples of window w (its shards' records in order)
are permuted with a key derived from (seed, e, w). Global example i = step * global_batch + row
is found by arithmetic on the manifest's per-shard counts, so `batch(step)` reads only the one
or two windows holding that step's rows: cost independent of the step, nothing replayed.
Process p of P takes rows [p * B/P, (p + 1) * B/P) of every global batch, so the global batch
sequence is the same for any process count. Batches cross epoch ends freely, so a corpus smaller
than one batch still works. Permutations come from a splitmix64 hash and a stable argsort, not
from a numpy Generator, so they do not change with the numpy version.

Every process reads (and parses) the windows its rows fall in - in practice the same windows as
the other processes - and keeps its own rows: I/O per host is the whole split per epoch, which
is small next to the train step.

Bad shards. Opening the reader checks that every shard of the split exists and, where the
manifest records it (build_pretraining_data does), has the recorded size in bytes. Every window
load reads its shards one at a time and checks each against the manifest's example count, so a
truncated file is found even where TensorFlow reads it without complaint (a cut inside a record
header ends the file silently) or the manifest has no sizes. A shard that fails either check, or
that TensorFlow cannot read (a record failing its CRC, a cut inside a record, garbage bytes:
DataLossError and the other tf.errors.OpError), is a `ShardError` (a ValueError): one line naming
the file, TensorFlow's short reason, the step whose batch was being read, and how to rebuild the
shard or skip it.
With on_corrupt_shard="skip" a bad shard is used as far as it reads instead: its readable prefix
(records before the first failure, at most the manifest's count) is kept and the window's
missing rows are filled with copies of the window's readable examples, chosen by a seeded
permutation of (seed, epoch, window). Every window keeps its manifest size, so every step's rows,
and the batches of all later steps, are the same pure function of (seed, step) in every run that
sees the same files; a resumed run reads the same batches. Each bad shard is reported once, by a
warning line on stderr, and counted in `skipped`. In skip mode missing or wrong-sized files are
not refused at open; the window load handles them like any other bad shard (a missing file keeps
no example). Still errors in skip mode: a window with no readable example at all (nothing to
fill from) and a shard holding more examples than the manifest says (not damage: a manifest that
does not describe the file).
`iterate` streams `batch` through tf.data, which re-raises a ShardError as a TensorFlow error;
training calls `batch` directly.
"""

import collections
import concurrent.futures
import itertools
import re
import sys

import numpy as np

from data_pipelines import manifest as manifest_lib
from data_pipelines import shard_format
from electra_jax.floor import fs

_MASK64 = (1 << 64) - 1


def _splitmix64(x):
  """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
  x = x + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def seeded_permutation(n, *key):
  """A permutation of range(n) that is a pure function of the ints in `key`."""
  h = np.array([0], dtype=np.uint64)
  for part in key:
    h = _splitmix64(h ^ np.array([part & _MASK64], dtype=np.uint64))
  keys = _splitmix64(h ^ np.arange(n, dtype=np.uint64))
  return np.argsort(keys, kind="stable")


class ShardError(ValueError):
  """A shard file that is missing, has the wrong size, cannot be read, or holds a different number
  of examples than the manifest says.

  Attributes:
    path: the shard file.
    problem: what is wrong, one line, read after the path (e.g. "is unreadable (corrupted record at 1272)").
    advice: what to do about it.
    step: the step whose batch was being read; None when found on opening the reader.
    split: the split being read ("train", "eval").
  """

  def __init__(self, path, problem, advice, step=None, split="train"):
    self.path, self.problem, self.advice, self.step, self.split = path, problem, advice, step, split
    if step is None:
      when = "opening the data"
    elif split == "train":
      when = f"reading the batch of training step {step}"
    else:
      when = f"reading batch {step} of the {split} split"
    super().__init__(f"shard {path} {problem} (found while {when}); {advice}")

  def at_step(self, step, split):
    """The same error, found while reading batch `step` of `split`."""
    return ShardError(self.path, self.problem, self.advice, step, split)


ON_CORRUPT_SHARD = ("error", "skip")


def _short_reason(err):
  """TensorFlow's message of a tf.errors.OpError on one line, without the op and function names."""
  lines = (err.message or type(err).__name__).splitlines()
  text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", lines[0])
  return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text)


def _concat(chunks, seq_len, keys):
  """One dict {key: int32 [n, seq_len]} from a list of such dicts (n = 0 for none)."""
  if not chunks:
    return {k: np.zeros((0, seq_len), np.int32) for k in keys}
  return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


class PretrainingData:
  """Batches of pre-training examples for this process.

  Attributes:
    manifest: the data directory's manifest dict.
    seq_len: tokens per row.
    layout: "packed" or "unpacked" (the manifest's); batch_keys: the keys of a batch.
    real_token_fraction: non-pad tokens over the token slots of the split (from the manifest).
    local_batch_size: rows per batch on this process (global_batch_size / process_count).
    num_examples: rows in the split (one epoch).
    on_corrupt_shard: "error" (a bad shard is a ShardError) or "skip" (see the module docstring).
    skipped: {"shards": bad shards met so far, "examples": the rows of one epoch that they
      lack (each replaced by a copy of a readable example)}; each bad shard is counted once.
  """

  def __init__(
      self,
      data_dir,
      *,
      global_batch_size,
      seed,
      split="train",
      process_index=None,
      process_count=None,
      seq_len=None,
      vocab_fingerprint=None,
      window_shards=4,
      prefetch_batches=4,
      on_corrupt_shard="error",
  ):
    if process_index is None or process_count is None:
      import jax

      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} is not in [0, process_count={process_count})")
    if global_batch_size < 1 or global_batch_size % process_count:
      raise ValueError(
          f"global_batch_size {global_batch_size} must be a positive multiple of process_count {process_count}"
      )
    if window_shards < 1:
      raise ValueError(f"window_shards must be >= 1, got {window_shards}")
    if on_corrupt_shard not in ON_CORRUPT_SHARD:
      raise ValueError(f"on_corrupt_shard={on_corrupt_shard!r}; expected one of {ON_CORRUPT_SHARD}")
    self.data_dir = data_dir
    self.manifest = manifest_lib.read_manifest(data_dir)
    manifest_lib.check_compatible(self.manifest, data_dir, seq_len=seq_len, vocab_fingerprint=vocab_fingerprint)
    self.seq_len = self.manifest["seq_len"]
    self.layout = manifest_lib.layout_of(self.manifest)
    self.batch_keys = shard_format.batch_keys(self.layout)
    self.real_token_fraction = manifest_lib.real_token_fraction(self.manifest, split)
    shards = [s for s in self.manifest["shards"] if s["split"] == split]
    self._files = [fs.join(data_dir, s["file"]) for s in shards]
    self._counts = np.array([manifest_lib.shard_rows(s) for s in shards], dtype=np.int64)
    self.num_examples = int(self._counts.sum())
    if self.num_examples == 0:
      raise ValueError(f"split {split!r} of {data_dir} has no examples (shards: {len(shards)})")
    self.split = split
    self.seed = int(seed)
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.process_index, self.process_count = process_index, process_count
    self.window_shards = window_shards
    self.prefetch_batches = prefetch_batches
    self.on_corrupt_shard = on_corrupt_shard
    self.skipped = {"shards": 0, "examples": 0}
    self._reported = set()
    if on_corrupt_shard == "error":
      self._check_files(shards)
    self._epoch_layouts = collections.OrderedDict()
    self._windows = collections.OrderedDict()
    self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1)

  def _advice(self):
    """What to do about a bad shard: repair it, or (in error mode) skip it."""
    advice = manifest_lib.repair_advice(self.manifest, self.data_dir)
    if self.on_corrupt_shard == "error":
      advice += (", or set on_corrupt_shard='skip' (DataConfig.on_corrupt_shard = 'skip') to train on "
                 "with its readable examples, the rest replaced by copies of others")
    return advice

  def _check_files(self, shards):
    """ShardError for the first shard file that is missing or not of its manifest size in bytes."""
    problems = []
    for shard, path in zip(shards, self._files):
      if not fs.isfile(path):
        problems.append((path, "is missing"))
      elif "bytes" in shard and fs.getsize(path) != shard["bytes"]:
        problems.append((path, f"has {fs.getsize(path)} bytes but the manifest says {shard['bytes']}"))
    if problems:
      path, problem = problems[0]
      if len(problems) > 1:
        others = ", ".join(fs.basename(p) for p, _ in problems[1:6])
        problem += f" (and {len(problems) - 1} more shard(s) are missing or of the wrong size: {others})"
      raise ShardError(path, problem, self._advice())

  def _read_shard(self, shard):
    """Examples of one shard, in file order: dict of int32 [n, seq_len].

    n is the manifest's count; in skip mode a bad shard gives its readable prefix instead
    (n smaller), reported once. Raises ShardError without a step for a bad shard in error mode
    and for a shard holding more examples than the manifest says.
    """
    from electra_jax.floor.tf_runtime import tensorflow

    tf = tensorflow()
    path, expected = self._files[shard], int(self._counts[shard])
    dataset = tf.data.TFRecordDataset(path).batch(8192).map(
        lambda s: shard_format.parse_examples(tf, s, self.seq_len, self.layout)
    )
    try:
      examples = _concat(list(dataset.as_numpy_iterator()), self.seq_len, self.batch_keys)
    except tf.errors.OpError as err:
      examples, problem = None, f"is unreadable ({_short_reason(err)})"
    else:
      found = len(examples["input_ids"])
      if found == expected:
        return examples
      problem = f"holds {found} rows but the manifest says {expected}"
      if found > expected:  # not damage: the manifest is not that of this file
        raise ShardError(path, f"{problem}: the manifest does not describe this file", self._advice())
    if self.on_corrupt_shard == "error":
      raise ShardError(path, problem, self._advice())
    if examples is None:
      examples = self._readable_prefix(path, expected)
    kept = len(examples["input_ids"])
    if path not in self._reported:
      self._reported.add(path)
      self.skipped["shards"] += 1
      self.skipped["examples"] += expected - kept
      print(f"warning: shard {path} {problem}; on_corrupt_shard='skip': using its first {kept} of "
            f"{expected} rows, the other {expected - kept} replaced by copies of readable rows "
            f"of the same window", file=sys.stderr, flush=True)
    return examples

  def _readable_prefix(self, path, limit):
    """The first `limit` examples of `path` at most, stopping before the first record that
    fails to read or parse (read one record at a time: slow, only for a bad shard)."""
    from electra_jax.floor.tf_runtime import tensorflow

    tf = tensorflow()
    records = tf.data.TFRecordDataset(path).map(
        lambda s: shard_format.parse_examples(tf, s[None], self.seq_len, self.layout)
    ).as_numpy_iterator()
    rows = []
    try:
      for row in itertools.islice(records, limit):
        rows.append(row)
    except tf.errors.OpError:
      pass  # the prefix ends at the first unreadable record
    return _concat(rows, self.seq_len, self.batch_keys)

  def _layout(self, epoch):
    """(shard order, window end offsets) of one epoch, cached for the last few epochs."""
    if epoch not in self._epoch_layouts:
      order = seeded_permutation(len(self._files), self.seed, epoch, 0)
      sizes = [int(self._counts[order[i : i + self.window_shards]].sum())
               for i in range(0, len(order), self.window_shards)]
      self._epoch_layouts[epoch] = (order, np.cumsum(sizes))
      while len(self._epoch_layouts) > 4:
        self._epoch_layouts.popitem(last=False)
    return self._epoch_layouts[epoch]

  def _load_window(self, epoch, window):
    """Examples of one window in their shuffled order: dict of int32 [M, seq_len], M from the
    manifest. Raises ShardError (without a step) for a bad shard, see the module docstring."""
    order, _ = self._layout(epoch)
    shard_ids = order[window * self.window_shards : (window + 1) * self.window_shards]
    expected = int(self._counts[shard_ids].sum())
    parts = [self._read_shard(i) for i in shard_ids]
    examples = _concat(parts, self.seq_len, self.batch_keys)
    found = len(examples["input_ids"])
    if found < expected:  # skip mode: fill the rows of bad shards with copies of readable ones
      if found == 0:
        bad = next(i for i, part in zip(shard_ids, parts) if len(part["input_ids"]) < self._counts[i])
        raise ShardError(self._files[bad], "has no readable example, nor has any other shard of its "
                         "window: there is nothing to fill its rows with", self._advice())
      fill = np.resize(seeded_permutation(found, self.seed, epoch, window + 1, 1), expected - found)
      examples = {k: np.concatenate([v, v[fill]]) for k, v in examples.items()}
    permutation = seeded_permutation(expected, self.seed, epoch, window + 1)
    return {k: v[permutation] for k, v in examples.items()}

  def _window(self, epoch, window):
    key = (epoch, window)
    if key not in self._windows:
      self._windows[key] = self._loader.submit(self._load_window, epoch, window)
    self._windows.move_to_end(key)
    _, ends = self._layout(epoch)
    following = (epoch, window + 1) if window + 1 < len(ends) else (epoch + 1, 0)
    if following not in self._windows:
      self._windows[following] = self._loader.submit(self._load_window, *following)
    while len(self._windows) > 3:
      self._windows.popitem(last=False)
    return self._windows[key].result()

  def batch(self, step):
    """This process's rows of global batch `step`: dict of int32 [local_batch_size, seq_len].

    Keys `batch_keys`: input_ids, attention_mask, token_type_ids (+ example_ids, position_ids
    when packed; shard_format.batch_keys). A pure function of (seed, step). Raises
    ShardError naming the shard and `step` when a shard it needs is bad (module docstring).
    """
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    first = step * self.global_batch_size + self.process_index * self.local_batch_size
    indices = np.arange(first, first + self.local_batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(indices, self.num_examples)
    out = {k: np.empty((self.local_batch_size, self.seq_len), np.int32) for k in self.batch_keys}
    for epoch in np.unique(epochs):
      in_epoch = epochs == epoch
      _, ends = self._layout(int(epoch))
      windows = np.searchsorted(ends, offsets[in_epoch], side="right")
      for window in np.unique(windows):
        select = windows == window
        start = ends[window - 1] if window else 0
        local = offsets[in_epoch][select] - start
        rows = np.flatnonzero(in_epoch)[select]
        try:
          examples = self._window(int(epoch), int(window))
        except ShardError as err:
          raise err.at_step(step, self.split) from None
        for k in self.batch_keys:
          out[k][rows] = examples[k][local]
    return out

  def iterate(self, start_step=0):
    """Stream batch(start_step), batch(start_step + 1), ... through tf.data with prefetch."""
    from electra_jax.floor.tf_runtime import tensorflow

    tf = tensorflow()
    shape = (self.local_batch_size, self.seq_len)
    signature = {k: tf.TensorSpec(shape, tf.int32) for k in self.batch_keys}

    def batches():
      for step in itertools.count(start_step):
        yield self.batch(step)

    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.prefetch(self.prefetch_batches).as_numpy_iterator()
