"""Precision and recall from "Improved Precision and Recall Metric for Assessing Generative
Models" (Kynkaanniemi et al., 2019), on VGG16 fc features of real and generated images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from metrics import metric_utils


def precision_recall(
    real_features: np.ndarray,
    gen_features: np.ndarray,
    nhood_size: int = 3,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
    device: torch.device | str = "cpu",
    *,
    num_gpus: int = 1,  # Processes sharing the distance rows; > 1 needs torch.distributed.
    rank: int = 0,  # This process's index in [0, num_gpus).
    progress: bool = False,  # Print progress lines over the distance rows.
) -> tuple[float, float]:
    """Compute (precision, recall) of generated features [N_gen, D] against real ones [N_real, D].

    Each set spans a manifold: the union of balls around its vectors, where the radius of vector
    i is its Euclidean distance to its `nhood_size`-th nearest neighbour in the same set, not
    counting itself. Precision is the fraction of generated vectors inside the real manifold and
    recall the fraction of real vectors inside the generated manifold. A vector at distance
    equal to a radius counts as inside.

    Distances are computed in float32 on `device`, in blocks of at most `row_batch_size` x
    `col_batch_size`, so memory stays bounded whatever the set sizes. NVIDIA's StyleGAN2-ADA
    code computes them in float16 on GPUs, so its values can differ where a distance lies
    within float16 rounding of a radius. With num_gpus > 1, every rank must call this with the
    same features: each computes its share of every row batch, and all_gather gives every rank
    all radii and the same result.
    """
    for name, value in [("row_batch_size", row_batch_size), ("col_batch_size", col_batch_size)]:
        if value < 1:
            raise ValueError(f"Invalid {name}={value}: it must be 1 or more.")
    real, gen = _feature_tensors(real_features, gen_features, nhood_size, torch.device(device))

    total_rows = 2 * (len(real) + len(gen))
    monitor = metric_utils.ProgressMonitor(
        "Precision/recall distances", total_rows, progress, unit="rows"
    )
    row_pass = _RowPass(row_batch_size, num_gpus, rank, monitor, device)
    real_radii = row_pass.map(len(real), _radii_fn(real, nhood_size, col_batch_size))
    gen_radii = row_pass.map(len(gen), _radii_fn(gen, nhood_size, col_batch_size))
    gen_inside = row_pass.map(len(gen), _inside_fn(gen, real, real_radii, col_batch_size))
    real_inside = row_pass.map(len(real), _inside_fn(real, gen, gen_radii, col_batch_size))
    return float(gen_inside.double().mean()), float(real_inside.double().mean())


def _feature_tensors(
    real_features: np.ndarray, gen_features: np.ndarray, nhood_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check both feature arrays and return them as float32 tensors on `device`, shifted by
    the same vector."""
    real = _check_features(real_features, "real", nhood_size)
    gen = _check_features(gen_features, "generated", nhood_size)
    if real.shape[1] != gen.shape[1]:
        raise ValueError(
            f"Precision/recall needs real and generated features with equal D, got "
            f"{list(real.shape)} and {list(gen.shape)}."
        )
    # torch.cdist computes |x|^2 + |y|^2 - 2 x.y for large blocks, which loses float32 digits
    # when the vectors are long compared with their distances. Subtracting one shared center
    # keeps every distance and shortens the vectors.
    center = torch.from_numpy(real.mean(axis=0, dtype=np.float64)).float().to(device)
    return tuple(torch.from_numpy(x.astype(np.float32)).to(device) - center for x in (real, gen))


def _check_features(features: np.ndarray, label: str, nhood_size: int) -> np.ndarray:
    """Return `features` as an array [N, D] after checking its shape, size and values."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(
            f"Precision/recall needs {label} features of shape [N, D], got {list(features.shape)}."
        )
    if nhood_size < 1:
        raise ValueError(f"Invalid nhood_size={nhood_size}: it must be 1 or more.")
    if len(features) <= nhood_size:
        raise ValueError(
            f"Precision/recall with nhood_size={nhood_size} needs more than {nhood_size} {label} "
            f"images, got {len(features)}. Use more images or a smaller nhood_size."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError(f"The {label} features contain NaN or infinite values.")
    return features


# ----------------------------------------------------------------------------
# Row functions: each maps rows [start, stop) of its first set to one float32 value per row.


def _radii_fn(manifold: torch.Tensor, nhood_size: int, col_batch_size: int) -> Callable:
    """Return a row function giving each vector's distance to its nhood_size-th nearest neighbour
    in `manifold`. The zero distance to itself is the smallest, so that is the
    (nhood_size + 1)-th smallest distance."""

    def radii(start: int, stop: int) -> torch.Tensor:
        rows = manifold[start:stop]
        nearest = torch.empty([len(rows), 0], device=rows.device)  # [rows, <= nhood_size + 1]
        for col_start in range(0, len(manifold), col_batch_size):
            dist = torch.cdist(rows, manifold[col_start : col_start + col_batch_size])
            candidates = torch.cat([nearest, dist], dim=1)
            count = min(nhood_size + 1, candidates.shape[1])
            nearest = candidates.topk(count, dim=1, largest=False, sorted=True).values
        return nearest[:, nhood_size]

    return radii


def _inside_fn(
    probes: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, col_batch_size: int
) -> Callable:
    """Return a row function giving 1 for each probe vector within radii[i] of some manifold
    vector i, else 0."""

    def inside(start: int, stop: int) -> torch.Tensor:
        rows = probes[start:stop]
        found = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        for col_start in range(0, len(manifold), col_batch_size):
            col_stop = col_start + col_batch_size
            dist = torch.cdist(rows, manifold[col_start:col_stop])
            found |= (dist <= radii[col_start:col_stop]).any(dim=1)
        return found.float()

    return inside


# ----------------------------------------------------------------------------
# Splitting rows across ranks.


class _RowPass:
    """Evaluator of row functions over all rows, in batches of `row_batch_size`. Each rank
    computes a consecutive share of every batch, and all_gather joins the shares in rank order,
    so every rank gets the values of all rows. Every rank makes the same collective calls."""

    def __init__(self, row_batch_size, num_gpus, rank, monitor, device):
        if num_gpus < 1 or not 0 <= rank < num_gpus:
            raise ValueError(f"Invalid rank {rank} for num_gpus={num_gpus}.")
        if num_gpus > 1 and not (
            torch.distributed.is_available() and torch.distributed.is_initialized()
        ):
            raise RuntimeError(f"num_gpus={num_gpus} needs an initialized torch.distributed group.")
        self.row_batch_size = row_batch_size
        self.num_gpus = num_gpus
        self.rank = rank
        self.monitor = monitor
        self.device = device
        self.rows_done = 0

    def map(self, num_rows: int, row_fn: Callable) -> torch.Tensor:
        """Return row_fn's values for rows 0..num_rows-1, float32 [num_rows], on every rank."""
        batches = []
        for batch_start in range(0, num_rows, self.row_batch_size):
            batch_stop = min(batch_start + self.row_batch_size, num_rows)
            share = -(-(batch_stop - batch_start) // self.num_gpus)  # rows per rank, rounded up
            start = min(batch_start + self.rank * share, batch_stop)
            stop = min(start + share, batch_stop)
            values = row_fn(start, stop) if stop > start else torch.zeros([0], device=self.device)
            batches.append(self._gather(values, share)[: batch_stop - batch_start])
            self.rows_done += batch_stop - batch_start
            self.monitor.update(self.rows_done)
        return torch.cat(batches)

    def _gather(self, values: torch.Tensor, share: int) -> torch.Tensor:
        """Join every rank's values [<= share] into [share * num_gpus]. Only the last ranks can
        have fewer than `share` rows, so the zero padding lands after all real rows."""
        if self.num_gpus == 1:
            return values
        padded = torch.zeros([share], dtype=torch.float32, device=self.device)
        padded[: len(values)] = values
        parts = [torch.empty_like(padded) for _ in range(self.num_gpus)]
        torch.distributed.all_gather(parts, padded)
        return torch.cat(parts)


# ----------------------------------------------------------------------------
# The metric.


def compute_pr(
    opts: metric_utils.MetricOptions,
    num_gen: int,
    max_real: int | None,
    nhood_size: int = 3,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
) -> tuple[dict, dict]:
    """Compute precision and recall between `num_gen` generated images and the real images (the
    first `max_real`, None = all) on VGG16 features. Return dict(precision, recall) and a
    record of the counts and cache file. Ranks other than 0 return NaN values."""
    real, cache_file = metric_utils.compute_real_stats(
        opts, "all", max_items=max_real, feature="vgg16"
    )
    gen = metric_utils.compute_generated_stats(opts, "all", num_gen, feature="vgg16")
    info = dict(num_real=real.num_items, num_gen=gen.num_items, cache_file=cache_file)
    precision, recall = precision_recall(
        real.get_all(),
        gen.get_all(),
        nhood_size=nhood_size,
        row_batch_size=row_batch_size,
        col_batch_size=col_batch_size,
        device=opts.device,
        num_gpus=opts.num_gpus,
        rank=opts.rank,
        progress=opts.progress,
    )
    if opts.rank != 0:
        return dict(precision=float("nan"), recall=float("nan")), info
    return dict(precision=precision, recall=recall), info
