"""Diagnostics of the discriminator during training, for DMD and baseline runs alike.

At every interval boundary (cur_nimg crossing a multiple of interval_kimg * 1000, the same
boundaries at which DMD detects) `DMDDiagnosticsHook` reports through training_stats:

- `DMD/feature_cos`: how much D changed. Fixed probe images are generated once, and their
  D features at the previous and at this boundary are compared by cosine similarity per
  image, averaged over the images. 1 means D's view of those images did not change.
- `DMD/gen_feat_mean`, `DMD/gen_feat_var`: where the generated distribution sits in D's
  feature space. Images from the current G for fixed latents go through the current D; the
  mean is over images and feature dimensions, the variance is the per-dimension variance
  across images (population variance), averaged over dimensions.
- `DMD/speed`, only for a discriminator without DMD: the relative parameter displacement
  ||theta_i - theta_(i-1)|| / ||theta_(i-1)|| that DMD's retardation detector measures, so
  baseline runs get a speed curve comparable with DMD runs.

"D features" are the output [N, C, res, res] of the discriminator block whose output
resolution is `layers[0]`, flattened per image and taken with DMD masks switched off. The
hook works with any discriminator that calls `block_output(out_res, x)` after every block,
as training.networks_stylegan2.Discriminator and its DMD subclass do.

The hook does not change training: it runs under torch.no_grad(), draws latents only from
its own seeded generator, runs G with noise_mode='const' and update_emas=False, and leaves
gradients, optimizer states, requires_grad flags, train/eval modes and the DMD mask state as
they were.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from dmd_patch.config import DMDConfig
from dmd_patch.detector import RetardationDetector
from dmd_patch.hook import unwrap_module
from dmd_patch.networks import DMDMixin, params_by_block
from torch_utils import training_stats

PROBE_CHUNK = 16  # Images per G and D forward pass while probing, which bounds peak memory.
COS_EPSILON = 1e-8  # Lower bound of ||a|| * ||b|| in the cosine, so zero features give 0.


class DiagnosticsReport(NamedTuple):
    """Figures measured at one interval boundary."""

    nimg: int  # cur_nimg at which the boundary was handled.
    feature_cos: float | None  # None when no features of a previous boundary exist.
    gen_feat_mean: float  # Mean of the generated images' features.
    gen_feat_var: float  # Per-dimension variance across generated images, averaged.
    speed: float | None  # Baseline learning speed; None for DMD or before theta_(i-1) exists.


class _FeaturesCaptured(Exception):
    """Raised inside D's forward once the probed block has run, to skip the later blocks."""


class DMDDiagnosticsHook:
    """Training-loop hook that measures D's change and the generated features per interval."""

    def __init__(
        self,
        G: torch.nn.Module,  # Generator being trained (not G_ema): probes use the current G.
        D: torch.nn.Module,  # Discriminator with block_output(); may be wrapped in `.module`.
        G_ema: torch.nn.Module | None,  # Passed to every hook by the training loop; unused.
        batch_size: int,  # Images per training step over all ranks (cur_nimg advance).
        interval_kimg: float,  # Interval between boundaries, in thousands of real images.
        layers: list[int] | None = None,  # Probed block = layers[0]. None = max(8, res // 8).
        num_probe: int = 64,  # Images per probe; at least 2, so the variance is defined.
        seed: int = 0,  # Seed of the hook's own generator for latents and labels.
        verbose: bool = True,  # Print one line describing the probe at construction.
        rank: int | None = None,  # Process rank for printing. None = from torch.distributed.
    ):
        del G_ema

        # Check the discriminator and the options.
        module = unwrap_module(D)
        if not hasattr(module, "block_output") or not hasattr(module, "img_resolution"):
            raise TypeError(
                f"DMDDiagnosticsHook expects a discriminator with block_output() and "
                f"img_resolution, such as training.networks_stylegan2.Discriminator, got "
                f"{type(module).__name__}"
            )
        self.layer = resolve_probe_layer(interval_kimg, layers, module.img_resolution)
        self.interval_nimg = int(round(interval_kimg * 1000))
        if batch_size > self.interval_nimg:
            raise ValueError(
                f"Invalid --dmd-interval={interval_kimg:g} kimg: it is shorter than one "
                f"minibatch (--batch={batch_size}); use at least {batch_size / 1000:g} kimg"
            )
        if isinstance(num_probe, bool) or not isinstance(num_probe, int) or num_probe < 2:
            raise ValueError(f"Invalid num_probe={num_probe!r}: expected an integer >= 2")
        if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()

        # Fixed latents, and the state carried from one boundary to the next.
        self.G = G
        self.D = D
        self.rank = rank or 0
        self.z, self.c = draw_latents(G, num_probe, seed)
        # Baseline runs measure the speed here; DMDHook reports it for a DMDDiscriminator.
        self.detector = None if isinstance(module, DMDMixin) else RetardationDetector()
        self.interval_index: int | None = None  # Index of the latest boundary handled.
        # NOTE: both tensors stay on the device between boundaries: num_probe * (C*H*W + F)
        # floats, about 1.9 GB for 64 probes of 1024x1024 RGB images probed at 128x128.
        self.probe_img: torch.Tensor | None = None  # [num_probe, C, H, W], generated once.
        self.prev_features: torch.Tensor | None = None  # [num_probe, F] of the probe images.
        self.last_report: DiagnosticsReport | None = None

        if verbose and self.rank == 0:
            print(
                f"DMD diagnostics: D features at {self.layer}x{self.layer} for {num_probe} "
                f"generated images every {interval_kimg:g} kimg"
            )

    @property
    def module(self) -> torch.nn.Module:
        """The discriminator, unwrapped."""
        return unwrap_module(self.D)

    def on_step_begin(self, cur_nimg: int) -> None:
        """Anchor the interval count at the first step, like DMD does.

        When the first step starts exactly on a boundary (a fresh run starts at 0), the probe
        features and the baseline's parameter copy are taken there, so the first boundary
        crossed already reports feature_cos and speed over a whole interval.
        """
        index = cur_nimg // self.interval_nimg
        if self.interval_index is not None and index >= self.interval_index:
            return
        self.interval_index = index
        if cur_nimg % self.interval_nimg != 0:
            return
        if self.detector is not None and not self.detector.has_params:
            self.detector.store(params_by_block(self.module))
        if self.probe_img is None:
            with torch.no_grad(), probing(self.module):
                self.probe_img = self._generate()
                self.prev_features = self._features(self.probe_img)

    def on_step_end(self, cur_nimg: int) -> DiagnosticsReport | None:
        """Measure and report the diagnostics if cur_nimg (already advanced) crossed a boundary.

        Returns None when no new boundary was crossed, so a repeated call does nothing.
        """
        if self.interval_index is None:
            self.on_step_begin(cur_nimg)
            return None
        index = cur_nimg // self.interval_nimg
        if index <= self.interval_index:
            return None
        self.interval_index = index
        report = self._measure(cur_nimg)
        # An empty value registers a name without a sample, which keeps the names in the same
        # order on every rank (the cross-rank reduction pairs them by position).
        cos = report.feature_cos
        training_stats.report("DMD/feature_cos", [] if cos is None else cos)
        training_stats.report("DMD/gen_feat_mean", report.gen_feat_mean)
        training_stats.report("DMD/gen_feat_var", report.gen_feat_var)
        if self.detector is not None:
            training_stats.report("DMD/speed", [] if report.speed is None else report.speed)
        self.last_report = report
        return report

    def status_fields(self) -> str:
        """Return the tick-line fields, e.g. 'cos 0.842', plus the speed of a baseline run."""
        report = self.last_report
        cos = None if report is None else report.feature_cos
        text = "cos -" if cos is None else f"cos {cos:.3f}"
        if self.detector is not None:
            speed = None if report is None else report.speed
            text += " speed -" if speed is None else f" speed {speed:.2e}"
        return text

    def _measure(self, cur_nimg: int) -> DiagnosticsReport:
        """Run the probes of one boundary: one G pass and one or two D passes."""
        with torch.no_grad(), probing(self.module):
            img = self._generate()
            gen_features = self._features(img)
            if self.probe_img is None:
                self.probe_img = img
                probe_features = gen_features
            else:
                probe_features = self._features(self.probe_img)
            cos = None
            if self.prev_features is not None:
                cos = mean_cosine(self.prev_features, probe_features)
            self.prev_features = probe_features
            gen_features = gen_features.to(torch.float64)
            gen_mean = gen_features.mean().item()
            gen_var = gen_features.var(dim=0, unbiased=False).mean().item()
        speed = None
        if self.detector is not None:
            speed = self.detector.update(params_by_block(self.module), nimg=cur_nimg).speed
        return DiagnosticsReport(cur_nimg, cos, gen_mean, gen_var, speed)

    def _generate(self) -> torch.Tensor:
        """Return images [num_probe, C, H, W] of the current G for the fixed latents."""
        device = probe_device(self.G)
        images = []
        for z, c in zip(self.z.split(PROBE_CHUNK), self.c.split(PROBE_CHUNK)):
            z, c = z.to(device), c.to(device)
            images.append(self.G(z=z, c=c, noise_mode="const", update_emas=False))
        return torch.cat(images)

    def _features(self, img: torch.Tensor) -> torch.Tensor:
        """Return the probed block's output for images [N, C, H, W] as float32 [N, F]."""
        c = self.c.to(img.device)
        features = []
        for img_chunk, c_chunk in zip(img.split(PROBE_CHUNK), c.split(PROBE_CHUNK)):
            features.append(capture_block_output(self.module, self.layer, img_chunk, c_chunk))
        return torch.cat(features)


def resolve_probe_layer(interval_kimg: float, layers: list[int] | None, img_resolution: int) -> int:
    """Validate the interval and the layers as DMD does, and return the probed resolution."""
    config = DMDConfig(interval_kimg=interval_kimg, layers=layers)
    config.validate(img_resolution)
    return config.resolve_layers(img_resolution)[0] if layers is None else int(layers[0])


def draw_latents(G: torch.nn.Module, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw fixed latents z [num, z_dim] and one-hot labels c [num, c_dim] on the CPU.

    Only a generator private to the hook is used, so torch's global random state stays as
    the training loop left it.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn([num, G.z_dim], generator=generator)
    c = torch.zeros([num, G.c_dim])
    if G.c_dim > 0:
        classes = torch.randint(G.c_dim, [num], generator=generator)
        c[torch.arange(num), classes] = 1
    return z, c


def probe_device(module: torch.nn.Module) -> torch.device:
    """Return the device of the module's first parameter or buffer (CPU if it has none)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def probing(D: torch.nn.Module):
    """Run the enclosed probes of D in eval mode and without DMD masks, then restore both.

    Eval mode keeps the probes from changing D's state, such as the power-iteration vectors
    of spectral normalization in BigGAN's discriminator.
    """
    was_training = D.training
    D.eval()
    try:
        with masks_off(D):
            yield
    finally:
        D.train(was_training)


def masks_off(D: torch.nn.Module) -> contextlib.AbstractContextManager:
    """Return a context without DMD masks for a DMDDiscriminator, a no-op context otherwise."""
    if isinstance(D, DMDMixin):
        return D.dmd_masks_off()
    return contextlib.nullcontext()


def capture_block_output(
    D: torch.nn.Module, res: int, img: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """Run D on img [N, C, H, W] and return the output of the block at `res` as float32 [N, F].

    D.block_output is replaced for the duration of the call by an instance attribute that
    records x at `res` and stops the forward pass there, because the later blocks do not
    change the captured features. Every other resolution goes through the original method.
    """
    own = "block_output" in vars(D)
    original = D.block_output
    captured = []

    def record(out_res: int, x: torch.Tensor) -> torch.Tensor:
        if out_res == res:
            captured.append(x)
            raise _FeaturesCaptured
        return original(out_res, x)

    D.block_output = record
    try:
        D(img, c)
    except _FeaturesCaptured:
        pass
    finally:
        if own:
            D.block_output = original
        else:
            del D.block_output
    if not captured:
        raise RuntimeError(
            f"{type(D).__name__}.forward never called block_output({res}, x); the probed "
            f"resolution must be a block output resolution of this discriminator"
        )
    return captured[0].flatten(1).to(torch.float32)


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return the mean over rows of the cosine similarity of a [N, F] and b [N, F]."""
    if a.shape != b.shape:
        raise ValueError(f"Feature shapes differ: {list(a.shape)} and {list(b.shape)}")
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    dot = (a * b).sum(dim=1)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return (dot / norms.clamp_min(COS_EPSILON)).mean().item()
