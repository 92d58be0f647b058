"""Tests of the retardation detector on synthetic parameter trajectories with known speeds."""

import io

import numpy as np
import pytest
import torch

from dmd_patch.detector import RetardationDetector


def make_trajectory(relative_steps, sizes=(50, 30), seed=0):
    """Return [theta_0, theta_1, ...] as dicts of float32 arrays.

    Step i moves theta by a random direction whose norm is relative_steps[i] * ||theta_(i-1)||,
    so the global speeds are relative_steps up to float32 rounding.
    """
    rng = np.random.default_rng(seed)
    names = [f"b{2 ** (k + 3)}" for k in range(len(sizes))]
    theta = {name: rng.standard_normal(size).astype(np.float32) for name, size in zip(names, sizes)}
    trajectory = [theta]
    for step in relative_steps:
        prev = trajectory[-1]
        prev_norm = np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in prev.values()))
        direction = {name: rng.standard_normal(v.shape) for name, v in prev.items()}
        dir_norm = np.sqrt(sum(np.sum(d**2) for d in direction.values()))
        scale = step * prev_norm / dir_norm
        trajectory.append(
            {name: (prev[name] + scale * direction[name]).astype(np.float32) for name in prev}
        )
    return trajectory


def as_torch(theta):
    return {name: [torch.from_numpy(v.copy())] for name, v in theta.items()}


def numpy_global_speed(prev, cur):
    diff = np.concatenate([cur[n].astype(np.float64) - prev[n].astype(np.float64) for n in prev])
    base = np.concatenate([prev[n].astype(np.float64) for n in prev])
    return np.linalg.norm(diff) / (np.linalg.norm(base) + 1e-8)


def numpy_block_speed(prev, cur):
    ratios = [
        np.linalg.norm(cur[n].astype(np.float64) - prev[n].astype(np.float64))
        / (np.linalg.norm(prev[n].astype(np.float64)) + 1e-8)
        for n in prev
    ]
    return float(np.mean(ratios))


def run(detector, trajectory, interval=1000):
    return [
        detector.update(as_torch(theta), nimg=i * interval) for i, theta in enumerate(trajectory)
    ]


def test_global_speed_matches_numpy():
    trajectory = make_trajectory([0.1, 0.02, 0.3])
    results = run(RetardationDetector(), trajectory)
    assert results[0].speed is None
    for i in range(1, len(trajectory)):
        expected = numpy_global_speed(trajectory[i - 1], trajectory[i])
        assert results[i].speed == pytest.approx(expected, rel=1e-6)
    # The construction fixes the speeds, up to float32 rounding of theta.
    assert [r.speed for r in results[1:]] == pytest.approx([0.1, 0.02, 0.3], rel=1e-4)


def test_block_speed_is_mean_over_blocks():
    trajectory = make_trajectory([0.1, 0.05], sizes=(40, 7, 3))
    results = run(RetardationDetector(speed="block"), trajectory)
    for i in range(1, len(trajectory)):
        expected = numpy_block_speed(trajectory[i - 1], trajectory[i])
        assert results[i].speed == pytest.approx(expected, rel=1e-6)
    global_speed = numpy_global_speed(trajectory[0], trajectory[1])
    assert results[1].speed != pytest.approx(global_speed, rel=1e-3)


def test_block_speed_hand_computed():
    # Block a doubles (relative displacement 1), block b stays (0): block mean 0.5.
    # Global: ||(1, 0)|| / ||(1, 3)|| = 1 / sqrt(10).
    theta_0 = {"a": [torch.tensor([1.0])], "b": [torch.tensor([3.0])]}
    theta_1 = {"a": [torch.tensor([2.0])], "b": [torch.tensor([3.0])]}
    for mode, expected in [("block", 0.5), ("global", 1 / np.sqrt(10))]:
        detector = RetardationDetector(speed=mode)
        detector.update(theta_0, nimg=0)
        assert detector.update(theta_1, nimg=1000).speed == pytest.approx(expected, rel=1e-7)


def test_prev_decisions():
    trajectory = make_trajectory([0.1, 0.2, 0.1, 0.05, 0.3, 0.29])
    results = run(RetardationDetector(detect="prev"), trajectory)
    assert [r.retarded for r in results] == [False, False, False, True, True, False, True]
    assert results[0].reference is None
    assert results[1].reference is None  # Only one speed exists: no decision.
    assert results[3].reference == pytest.approx(0.2, rel=1e-4)


def test_ema_decisions_hand_computed():
    # beta 0.5: ema after s1 = 0.1; s2 = 0.2 vs 0.1 -> no; ema = 0.15;
    # s3 = 0.16 vs 0.15 -> no (prev mode would fire: 0.16 < 0.2); ema = 0.155;
    # s4 = 0.14 vs 0.155 -> yes; ema = 0.1475; s5 = 0.15 vs 0.1475 -> no.
    trajectory = make_trajectory([0.1, 0.2, 0.16, 0.14, 0.15])
    results = run(RetardationDetector(detect="ema", ema_beta=0.5), trajectory)
    assert [r.retarded for r in results] == [False, False, False, False, True, False]
    references = [r.reference for r in results[2:]]
    assert references == pytest.approx([0.1, 0.15, 0.155, 0.1475], rel=1e-4)
    prev_results = run(RetardationDetector(detect="prev"), trajectory)
    assert prev_results[3].retarded


def test_tolerance():
    # s3 = 0.19 against ref 0.2: retarded with tol 0, not with tol 0.1 (threshold 0.18).
    trajectory = make_trajectory([0.1, 0.2, 0.19, 0.17])
    strict = run(RetardationDetector(tol=0.0), trajectory)
    tolerant = run(RetardationDetector(tol=0.1), trajectory)
    assert [r.retarded for r in strict] == [False, False, False, True, True]
    assert [r.retarded for r in tolerant] == [False, False, False, False, True]


def test_warmup_blocks_decisions():
    # Speeds drop at every boundary; boundaries at nimg 0, 1000, ..., 5000.
    trajectory = make_trajectory([0.5, 0.4, 0.3, 0.2, 0.1])
    results = run(RetardationDetector(warmup_kimg=3.5), trajectory)
    assert [r.retarded for r in results] == [False, False, False, False, True, True]
    assert results[3].reference is not None  # A reference existed, but warm-up held it back.


def test_ema_updates_during_warmup():
    trajectory = make_trajectory([0.1, 0.3, 0.2])
    results = run(RetardationDetector(detect="ema", ema_beta=0.5, warmup_kimg=10), trajectory)
    assert results[3].reference == pytest.approx(0.2, rel=1e-4)  # 0.5 * 0.1 + 0.5 * 0.3


def test_state_round_trip_matches_uninterrupted():
    trajectory = make_trajectory([0.1, 0.2, 0.15, 0.3, 0.1, 0.12], seed=3)
    reference = run(RetardationDetector(detect="ema", ema_beta=0.8), trajectory)

    first = RetardationDetector(detect="ema", ema_beta=0.8)
    for i, theta in enumerate(trajectory[:3]):
        first.update(as_torch(theta), nimg=i * 1000)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = RetardationDetector(detect="ema", ema_beta=0.8)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for i, theta in enumerate(trajectory[3:], start=3):
        result = resumed.update(as_torch(theta), nimg=i * 1000)
        assert result == reference[i]
    assert resumed.speeds == [r.speed for r in reference[1:]]


def test_copy_is_detached_float32_cpu():
    param = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    detector = RetardationDetector()
    detector.update({"b4": [param]}, nimg=0)
    with torch.no_grad():
        param.add_(1.0)  # An in-place update must not reach the stored copy.
    stored = detector.prev_params["b4"]
    assert stored.dtype == torch.float32
    assert stored.device.type == "cpu"
    assert not stored.requires_grad
    assert torch.equal(stored, torch.ones(4))


def test_changed_blocks_raise():
    detector = RetardationDetector()
    detector.update({"b8": [torch.ones(3)]}, nimg=0)
    with pytest.raises(ValueError, match="b16"):
        detector.update({"b16": [torch.ones(3)]}, nimg=1000)
    with pytest.raises(ValueError, match="size"):
        detector.update({"b8": [torch.ones(4)]}, nimg=1000)


def test_zero_parameters_give_finite_speed():
    detector = RetardationDetector()
    detector.update({"b4": [torch.zeros(2)]}, nimg=0)
    result = detector.update({"b4": [torch.zeros(2)]}, nimg=1000)
    assert result.speed == 0.0
