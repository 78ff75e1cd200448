"""`python -m electra_jax.train`: the pre-training command line (pretrain.train.main)."""

import sys

from electra_jax.pretrain.train import main

if __name__ == "__main__":
  sys.exit(main())
