"""Inception Score (IS) from "Improved Techniques for Training GANs" (Salimans et al., 2016)."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils

# Rows of class probabilities may differ from a sum of 1 by this much (float32 softmax output).
PROBABILITY_SUM_TOLERANCE = 1e-3


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """Compute the Inception Score of class probabilities p(y|x) [N, C] and return its mean and
    standard deviation over `num_splits` consecutive parts.

    Part i contains rows N * i // num_splits up to N * (i + 1) // num_splits. Its score is
    exp(mean over its rows x of KL(p(y|x) || p(y))), where p(y) is the part's mean row. The
    standard deviation is numpy's (ddof=0). Terms with p(y|x) = 0 count as 0. Computed in
    float64.
    """
    probs = np.asarray(probs, dtype=np.float64)
    _check_probabilities(probs, num_splits)
    scores = []
    for i in range(num_splits):
        part = probs[len(probs) * i // num_splits : len(probs) * (i + 1) // num_splits]
        marginal = part.mean(axis=0, keepdims=True)  # p(y), [1, C]
        # p(y) >= p(y|x) / len(part) > 0 wherever p(y|x) > 0, so the logarithms are finite.
        positive = part > 0
        log_ratio = np.log(np.where(positive, part, 1)) - np.log(np.where(positive, marginal, 1))
        kl = (part * log_ratio).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _check_probabilities(probs: np.ndarray, num_splits: int) -> None:
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"Inception Score needs probabilities [N, C], got {list(probs.shape)}.")
    if num_splits < 1:
        raise ValueError(f"Invalid num_splits={num_splits}: it must be 1 or more.")
    if len(probs) < num_splits:
        raise ValueError(
            f"Inception Score with num_splits={num_splits} needs at least {num_splits} images, "
            f"got {len(probs)}."
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0:
        raise ValueError("Inception Score probabilities must be finite and non-negative.")
    sums = probs.sum(axis=1)
    worst = int(np.abs(sums - 1).argmax())
    if abs(sums[worst] - 1) > PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            f"Inception Score probabilities must sum to 1 per image, but row {worst} sums to "
            f"{sums[worst]:.6g}. Pass softmax outputs, not logits or features."
        )


def compute_is(
    opts: metric_utils.MetricOptions, num_gen: int, num_splits: int = 10
) -> tuple[dict, dict]:
    """Compute the Inception Score of `num_gen` generated images from the Inception network's
    class probabilities. Return dict(mean, std) and a record of the counts. IS reads no real
    images, so num_real and cache_file are None. Ranks other than 0 return NaN values."""
    gen = metric_utils.compute_generated_stats(opts, "all", num_gen, feature="inception_probs")
    info = dict(num_real=None, num_gen=gen.num_items, cache_file=None)
    if opts.rank != 0:
        return dict(mean=float("nan"), std=float("nan")), info
    mean, std = inception_score(gen.get_all(), num_splits)
    return dict(mean=mean, std=std), info
