"""Deprecated: moved to electra_jax.floor.tf_runtime (issue 22). This name stays for one release
and is the very same module (one TensorFlow, one set of hidden accelerators)."""

import sys
import warnings

from electra_jax.floor import tf_runtime

warnings.warn("data_pipelines.tf_runtime moved to electra_jax.floor.tf_runtime; the old name "
              "goes in the next release", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = tf_runtime
