"""Deprecated: moved to electra_jax.floor.fs (issue 22). This name stays for one release and is
the very same module, so patching one patches the other."""

import sys
import warnings

from electra_jax.floor import fs

warnings.warn("data_pipelines.fs moved to electra_jax.floor.fs; the old name goes in the next "
              "release", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = fs
