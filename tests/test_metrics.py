"""FID, KID, feature statistics and the metric pipeline, checked against references written here
with numpy and scipy. A tiny TorchScript network replaces the Inception detector."""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch

from metrics import detector as detector_lib
from metrics import metric_main, metric_utils
from metrics.frechet_inception_distance import frechet_distance
from metrics.kernel_inception_distance import kernel_inception_distance

# The stand-in detectors are built with torch.jit.script, which PyTorch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

# ----------------------------------------------------------------------------
# Independent references.


def reference_fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID as in the FID paper's reference code: numpy.cov and scipy.linalg.sqrtm."""
    mu1, mu2 = features1.mean(0), features2.mean(0)
    sigma1 = np.cov(features1, rowvar=False)
    sigma2 = np.cov(features2, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))


def reference_kid_full_sets(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, summed pair by pair."""
    m, d = x.shape

    def k(a, b):
        return (np.dot(a, b) / d + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2 * across / (m * m)


def reference_features(images: np.ndarray) -> np.ndarray:
    """What the stand-in detector computes for uint8 images [N, 3, 299, 299]: per-channel means
    of (x - 128) / 128 and of its square."""
    x = (images.astype(np.float64) - 128) / 128
    return np.concatenate([x.mean(axis=(2, 3)), (x**2).mean(axis=(2, 3))], axis=1)


# ----------------------------------------------------------------------------
# Stand-ins for the detector, the dataset and the generator.


class MomentsDetector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), (x * x).mean(dim=(2, 3))], dim=1)


@pytest.fixture
def detector_path(tmp_path):
    path = str(tmp_path / "moments-detector.pt")
    torch.jit.script(MomentsDetector()).save(path)
    return path


class NpzDataset:
    """Images uint8 [N, C, H, W] and optional integer labels from an .npz file."""

    def __init__(self, path, resolution=None, use_labels=False, max_size=None, xflip=False):
        self.path = path
        with np.load(path) as data:
            self.images = data["images"]
            self.labels = data["labels"] if use_labels and "labels" in data else None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        return self.images[idx], self.get_label(idx)

    def get_label(self, idx):
        if self.labels is None:
            return np.zeros([0], dtype=np.float32)
        return np.eye(int(self.labels.max()) + 1, dtype=np.float32)[self.labels[idx]]

    @property
    def label_shape(self):
        return [0] if self.labels is None else [int(self.labels.max()) + 1]

    @property
    def name(self):
        return os.path.splitext(os.path.basename(self.path))[0]

    @property
    def resolution(self):
        return self.images.shape[2]

    def content_fingerprint(self):
        with open(self.path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()


def write_npz_dataset(path, images, labels=None):
    arrays = dict(images=images) if labels is None else dict(images=images, labels=labels)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return dict(class_name=f"{__name__}.NpzDataset", path=str(path), use_labels=labels is not None)


class CallLog(list):
    """A list that deepcopy shares instead of copying, so it records calls of a copied module."""

    def __deepcopy__(self, memo):
        return self


class PatternGenerator(torch.nn.Module):
    """Channel k of img is tanh(z[0] * u + z[1] * v + k * z[2] / 4 + c . w) with fixed ramps
    u (across) and v (down) and label weights w."""

    def __init__(self, c_dim=0, resolution=299):
        super().__init__()
        self.z_dim, self.c_dim = 3, c_dim
        self.img_resolution, self.img_channels = resolution, 3
        ramp = torch.linspace(-1, 1, resolution)
        self.register_buffer("u", ramp.view(1, 1, 1, -1))
        self.register_buffer("v", ramp.view(1, 1, -1, 1))
        self.register_buffer("k", torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1) / 4)
        self.register_buffer("w", torch.arange(1, c_dim + 1, dtype=torch.float32) / 4)
        self.calls = CallLog()

    def forward(self, z, c, truncation_psi=1, noise_mode="random"):
        self.calls.append((z.clone(), c.clone(), noise_mode))
        z0, z1, z2 = (z[:, i].view(-1, 1, 1, 1) for i in range(3))
        offset = (c @ self.w).view(-1, 1, 1, 1) if self.c_dim else 0
        return torch.tanh(z0 * self.u + z1 * self.v + z2 * self.k + offset)


def expected_generated_images(num, seed=0, resolution=299):
    """The documented latents (one generator per image seeded with (seed, index)) pushed through
    PatternGenerator's formula in float64, converted to uint8 as the metrics do."""
    ramp = np.linspace(-1, 1, resolution)
    images = []
    for index in range(num):
        z = np.random.default_rng([seed, index]).standard_normal(3).astype(np.float32)
        channels = [
            np.tanh(float(z[0]) * ramp[None, :] + float(z[1]) * ramp[:, None] + k * float(z[2]) / 4)
            for k in range(3)
        ]
        images.append(np.clip(np.stack(channels) * 127.5 + 128, 0, 255).astype(np.uint8))
    return np.stack(images)


def random_images(seed, num, resolution=299):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=[num, 3, 1, 1], dtype=np.int16)
    noise = rng.integers(-40, 41, size=[num, 3, resolution, resolution], dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# FID.


def test_fid_matches_scipy_reference():
    rng = np.random.default_rng(0)
    features1 = rng.standard_normal([300, 16]) @ rng.standard_normal([16, 16])
    features2 = rng.standard_normal([200, 16]) @ rng.standard_normal([16, 16]) + 0.5
    expected = reference_fid(features1, features2)
    mu1, mu2 = features1.mean(0), features2.mean(0)
    sigma1, sigma2 = np.cov(features1, rowvar=False), np.cov(features2, rowvar=False)
    actual = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert actual == pytest.approx(expected, rel=1e-9)


def test_fid_matches_scipy_at_2048_dimensions():
    # Inception-like features: 2048 dimensions, more samples than dimensions, correlated.
    rng = np.random.default_rng(5)
    mixing = rng.standard_normal([2048, 2048]) / 45
    features1 = np.maximum(rng.standard_normal([2500, 2048]) @ mixing, 0)
    features2 = np.maximum(rng.standard_normal([2200, 2048]) @ mixing + 0.05, 0)
    expected = reference_fid(features1, features2)
    mu1, mu2 = features1.mean(0), features2.mean(0)
    sigma1, sigma2 = np.cov(features1, rowvar=False), np.cov(features2, rowvar=False)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_fid_singular_covariance_matches_scipy():
    # Fewer samples than features: both covariances are singular.
    rng = np.random.default_rng(1)
    features1 = rng.standard_normal([10, 24])
    features2 = rng.standard_normal([12, 24]) * 2 + 1
    expected = reference_fid(features1, features2)
    mu1, mu2 = features1.mean(0), features2.mean(0)
    sigma1, sigma2 = np.cov(features1, rowvar=False), np.cov(features2, rowvar=False)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_fid_of_identical_sets_is_zero():
    rng = np.random.default_rng(2)
    features = rng.standard_normal([500, 32]) * 3 + 7
    mu, sigma = features.mean(0), np.cov(features, rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_fid_diagonal_covariances_by_hand():
    # With diagonal covariances A and B, tr(A + B - 2 sqrt(AB)) = sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([4.0, 9.0, 1.0]), np.array([1.0, 4.0, 0.0])
    expected = (1 + 0 + 4) + ((2 - 1) ** 2 + (3 - 2) ** 2 + (1 - 0) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-12)


def test_fid_rejects_bad_inputs():
    eye = np.eye(3)
    with pytest.raises(ValueError, match="sigma2 has shape"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="not positive semidefinite"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), np.diag([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(np.zeros(3), np.triu(np.ones([3, 3])), np.zeros(3), eye)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), eye, np.zeros(3), eye)


# ----------------------------------------------------------------------------
# KID.


def test_kid_matches_pairwise_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal([12, 5])
    y = rng.standard_normal([12, 5]) * 1.5 + 0.3
    expected = reference_kid_full_sets(x, y)
    # Subsets as large as the sets hold every row, and MMD ignores row order, so every subset
    # gives the full-set value whatever rows the generator picks.
    actual = kernel_inception_distance(x, y, num_subsets=3, max_subset_size=100)
    assert actual == pytest.approx(expected, rel=1e-10)


def test_kid_same_distribution_near_zero():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal([400, 8]), rng.standard_normal([400, 8])
    shifted = rng.standard_normal([400, 8]) + 1
    same = kernel_inception_distance(x, y, num_subsets=20, max_subset_size=100)
    different = kernel_inception_distance(x, shifted, num_subsets=20, max_subset_size=100)
    assert abs(same) < 0.05
    assert different > 0.5


def test_kid_seed_makes_subsets_repeatable():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal([50, 4]), rng.standard_normal([60, 4])
    first = kernel_inception_distance(x, y, num_subsets=5, max_subset_size=20, seed=7)
    second = kernel_inception_distance(x, y, num_subsets=5, max_subset_size=20, seed=7)
    other = kernel_inception_distance(x, y, num_subsets=5, max_subset_size=20, seed=8)
    assert first == second
    assert first != other


def test_kid_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros([1, 3]), np.zeros([5, 3]))
    with pytest.raises(ValueError, match="equal D"):
        kernel_inception_distance(np.zeros([4, 3]), np.zeros([4, 2]))


# ----------------------------------------------------------------------------
# Feature statistics.


def test_feature_stats_mean_cov_matches_numpy():
    rng = np.random.default_rng(6)
    features = rng.standard_normal([103, 6]) * 0.01 + 1000  # large mean, small spread
    stats = metric_utils.FeatureStats("mean_cov", max_items=100)
    for start in range(0, 103, 16):
        stats.append(features[start : start + 16])
    mu, sigma = stats.get_mean_cov()
    assert stats.num_items == 100
    np.testing.assert_allclose(mu, features[:100].mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features[:100], rowvar=False), rtol=1e-6, atol=1e-12)


def test_feature_stats_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(7)
    features = rng.standard_normal([20, 4]).astype(np.float32)
    for kind in metric_utils.FEATURE_KINDS:
        stats = metric_utils.FeatureStats(kind)
        stats.append(features)
        path = str(tmp_path / f"{kind}.npz")
        stats.save(path)
        loaded = metric_utils.FeatureStats.load(path)
        assert loaded.kind == kind
        assert loaded.num_items == 20
        for original, restored in zip(stats.get_mean_cov(), loaded.get_mean_cov()):
            np.testing.assert_array_equal(original, restored)


def test_feature_stats_rejects_changed_width():
    stats = metric_utils.FeatureStats("all")
    stats.append(np.zeros([2, 3]))
    with pytest.raises(ValueError, match="expected 3"):
        stats.append(np.zeros([2, 4]))


def test_shard_indices_cover_items_in_order():
    # Interleaving the ranks' shards row by row must give 0..N-1 followed by wrapped padding.
    for num_items, num_gpus in [(7, 1), (7, 2), (7, 3), (9, 3), (1, 4)]:
        shards = [metric_utils.shard_indices(num_items, num_gpus, r) for r in range(num_gpus)]
        assert len({len(shard) for shard in shards}) == 1
        interleaved = [shard[j] for j in range(len(shards[0])) for shard in shards]
        assert interleaved[:num_items] == list(range(num_items))
        assert len(interleaved) - num_items < num_gpus


# ----------------------------------------------------------------------------
# Metric names.


def test_metric_names():
    names = metric_main.list_valid_metrics()
    assert "fid50k_full" in names
    assert "kid50k_full" in names
    assert "fid100_full" in names
    assert "fid50k" in names
    assert "kid500" in names
    upstream = ["pr50k3_full", "pr50k3", "is50k", "ppl_zfull", "ppl_wfull", "ppl_zend"]
    upstream += ["ppl_wend", "ppl2_wend", "eqt50k_int", "eqt50k_frac", "eqr50k"]
    small = ["fid2k_full", "kid2k_full", "pr1k3_full", "is2k", "ppl2_wend_2k", "eqt1k_int"]
    small += ["eqr500"]
    for name in upstream + small:
        assert name in names, name
    assert len(names) == len(set(names))
    for name in names:
        assert metric_main.is_valid_metric(name)
    bad = ["fid3k_full", "fid50000_full", "pr50k_full", "pr50k4", "is50k_full", "ppl_zfull2k"]
    bad += ["ppl3_wend", "eqt50k", "eqr50k_int", "", "FID50k_full", None]
    for name in bad:
        assert not metric_main.is_valid_metric(name), name


def test_metric_specs_give_counts_and_needs():
    assert metric_main.parse_metric("pr50k3_full").networks == ("vgg16_features",)
    assert metric_main.parse_metric("is50k").networks == ("inception_probabilities",)
    assert metric_main.parse_metric("eqr50k").networks == ()
    assert metric_main.parse_metric("eqr50k").generator == "stylegan3"
    assert metric_main.parse_metric("ppl2_wend").networks == ("vgg16_lpips",)
    assert metric_main.parse_metric("ppl2_wend").generator == "stylegan"
    assert metric_main.parse_metric("fid2k").networks == ("inception_features",)


def test_calc_metric_rejects_unknown_name(detector_path):
    with pytest.raises(ValueError, match="Unknown metric 'fid7_full'.*fid50k_full"):
        metric_main.calc_metric("fid7_full", dataset_kwargs={}, detector_path=detector_path)


# ----------------------------------------------------------------------------
# The pipeline end to end with the stand-in detector.


def metric_kwargs(dataset_kwargs, detector_path, G, **extra):
    return dict(
        G=G,
        dataset_kwargs=dataset_kwargs,
        device="cpu",
        detector_path=detector_path,
        batch_size=4,
        num_workers=0,
        **extra,
    )


def test_fid_pipeline_matches_reference(tmp_path, detector_path):
    real = random_images(seed=8, num=11)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", real)
    G = PatternGenerator()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 11 and 100 images exceed the 6 features: no warning
        result = metric_main.calc_metric(
            "fid100_full", **metric_kwargs(dataset_kwargs, detector_path, G)
        )

    generated = expected_generated_images(100)
    expected = reference_fid(reference_features(generated), reference_features(real))
    assert result.results.fid100_full == pytest.approx(expected, rel=1e-5)
    assert result.num_real == 11
    assert result.num_gen == 100
    assert len(G.calls) == 25  # 100 images in batches of 4
    assert all(noise_mode == "const" for _, _, noise_mode in G.calls)
    assert result.resolution == 299
    assert result.detector_sha256 == detector_lib.file_sha256(detector_path)
    assert result.fingerprint == NpzDataset(dataset_kwargs["path"]).content_fingerprint()
    assert result.cache_file is not None and os.path.isfile(result.cache_file)


def test_fid_without_full_uses_first_real_images(tmp_path, detector_path):
    real = random_images(seed=9, num=120)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", real)
    G = PatternGenerator()
    result = metric_main.calc_metric("fid100", **metric_kwargs(dataset_kwargs, detector_path, G))

    generated = expected_generated_images(100)
    expected = reference_fid(reference_features(generated), reference_features(real[:100]))
    assert result.num_real == 100
    assert result.num_gen == 100
    assert result.results.fid100 == pytest.approx(expected, rel=1e-5)


def test_kid_pipeline_matches_reference(tmp_path, detector_path):
    real = random_images(seed=9, num=100)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", real)
    result = metric_main.calc_metric(
        "kid100_full", **metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())
    )
    # With 100 images per set, every subset contains both whole sets, and MMD ignores row order.
    generated = expected_generated_images(100)
    expected = reference_kid_full_sets(reference_features(real), reference_features(generated))
    assert result.results.kid100_full == pytest.approx(expected, rel=1e-4)
    assert result.num_real == 100
    assert result.num_gen == 100


def test_fid_warns_when_images_below_features(tmp_path, detector_path):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(seed=10, num=4))
    with pytest.warns(UserWarning, match="4 real images with 6 features"):
        metric_main.calc_metric(
            "fid100_full", **metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())
        )


class CountingDetectorCalls:
    def __init__(self, monkeypatch):
        self.images = 0
        original = metric_utils.compute_network_features

        def counting(network, feature, images):
            self.images += len(images)
            return original(network, feature, images)

        monkeypatch.setattr(metric_utils, "compute_network_features", counting)


def test_real_stats_cache_reused_until_data_changes(tmp_path, detector_path, monkeypatch):
    calls = CountingDetectorCalls(monkeypatch)
    path = tmp_path / "real.npz"
    dataset_kwargs = write_npz_dataset(path, random_images(seed=11, num=9))
    kwargs = metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())

    first = metric_main.calc_metric("fid100_full", **kwargs)
    assert calls.images == 9 + 100
    second = metric_main.calc_metric("fid100_full", **kwargs)
    assert calls.images == 9 + 100 + 100  # only generated images
    assert second.cache_file == first.cache_file
    assert second.results.fid100_full == pytest.approx(first.results.fid100_full, rel=1e-12)

    write_npz_dataset(path, random_images(seed=12, num=9))  # new content, same path
    third = metric_main.calc_metric("fid100_full", **kwargs)
    assert calls.images == 9 + 100 + 100 + 9 + 100
    assert third.cache_file != first.cache_file
    assert third.results.fid100_full != pytest.approx(first.results.fid100_full)

    metric_main.calc_metric("fid100_full", **kwargs, cache=False)
    assert calls.images == 9 + 100 + 100 + 9 + 100 + 9 + 100


def test_cache_key_depends_on_settings(tmp_path, detector_path):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(seed=13, num=3))
    opts = metric_utils.MetricOptions(**metric_kwargs(dataset_kwargs, detector_path, None))
    network = opts.load_detector()

    def key(options, kind="mean_cov", num=3, net=network, feature="inception"):
        return metric_utils.real_stats_cache_file(options, kind, num, net, feature)

    base = key(opts)
    assert key(opts, kind="all") != base
    assert key(opts, num=2) != base
    assert key(opts, feature="vgg16") != base
    flipped = metric_utils.MetricOptions(
        **metric_kwargs(dict(dataset_kwargs, xflip=True), detector_path, None)
    )
    assert key(flipped) != base
    other_detector = str(tmp_path / "other-detector.pt")
    torch.jit.script(torch.nn.Sequential(MomentsDetector(), torch.nn.Identity())).save(
        other_detector
    )
    assert key(opts, net=detector_lib.load_feature_network(other_detector, "cpu")) != base


def test_image_folder_cache_notices_replaced_image(tmp_path, detector_path, monkeypatch):
    pytest.importorskip("training.dataset")
    calls = CountingDetectorCalls(monkeypatch)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(14)
    for i in range(5):
        pixels = rng.integers(0, 256, size=[8, 8, 3], dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    dataset_kwargs = dict(
        class_name="training.dataset.ImageFolderDataset", path=str(folder), use_labels=False
    )
    opts = metric_utils.MetricOptions(**metric_kwargs(dataset_kwargs, detector_path, None))
    stats, first_file = metric_utils.compute_real_stats(opts, "mean_cov")
    assert stats.num_items == 5
    assert calls.images == 5
    opts = metric_utils.MetricOptions(**metric_kwargs(dataset_kwargs, detector_path, None))
    _, second_file = metric_utils.compute_real_stats(opts, "mean_cov")
    assert second_file == first_file
    assert calls.images == 5

    PIL.Image.fromarray(np.zeros([8, 8, 3], dtype=np.uint8)).save(folder / "002.png")
    opts = metric_utils.MetricOptions(**metric_kwargs(dataset_kwargs, detector_path, None))
    _, third_file = metric_utils.compute_real_stats(opts, "mean_cov")
    assert third_file != first_file
    assert calls.images == 10


def test_image_folder_cache_shared_by_equal_selections(tmp_path, detector_path):
    pytest.importorskip("training.dataset")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(15)
    for i in range(6):
        pixels = rng.integers(0, 256, size=[8, 8, 3], dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    base = dict(class_name="training.dataset.ImageFolderDataset", path=str(folder))

    def cache_file(**dataset_options):
        opts = metric_utils.MetricOptions(
            **metric_kwargs(dict(base, **dataset_options), detector_path, None)
        )
        return metric_utils.real_stats_cache_file(opts, "mean_cov", 6, opts.load_detector())

    everything = cache_file(max_size=None)
    assert cache_file(max_size=6) == everything  # training records max_size = image count
    assert cache_file(max_size=100, random_seed=3) == everything
    assert cache_file(max_size=5) != everything


def test_generated_noise_is_per_image_and_batch_independent(tmp_path, detector_path):
    networks = pytest.importorskip("training.networks_stylegan2")
    torch.manual_seed(0)
    G = networks.Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=64, channel_max=8,
    )  # fmt: skip
    with torch.no_grad():
        for name, buffer in G.named_buffers():
            if name.endswith("noise_const"):
                buffer.zero_()  # const noise would then add nothing
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(1.0)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(16, 4))

    def features(batch_size):
        kwargs = metric_kwargs(dataset_kwargs, detector_path, G)
        opts = metric_utils.MetricOptions(**dict(kwargs, batch_size=batch_size))
        return metric_utils.compute_generated_stats(opts, "all", 5).get_all()

    np.testing.assert_allclose(features(2), features(5), rtol=1e-5, atol=1e-6)

    z, c = metric_utils.sample_latents(list(range(5)), 8, 0, None, seed=0)
    with torch.no_grad():
        const = metric_utils.generate_images(G, torch.from_numpy(z), torch.from_numpy(c))
    const_features = detector_lib.compute_features(
        detector_lib.load_feature_network(detector_path, "cpu"), const
    )
    assert not np.allclose(const_features.numpy(), features(5), atol=1e-3)


def test_conditional_generator_gets_dataset_labels(tmp_path, detector_path):
    labels = np.array([0, 2, 2, 1, 0, 2])
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(15, 6), labels)
    G = PatternGenerator(c_dim=3)
    metric_main.calc_metric("fid100_full", **metric_kwargs(dataset_kwargs, detector_path, G))
    c = torch.cat([c for _, c, _ in G.calls])
    assert c.shape == (100, 3)
    expected = np.eye(3)[labels]
    for index in range(100):
        rng = np.random.default_rng([0, index])
        rng.standard_normal(3)
        np.testing.assert_array_equal(c[index].numpy(), expected[rng.integers(6)])


def test_conditional_generator_needs_labels(tmp_path, detector_path):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(16, 4))
    G = PatternGenerator(c_dim=3)
    with pytest.raises(ValueError, match="c_dim=3.*use_labels=True"):
        metric_main.calc_metric("fid100_full", **metric_kwargs(dataset_kwargs, detector_path, G))


def test_generated_images_independent_of_batch_size(tmp_path, detector_path):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(17, 12))
    values = []
    for batch_size in [3, 64]:
        kwargs = metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())
        kwargs["batch_size"] = batch_size
        values.append(metric_main.calc_metric("fid100_full", **kwargs).results.fid100_full)
    assert values[0] == pytest.approx(values[1], rel=1e-6)


# ----------------------------------------------------------------------------
# Reports.


def test_report_metric_appends_json_lines(tmp_path, detector_path, capsys):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(18, 8))
    result = metric_main.calc_metric(
        "fid100_full", **metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    snapshot = str(run_dir / "network-snapshot-000004.pkl")
    metric_main.report_metric(result, run_dir=str(run_dir), snapshot_pkl=snapshot)
    metric_main.report_metric(result, run_dir=str(run_dir), snapshot_pkl=None)

    lines = (run_dir / "metric-fid100_full.jsonl").read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["results"] == {"fid100_full": result.results.fid100_full}
    assert record["metric"] == "fid100_full"
    assert record["snapshot_pkl"] == "network-snapshot-000004.pkl"
    assert json.loads(lines[1])["snapshot_pkl"] is None
    for field in [
        "total_time",
        "total_time_str",
        "num_gpus",
        "num_real",
        "num_gen",
        "dataset_path",
        "fingerprint",
        "resolution",
        "mirror",
        "detector_sha256",
        "device",
        "cache_file",
        "timestamp",
    ]:
        assert field in record, field
    assert capsys.readouterr().out.count('"metric": "fid100_full"') == 2


# ----------------------------------------------------------------------------
# Two processes.


def two_process_worker(rank, init_file, dataset_kwargs, detector_path, out_dir):
    """Compute real and generated features as rank `rank` of 2 and save them from rank 0."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo's connections on the loopback interface
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        kwargs = metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())
        opts = metric_utils.MetricOptions(**kwargs, num_gpus=2, rank=rank, cache=False)
        real, _ = metric_utils.compute_real_stats(opts, "all")
        gen = metric_utils.compute_generated_stats(opts, "all", 9)
        np.save(os.path.join(out_dir, f"real{rank}.npy"), real.get_all())
        np.save(os.path.join(out_dir, f"gen{rank}.npy"), gen.get_all())
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path, detector_path):
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", random_images(19, 7))
    opts = metric_utils.MetricOptions(
        **metric_kwargs(dataset_kwargs, detector_path, PatternGenerator())
    )
    real, _ = metric_utils.compute_real_stats(opts, "all")
    gen = metric_utils.compute_generated_stats(opts, "all", 9)

    args = (str(tmp_path / "init"), dataset_kwargs, detector_path, str(tmp_path))
    torch.multiprocessing.spawn(two_process_worker, args=args, nprocs=2)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"real{rank}.npy"), real.get_all(), rtol=1e-6)
        np.testing.assert_allclose(np.load(tmp_path / f"gen{rank}.npy"), gen.get_all(), rtol=1e-6)
