"""torch.compile for the training phases: compiled forwards that are swapped into their modules
only while a phase runs, and a start-up check that the compiler works on the device.

Inductor (torch.compile's default backend) cannot differentiate its graphs twice: "torch.compile
with aot_autograd does not currently support double backward" (PyTorch 2.0 onward, see
https://github.com/pytorch/pytorch/pull/92348). The loss therefore runs R1 and path-length
regularization inside suspended(), on the eager forwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

# Arguments of torch.compile. Static shapes, because Inductor's automatic dynamic shapes failed
# on the StyleGAN2 generator ("InductorError: ValueError: Exponent must be non-negative", torch
# 2.13 CPU). Each phase gets a fixed set of shapes, so static graphs compile only once each.
# fallback_random makes the compiled graphs draw noise with torch's own generators, as eager
# code does, so a compiled run draws the same random numbers as an eager one.
COMPILE_KWARGS = dict(dynamic=False, options={"fallback_random": True})


class CompiledForwards:
    """torch.compile'd forward methods of `modules`, used only inside active().

    Outside active() the modules keep their class's forward, so snapshots, deep copies and
    G_ema never hold a compiled function. Compilation happens on the first call of each
    forward inside active(), once per distinct set of input shapes and keyword values.
    """

    def __init__(self, modules: Sequence[torch.nn.Module]):
        if len({id(m) for m in modules}) != len(modules):
            raise ValueError("CompiledForwards: each module may be listed only once")
        self.entries = [(m, torch.compile(m.forward, **COMPILE_KWARGS)) for m in modules]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Run the block with the compiled forwards in place."""
        for module, compiled in self.entries:
            module.forward = compiled
        try:
            yield
        finally:
            for module, _compiled in self.entries:
                module.__dict__.pop("forward", None)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Run the block with the eager forwards, inside or outside active()."""
        saved = [(module, module.__dict__.pop("forward", None)) for module, _ in self.entries]
        try:
            yield
        finally:
            for module, forward in saved:
                if forward is not None:
                    module.forward = forward


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else "no message"


def check_compiler(device: torch.device) -> None:
    """Compile and run a small function on `device`, and raise RuntimeError naming --compile
    when torch.compile cannot build it there. On the CPU, Inductor needs a C++ compiler."""

    def probe(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(x * 2 + 1, 0.2).sum()

    x = torch.arange(8, dtype=torch.float32, device=device)
    try:
        value = torch.compile(probe, **COMPILE_KWARGS)(x)
    except Exception as error:  # noqa: BLE001 - Inductor raises many types; all mean the same.
        raise RuntimeError(
            f"--compile=1: torch.compile could not build a test function on {device} "
            f"({type(error).__name__}: {first_line(error)}). On the CPU "
            "Inductor needs a working C++ compiler (g++ or clang++ on PATH, or $CXX); on CUDA "
            "it needs Triton. Install what is missing or train without --compile."
        ) from error
    expected = probe(x)
    if not torch.allclose(value, expected):
        raise RuntimeError(
            f"--compile=1: torch.compile gave {float(value)} instead of {float(expected)} for a "
            f"test function on {device}; train without --compile."
        )
