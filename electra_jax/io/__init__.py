"""Checkpoint formats (Hugging Face, official TF1, electra_jax native and pre-training checkpoints)
and conversion between them; imports `electra_jax.model` and the ground floor `electra_jax.floor`
only, and data_pipelines.tokenizers (a leaf above the floor): a conversion carries the tokenizer
saved with its source into the target's files, and load_tokenizer reads it back."""
