"""Checkpoint formats (Hugging Face, official TF1, electra_jax native and pre-training checkpoints)
and conversion between them; imports `electra_jax.model` only."""
