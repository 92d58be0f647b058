"""Spatial feature masks of the dynamically masked discriminator, and the policy that sets them.

A mask zeroes a fixed fraction of the spatial positions of a discriminator block's output.
The same mask is shared by every channel and every image of a forward pass, real and generated
alike, because a discriminator that saw masks on one side only could tell the sides apart by
the mask. Method: W. Zhang et al., "Dynamically Masked Discriminator for GANs", NeurIPS 2023.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

POLICIES = ("toggle", "pulse", "always", "never")
RESAMPLE_MODES = ("interval", "batch")


class FeatureMasker:
    """Mask state (off or on), the current pattern per layer, and a seeded pattern generator."""

    def __init__(
        self,
        layers: Iterable[int],  # Output resolutions of the blocks whose features are masked.
        ratio: float = 0.25,  # Fraction of positions zeroed, in [0, 1). 0 = masks keep all.
        rescale: bool = True,  # Scale kept positions by 1 / (1 - ratio).
        policy: str = "toggle",  # 'toggle', 'pulse', 'always' or 'never', as `step` describes.
        resample: str = "interval",  # 'interval': draw when masks go on. 'batch': every batch.
        seed: int = 0,  # Seed of the generator that draws the patterns.
    ):
        if policy not in POLICIES:
            raise ValueError(f"Invalid mask policy {policy!r}: expected one of {POLICIES}")
        if resample not in RESAMPLE_MODES:
            raise ValueError(
                f"Invalid resample mode {resample!r}: expected one of {RESAMPLE_MODES}"
            )
        if not 0 <= ratio < 1:
            raise ValueError(f"Invalid mask ratio {ratio!r}: expected a number in [0, 1)")
        self.layers = sorted({int(res) for res in layers}, reverse=True)
        self.ratio = float(ratio)
        self.rescale = bool(rescale)
        self.policy = policy
        self.resample = resample
        self.seed = int(seed)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)
        self.masked = False
        self.patterns: dict[int, torch.Tensor] = {}  # res -> bool [res, res], True = kept.
        self.toggles = 0  # Number of off -> on and on -> off changes so far.
        self.last_draw_nimg: int | None = None  # cur_nimg of the latest draw, or None.
        self._mask_cache: dict[tuple, torch.Tensor] = {}  # (res, device, dtype) -> [1, 1, H, W].
        if policy == "always":
            self.masked = True
            self.draw_patterns(nimg=None)

    def num_zeros(self, res: int) -> int:
        """Return the number of zeroed positions in a res x res mask.

        round(ratio * res^2) with halves rounded up, capped at res^2 - 1 so at least one
        position survives.
        """
        count = math.floor(self.ratio * res * res + 0.5)
        return min(count, res * res - 1)

    @property
    def scale(self) -> float:
        """Factor applied to the kept positions."""
        return 1.0 / (1.0 - self.ratio) if self.rescale else 1.0

    def draw_patterns(self, nimg: int | None) -> None:
        """Draw a fresh pattern for every layer from the masker's own generator."""
        self.patterns = {}
        for res in self.layers:
            order = torch.randperm(res * res, generator=self.generator)
            keep = torch.ones(res * res, dtype=torch.bool)
            keep[order[: self.num_zeros(res)]] = False
            self.patterns[res] = keep.reshape(res, res)
        self.last_draw_nimg = nimg
        self._mask_cache.clear()

    def step(self, retarded: bool, nimg: int) -> str | None:
        """Update the mask state at an interval boundary, following the policy.

        toggle: each detection flips the state, and turning on draws a fresh pattern.
        pulse: masks are on for exactly the interval after a detection, and a detection while on
        starts a new pulse with a fresh pattern. always, never: the state never changes.
        Returns 'on', 'off', 'redrawn' or None (no change).
        """
        if self.policy == "toggle" and retarded:
            return self._turn_off() if self.masked else self._turn_on(nimg)
        if self.policy == "pulse" and retarded:
            if self.masked:
                self.draw_patterns(nimg)
                return "redrawn"
            return self._turn_on(nimg)
        if self.policy == "pulse" and self.masked:
            return self._turn_off()
        return None

    def _turn_on(self, nimg: int) -> str:
        self.masked = True
        self.toggles += 1
        self.draw_patterns(nimg)
        return "on"

    def _turn_off(self) -> str:
        self.masked = False
        self.toggles += 1
        self.patterns = {}
        self._mask_cache.clear()
        return "off"

    def begin_batch(self, nimg: int) -> bool:
        """Draw new patterns for the minibatch starting at `nimg` when resample='batch'.

        Calling it again with the same `nimg` draws nothing. Returns True if it drew.
        """
        if self.resample != "batch" or not self.masked or nimg == self.last_draw_nimg:
            return False
        self.draw_patterns(nimg)
        return True

    def mask(self, res: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Return the current mask of layer `res` as [1, 1, res, res], scaled when rescale."""
        key = (res, torch.device(device), dtype)
        cached = self._mask_cache.get(key)
        if cached is None:
            values = self.patterns[res].to(torch.float32) * self.scale
            cached = values.reshape(1, 1, res, res).to(device=device, dtype=dtype)
            self._mask_cache[key] = cached
        return cached

    def apply(self, res: int, x: torch.Tensor) -> torch.Tensor:
        """Mask features x [N, C, res, res] of layer `res`. Identity when off or not listed."""
        if res not in self.layers:
            return x
        if x.ndim != 4 or x.shape[2] != res or x.shape[3] != res:
            raise ValueError(
                f"DMD mask for block output resolution {res} expects features of shape "
                f"[N, C, {res}, {res}], got {list(x.shape)}"
            )
        if not self.masked:
            return x
        return x * self.mask(res, x.device, x.dtype)

    def state_dict(self) -> dict[str, Any]:
        """Return the state as tensors and plain values (loadable with weights_only=True)."""
        return {
            "masked": self.masked,
            "patterns": {res: keep.clone() for res, keep in self.patterns.items()},
            "generator_state": self.generator.get_state(),
            "toggles": self.toggles,
            "last_draw_nimg": self.last_draw_nimg,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state returned by `state_dict`."""
        missing = {"masked", "patterns", "generator_state", "toggles", "last_draw_nimg"}
        missing -= set(state)
        if missing:
            raise KeyError(f"Masker state is missing {sorted(missing)}")
        patterns = {int(res): keep.to("cpu", torch.bool) for res, keep in state["patterns"].items()}
        if state["masked"] and sorted(patterns, reverse=True) != self.layers:
            raise ValueError(
                f"Saved DMD masks cover layers {sorted(patterns, reverse=True)}, but this "
                f"discriminator masks layers {self.layers}; use the same --dmd-layers to resume"
            )
        for res, keep in patterns.items():
            if keep.shape != (res, res):
                raise ValueError(f"Saved DMD mask for layer {res} has shape {list(keep.shape)}")
        self.masked = bool(state["masked"])
        self.patterns = patterns
        self.generator.set_state(state["generator_state"].to("cpu", torch.uint8))
        self.toggles = int(state["toggles"])
        last = state["last_draw_nimg"]
        self.last_draw_nimg = None if last is None else int(last)
        self._mask_cache.clear()
