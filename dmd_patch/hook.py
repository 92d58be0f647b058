"""Training-loop hook that drives the dynamically masked discriminator at interval boundaries.

The hook keeps no state of its own apart from its configuration. Every decision lives in the
DMDDiscriminator, so snapshots carry it and all ranks decide alike: decisions depend only on
D's parameters, which are identical on every rank, and on a seeded generator.
"""

from __future__ import annotations

import torch

from dmd_patch.networks import BoundaryReport, DMDMixin
from torch_utils import training_stats


def unwrap_module(D: torch.nn.Module) -> torch.nn.Module:
    """Return the module inside a DistributedDataParallel wrapper, or D itself."""
    return getattr(D, "module", D)


class DMDHook:
    """Training-loop hook that drives a DMDDiscriminator around each optimizer step."""

    def __init__(
        self,
        D: torch.nn.Module,  # DMDDiscriminator, or a DistributedDataParallel wrapping one.
        batch_size: int,  # Images per training step over all ranks (cur_nimg advance).
        verbose: bool = True,  # Print one line when detection fires or the masks change.
        rank: int | None = None,  # Process rank for printing. None = from torch.distributed.
        G: torch.nn.Module | None = None,  # Passed to every hook by the training loop; unused.
        G_ema: torch.nn.Module | None = None,  # Passed to every hook by the training loop; unused.
    ):
        module = unwrap_module(D)
        if not isinstance(module, DMDMixin):
            raise TypeError(
                f"DMDHook expects a DMD discriminator (dmd_patch.networks.DMDDiscriminator or "
                f"DMDBigGANDiscriminator), got "
                f"{type(module).__name__}; build D with "
                f"class_name='dmd_patch.networks.DMDDiscriminator' when --dmd=1"
            )
        interval_nimg = module.dmd_interval_nimg
        if batch_size > interval_nimg:
            raise ValueError(
                f"Invalid --dmd-interval={module.dmd_config.interval_kimg} kimg: it is shorter "
                f"than one minibatch (--batch={batch_size}); use at least "
                f"{batch_size / 1000:g} kimg"
            )
        if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()
        self.D = D
        self.batch_size = batch_size
        self.verbose = verbose
        self.rank = rank or 0

    @property
    def module(self) -> DMDMixin:
        """Return the DMD discriminator, unwrapped."""
        return unwrap_module(self.D)

    def on_step_begin(self, cur_nimg: int) -> None:
        """Prepare the minibatch starting at cur_nimg (draws its pattern for resample='batch')."""
        self.module.dmd_begin_batch(cur_nimg)

    def on_step_end(self, cur_nimg: int) -> BoundaryReport | None:
        """Handle an interval boundary if cur_nimg (already advanced) crossed one.

        Reports DMD/speed, DMD/retarded, DMD/masked and DMD/toggles at each boundary. A
        second call for the same cur_nimg does nothing and returns None.
        """
        report = self.module.dmd_end_step(cur_nimg)
        if report is None:
            return None
        # An empty value registers the name without a sample, which keeps the names in the
        # same order on every rank (the cross-rank reduction pairs them by position).
        training_stats.report("DMD/speed", [] if report.speed is None else report.speed)
        training_stats.report("DMD/retarded", float(report.retarded))
        training_stats.report("DMD/masked", float(report.masked))
        training_stats.report("DMD/toggles", float(report.toggles))
        if self.verbose and self.rank == 0 and (report.retarded or report.change):
            print(describe_boundary(report))
        return report

    def status_fields(self) -> str:
        """Return the DMD fields of the tick line, e.g. 'dmd masked 1 toggles 3 speed 1.23e-03'."""
        module = self.module
        speed = module.dmd_last_speed
        speed_text = "-" if speed is None else f"{speed:.2e}"
        return (
            f"dmd masked {int(module.dmd_masked)} toggles {module.dmd_toggles} speed {speed_text}"
        )


def describe_boundary(report: BoundaryReport) -> str:
    """Return one log line for a boundary at which detection fired or the masks changed."""
    if report.retarded:
        cause = (
            f"retarded at kimg {report.kimg:g} "
            f"(speed {report.speed:.3e} < ref {report.reference:.3e})"
        )
    else:
        cause = f"pulse ended at kimg {report.kimg:g}"
    outcome = {
        "on": "masks on",
        "off": "masks off",
        "redrawn": "new masks",
        None: f"masks stay {'on' if report.masked else 'off'}",
    }[report.change]
    return f"DMD: {cause} -> {outcome}"
