"""Equivariance metrics of StyleGAN3 (Karras et al., "Alias-Free Generative Adversarial
Networks", NeurIPS 2021, appendix on equivariance metrics): EQ-T with integer and fractional
translations and EQ-R with rotations. Each is the PSNR in dB between a generator's output for a
transformed input and the same transform applied to its untransformed output.

Coordinates follow the StyleGAN3 synthesis input: x runs along the width, y down the rows, the
image spans [-0.5, 0.5] along both, and a rotation by a positive angle turns x toward y. Offsets
are drawn in image widths and applied in pixels (img_resolution pixels per width).

Resampling uses the Lanczos-3 kernel L(u) = sinc(u) sinc(u / 3) for |u| < 3, else 0, with
u in pixels:
- EQ-T int shifts by whole pixels, which is exact.
- EQ-T frac resamples each axis with L at the fractional offset, its taps scaled to unit sum.
- EQ-R upsamples 4x with a radially symmetric low-pass (a jinc with its cutoff at the
  original Nyquist frequency, 0.5 cycles per pixel, under a radial Lanczos-3 window), rotates
  the upsampled image with bilinear sampling and downsamples 4x with the same low-pass. The
  generator's rotated output goes through the same upsampling and downsampling without the
  rotation (a "pseudo rotation"), so both sides lose the same high frequencies. Because the
  filter is radial, its attenuation is the same at every angle. NOTE: the gain of upsampling
  then downsampling is not flat (measured on a cosine: 1.01 at 0.05 cycles per pixel, 1.09 at
  0.2, 0.68 at 0.4), so EQ-R weighs errors near the Nyquist frequency less than EQ-T does.

A mask keeps only pixels whose reference and generated values depend on no pixel outside the
original image, counting the full support of every filter. The EQ-R mask bounds that support
by boxes, so it drops a few pixels that are in fact valid.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from metrics import metric_utils

KINDS = ("eqt_int", "eqt_frac", "eqr")

# Third entry of the seed of each sample's offset or angle, so the three kinds draw
# independently of each other and of the latents (which use the seed (seed, index)).
_KIND_SEEDS = {"eqt_int": 1, "eqt_frac": 2, "eqr": 3}

LANCZOS_A = 3  # Lanczos kernel radius, in pixels.
ROTATION_UP = 4  # Upsampling factor around the EQ-R rotation.
PSNR_MAX_SQUARED = 4.0  # Squared dynamic range of images in [-1, 1].

# ----------------------------------------------------------------------------
# PSNR.


def psnr_from_sums(squared_error_sum: float, num_values: float) -> float:
    """Return 20 log10(2) - 10 log10(MSE) in dB with MSE = squared_error_sum / num_values (the
    masked values of all samples and channels). An MSE of 0 gives float('inf')."""
    if num_values <= 0:
        raise ValueError(
            f"No pixels remain after masking ({num_values} values), so the PSNR is undefined. "
            f"Use larger images or a smaller translate_max."
        )
    if squared_error_sum == 0:
        return float("inf")
    return float(10 * np.log10(PSNR_MAX_SQUARED) - 10 * np.log10(squared_error_sum / num_values))


def masked_squared_error(
    ref: torch.Tensor, img: torch.Tensor, mask: torch.Tensor
) -> tuple[float, float]:
    """Return (sum of mask * (ref - img)^2, number of masked values) in float64 for images
    [N, C, H, W] and a mask [N, 1, H, W] of 0s and 1s."""
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != ref.shape[0]:
        raise ValueError(f"Mask shape {list(mask.shape)} does not fit images {list(ref.shape)}.")
    diff = (ref.double() - img.double()).square() * mask.double()
    return float(diff.sum()), float(mask.double().sum()) * ref.shape[1]


# ----------------------------------------------------------------------------
# Translation.


def lanczos(u: np.ndarray, a: int = LANCZOS_A) -> np.ndarray:
    """Lanczos kernel sinc(u) sinc(u / a) for |u| < a, else 0 (np.sinc is sin(pi u) / (pi u))."""
    u = np.asarray(u, dtype=np.float64)
    return np.where(np.abs(u) < a, np.sinc(u) * np.sinc(u / a), 0.0)


def _shift_taps(shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Return integer offsets d and weights w with out[i] = sum_k w_k in[i - d_k], which
    samples the input at i - shift: one tap for a whole-pixel shift, else 2 * LANCZOS_A Lanczos
    taps scaled to unit sum."""
    if shift == round(shift):
        return np.array([int(round(shift))]), np.ones([1])
    base = math.floor(shift)
    offsets = np.arange(base - LANCZOS_A + 1, base + LANCZOS_A + 1)
    weights = lanczos(offsets - shift)
    return offsets, weights / weights.sum()


def _shift_axis(x: torch.Tensor, offset: int, dim: int) -> torch.Tensor:
    """Return y with y[i] = x[i - offset] along `dim`, zero where i - offset is outside."""
    size = x.shape[dim]
    y = torch.zeros_like(x)
    if abs(offset) >= size:
        return y
    if offset >= 0:
        y.narrow(dim, offset, size - offset).copy_(x.narrow(dim, 0, size - offset))
    else:
        y.narrow(dim, 0, size + offset).copy_(x.narrow(dim, -offset, size + offset))
    return y


def _valid_axis(size: int, offsets: np.ndarray, device: torch.device) -> torch.Tensor:
    """Bool [size]: output positions i whose taps i - d all fall inside [0, size)."""
    i = torch.arange(size, device=device)
    return (i - int(offsets.max()) >= 0) & (i - int(offsets.min()) < size)


def translate_image(img: torch.Tensor, dx: float, dy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the content of one image [C, H, W] by (dx, dy) pixels (x along the width).
    Returns the moved image [C, H, W] and its mask [1, H, W] of pixels computed only from
    pixels inside the image. Whole-pixel offsets copy pixels, and fractional ones use
    Lanczos-3."""
    out = img
    masks = []
    for shift, dim in [(dx, 2), (dy, 1)]:
        offsets, weights = _shift_taps(float(shift))
        out = sum(float(w) * _shift_axis(out, int(d), dim) for d, w in zip(offsets, weights))
        masks.append(_valid_axis(img.shape[dim], offsets, img.device))
    mask = masks[1].reshape(-1, 1) & masks[0].reshape(1, -1)
    return out, mask.unsqueeze(0).to(img.dtype)


# ----------------------------------------------------------------------------
# Rotation.


def radial_lowpass_taps(up: int = ROTATION_UP, a: int = LANCZOS_A) -> torch.Tensor:
    """Return float64 taps [2 a up, 2 a up] on the up-times finer grid: the jinc low-pass with
    cutoff 0.5 cycles per original pixel, J1(pi r) / (2 r), times the radial window
    sinc(r / a) for r < a (r in original pixels), scaled to unit sum. Tap centers lie
    half a fine sample off the original pixel centers, which is where the fine samples are."""
    coords = (np.arange(2 * a * up) - a * up + 0.5) / up
    r = np.hypot(*np.meshgrid(coords, coords, indexing="ij"))
    taps = scipy.special.j1(np.pi * r) / (2 * r) * np.where(r < a, np.sinc(r / a), 0.0)
    return torch.from_numpy(taps / taps.sum())


def upsample_image(x: torch.Tensor, taps: torch.Tensor, up: int = ROTATION_UP) -> torch.Tensor:
    """Upsample [N, C, H, W] to [N, C, up H, up W] with the low-pass `taps`, reading zeros
    outside the image. Fine sample u of a row lies at (u + 0.5) / up original pixels."""
    channels = x.shape[1]
    weight = (taps * up * up).to(x).expand(channels, 1, *taps.shape)
    padding = taps.shape[-1] // 2 - up // 2
    return F.conv_transpose2d(x, weight, stride=up, padding=padding, groups=channels)


def downsample_image(x: torch.Tensor, taps: torch.Tensor, up: int = ROTATION_UP) -> torch.Tensor:
    """Low-pass filter [N, C, up H, up W] with `taps` and keep the samples at the original
    pixel centers: [N, C, H, W]. Zeros are read outside the image."""
    channels = x.shape[1]
    weight = taps.to(x).expand(channels, 1, *taps.shape)
    padding = taps.shape[-1] // 2 - up // 2
    return F.conv2d(x, weight, stride=up, padding=padding, groups=channels)


def rotation_matrix(angle: float) -> np.ndarray:
    """3x3 homogeneous rotation by `angle` radians about the origin, turning x toward y."""
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], dtype=np.float64)


def _rotate_fine(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate [1, C, H, W] by `angle` about its center with bilinear sampling, zeros outside."""
    theta = torch.from_numpy(rotation_matrix(-angle)[:2]).to(x).unsqueeze(0)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_mask(size: int, angle: float, device: torch.device) -> torch.Tensor:
    """Float [1, size, size]: 1 where both the rotated reference and the pseudo-rotated image
    depend only on pixels inside the image.

    Output pixel p reads fine samples within LANCZOS_A pixels per axis. For the reference those
    fine samples come from points within LANCZOS_A (|cos| + |sin|) of R(-angle) p per axis,
    each read by bilinear sampling (1 / ROTATION_UP) from fine samples that read original
    pixels within LANCZOS_A. The pseudo rotation reads within 2 LANCZOS_A of p itself."""
    a, half = LANCZOS_A, size / 2
    coords = torch.arange(size, device=device, dtype=torch.float64) + 0.5 - half
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    src_x, src_y = cos * x + sin * y, -sin * x + cos * y  # R(-angle) p.
    reach_ref = a * (abs(cos) + abs(sin)) + 1 / ROTATION_UP + a
    reach_pseudo = 2 * a
    # Pixel centers lie at -half + 0.5, ..., half - 0.5, so a point q reads only pixels inside
    # when every center within `reach` of q (exclusive) is one of them.
    limit = half + 0.5
    ok_ref = (src_x.abs() + reach_ref <= limit) & (src_y.abs() + reach_ref <= limit)
    ok_pseudo = (x.abs() + reach_pseudo <= limit) & (y.abs() + reach_pseudo <= limit)
    return (ok_ref & ok_pseudo).unsqueeze(0).float()


def rotate_pair(
    orig: torch.Tensor, img: torch.Tensor, angle: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (reference, pseudo-rotated image, mask) for one sample.

    The reference is the untransformed output orig [C, H, W] rotated by `angle` radians through
    the 4x upsampled grid. The pseudo-rotated image is the generator's rotated output img
    [C, H, W] passed through the same filters without rotating. The mask [1, H, W] marks the
    pixels of both that depend only on pixels inside the image."""
    taps = radial_lowpass_taps()
    ref = downsample_image(_rotate_fine(upsample_image(orig[None], taps), angle), taps)
    pseudo = downsample_image(upsample_image(img[None], taps), taps)
    mask = rotation_mask(orig.shape[-1], angle, orig.device).to(orig.dtype)
    return ref[0], pseudo[0], mask


# ----------------------------------------------------------------------------
# The metric.


def draw_motion(
    seed: int, index: int, kind: str, translate_max: float, rotate_max: float, resolution: int
) -> np.ndarray:
    """Return the 3x3 motion of sample `index`'s content, in image widths, drawn from its own
    generator seeded with (seed, index, a constant per kind). EQ-T draws each axis's offset
    uniformly in [-translate_max, translate_max], rounded to whole pixels for eqt_int. EQ-R
    draws the angle uniformly in [-rotate_max pi, rotate_max pi]."""
    rng = np.random.default_rng([seed, index, _KIND_SEEDS[kind]])
    if kind == "eqr":
        return rotation_matrix(rng.uniform(-1, 1) * rotate_max * np.pi)
    offset = rng.uniform(-translate_max, translate_max, size=2)
    if kind == "eqt_int":
        offset = np.round(offset * resolution) / resolution
    motion = np.eye(3)
    motion[:2, 2] = offset
    return motion


def _check_arguments(num_samples: int, kind: str, translate_max: float, rotate_max: float):
    if kind not in KINDS:
        raise ValueError(f"Unknown equivariance kind {kind!r}, expected one of {KINDS}.")
    if num_samples < 1:
        raise ValueError(f"Invalid num_samples={num_samples}: it must be 1 or more.")
    if not 0 <= translate_max < 0.5:
        raise ValueError(f"Invalid translate_max={translate_max}: expected [0, 0.5) image widths.")
    if not 0 <= rotate_max <= 1:
        raise ValueError(f"Invalid rotate_max={rotate_max}: expected [0, 1] (units of pi).")


def _prepare_generator(opts: metric_utils.MetricOptions) -> torch.nn.Module:
    """Return an eval-mode copy of opts.G on opts.device, checking it has a transformable input."""
    if opts.G is None:
        raise ValueError("Equivariance metrics need a generator: pass G to calc_metric().")
    net_input = getattr(getattr(opts.G, "synthesis", None), "input", None)
    if not isinstance(getattr(net_input, "transform", None), torch.Tensor):
        raise ValueError(
            f"eq metrics need a StyleGAN3 generator whose synthesis.input has a transform "
            f"buffer, but this {type(opts.G).__module__}.{type(opts.G).__name__} has none "
            f"(StyleGAN2 and BigGAN generators have no transformable input). Use fid or kid "
            f"metrics for this network."
        )
    return metric_utils.evaluation_copy(opts)


def synthesize(G: torch.nn.Module, ws: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """Run G.synthesis on ws with the input transform `transform` ([3, 3] or [N, 3, 3]) in
    place of its buffer, which is restored afterwards, also on error."""
    net_input = G.synthesis.input
    saved = net_input.transform
    try:
        net_input.transform = transform.to(saved)
        return G.synthesis(ws, noise_mode="const", force_fp32=True)
    finally:
        net_input.transform = saved


def _sample_error(
    orig: torch.Tensor, img: torch.Tensor, motion: np.ndarray, kind: str
) -> tuple[float, float]:
    """Return the masked squared error sum and value count of one sample [C, H, W]."""
    resolution = orig.shape[-1]
    if kind == "eqr":
        angle = math.atan2(motion[1, 0], motion[0, 0])
        ref, img, mask = rotate_pair(orig, img, angle)
    else:
        dx, dy = motion[:2, 2] * resolution
        if kind == "eqt_int":
            dx, dy = round(dx), round(dy)
        ref, mask = translate_image(orig, dx, dy)
    return masked_squared_error(ref[None], img[None], mask[None])


def _batch_error(G, opts, indices, kind, translate_max, rotate_max) -> tuple[float, float]:
    """Return the squared error sum and value count of the samples `indices`."""
    dataset = opts.dataset if G.c_dim > 0 else None  # Only labels come from the dataset.
    z, c = metric_utils.sample_latents(indices, G.z_dim, G.c_dim, dataset, opts.seed)
    res = G.img_resolution
    motions = [draw_motion(opts.seed, i, kind, translate_max, rotate_max, res) for i in indices]
    inverse = torch.from_numpy(np.stack([np.linalg.inv(m) for m in motions]))
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(z).to(opts.device), torch.from_numpy(c).to(opts.device))
        orig = synthesize(G, ws, torch.eye(3))
        img = synthesize(G, ws, inverse)
        errors = [_sample_error(orig[k], img[k], m, kind) for k, m in enumerate(motions)]
    return sum(e[0] for e in errors), sum(e[1] for e in errors)


def compute_equivariance(
    opts: metric_utils.MetricOptions,
    num_samples: int,
    kind: str,
    translate_max: float = 0.125,
    rotate_max: float = 1.0,
) -> tuple[float, dict]:
    """Return the PSNR in dB of `kind` ('eqt_int', 'eqt_frac' or 'eqr') over `num_samples`
    samples, and dict(num_gen=num_samples). translate_max is in image widths, rotate_max in
    units of pi. The MSE is the mean over every masked pixel and channel of all samples, and
    an MSE of 0 gives float('inf'). Ranks other than 0 return NaN as the value.

    Each rank computes its share of the samples (metric_utils.shard_indices without the
    padding) and the sums are all-reduced, so the value does not depend on the batch size
    or the process count beyond float64 rounding.
    """
    _check_arguments(num_samples, kind, translate_max, rotate_max)
    G = _prepare_generator(opts)
    num_own = len(range(opts.rank, num_samples, opts.num_gpus))
    indices = metric_utils.shard_indices(num_samples, opts.num_gpus, opts.rank)[:num_own]
    monitor = metric_utils.ProgressMonitor(f"Equivariance {kind}", num_samples, opts.progress)
    sums = np.zeros(2, dtype=np.float64)  # Squared error sum, masked value count.
    for start in range(0, num_own, opts.batch_size):
        batch = indices[start : start + opts.batch_size]
        sums += _batch_error(G, opts, batch, kind, translate_max, rotate_max)
        monitor.update(min((start + len(batch)) * opts.num_gpus, num_samples))

    if opts.num_gpus > 1:
        totals = torch.from_numpy(sums).to(opts.device)
        torch.distributed.all_reduce(totals)
        sums = totals.cpu().numpy()
    info = dict(num_gen=num_samples)
    if opts.rank != 0:
        return float("nan"), info
    return psnr_from_sums(float(sums[0]), float(sums[1])), info
