"""Precision/recall and Inception Score, checked against references written here with numpy and
scipy, and through the metric pipeline with tiny TorchScript stand-ins for VGG16 and Inception."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch

from metrics.inception_score import inception_score
from metrics.precision_recall import precision_recall

# The stand-in networks are built with torch.jit.script, which PyTorch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

# ----------------------------------------------------------------------------
# Independent references.


def reference_inside(probes: np.ndarray, manifold: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Return which probes lie within some manifold ball (radius: distance to the k-th nearest
    other manifold vector) and the smallest |distance - radius| that decided a probe, from
    scipy's float64 distances."""
    radii = np.sort(scipy.spatial.distance.cdist(manifold, manifold), axis=1)[:, k]
    slack = (scipy.spatial.distance.cdist(probes, manifold) - radii[None, :]).min(axis=1)
    return slack <= 0, float(np.abs(slack).min())


def reference_precision_recall(real, gen, k):
    gen_inside, gen_margin = reference_inside(gen, real, k)
    real_inside, real_margin = reference_inside(real, gen, k)
    return gen_inside.mean(), real_inside.mean(), min(gen_margin, real_margin)


def reference_inception_score(probs: np.ndarray, num_splits: int) -> tuple[float, float]:
    """IS with scipy.stats.entropy(p, q), which is KL(p || q), over parts of rows
    N * i // num_splits up to N * (i + 1) // num_splits."""
    bounds = [len(probs) * i // num_splits for i in range(num_splits + 1)]
    scores = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = probs[start:stop]
        marginal = part.mean(axis=0)
        kl = [scipy.stats.entropy(row, marginal) for row in part]
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def random_sets(seed, num_real, num_gen, dim=8):
    """Return real features and generated ones with a different mean and spread, so that
    precision and recall both lie strictly between 0 and 1."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal([num_real, dim]) * 2 + 5
    gen = rng.standard_normal([num_gen, dim]) * 1.5 + 6
    return real.astype(np.float32), gen.astype(np.float32)


# ----------------------------------------------------------------------------
# Precision and recall.


@pytest.mark.parametrize(
    "row_batch_size, col_batch_size", [(10000, 10000), (7, 5), (1, 100), (100, 1), (13, 53)]
)
def test_pr_matches_cdist_reference(row_batch_size, col_batch_size):
    real, gen = random_sets(seed=0, num_real=53, num_gen=47)
    for k in [1, 3, 5]:
        expected_p, expected_r, margin = reference_precision_recall(
            real.astype(np.float64), gen.astype(np.float64), k
        )
        assert margin > 1e-4  # no decision within float32 rounding of a ball's boundary
        assert 0 < expected_p < 1
        assert 0 < expected_r < 1
        precision, recall = precision_recall(
            real, gen, nhood_size=k, row_batch_size=row_batch_size, col_batch_size=col_batch_size
        )
        assert precision == expected_p
        assert recall == expected_r


def test_pr_large_blocks_match_reference():
    # Blocks over 25 rows make torch.cdist use matrix products, which lose float32 digits when
    # the features share a large offset.
    real, gen = random_sets(seed=1, num_real=300, num_gen=260, dim=32)
    real, gen = real + 1000, gen + 1000
    expected_p, expected_r, margin = reference_precision_recall(
        real.astype(np.float64), gen.astype(np.float64), 3
    )
    assert margin > 1e-3
    precision, recall = precision_recall(real, gen, row_batch_size=128, col_batch_size=200)
    assert precision == expected_p
    assert recall == expected_r


# Points on a line. Real: 0, 4, 8, 100, 104, 198. Generated: 12, 50, 60, 107.
LINE_REAL = np.array([[0.0], [4.0], [8.0], [100.0], [104.0], [198.0]])
LINE_GEN = np.array([[12.0], [50.0], [60.0], [107.0]])


def test_pr_points_on_line_k1():
    # Radii with k = 1: real 4, 4, 4, 4, 4, 94; generated 38, 10, 10, 47.
    # Precision: 12 is at distance 4 from real 8, whose radius is 4, and no other real ball
    # reaches it: it is inside only because the boundary counts. 107 is 3 from real 104. 50 and
    # 60 are 42 and 40 from the nearest cluster and 148 and 138 from 198: 2/4.
    # Recall: 0, 4 and 8 are within 38 of 12, and 100 and 104 within 47 of 107. 198 is 91 from
    # 107 (radius 47), 138 from 60 (radius 10), 148 from 50 and 186 from 12: 5/6.
    precision, recall = precision_recall(LINE_REAL, LINE_GEN, nhood_size=1)
    assert precision == 0.5
    assert recall == 5 / 6


def test_pr_points_on_line_k2():
    # Radii with k = 2: real 8, 4, 8, 92, 94, 98; generated 48, 38, 47, 57.
    # Precision: 12 is 4 from real 8, 50 and 60 are within 92 of real 100, and 107 is 3 from
    # real 104: 4/4. Recall: 198 is outside again (91 > 57, 138 > 47, 148 > 38, 186 > 48);
    # the other five are within 48 of 12 or within 47 of 60: 5/6.
    precision, recall = precision_recall(LINE_REAL, LINE_GEN, nhood_size=2, row_batch_size=2)
    assert precision == 1.0
    assert recall == 5 / 6


def test_pr_identical_sets_are_one():
    real, _ = random_sets(seed=2, num_real=30, num_gen=1)
    assert precision_recall(real, real.copy()) == (1.0, 1.0)


def test_pr_far_apart_sets_are_zero():
    real, gen = random_sets(seed=3, num_real=20, num_gen=20)
    assert precision_recall(real, gen + 1000) == (0.0, 0.0)


def test_pr_rejects_bad_inputs():
    features = np.zeros([5, 3])
    with pytest.raises(ValueError, match="more than 3 generated images, got 3"):
        precision_recall(features, np.zeros([3, 3]))
    with pytest.raises(ValueError, match="equal D"):
        precision_recall(features, np.zeros([5, 2]))
    with pytest.raises(ValueError, match="shape \\[N, D\\]"):
        precision_recall(np.zeros([5]), features)
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(np.full([5, 3], np.nan), features)
    with pytest.raises(ValueError, match="nhood_size=0"):
        precision_recall(features, features, nhood_size=0)
    with pytest.raises(ValueError, match="row_batch_size=0"):
        precision_recall(features, features, row_batch_size=0)
    with pytest.raises(RuntimeError, match="num_gpus=2 needs"):
        precision_recall(features, features, num_gpus=2, rank=1)


def pr_two_process_worker(rank, init_file, real, gen, out_dir):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo's connections on the loopback interface
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        result = precision_recall(
            real, gen, row_batch_size=7, col_batch_size=9, num_gpus=2, rank=rank
        )
        np.save(os.path.join(out_dir, f"pr{rank}.npy"), np.array(result))
    finally:
        torch.distributed.destroy_process_group()


def test_pr_two_processes_match_reference(tmp_path):
    # Batches of 7 rows split 4 + 3 between the ranks. The last batch of the 43 generated rows
    # contains 1 row, so rank 1 computes nothing for it and sends only padding.
    real, gen = random_sets(seed=4, num_real=50, num_gen=43)
    expected_p, expected_r, margin = reference_precision_recall(
        real.astype(np.float64), gen.astype(np.float64), 3
    )
    assert margin > 1e-4
    args = (str(tmp_path / "init"), real, gen, str(tmp_path))
    torch.multiprocessing.spawn(pr_two_process_worker, args=args, nprocs=2)
    for rank in range(2):
        precision, recall = np.load(tmp_path / f"pr{rank}.npy")
        assert precision == expected_p
        assert recall == expected_r


# ----------------------------------------------------------------------------
# Inception Score.


def random_probabilities(seed, num, num_classes=12):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal([num, num_classes]) * 3
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("num, num_splits", [(100, 10), (23, 10), (37, 3), (5, 1)])
def test_is_matches_entropy_reference(num, num_splits):
    probs = random_probabilities(seed=num, num=num)
    probs[0, :4] = 0  # zero probabilities count as 0 * log 0 = 0
    probs /= probs.sum(axis=1, keepdims=True)
    expected_mean, expected_std = reference_inception_score(probs, num_splits)
    mean, std = inception_score(probs, num_splits)
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert std == pytest.approx(expected_std, rel=1e-9, abs=1e-12)


def test_is_uniform_probabilities_is_one():
    mean, std = inception_score(np.full([40, 1008], 1 / 1008), num_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("num_classes", [1, 2, 7])
def test_is_disjoint_one_hot_classes_is_k(num_classes):
    # Every part of 3 * num_classes consecutive rows contains each class 3 times, so p(y) is uniform
    # over the classes and each KL term is log(num_classes).
    labels = np.arange(10 * 3 * num_classes) % num_classes
    probs = np.eye(16)[labels]
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(num_classes, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_is_std_is_over_parts():
    # First part: two disjoint classes (score 2). Second part: one class (score 1).
    probs = np.eye(3)[[0, 1, 2, 2]]
    mean, std = inception_score(probs, num_splits=2)
    assert mean == pytest.approx(1.5, rel=1e-12)
    assert std == pytest.approx(0.5, rel=1e-12)


def test_is_rejects_bad_inputs():
    probs = random_probabilities(seed=5, num=20)
    scaled = probs.copy()
    scaled[1] *= 3
    with pytest.raises(ValueError, match="row 1 sums to 3"):
        inception_score(scaled)
    with pytest.raises(ValueError, match="num_splits=10 needs at least 10 images, got 9"):
        inception_score(probs[:9])
    with pytest.raises(ValueError, match="num_splits=0"):
        inception_score(probs, num_splits=0)
    with pytest.raises(ValueError, match="\\[N, C\\]"):
        inception_score(probs[0])
    with pytest.raises(ValueError, match="non-negative"):
        inception_score(-probs)
