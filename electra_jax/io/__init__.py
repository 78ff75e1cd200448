"""Checkpoint formats (Hugging Face, official TF1, electra_jax native and pre-training checkpoints)
and conversion between them; imports `electra_jax.model` and the ground floor `electra_jax.floor`
only (and data_pipelines.tokenizers, for the tokenizer saved with a checkpoint)."""
