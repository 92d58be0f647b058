"""PyTorch helpers shared by the networks, the training loop and the metrics."""
