"""StyleGAN2 and BigGAN discriminators with dynamic feature masks (DMD).

Method: W. Zhang et al., "Dynamically Masked Discriminator for GANs", NeurIPS 2023,
arXiv 2306.07716. The discriminator measures its own learning speed at every interval
boundary and, when the speed drops, masks (or unmasks) the output features of chosen blocks.
Everything else, including the generator, the losses and the optimizers, stays as it is.

DMDMixin implements the method and works with any discriminator that calls
`block_output(out_res, x)` after every block. Masks are keyed by block output resolution, so
a listed resolution masks every block with that output, all with one shared pattern. BigGAN's
32x32 discriminator has three blocks with 8x8 outputs, so `layers=[8]` masks all three.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch

from dmd_patch.config import DMDConfig, block_output_resolutions
from dmd_patch.detector import RetardationDetector
from dmd_patch.masker import FeatureMasker
from training import networks_biggan, networks_stylegan2

EXTRA_STATE_VERSION = 1


@dataclasses.dataclass
class BoundaryReport:
    """Outcome of one interval boundary."""

    nimg: int  # cur_nimg at which the boundary was handled.
    kimg: float  # The boundary t_i itself, in kimg (a multiple of interval_kimg).
    speed: float | None  # s_i, or None when only theta was stored.
    reference: float | None  # ref_(i-1), or None before any speed exists.
    retarded: bool  # True when detection fired.
    masked: bool  # Mask state after the policy ran.
    toggles: int  # Mask state changes so far.
    change: str | None  # 'on', 'off', 'redrawn' or None (mask state unchanged).


class DMDMixin:
    """Dynamic masks on a discriminator's block outputs, switched when its learning speed drops.

    Put it before a discriminator class that calls `self.block_output(out_res, x)` after every
    block and sets `img_resolution`. All DMD state lives in the module and travels with
    `state_dict()` as extra state, so snapshots save it and a resumed run makes the same
    decisions as an uninterrupted one. The training loop drives it through
    `dmd_patch.hook.DMDHook`.
    """

    def __init__(
        self,
        *args: Any,  # Positional arguments of the discriminator (c_dim, img_resolution, ...).
        dmd_kwargs: dict | None = None,  # DMDConfig options as a dict. None or {} = defaults.
        **kwargs: Any,  # Keyword arguments of the discriminator.
    ):
        super().__init__(*args, **kwargs)
        config = DMDConfig.from_dict(dmd_kwargs)
        config.validate(self.img_resolution, self.dmd_layer_resolutions())
        self.init_kwargs.dmd_kwargs = config.to_dict()
        self.dmd_config = config
        self.dmd_interval_nimg = config.interval_nimg()
        self.dmd_detector = RetardationDetector(
            detect=config.detect,
            ema_beta=config.ema_beta,
            tol=config.tol,
            warmup_kimg=config.warmup_kimg,
            speed=config.speed,
        )
        self.dmd_masker = FeatureMasker(
            layers=config.resolve_layers(self.img_resolution),
            ratio=config.ratio,
            rescale=config.rescale,
            policy=config.policy,
            resample=config.resample,
            seed=config.seed,
        )
        self.dmd_interval_index: int | None = None  # Index of the latest boundary handled.
        self.dmd_last_speed: float | None = None  # Latest s_i, for the status line.

    def dmd_layer_resolutions(self) -> list[int]:
        """Return the block output resolutions that `--dmd-layers` may list, high to low."""
        return block_output_resolutions(self.img_resolution)

    def block_output(self, out_res: int, x: torch.Tensor) -> torch.Tensor:
        """Apply the current mask of layer `out_res` to x [N, C, out_res, out_res]."""
        return self.dmd_masker.apply(out_res, x)

    def dmd_params_by_block(self) -> dict[str, list[torch.Tensor]]:
        """Group the trainable parameters by top-level child (b{res}, mapping and b4 in
        StyleGAN2; block{index}, attn, linear and embed in BigGAN).

        Every parameter counts, whatever its requires_grad flag: the training loop switches
        those flags off between phases, and frozen layers are buffers, not parameters.
        """
        return params_by_block(self)

    @contextlib.contextmanager
    def dmd_masks_off(self) -> Iterator[None]:
        """Run the enclosed forward passes without masks, then restore the mask state.

        The patterns, the mask generator and the counters stay untouched, so probing D inside
        this context leaves training as it was.
        """
        masked = self.dmd_masker.masked
        self.dmd_masker.masked = False
        try:
            yield
        finally:
            self.dmd_masker.masked = masked

    @property
    def dmd_masked(self) -> bool:
        """True while masks are on."""
        return self.dmd_masker.masked

    @property
    def dmd_toggles(self) -> int:
        """Number of mask state changes so far."""
        return self.dmd_masker.toggles

    def dmd_begin_batch(self, cur_nimg: int) -> None:
        """Prepare the minibatch that starts at `cur_nimg`.

        The first call, or a call whose cur_nimg lies before the latest handled boundary
        (a resume with a reset image counter), anchors the interval count at cur_nimg.
        With resample='batch' it draws this minibatch's pattern while masks are on.
        """
        index = cur_nimg // self.dmd_interval_nimg
        if self.dmd_interval_index is None or index < self.dmd_interval_index:
            self.dmd_interval_index = index
            # Store theta_0 only at a boundary, so every speed covers a whole interval.
            if not self.dmd_detector.has_params and cur_nimg % self.dmd_interval_nimg == 0:
                self.dmd_detector.store(self.dmd_params_by_block())
        self.dmd_masker.begin_batch(cur_nimg)

    def dmd_end_step(self, cur_nimg: int) -> BoundaryReport | None:
        """Run detection and the mask policy if cur_nimg crossed an interval boundary.

        Returns None when no new boundary was crossed, so a repeated call for the same
        cur_nimg does nothing. A step that crosses several boundaries at once is handled once.
        """
        if self.dmd_interval_index is None:
            self.dmd_begin_batch(cur_nimg)
            return None
        index = cur_nimg // self.dmd_interval_nimg
        if index <= self.dmd_interval_index:
            return None
        self.dmd_interval_index = index
        result = self.dmd_detector.update(self.dmd_params_by_block(), nimg=cur_nimg)
        change = self.dmd_masker.step(result.retarded, nimg=cur_nimg)
        if result.speed is not None:
            self.dmd_last_speed = result.speed
        return BoundaryReport(
            nimg=cur_nimg,
            kimg=index * self.dmd_interval_nimg / 1000,
            speed=result.speed,
            reference=result.reference,
            retarded=result.retarded,
            masked=self.dmd_masker.masked,
            toggles=self.dmd_masker.toggles,
            change=change,
        )

    def get_extra_state(self) -> dict[str, Any]:
        """Return the DMD state as tensors and plain values (loadable with weights_only=True)."""
        return {
            "version": EXTRA_STATE_VERSION,
            "config": self.dmd_config.to_dict(),
            "detector": self.dmd_detector.state_dict(),
            "masker": self.dmd_masker.state_dict(),
            "interval_index": self.dmd_interval_index,
            "last_speed": self.dmd_last_speed,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the DMD state returned by `get_extra_state`.

        The options of this module stay in force, so a resume may change for example the
        tolerance. Only the masked layers must match the saved masks.
        """
        if not isinstance(state, dict) or state.get("version") != EXTRA_STATE_VERSION:
            found = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"Invalid DMD state in the discriminator's state_dict: expected version "
                f"{EXTRA_STATE_VERSION}, found {found!r}"
            )
        self.dmd_detector.load_state_dict(state["detector"])
        self.dmd_masker.load_state_dict(state["masker"])
        index = state["interval_index"]
        self.dmd_interval_index = None if index is None else int(index)
        speed = state["last_speed"]
        self.dmd_last_speed = None if speed is None else float(speed)

    def extra_repr(self) -> str:
        config = self.dmd_config
        return (
            f"{super().extra_repr()}, dmd_layers={self.dmd_masker.layers}, "
            f"dmd_policy={config.policy}, dmd_ratio={config.ratio}"
        )


class DMDDiscriminator(DMDMixin, networks_stylegan2.Discriminator):
    """StyleGAN2 discriminator with DMD. Its block outputs run from img_resolution / 2 to 4."""


class DMDBigGANDiscriminator(DMDMixin, networks_biggan.Discriminator):
    """BigGAN discriminator with DMD.

    At 32x32 its block outputs are 16, 8, 8 and 8, so `--dmd-layers` may list 16 and 8. A
    listed 8 masks the outputs of all three 8x8 blocks with the same pattern, so the positions
    it zeroes stay zero up to the sum over space.
    """

    def dmd_layer_resolutions(self) -> list[int]:
        """Return the distinct block output resolutions, high to low."""
        return sorted(set(self.block_out_resolutions), reverse=True)


def params_by_block(module: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
    """Group a module's parameters by the name of their top-level child (b32, mapping, b4)."""
    groups: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, param in module.named_parameters():
        groups[name.split(".", 1)[0]].append(param)
    return dict(groups)
