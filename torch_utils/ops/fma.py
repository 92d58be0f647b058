"""Fused multiply-add with broadcasting."""

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Compute `a * b + c` with broadcasting. Autograd reduces each gradient back to the
    shape of its input, so `a`, `b` and `c` may have any broadcast-compatible shapes."""
    return torch.addcmul(c, a, b)
