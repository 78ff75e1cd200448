"""Fine-tuning on GLUE, SQuAD and tagging: config, tasks, task kinds, metrics, the loop, sweeps."""
