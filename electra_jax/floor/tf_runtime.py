"""Import TensorFlow as a CPU-only data library.

TensorFlow is used here only for TFRecord I/O and tf.data. It must never claim a GPU or TPU
that JAX is about to use, so every module that uses it (data_pipelines, electra_jax.floor.fs,
the metrics writer) gets TensorFlow through `tensorflow()`, which hides accelerators from it
before the first TF op runs.
"""

import os

_TF = None


def tensorflow():
  """Return the `tensorflow` module with every GPU and TPU hidden from it.

  Raises:
    RuntimeError: TensorFlow was already initialised elsewhere with a visible accelerator.
  """
  global _TF
  if _TF is not None:
    return _TF
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # TF does no math here, so its oneDNN kernels buy nothing; with them off TF's two libraries
  # no longer each print the "oneDNN custom operations are on" notice at import.
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  import tensorflow as tf

  for device_type in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], device_type)
    except RuntimeError as err:  # devices were initialised before this call
      visible = tf.config.get_visible_devices(device_type)
      if visible:
        raise RuntimeError(
            f"TensorFlow was initialised before electra_jax could hide accelerators "
            f"and can see {visible}; call electra_jax.floor.tf_runtime.tensorflow() before "
            f"running TF ops"
        ) from err
  _TF = tf
  return tf
