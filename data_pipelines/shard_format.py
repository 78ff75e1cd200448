"""The pre-training shard format: TFRecord files of tf.train.Example, as in official ELECTRA.

Each example has three int64 features of length seq_len: `input_ids` ([CLS] A [SEP] B [SEP]
then pad id 0), `input_mask` (1 on real tokens, 0 on padding) and `segment_ids` (0 for
[CLS] A [SEP], 1 for B [SEP], 0 on padding). Shards written by the official
build_pretraining_dataset.py have the same features and load the same way. Parsed batches use
the Hugging Face names, as fine-tuning batches do (BATCH_KEYS): `input_ids`, `attention_mask`,
`token_type_ids`.
"""

import os

FEATURES = ("input_ids", "input_mask", "segment_ids")  # in the records (the official names)
BATCH_KEYS = {"input_ids": "input_ids", "input_mask": "attention_mask",
              "segment_ids": "token_type_ids"}  # record feature -> batch key


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


def parse_examples(tf, serialized, seq_len):
  """Parse a 1-D string tensor of serialized examples -> {batch key: int32 [n, seq_len] tensor}
  (keys: BATCH_KEYS' values)."""
  spec = {name: tf.io.FixedLenFeature([seq_len], tf.int64) for name in FEATURES}
  parsed = tf.io.parse_example(serialized, spec)
  return {BATCH_KEYS[name]: tf.cast(parsed[name], tf.int32) for name in FEATURES}


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
