"""The model: config and size presets, Flax layers, HF-parity heads, the joint pre-training
model."""
