"""`python -m electra_jax.finetune`: the fine-tuning command line (finetune.train.main)."""

import sys

from electra_jax.finetune.train import main

if __name__ == "__main__":
  sys.exit(main())
