"""Adaptive discriminator augmentation (ADA) of Karras et al., "Training Generative Adversarial
Networks with Limited Data" (NeurIPS 2020).

Every input image of D, real or generated, goes through `AugmentPipe`. Each transform is
applied to each image independently with probability p times its strength, and `ada_adjust`
moves p so that the mean sign of D's outputs on real images stays near a target. The stages
run in a fixed order: pixel blitting and general geometric transforms, color transforms, image
filtering, additive noise and cutout. Every stage is linear in the image, so gradients of any
order flow through the pipe, as R1 regularization needs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d
from training.networks_stylegan2 import record_init_kwargs

# Decomposition low-pass filters of two Symlet wavelets, with the values that PyWavelets returns
# as `pywt.Wavelet(name).dec_lo`. sym6 is the 2x
# resampling filter of the geometric stage, and sym2 builds the octave filter bank of the
# image-filtering stage. tests/test_augment.py checks their orthonormality and vanishing moments.
SYM2_DEC_LO = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
SYM6_DEC_LO = [
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
]  # fmt: skip

# Assumed power of natural images in the four octave bands of the image-filtering stage, lowest
# band first (a 1/f spectrum). Band gains are normalized so that this total power is kept.
IMGFILTER_EXPECTED_POWER = [10 / 13, 1 / 13, 1 / 13, 1 / 13]

# The --augpipe presets of train.py: strength 1 for each transform they name.
_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
AUGPIPE_SPECS = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": dict(**_BLIT, **_GEOM),
    "bgc": dict(**_BLIT, **_GEOM, **_COLOR),
    "bgcf": dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1),
    "bgcfn": dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1),
    "bgcfnc": dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1, cutout=1),
}

GEOMETRIC_STRENGTHS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR_STRENGTHS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
STRENGTHS = GEOMETRIC_STRENGTHS + COLOR_STRENGTHS + ("imgfilter", "noise", "cutout")

# ----------------------------------------------------------------------------
# ADA controller.


def ada_adjust(
    p: float,
    real_sign_mean: float,
    target: float = 0.6,
    batch_size: int = 32,
    interval: int = 4,
    ada_kimg: float = 500,
) -> float:
    """Return the next augmentation probability.

    p moves by batch_size * interval / (ada_kimg * 1000) up when the mean of sign(D(real))
    since the last adjustment exceeds `target` (D is overfitting), down when it is below, and
    stays when they are equal. It never goes below 0. It may exceed 1, where every transform is
    applied to every image. So p can go from 0 to 1 within ada_kimg thousand images.
    """
    for name, value in [("p", p), ("real_sign_mean", real_sign_mean), ("target", target)]:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"ada_adjust: {name} must be a finite number, got {value!r}")
    if p < 0:
        raise ValueError(f"ada_adjust: p must be >= 0, got {p}")
    if not -1 <= real_sign_mean <= 1:
        raise ValueError(
            f"ada_adjust: real_sign_mean is a mean of signs and must lie in [-1, 1], got "
            f"{real_sign_mean}"
        )
    for name, value in [("batch_size", batch_size), ("interval", interval), ("ada_kimg", ada_kimg)]:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"ada_adjust: {name} must be a positive number, got {value!r}")
    step = batch_size * interval / (ada_kimg * 1000)
    sign = float(np.sign(real_sign_mean - target))
    return max(p + sign * step, 0.0)


# ----------------------------------------------------------------------------
# Transform matrices [N, 3, 3] or [N, 4, 4] in homogeneous coordinates. Each argument is a tensor
# [N] or a number.


def _stack_matrices(rows: list[list], ref: torch.Tensor) -> torch.Tensor:
    """Build [N, R, C] from nested rows whose entries are tensors [N] or numbers."""
    entries = [
        torch.broadcast_to(torch.as_tensor(e, dtype=ref.dtype, device=ref.device), ref.shape)
        for row in rows
        for e in row
    ]
    return torch.stack(entries, dim=-1).reshape(*ref.shape, len(rows), len(rows[0]))


def translate2d(tx: torch.Tensor, ty) -> torch.Tensor:
    return _stack_matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy) -> torch.Tensor:
    return _stack_matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by theta radians from the +x axis (right) toward the +y axis (down), which
    looks clockwise on screen."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _stack_matrices([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def translate3d(t: torch.Tensor) -> torch.Tensor:
    """Add t to all three color channels."""
    return _stack_matrices([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def scale3d(s: torch.Tensor) -> torch.Tensor:
    """Multiply all three color channels by s."""
    return _stack_matrices([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation of RGB by theta radians around the unit vector `axis` [3] (Rodrigues' formula),
    as homogeneous matrices [N, 4, 4]."""
    x, y, z = (float(a) for a in axis)
    c, s = torch.cos(theta), torch.sin(theta)
    d = 1 - c
    rows = [
        [x * x * d + c, x * y * d - z * s, x * z * d + y * s, 0],
        [y * x * d + z * s, y * y * d + c, y * z * d - x * s, 0],
        [z * x * d - y * s, z * y * d + x * s, z * z * d + c, 0],
        [0, 0, 0, 1],
    ]
    return _stack_matrices(rows, theta)


# ----------------------------------------------------------------------------
# Random draws.


class _Draws:
    """Per-image random parameters from torch's default generator on `device`, or, with
    debug_percentile, every parameter set to that quantile of its distribution and every
    transform with a nonzero strength applied to every image."""

    def __init__(self, batch_size, device, p, debug_percentile):
        self.batch_size = batch_size
        self.device = device
        self.p = p
        self.debug_percentile = debug_percentile
        self.applied: list[torch.Tensor] = []  # Masks [N] of the gates drawn in this stage.

    def uniform(self, *shape: int) -> torch.Tensor:
        """Uniform in [0, 1), shape [N, *shape]."""
        size = [self.batch_size, *shape]
        if self.debug_percentile is not None:
            return torch.full(size, self.debug_percentile, device=self.device)
        return torch.rand(size, device=self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal, shape [N, *shape]."""
        size = [self.batch_size, *shape]
        if self.debug_percentile is not None:
            quantile = torch.erfinv(torch.tensor(2 * self.debug_percentile - 1.0)) * math.sqrt(2)
            return torch.full(size, float(quantile), device=self.device)
        return torch.randn(size, device=self.device)

    def integer(self, count: int) -> torch.Tensor:
        """Uniform integer in 0 .. count - 1, as float [N]."""
        return torch.floor(self.uniform() * count).clamp(max=count - 1)

    def gate(self, value, identity, strength: float, probability=None) -> torch.Tensor:
        """Keep `value` [N, ...] for images that draw this transform, `identity` elsewhere.
        The probability is p * strength unless given (a tensor or number)."""
        value = torch.as_tensor(value, device=self.device)
        if self.debug_percentile is not None:
            self.applied.append(torch.full([self.batch_size], strength > 0, device=self.device))
            return value if strength > 0 else torch.full_like(value, identity)
        if probability is None:
            probability = self.p * strength
        mask = torch.rand([self.batch_size], device=self.device) < probability
        self.applied.append(mask)
        mask = mask.reshape(-1, *[1] * (value.ndim - 1))
        return torch.where(mask, value, torch.full_like(value, identity))

    def any_applied(self) -> bool:
        """Return whether any image drew any transform since the last call (one device sync)."""
        masks, self.applied = self.applied, []
        return bool(masks) and bool(torch.stack(masks).any())


# ----------------------------------------------------------------------------
# Resampling.


def _mirror_indices(size: int, before: int, after: int, device) -> torch.Tensor:
    """Source indices of a reflect padding (edge sample not repeated) by any amount."""
    index = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def reflect_pad(images: torch.Tensor, px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
    """Reflect-pad images [N, C, H, W] by any number of pixels per side, as
    F.pad(mode='reflect') does up to size - 1. Built from index_select, whose derivatives of
    every order exist."""
    _, _, height, width = images.shape
    images = images.index_select(3, _mirror_indices(width, px0, px1, images.device))
    return images.index_select(2, _mirror_indices(height, py0, py1, images.device))


def bilinear_sample(images: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample images [N, C, H, W] bilinearly at pixel coordinates x, y [N, Ho, Wo], where pixel
    (row i, column j) sits at x = j, y = i. Samples outside the image count as 0.

    Returns [N, C, Ho, Wo]. Unlike grid_sample, this has derivatives of every order with
    respect to `images`: the corner indices and weights come from the coordinates, which get no
    gradient, and gather's backward is a scatter-add whose own backward is a gather. Indices and
    weights are computed in the coordinates' dtype, so float64 coordinates keep samples at
    integer positions exact for float32 images.
    """
    N, C, H, W = images.shape
    out_shape = [N, C, *x.shape[1:]]
    x = x.detach().reshape(N, 1, -1)
    y = y.detach().reshape(N, 1, -1)
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = (x - x0).to(images.dtype)
    fy = (y - y0).to(images.dtype)
    flat = images.reshape(N, C, H * W)
    out = None
    for dy, wy in [(0, 1 - fy), (1, fy)]:
        for dx, wx in [(0, 1 - fx), (1, fx)]:
            xi = x0 + dx
            yi = y0 + dy
            inside = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)
            index = yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)
            index = index.to(torch.int64).expand(N, C, -1)
            term = flat.gather(2, index) * (wx * wy * inside)
            out = term if out is None else out + term
    return out.reshape(out_shape)


def _resample_filter(dtype, device) -> tuple[torch.Tensor, float]:
    """Return the sym6 taps normalized to unit DC gain, as a separable filter [12] for
    upfirdn2d, and the offset of a low-res pixel on the 2x grid.

    upsample2d places low-res pixel k at 2k + centroid - 5 on the 2x grid, where the centroid
    sum(j * h[j]) / sum(h) (5.098 for sym6) is the filter's delay at low frequencies. The
    downsampling pass with the flipped filter reads the same offset back. The filter midpoint
    5.5 would also make the up-down pair exact, but a rotation or scaling would then move the
    image by about 0.2 px, because sym6 is not symmetric.
    """
    taps = np.asarray(SYM6_DEC_LO, dtype=np.float64)
    centroid = float(np.sum(np.arange(taps.size) * taps) / taps.sum())
    offset = centroid - (taps.size // 2 - 1)
    f = torch.as_tensor(taps / taps.sum(), dtype=dtype, device=device)
    return f, offset


def apply_geometric(images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """Resample images [N, C, H, W] through per-image matrices G_inv [N, 3, 3], which map output
    pixel coordinates to input pixel coordinates, both measured from the image center. Returns
    [N, C, H, W].

    The image is reflect-padded to cover the transformed corners, upsampled 2x with the sym6
    low-pass filter, sampled bilinearly and downsampled 2x with the same filter flipped. Without
    a transform, that up-down pair reproduces the image up to rounding, because sym6 is
    orthonormal to its even shifts. Integer translations are therefore exact as well.
    """
    N, C, H, W = images.shape
    f, offset = _resample_filter(images.dtype, images.device)
    margin = f.numel() // 4  # Low-res pixels that each filter reaches beyond a sample.
    # Coordinates in float64 keep samples that should land on the 2x grid exactly on it.
    G_inv = G_inv.to(device=images.device, dtype=torch.float64)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    mx0, mx1, my0, my1 = _geometric_padding(G_inv, W, H, margin)
    images = reflect_pad(images, mx0, mx1, my0, my1)
    images = upfirdn2d.upsample2d(images, f, up=2)

    # Output samples on the 2x grid, padded by `margin` low-res pixels for the downsampling
    # filter, as output coordinates from the image center.
    grid_x = torch.arange(2 * (W + 2 * margin), device=images.device, dtype=torch.float64)
    grid_y = torch.arange(2 * (H + 2 * margin), device=images.device, dtype=torch.float64)
    out_x = (grid_x - offset) / 2 - margin - cx
    out_y = (grid_y - offset) / 2 - margin - cy
    out_y, out_x = torch.meshgrid(out_y, out_x, indexing="ij")
    src_x = G_inv[:, 0, 0, None, None] * out_x + G_inv[:, 0, 1, None, None] * out_y
    src_y = G_inv[:, 1, 0, None, None] * out_x + G_inv[:, 1, 1, None, None] * out_y
    src_x = src_x + G_inv[:, 0, 2, None, None]
    src_y = src_y + G_inv[:, 1, 2, None, None]
    u = 2 * (src_x + cx + mx0) + offset
    v = 2 * (src_y + cy + my0) + offset
    images = bilinear_sample(images, u, v)

    # The flipped filter undoes the upsampling filter's phase, and the negative padding crops
    # the margin.
    return upfirdn2d.downsample2d(images, f, down=2, padding=-2 * margin, flip_filter=True)


def _geometric_padding(G_inv, width, height, margin) -> list[int]:
    """Return [x0, x1, y0, y1]: the reflect padding (at most size - 1, zeros beyond) that keeps
    every sample of any image in the batch, plus the filter margin, inside real or mirrored
    pixels."""
    hx = (width - 1) / 2 + margin + 0.5
    hy = (height - 1) / 2 + margin + 0.5
    corners = torch.tensor(
        [[-hx, hx, hx, -hx], [-hy, -hy, hy, hy], [1, 1, 1, 1]],
        dtype=G_inv.dtype,
        device=G_inv.device,
    )
    src = G_inv @ corners  # [N, 3, 4]
    low = src[:, :2].amin(dim=(0, 2))
    high = src[:, :2].amax(dim=(0, 2))
    half = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=G_inv.dtype, device=G_inv.device)
    pad0 = (-low - half + margin).ceil().clamp(min=0)
    pad1 = (high - half + margin).ceil().clamp(min=0)
    limit = torch.tensor([width - 1, height - 1], dtype=G_inv.dtype, device=G_inv.device)
    pad0 = torch.minimum(pad0, limit).tolist()
    pad1 = torch.minimum(pad1, limit).tolist()
    return [int(pad0[0]), int(pad1[0]), int(pad0[1]), int(pad1[1])]


def apply_blit(images: torch.Tensor, flip: torch.Tensor, quarter_turns: torch.Tensor):
    """Mirror images [N, C, H, W] horizontally where flip [N] is 1, then rotate them by
    quarter_turns [N] (0 .. 3) times 90 degrees as rotate2d turns (clockwise on screen). These
    are exact pixel permutations. The resampling path would only approximate a mirror image,
    because the asymmetric sym6 filter's phase is not undone across a flipped axis."""
    flip = flip.reshape(-1, 1, 1, 1)
    images = torch.where(flip > 0, images.flip(3), images)
    out = images
    for k in (1, 2, 3):
        turned = images.rot90(k, dims=(3, 2))
        out = torch.where(quarter_turns.reshape(-1, 1, 1, 1) == k, turned, out)
    return out


# ----------------------------------------------------------------------------
# Color and filtering.

LUMA_AXIS = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)  # Gray in homogeneous RGB.


def apply_color(images: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Apply homogeneous RGB matrices M [N, 4, 4] to images [N, C, H, W] with C = 3, or C = 1,
    where the gray image is treated as RGB with three equal channels and the result is the mean
    of the three output channels."""
    N, C, H, W = images.shape
    M = M.to(device=images.device, dtype=images.dtype)
    if C == 3:
        out = M[:, :3, :3] @ images.reshape(N, 3, H * W) + M[:, :3, 3:]
        return out.reshape(N, C, H, W)
    if C == 1:
        gain = M[:, :3, :3].sum(dim=2).mean(dim=1).reshape(N, 1, 1, 1)
        offset = M[:, :3, 3].mean(dim=1).reshape(N, 1, 1, 1)
        return images * gain + offset
    raise ValueError(f"Color transforms need 1 or 3 image channels, got {C}")


def octave_filter_bank(taps=SYM2_DEC_LO) -> np.ndarray:
    """Return [4, L] float64: four zero-phase FIR filters, lowest octave first, that split an
    image row into octave bands and sum to the unit impulse.

    From a wavelet low-pass h and its mirror g[k] = (-1)^k h[k], the half-band pair
    lo = (h * h[::-1]) / 2 and hi = (g * g[::-1]) / 2 sums to the impulse. Band 3 is hi, band 2
    is lo * hi dilated 2x, band 1 is lo * (lo dilated 2x) * hi dilated 4x, and band 0 keeps the
    low-pass product of all three levels.
    """
    h = np.asarray(taps, dtype=np.float64)
    g = h * (-1.0) ** np.arange(h.size)
    lo = np.convolve(h, h[::-1]) / 2
    hi = np.convolve(g, g[::-1]) / 2
    bands = []
    low_product = np.ones(1)
    for level in range(3):
        bands.append(np.convolve(low_product, _dilate(hi, 2**level)))
        low_product = np.convolve(low_product, _dilate(lo, 2**level))
    bands.append(low_product)
    length = max(b.size for b in bands)
    bank = np.zeros([4, length])
    for row, band in enumerate(reversed(bands)):
        start = (length - band.size) // 2
        bank[row, start : start + band.size] = band
    return bank


def _dilate(taps: np.ndarray, factor: int) -> np.ndarray:
    """Insert factor - 1 zeros between taps."""
    out = np.zeros((taps.size - 1) * factor + 1)
    out[::factor] = taps
    return out


def apply_separable_filters(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Filter each image [C, H, W] of images [N, C, H, W] along x and then y with its own
    odd-length, symmetric 1D filter taps [N, L], reflect-padding the borders."""
    N, C, H, W = images.shape
    length = taps.shape[1]
    pad = length // 2
    weight = taps.to(images.dtype).repeat_interleave(C, dim=0)  # [N * C, L]
    x = reflect_pad(images, pad, pad, pad, pad).reshape(1, N * C, H + 2 * pad, W + 2 * pad)
    x = F.conv2d(x, weight.reshape(N * C, 1, 1, length), groups=N * C)
    x = F.conv2d(x, weight.reshape(N * C, 1, length, 1), groups=N * C)
    return x.reshape(N, C, H, W)


# ----------------------------------------------------------------------------


class AugmentPipe(torch.nn.Module):
    """The ADA augmentation pipeline. Each strength multiplies p to give the probability of its
    transform per image, and 0 turns the transform off. Images are [N, C, H, W], float, roughly in
    [-1, 1]. Color transforms need C = 1 or 3, and rotate90 needs H = W."""

    def __init__(
        self,
        xflip: float = 0,  # Mirror horizontally with probability 1/2.
        rotate90: float = 0,  # Rotate by 0, 90, 180 or 270 degrees, uniformly.
        xint: float = 0,  # Integer translation, uniform in +-xint_max of the image size.
        xint_max: float = 0.125,  # Largest integer translation, as a fraction of the size.
        scale: float = 0,  # Isotropic scaling by 2 ** N(0, scale_std).
        rotate: float = 0,  # Rotation, uniform in +-rotate_max * pi, before and after aniso.
        aniso: float = 0,  # Scaling x by 2 ** N(0, aniso_std) and y by its inverse.
        xfrac: float = 0,  # Fractional translation, N(0, xfrac_std) times the image size.
        scale_std: float = 0.2,  # Standard deviation of log2 of the isotropic scale.
        rotate_max: float = 1,  # Largest rotation, in half turns (1 = 180 degrees).
        aniso_std: float = 0.2,  # Standard deviation of log2 of the anisotropic scale.
        xfrac_std: float = 0.125,  # Standard deviation of xfrac, as a fraction of the size.
        brightness: float = 0,  # Add N(0, brightness_std) to every channel.
        contrast: float = 0,  # Multiply every channel by 2 ** N(0, contrast_std).
        lumaflip: float = 0,  # Negate the luma (gray) part, keeping chroma, with prob. 1/2.
        hue: float = 0,  # Rotate colors around the gray axis, uniform in +-hue_max * pi.
        saturation: float = 0,  # Scale the chroma (non-gray) part by 2 ** N(0, saturation_std).
        brightness_std: float = 0.2,  # Standard deviation of the brightness offset.
        contrast_std: float = 0.5,  # Standard deviation of log2 of the contrast factor.
        hue_max: float = 1,  # Largest hue rotation, in half turns.
        saturation_std: float = 1,  # Standard deviation of log2 of the saturation factor.
        imgfilter: float = 0,  # Amplify or attenuate each of 4 octave bands.
        imgfilter_bands: list | None = None,  # Strength per band, lowest first. None = [1] * 4.
        imgfilter_std: float = 1,  # Standard deviation of log2 of each band's gain.
        noise: float = 0,  # Add Gaussian noise of standard deviation |N(0, noise_std)|.
        cutout: float = 0,  # Zero a square of side cutout_size at a uniform random center.
        noise_std: float = 0.1,  # Scale of the noise standard deviation.
        cutout_size: float = 0.5,  # Side of the cutout square, as a fraction of the size.
    ):
        super().__init__()
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        kwargs["imgfilter_bands"] = [1, 1, 1, 1] if imgfilter_bands is None else imgfilter_bands
        _check_init_kwargs(kwargs)
        record_init_kwargs(self, **kwargs)
        for name, value in kwargs.items():
            setattr(self, name, list(value) if name == "imgfilter_bands" else float(value))
        self.register_buffer("p", torch.zeros([]))  # Current probability, saved in snapshots.
        bank = torch.as_tensor(octave_filter_bank(), dtype=torch.float32)
        self.register_buffer("imgfilter_bank", bank, persistent=False)  # [4, taps]

    def extra_repr(self) -> str:
        enabled = [f"{k}={getattr(self, k):g}" for k in STRENGTHS if getattr(self, k) != 0]
        return f"p={float(self.p):g}, " + ", ".join(enabled or ["no transforms"])

    def forward(self, images: torch.Tensor, debug_percentile: float | None = None) -> torch.Tensor:
        """Augment images [N, C, H, W] and return [N, C, H, W] of the same dtype and device.

        debug_percentile (in [0, 1]) replaces every random parameter by that quantile of its
        distribution and applies every enabled transform to every image, so the output is
        deterministic except for the per-pixel noise. At rotate, only the rotation before
        aniso turns the image then.
        """
        self._check_input(images, debug_percentile)
        draws = _Draws(images.shape[0], images.device, self.p.to(images.device), debug_percentile)
        images = self._geometric(images, draws)
        images = self._color(images, draws)
        images = self._imgfilter(images, draws)
        images = self._noise(images, draws)
        return self._cutout(images, draws)

    def _check_input(self, images, debug_percentile) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(
                f"Invalid images for AugmentPipe: expected a tensor [N, C, H, W], got "
                f"{list(images.shape) if isinstance(images, torch.Tensor) else type(images)}"
            )
        if not images.is_floating_point():
            raise ValueError(
                f"Invalid images for AugmentPipe: expected a float dtype, got {images.dtype}"
            )
        channels, height, width = images.shape[1:]
        if channels not in (1, 3) and any(getattr(self, k) for k in COLOR_STRENGTHS):
            raise ValueError(
                f"AugmentPipe color transforms ({', '.join(COLOR_STRENGTHS)}) need 1 or 3 image "
                f"channels, got {channels}; set their strengths to 0 for these images"
            )
        if self.rotate90 and height != width:
            raise ValueError(
                f"AugmentPipe rotate90 needs square images, got {height}x{width}. Set rotate90=0 for them"
            )
        if debug_percentile is not None and not 0 <= debug_percentile <= 1:
            raise ValueError(
                f"Invalid debug_percentile {debug_percentile}: expected a number in [0, 1]"
            )

    # ------------------------------------------------------------------------
    # Stages. Each draws its parameters, then skips its work when no image drew a transform.

    def _geometric(self, images: torch.Tensor, draws: _Draws) -> torch.Tensor:
        N, _, height, width = images.shape
        zeros = torch.zeros([N], device=images.device)
        flip = draws.gate(draws.integer(2), 0, self.xflip) if self.xflip else zeros
        turns = draws.gate(draws.integer(4), 0, self.rotate90) if self.rotate90 else zeros
        if draws.any_applied():
            images = apply_blit(images, flip, turns)
        G_inv = self._sample_geometric_matrix(draws, width, height)
        if draws.any_applied():
            images = apply_geometric(images, G_inv)
        return images

    def _sample_geometric_matrix(self, draws: _Draws, width: int, height: int) -> torch.Tensor:
        """Return G_inv [N, 3, 3] for xint, scale, rotate, aniso, rotate and xfrac, in that
        order. Each step right-multiplies the inverse of its transform."""
        size = torch.tensor([width, height], device=draws.device)
        G_inv = torch.eye(3, device=draws.device).repeat(draws.batch_size, 1, 1)
        if self.xint:
            t = draws.gate((draws.uniform(2) * 2 - 1) * self.xint_max, 0, self.xint)
            t = torch.round(t * size)
            G_inv = G_inv @ translate2d(-t[:, 0], -t[:, 1])
        if self.scale:
            s = draws.gate(torch.exp2(draws.normal() * self.scale_std), 1, self.scale)
            G_inv = G_inv @ scale2d(1 / s, 1 / s)
        # The two rotations together happen with probability p * rotate.
        p_rot = 1 - torch.sqrt((1 - self.rotate * draws.p).clamp(0, 1))
        if self.rotate:
            theta = (draws.uniform() * 2 - 1) * math.pi * self.rotate_max
            theta = draws.gate(theta, 0, self.rotate, probability=p_rot)
            G_inv = G_inv @ rotate2d(-theta)
        if self.aniso:
            s = draws.gate(torch.exp2(draws.normal() * self.aniso_std), 1, self.aniso)
            G_inv = G_inv @ scale2d(1 / s, s)
        if self.rotate and draws.debug_percentile is None:
            theta = (draws.uniform() * 2 - 1) * math.pi * self.rotate_max
            theta = draws.gate(theta, 0, self.rotate, probability=p_rot)
            G_inv = G_inv @ rotate2d(-theta)
        if self.xfrac:
            t = draws.gate(draws.normal(2) * self.xfrac_std, 0, self.xfrac)
            G_inv = G_inv @ translate2d(-t[:, 0] * width, -t[:, 1] * height)
        return G_inv

    def _color(self, images: torch.Tensor, draws: _Draws) -> torch.Tensor:
        N = images.shape[0]
        v = LUMA_AXIS.to(images.device)
        identity = torch.eye(4, device=images.device)
        M = identity.repeat(N, 1, 1)
        if self.brightness:
            b = draws.gate(draws.normal() * self.brightness_std, 0, self.brightness)
            M = translate3d(b) @ M
        if self.contrast:
            c = draws.gate(torch.exp2(draws.normal() * self.contrast_std), 1, self.contrast)
            M = scale3d(c) @ M
        if self.lumaflip:
            # Householder reflection through the plane normal to gray: gray g becomes -g.
            i = draws.gate(draws.integer(2), 0, self.lumaflip)
            M = (identity - 2 * torch.outer(v, v) * i.reshape(N, 1, 1)) @ M
        if self.hue:
            theta = draws.gate((draws.uniform() * 2 - 1) * math.pi * self.hue_max, 0, self.hue)
            M = rotate3d(v[:3], theta) @ M
        if self.saturation:
            s = draws.gate(torch.exp2(draws.normal() * self.saturation_std), 1, self.saturation)
            gray = torch.outer(v, v)
            M = (gray + (identity - gray) * s.reshape(N, 1, 1)) @ M
        if draws.any_applied():
            images = apply_color(images, M)
        return images

    def _imgfilter(self, images: torch.Tensor, draws: _Draws) -> torch.Tensor:
        if not self.imgfilter:
            return images
        N = images.shape[0]
        power = torch.tensor(IMGFILTER_EXPECTED_POWER, device=images.device)
        gains = torch.ones([N, 4], device=images.device)
        for band, band_strength in enumerate(self.imgfilter_bands):
            gain = torch.exp2(draws.normal() * self.imgfilter_std)
            gain = draws.gate(gain, 1, self.imgfilter * band_strength)
            band_gains = torch.ones([N, 4], device=images.device)
            band_gains[:, band] = gain
            band_gains = band_gains / (power * band_gains.square()).sum(dim=1, keepdim=True).sqrt()
            gains = gains * band_gains
        if draws.any_applied():
            images = apply_separable_filters(images, gains @ self.imgfilter_bank)
        return images

    def _noise(self, images: torch.Tensor, draws: _Draws) -> torch.Tensor:
        if not self.noise:
            return images
        sigma = draws.gate(draws.normal().abs() * self.noise_std, 0, self.noise)
        if draws.any_applied():
            noise = torch.randn(images.shape, device=images.device, dtype=images.dtype)
            images = images + noise * sigma.to(images.dtype).reshape(-1, 1, 1, 1)
        return images

    def _cutout(self, images: torch.Tensor, draws: _Draws) -> torch.Tensor:
        if not self.cutout:
            return images
        N, _, height, width = images.shape
        side = draws.gate(torch.full([N], self.cutout_size, device=images.device), 0, self.cutout)
        center = draws.uniform(2)
        if draws.any_applied():
            x = (torch.arange(width, device=images.device) + 0.5) / width
            y = (torch.arange(height, device=images.device) + 0.5) / height
            outside_x = (x.reshape(1, 1, 1, -1) - center[:, 0, None, None, None]).abs()
            outside_y = (y.reshape(1, 1, -1, 1) - center[:, 1, None, None, None]).abs()
            half = side.reshape(-1, 1, 1, 1) / 2
            keep = (outside_x >= half) | (outside_y >= half)
            images = images * keep.to(images.dtype)
        return images


def _check_init_kwargs(kwargs: dict) -> None:
    """Raise ValueError naming the first invalid AugmentPipe argument."""
    for name, value in kwargs.items():
        if name == "imgfilter_bands":
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"AugmentPipe: {name} must be a finite number >= 0, got {value!r}")
    bands = kwargs["imgfilter_bands"]
    if not isinstance(bands, (list, tuple)) or len(bands) != 4:
        raise ValueError(
            f"AugmentPipe: imgfilter_bands must list 4 band strengths, lowest band first, "
            f"got {bands!r}"
        )
    if not all(isinstance(b, (int, float)) and math.isfinite(b) and b >= 0 for b in bands):
        raise ValueError(f"AugmentPipe: imgfilter_bands must be numbers >= 0, got {bands!r}")
    if kwargs["cutout_size"] > 1:
        raise ValueError(
            f"AugmentPipe: cutout_size is a fraction of the image size and must be <= 1, "
            f"got {kwargs['cutout_size']}"
        )
