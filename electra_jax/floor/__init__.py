"""The ground floor: what every layer needs, importing nothing of electra_jax or data_pipelines.

  fs          paths on the local disk or any file system tf.io.gfile serves (gs://, ram://, ...)
  tf_runtime  TensorFlow as a CPU-only data library (accelerators hidden from it)
  sharding    logical sharding constraints on activations, for model code
  registry    the named-object registry of objective kinds, task kinds and checkpoint formats

model, io, runtime, pretrain, finetune and data_pipelines import it; the README's Layout section
lists the import rules and tests/test_package.py checks them.
"""
