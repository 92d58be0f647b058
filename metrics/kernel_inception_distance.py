"""Kernel Inception Distance (KID) from "Demystifying MMD GANs" (Binkowski et al., 2018)."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils


def kernel_inception_distance(
    real_features: np.ndarray,
    gen_features: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Return the unbiased estimate of squared MMD with the kernel k(x, y) = (x.y / D + 1)^3,
    averaged over `num_subsets` random subsets of m = min(N_real, N_gen, max_subset_size) rows
    drawn without replacement from each set. Features are [N, D], and the subsets come from a
    random generator seeded with `seed`.
    """
    real_features = np.asarray(real_features)
    gen_features = np.asarray(gen_features)
    if real_features.ndim != 2 or gen_features.shape[1:] != real_features.shape[1:]:
        raise ValueError(
            f"KID needs feature arrays [N, D] with equal D, got {list(real_features.shape)} "
            f"and {list(gen_features.shape)}."
        )
    subset_size = min(len(real_features), len(gen_features), max_subset_size)
    if subset_size < 2:
        raise ValueError(f"KID needs at least 2 images per set, got subsets of {subset_size}.")
    if num_subsets < 1:
        raise ValueError(f"Invalid num_subsets={num_subsets}: it must be 1 or more.")

    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = real_features[rng.choice(len(real_features), subset_size, replace=False)]
        y = gen_features[rng.choice(len(gen_features), subset_size, replace=False)]
        x, y = x.astype(np.float64), y.astype(np.float64)
        total += _mmd2_unbiased(x, y)
    return total / num_subsets


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD between samples x and y [m, D] with the cubic polynomial kernel:
    the mean of k over pairs i != j within each set minus twice the mean of k across sets."""
    m, dim = x.shape
    k_xx = (x @ x.T / dim + 1) ** 3
    k_yy = (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    across = 2 * k_xy.sum() / (m * m)
    return float(within - across)


def compute_kid(
    opts: metric_utils.MetricOptions,
    num_gen: int,
    max_real: int | None = None,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
) -> tuple[float, dict]:
    """Return KID between `num_gen` generated images and the real images (the first
    `max_real`, None = all), plus a record of the counts and cache file. Ranks other than 0
    return NaN as the value."""
    real, cache_file = metric_utils.compute_real_stats(opts, "all", max_items=max_real)
    gen = metric_utils.compute_generated_stats(opts, "all", num_gen)
    info = dict(num_real=real.num_items, num_gen=gen.num_items, cache_file=cache_file)
    if opts.rank != 0:
        return float("nan"), info
    kid = kernel_inception_distance(
        real.get_all(), gen.get_all(), num_subsets, max_subset_size, seed=opts.seed
    )
    return kid, info
