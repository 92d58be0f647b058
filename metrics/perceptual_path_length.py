"""Perceptual path length (PPL) from "A Style-Based Generator Architecture for Generative
Adversarial Networks" (Karras et al., 2019), with the variants of "Analyzing and Improving the
Image Quality of StyleGAN" (Karras et al., 2020).

PPL measures how much the image changes along an interpolation path between two latents. Each
sample takes two points epsilon apart on the path (spherical interpolation in z, linear in w),
renders both with the same per-pixel noise and reports their LPIPS distance divided by
epsilon^2. The metric is the mean of these values after dropping the lowest and highest 1%.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from metrics import metric_utils

SPACES = ("z", "w")  # Interpolate the input latents z, or the mapping network's output w.
SAMPLINGS = ("full", "end")  # t ~ U(0, 1) along the whole path, or t = 0 at its start.
LPIPS_RESOLUTION = 256  # Images larger than this are average-pooled by res // 256.
LOW_PERCENTILE = 1  # Distances below this percentile are dropped before averaging ...
HIGH_PERCENTILE = 99  # ... and so are distances above this one.

# ----------------------------------------------------------------------------
# Pure helpers.


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Interpolate spherically from the direction of a to the direction of b, [N, D] each, by
    the fractions t [N]. The inputs are normalized to unit length, and so is the result. A t
    outside [0, 1] continues along the same great circle, and equal directions give a."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos_angle = (a * b).sum(dim=-1, keepdim=True).clamp(-1, 1)
    angle = t.reshape(-1, 1) * torch.acos(cos_angle)

    # Unit vector in the plane of a and b, orthogonal to a. It is 0 when b equals a, where the
    # angle is 0 too, so the result stays a.
    ortho = b - cos_angle * a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Interpolate linearly from a to b, [N, ...] each, by the fractions t [N]."""
    return torch.lerp(a, b, t.reshape(-1, *[1] * (a.ndim - 1)).to(a.dtype))


def crop_face(img: torch.Tensor) -> torch.Tensor:
    """Return the face region of square images [N, C, H, H], where FFHQ's aligned faces lie.
    With u = H // 8, it is rows 3u to 7u and columns 2u to 6u (end excluded), so a multiple
    of 8 gives [N, C, H // 2, H // 2]."""
    height, width = img.shape[2:]
    if height != width or height < 8:
        raise ValueError(
            f"The PPL face crop needs square images of at least 8x8 pixels, got {height}x{width}. "
            f"Use the variant without the crop (ppl2_wend) for this generator."
        )
    unit = height // 8
    return img[:, :, unit * 3 : unit * 7, unit * 2 : unit * 6]


def filtered_mean(distances: np.ndarray) -> float:
    """Return the mean of the distances [N] that lie between the 1st percentile (numpy's
    method='lower') and the 99th (method='higher'), both included, computed in float64."""
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 1 or len(distances) == 0:
        raise ValueError(f"PPL needs a 1-D array of distances, got shape {list(distances.shape)}.")
    if not np.all(np.isfinite(distances)):
        raise ValueError(
            f"PPL distances contain {int(np.sum(~np.isfinite(distances)))} NaN or infinite "
            f"values; the generator or the LPIPS network returned non-finite output."
        )
    low = np.percentile(distances, LOW_PERCENTILE, method="lower")
    high = np.percentile(distances, HIGH_PERCENTILE, method="higher")
    return float(distances[(distances >= low) & (distances <= high)].mean())


# ----------------------------------------------------------------------------
# Sampling.


class PathSamples(NamedTuple):
    """Inputs of N samples: path ends z0, z1 [N, z_dim] float32, positions t [N] float32,
    labels c [N, c_dim] float32 and the seeds of their noise [N] uint64."""

    z0: np.ndarray
    z1: np.ndarray
    t: np.ndarray
    c: np.ndarray
    noise_seeds: np.ndarray


def sample_paths(
    indices: list[int], z_dim: int, c_dim: int, dataset: Any, seed: int, sampling: str
) -> PathSamples:
    """Draw the inputs of the given sample indices.

    Each sample draws from its own generator numpy.random.default_rng([seed, index]), in this
    order: z0 and z1 (standard normal), t (uniform in [0, 1) for 'full', none for 'end', where
    t = 0), the index of a random real image whose label becomes c (only when c_dim > 0), and
    the seed of its noise, an integer in [0, 2^63). Sample i is therefore the same for every
    batch size and process count.
    """
    num = len(indices)
    z0 = np.empty([num, z_dim], dtype=np.float32)
    z1 = np.empty([num, z_dim], dtype=np.float32)
    t = np.zeros([num], dtype=np.float32)
    c = np.zeros([num, c_dim], dtype=np.float32)
    noise_seeds = np.empty([num], dtype=np.uint64)
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, index])
        z0[row] = rng.standard_normal(z_dim)
        z1[row] = rng.standard_normal(z_dim)
        if sampling == "full":
            t[row] = rng.random()
        if c_dim > 0:
            c[row] = dataset.get_label(int(rng.integers(len(dataset))))
        noise_seeds[row] = rng.integers(2**63)
    return PathSamples(z0, z1, t, c, noise_seeds)


# ----------------------------------------------------------------------------
# Distances of one batch.


def interpolated_ws(
    G: torch.nn.Module, samples: PathSamples, epsilon: float, space: str, device: torch.device
) -> torch.Tensor:
    """Return ws [2N, num_ws, w_dim]: rows 0..N-1 at t and rows N..2N-1 at t + epsilon on each
    sample's path (slerp of z, or lerp of w = G.mapping(z, c) with truncation_psi 1)."""
    z0, z1, t, c = (torch.from_numpy(x).to(device) for x in samples[:4])
    t_pair = torch.cat([t, t + epsilon])
    c_pair = torch.cat([c, c])
    if space == "z":
        z = slerp(torch.cat([z0, z0]), torch.cat([z1, z1]), t_pair)
        return G.mapping(z, c_pair)
    w0 = G.mapping(z0, c)
    w1 = G.mapping(z1, c)
    return lerp(torch.cat([w0, w0]), torch.cat([w1, w1]), t_pair)


def images_to_lpips_input(img: torch.Tensor, img_resolution: int, crop: bool) -> torch.Tensor:
    """Turn generated images [N, C, R, R] (C = 1 or 3, about [-1, 1]) into LPIPS input: crop
    the face region when `crop` is set, average-pool by R // 256 when R is above 256 (after the
    crop, so a cropped 1024x1024 image becomes 128x128), scale to (img + 1) * 127.5 without
    clamping and repeat grayscale to 3 channels."""
    if img.shape[1] not in (1, 3):
        raise ValueError(
            f"PPL needs generated images with 1 or 3 channels, got shape {list(img.shape)}."
        )
    if crop:
        img = crop_face(img)
    factor = img_resolution // LPIPS_RESOLUTION
    if factor > 1:
        img = F.avg_pool2d(img, kernel_size=factor)
    img = (img + 1) * 127.5
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    return img


def pair_distances(
    G: torch.nn.Module,
    vgg: Any,
    samples: PathSamples,
    epsilon: float,
    space: str,
    crop: bool,
    noise_buffers: list[metric_utils.NoiseBuffer],
    device: torch.device,
) -> torch.Tensor:
    """Return the distances [N] float64 of one batch: the squared Euclidean distance between
    the LPIPS vectors of the images at t and t + epsilon, divided by epsilon^2."""
    ws = interpolated_ws(G, samples, epsilon, space, device)
    metric_utils.set_sample_noise(noise_buffers, samples.noise_seeds, device, copies=2)
    img = G.synthesis(ws, noise_mode="const", force_fp32=True)
    lpips = vgg.vgg16_lpips(images_to_lpips_input(img, G.img_resolution, crop))
    lpips_t0, lpips_t1 = lpips.to(torch.float64).chunk(2)
    return (lpips_t0 - lpips_t1).square().sum(dim=1) / epsilon**2


# ----------------------------------------------------------------------------
# The metric.


def check_ppl_args(num_samples: int, epsilon: float, space: str, sampling: str, batch_size: int):
    if num_samples < 1:
        raise ValueError(f"Invalid PPL num_samples={num_samples}: it must be 1 or more.")
    if not epsilon > 0:
        raise ValueError(f"Invalid PPL epsilon={epsilon}: it must be positive (standard: 1e-4).")
    if space not in SPACES:
        raise ValueError(f"Invalid PPL space {space!r}: expected one of {SPACES}.")
    if sampling not in SAMPLINGS:
        raise ValueError(f"Invalid PPL sampling {sampling!r}: expected one of {SAMPLINGS}.")
    if batch_size < 1:
        raise ValueError(f"Invalid PPL batch_size={batch_size}: it must be 1 or more.")


def prepare_generator(opts: metric_utils.MetricOptions) -> torch.nn.Module:
    """Return an evaluation copy of opts.G on opts.device after checking that it is a
    StyleGAN generator and that the dataset has its labels."""
    if opts.G is None:
        raise ValueError("PPL needs a generator: pass G to calc_metric().")
    missing = [name for name in ("mapping", "synthesis", "z_dim") if not hasattr(opts.G, name)]
    if missing or opts.G.z_dim < 1:
        problem = f"has no {', '.join(missing)}" if missing else "has z_dim=0"
        raise ValueError(
            f"PPL needs a StyleGAN generator with G.mapping, G.synthesis and z_dim > 0, but "
            f"{type(opts.G).__module__}.{type(opts.G).__name__} {problem}. Evaluate this "
            f"generator with a metric that does not interpolate latents, such as FID or KID."
        )
    return metric_utils.evaluation_copy(opts)


def compute_path_distances(
    opts: metric_utils.MetricOptions,
    num_samples: int,
    epsilon: float,
    space: str,
    sampling: str,
    crop: bool,
    batch_size: int = 2,
) -> np.ndarray:
    """Return the distances [num_samples] float64 of samples 0..num_samples-1 on every rank.

    Each rank computes its shard (metric_utils.shard_indices) in batches of
    min(batch_size, opts.batch_size) pairs, that is twice as many images, and the batches are
    gathered from all ranks. Every sample has its own latents, label and noise, so batch size
    and process count change only float32 rounding.

    NOTE: that rounding is large at epsilon 1e-4, because the two images of a pair differ by
    about 1e-4 of their values. On a 16x16 test network, other batch sizes moved single
    distances by up to 0.15% (about 1e-5 at epsilon 1e-2).
    """
    check_ppl_args(num_samples, epsilon, space, sampling, batch_size)
    G = prepare_generator(opts)
    vgg = opts.load_vgg16()
    noise_buffers = metric_utils.find_noise_buffers(G)
    dataset = opts.dataset if G.c_dim > 0 else None
    pairs_per_batch = min(batch_size, opts.batch_size)
    monitor = metric_utils.ProgressMonitor("PPL", 2 * num_samples, opts.progress)

    indices = metric_utils.shard_indices(num_samples, opts.num_gpus, opts.rank)
    parts = []
    num_done = 0
    for start in range(0, len(indices), pairs_per_batch):
        batch = indices[start : start + pairs_per_batch]
        samples = sample_paths(batch, G.z_dim, G.c_dim, dataset, opts.seed, sampling)
        with torch.no_grad():
            distances = pair_distances(
                G, vgg, samples, epsilon, space, crop, noise_buffers, opts.device
            )
        distances = metric_utils.gather_features(distances[:, None], opts.num_gpus)[:, 0]
        parts.append(distances.cpu().numpy())
        num_done += len(distances)
        monitor.update(2 * min(num_done, num_samples))
    # Drop the repeated samples that pad the shards to equal length; gathering put them last.
    return np.concatenate(parts)[:num_samples]


def compute_ppl(
    opts: metric_utils.MetricOptions,
    num_samples: int,
    epsilon: float,
    space: str,
    sampling: str,
    crop: bool,
    batch_size: int | None = None,
) -> tuple[float, dict]:
    """Return the perceptual path length of opts.G over `num_samples` samples, plus a record of
    the count. Ranks other than 0 return NaN as the value.

    space is 'z' or 'w', sampling is 'full' or 'end', and crop selects the face crop. The
    standard variants use num_samples 50,000 and epsilon 1e-4. batch_size is the number of
    pairs per batch. None takes half of opts.batch_size (at least 1) for images up to 256x256,
    and 2 above that, as NVIDIA's code does to limit memory at 1024x1024. A smaller
    opts.batch_size lowers it further.
    """
    if batch_size is None:
        resolution = getattr(opts.G, "img_resolution", 256)
        batch_size = max(1, opts.batch_size // 2) if resolution <= 256 else 2
    distances = compute_path_distances(
        opts, num_samples, epsilon, space, sampling, crop, batch_size
    )
    info = dict(num_gen=num_samples)
    if opts.rank != 0:
        return float("nan"), info
    return filtered_mean(distances), info
