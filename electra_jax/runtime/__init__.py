"""The training runtime shared by pre-training and fine-tuning: mesh, state, step, optimizer,
metrics, launch and the gin edge."""
