"""The tiny joint model of the objective tests (tests/pretrain/test_objective.py and
test_packed_objective.py): vocabulary V, rows of L tokens, a 2-layer discriminator and its
half-width generator.

Dropout is off except where a test is about dropout: XLA CPU compiles each dropout's threefry
generator slowly. Tests compile with LLVM optimisation off (FAST) for the same reason.
"""

from electra_jax.model.config import ModelConfig
from electra_jax.pretrain import objective as ob

V, L = 200, 32
SPECIAL = ob.SpecialIds(pad=0, cls=1, sep=2, mask=3, vocab_size=V)
DISC = ModelConfig(vocab_size=V, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GEN = DISC.replace(hidden_size=16, intermediate_size=64, num_attention_heads=1)
FAST = {"xla_backend_optimization_level": 0}
