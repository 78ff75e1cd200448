"""The pre-training shard format: TFRecord files of tf.train.Example, as in official ELECTRA.

Two layouts (the manifest says which, data_pipelines.manifest):
- "unpacked", the official format: one example per record, three int64 features of length
  seq_len: `input_ids` ([CLS] A [SEP] B [SEP] then pad id 0), `input_mask` (1 on real tokens, 0
  on padding) and `segment_ids` (the token type: 0 for [CLS] A [SEP], 1 for B [SEP], 0 on
  padding). Shards written by the official build_pretraining_dataset.py load the same way.
- "packed": a record is a row of several whole examples one after the other, then padding
  (data_pipelines.packing). The three features above describe the row (each example keeps its
  own token types), and two more say where the examples are: `example_ids` (k on the tokens of
  the row's k-th example, from 1; 0 on padding) and `position_ids` (each token's position in its
  example, from 0; 0 on padding).
Parsed batches use the Hugging Face names, as fine-tuning batches do (BATCH_KEYS):
`input_ids`, `attention_mask`, `token_type_ids`, and for packed rows also `example_ids`,
`position_ids` (batch_keys(layout); the names the model and the objective take).
"""

import os

LAYOUTS = ("packed", "unpacked")
FEATURES = ("input_ids", "input_mask", "segment_ids")  # in the records (the official names)
PACKING_FEATURES = ("example_ids", "position_ids")  # also in the records of packed rows
BATCH_KEYS = {"input_ids": "input_ids", "input_mask": "attention_mask",
              "segment_ids": "token_type_ids"}  # record feature -> batch key (the packing
                                                # features keep their names)


def layout_features(layout):
  """The record features of a layout ("packed" or "unpacked")."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout {layout!r}; expected one of {LAYOUTS}")
  return FEATURES + (PACKING_FEATURES if layout == "packed" else ())


def batch_keys(layout):
  """The batch keys of a layout: input_ids, attention_mask, token_type_ids (+ example_ids,
  position_ids when packed)."""
  return tuple(BATCH_KEYS.get(name, name) for name in layout_features(layout))


def shard_name(index, count):
  """File name of shard `index` of `count`, e.g. shard-00003-of-00016.tfrecord."""
  return f"shard-{index:05d}-of-{count:05d}.tfrecord"


def serialize_example(tf, input_ids, segment_ids, seq_len, pad_id=0):
  """One tf.train.Example as bytes; input_ids / segment_ids are unpadded int lists <= seq_len."""
  length = len(input_ids)
  pad = seq_len - length
  feature = tf.train.Feature
  int64s = tf.train.Int64List
  example = tf.train.Example(
      features=tf.train.Features(
          feature={
              "input_ids": feature(int64_list=int64s(value=input_ids + [pad_id] * pad)),
              "input_mask": feature(int64_list=int64s(value=[1] * length + [0] * pad)),
              "segment_ids": feature(int64_list=int64s(value=segment_ids + [0] * pad)),
          }
      )
  )
  return example.SerializeToString(deterministic=True)  # sorted map keys: same bytes in every process


def serialize_packed_row(tf, examples, seq_len, pad_id=0):
  """One packed row as tf.train.Example bytes: `examples` are (input_ids, segment_ids) pairs of
  unpadded int lists, at most seq_len tokens together, laid out in order (module docstring)."""
  input_ids, segment_ids, example_ids, position_ids = [], [], [], []
  for k, (ids, segments) in enumerate(examples, 1):
    input_ids += ids
    segment_ids += segments
    example_ids += [k] * len(ids)
    position_ids += range(len(ids))
  length = len(input_ids)
  if length > seq_len:
    raise ValueError(f"a row of {length} tokens does not fit seq_len={seq_len}")
  pad = [0] * (seq_len - length)
  values = {"input_ids": input_ids + [pad_id] * (seq_len - length),
            "input_mask": [1] * length + pad, "segment_ids": segment_ids + pad,
            "example_ids": example_ids + pad, "position_ids": position_ids + pad}
  feature, int64s = tf.train.Feature, tf.train.Int64List
  example = tf.train.Example(features=tf.train.Features(
      feature={name: feature(int64_list=int64s(value=v)) for name, v in values.items()}))
  return example.SerializeToString(deterministic=True)


def parse_examples(tf, serialized, seq_len, layout="unpacked"):
  """Parse a 1-D string tensor of serialized records of `layout` -> {batch key: int32
  [n, seq_len] tensor} (keys: batch_keys(layout)). Unpacked parsing of packed records reads
  their first three features (each row as one example)."""
  names = layout_features(layout)
  spec = {name: tf.io.FixedLenFeature([seq_len], tf.int64) for name in names}
  parsed = tf.io.parse_example(serialized, spec)
  return {BATCH_KEYS.get(name, name): tf.cast(parsed[name], tf.int32) for name in names}


def write_atomically(tf, path, records):
  """Write serialized records to a TFRecord at `path` via a temp file and an atomic rename.

  A crash leaves at most a hidden `.NAME.tmp-PID` file, never a partial file named `path`.
  Returns the number of records written.
  """
  directory, name = os.path.split(path)
  temp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
  count = 0
  with tf.io.TFRecordWriter(temp) as writer:
    for record in records:
      writer.write(record)
      count += 1
  os.replace(temp, path)
  return count
