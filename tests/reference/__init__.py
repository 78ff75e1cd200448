"""An independent PyTorch reference of ELECTRA pre-training (see torch_electra.py)."""
