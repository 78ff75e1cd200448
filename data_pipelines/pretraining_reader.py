"""Deterministic, seekable, multi-process reader of pre-training shards.

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
"""

import collections
import concurrent.futures
import itertools
import os

import numpy as np

from data_pipelines import manifest as manifest_lib
from data_pipelines import shard_format

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


class PretrainingData:
    """Batches of pre-training examples for this process.

    Attributes:
      manifest: the data directory's manifest dict.
      seq_len: tokens per example.
      local_batch_size: rows per batch on this process (global_batch_size / process_count).
      num_examples: examples in the split (one epoch).
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
        self.data_dir = data_dir
        self.manifest = manifest_lib.read_manifest(data_dir)
        manifest_lib.check_compatible(self.manifest, data_dir, seq_len=seq_len, vocab_fingerprint=vocab_fingerprint)
        self.seq_len = self.manifest["seq_len"]
        shards = [s for s in self.manifest["shards"] if s["split"] == split]
        self._files = [os.path.join(data_dir, s["file"]) for s in shards]
        self._counts = np.array([s["examples"] for s in shards], dtype=np.int64)
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
        self._epoch_layouts = collections.OrderedDict()
        self._windows = collections.OrderedDict()
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1)

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
        """Examples of one window in their shuffled order: dict of int32 [M, seq_len]."""
        from data_pipelines.tf_runtime import tensorflow

        tf = tensorflow()
        order, _ = self._layout(epoch)
        shard_ids = order[window * self.window_shards : (window + 1) * self.window_shards]
        files = [self._files[i] for i in shard_ids]
        expected = int(self._counts[shard_ids].sum())
        dataset = tf.data.TFRecordDataset(files).batch(8192).map(
            lambda s: shard_format.parse_examples(tf, s, self.seq_len)
        )
        chunks = list(dataset.as_numpy_iterator())
        if chunks:
            examples = {k: np.concatenate([c[k] for c in chunks]) for k in shard_format.FEATURES}
        else:
            examples = {k: np.zeros((0, self.seq_len), np.int32) for k in shard_format.FEATURES}
        found = len(examples["input_ids"])
        if found != expected:
            raise ValueError(f"shards {files} hold {found} examples but the manifest says {expected}")
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

        Keys input_ids, input_mask, segment_ids. A pure function of (seed, step).
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        first = step * self.global_batch_size + self.process_index * self.local_batch_size
        indices = np.arange(first, first + self.local_batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(indices, self.num_examples)
        out = {k: np.empty((self.local_batch_size, self.seq_len), np.int32) for k in shard_format.FEATURES}
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            _, ends = self._layout(int(epoch))
            windows = np.searchsorted(ends, offsets[in_epoch], side="right")
            for window in np.unique(windows):
                select = windows == window
                start = ends[window - 1] if window else 0
                local = offsets[in_epoch][select] - start
                examples = self._window(int(epoch), int(window))
                rows = np.flatnonzero(in_epoch)[select]
                for k in shard_format.FEATURES:
                    out[k][rows] = examples[k][local]
        return out

    def iterate(self, start_step=0):
        """Stream batch(start_step), batch(start_step + 1), ... through tf.data with prefetch."""
        from data_pipelines.tf_runtime import tensorflow

        tf = tensorflow()
        shape = (self.local_batch_size, self.seq_len)
        signature = {k: tf.TensorSpec(shape, tf.int32) for k in shard_format.FEATURES}

        def batches():
            for step in itertools.count(start_step):
                yield self.batch(step)

        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return dataset.prefetch(self.prefetch_batches).as_numpy_iterator()
