"""ELECTRA pre-training: config, objective, checkpoints, health, FLOPs and the training loop."""
