"""Shared machinery of the metrics: options, progress output, feature statistics, the real-data
statistics cache and the feature passes over real and generated images."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import time
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

import dnnlib
from metrics import detector as detector_lib

# Part of every cache key: bump it when the preprocessing of real images changes, so old cache
# files stop matching.
FEATURE_PIPELINE_VERSION = "uint8-tf-bilinear-299-v1"

# ----------------------------------------------------------------------------
# Options.


class MetricOptions:
    """Everything a metric needs: the generator, the real data, the device and the detector."""

    def __init__(
        self,
        G: torch.nn.Module
        | None = None,  # Generator to evaluate; None when only real data is used.
        dataset_kwargs: dict | None = None,  # construct_class_by_name() kwargs of the real data.
        num_gpus: int = 1,  # Processes taking part; each computes 1/num_gpus of the images.
        rank: int = 0,  # This process's index in [0, num_gpus).
        device: torch.device | str | None = None,  # None = cuda if available, else cpu.
        progress: bool = False,  # Print progress lines with counts, rate and time left (rank 0).
        cache: bool = True,  # Read and write real-data statistics in <cache>/gan-metrics.
        detector_path: str | None = None,  # Inception network path or URL; None = default search.
        vgg16_path: str | None = None,  # VGG16 network path or URL; None = default search.
        batch_size: int = 64,  # Images per batch and process, for G and the feature network.
        num_workers: int = 2,  # DataLoader processes reading real images; 0 = read in-process.
        seed: int = 0,  # Seed of the latents and labels of generated images and of KID subsets.
    ):
        if dataset_kwargs is None:
            raise ValueError("Metrics need dataset_kwargs to build the real dataset.")
        if num_gpus < 1 or not 0 <= rank < num_gpus:
            raise ValueError(f"Invalid rank {rank} for num_gpus={num_gpus}.")
        if batch_size < 1:
            raise ValueError(f"Invalid metric batch_size={batch_size}: it must be 1 or more.")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.G = G
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus = num_gpus
        self.rank = rank
        self.device = torch.device(device)
        self.progress = progress and rank == 0
        self.cache = cache
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._detector_arg = detector_path
        self._vgg16_arg = vgg16_path
        self._resolved: dict[Any, str] = {}  # Feature network paths found so far.
        self._dataset = None

    @property
    def dataset(self):
        """The real dataset, built from dataset_kwargs on first use."""
        if self._dataset is None:
            self._dataset = dnnlib.util.construct_class_by_name(**self.dataset_kwargs)
        return self._dataset

    def load_detector(self, need_classifier: bool = False) -> detector_lib.FeatureNetwork:
        """Return the Inception network, found on first use (see resolve_inception_detector)."""
        key = ("inception", need_classifier)
        if key not in self._resolved:
            self._resolved[key] = detector_lib.resolve_inception_detector(
                self._detector_arg, need_classifier=need_classifier
            )
        return detector_lib.load_feature_network(self._resolved[key], self.device)

    def load_vgg16(self) -> detector_lib.FeatureNetwork:
        """Return the VGG16 network, found on first use (see resolve_vgg16_detector)."""
        if "vgg16" not in self._resolved:
            self._resolved["vgg16"] = detector_lib.resolve_vgg16_detector(self._vgg16_arg)
        return detector_lib.load_feature_network(self._resolved["vgg16"], self.device)

    def load_feature_network(self, feature: str) -> detector_lib.FeatureNetwork:
        """Return the network that computes `feature` (one of FEATURES)."""
        if feature not in FEATURES:
            raise ValueError(f"Invalid feature {feature!r}, expected one of {FEATURES}.")
        if feature == "vgg16":
            return self.load_vgg16()
        return self.load_detector(need_classifier=feature == "inception_probs")

    def describe(self) -> dict[str, Any]:
        """Fields that identify the data and device of a result."""
        return dict(
            dataset_path=self.dataset_kwargs.get("path"),
            fingerprint=self.dataset.content_fingerprint(),
            resolution=self.dataset.resolution,
            mirror=bool(self.dataset_kwargs.get("xflip", False)),
            device=str(self.device),
        )


def detector_info(network: detector_lib.FeatureNetwork | None) -> dict[str, Any]:
    """Return the record fields that name the feature network a result used (or None)."""
    if network is None:
        return dict(detector=None, detector_sha256=None)
    return dict(detector=os.path.basename(network.path), detector_sha256=network.sha256)


# Features a metric can ask for: Inception pool features (FID, KID), Inception class
# probabilities (IS) and VGG16 fc7 features (precision/recall).
FEATURES = ("inception", "inception_probs", "vgg16")


def compute_network_features(
    network: detector_lib.FeatureNetwork, feature: str, images: torch.Tensor
) -> torch.Tensor:
    """Run `network` on uint8 images [N, C, H, W] for `feature` and return [N, D] float32."""
    if feature == "inception":
        return network.inception_features(images)
    if feature == "inception_probs":
        return network.inception_probabilities(images)
    return network.vgg16_features(images)


# ----------------------------------------------------------------------------
# Progress output.


class ProgressMonitor:
    """Progress lines '<tag>: done/total <unit>, rate, elapsed, time left', printed at most once
    per `interval_s` seconds and once more at the end, and only when `verbose` is True."""

    def __init__(
        self, tag: str, num_items: int, verbose: bool, interval_s: float = 5.0, unit: str = "images"
    ):
        self.tag = tag
        self.unit = unit  # Name of the items in the progress line, e.g. "images".
        self.num_items = num_items
        self.verbose = verbose
        self.interval_s = interval_s
        self.start_time = time.monotonic()
        self.last_print_time = self.start_time

    def update(self, num_done: int) -> None:
        if not self.verbose:
            return
        now = time.monotonic()
        finished = num_done >= self.num_items
        if not finished and now - self.last_print_time < self.interval_s:
            return
        self.last_print_time = now
        elapsed = max(now - self.start_time, 1e-9)
        rate = num_done / elapsed
        left_s = (self.num_items - num_done) / rate if rate > 0 else float("inf")
        left = dnnlib.util.format_time(left_s) if np.isfinite(left_s) else "unknown"
        print(
            f"{self.tag}: {num_done}/{self.num_items} {self.unit}, {rate:.1f} {self.unit}/s, "
            f"{dnnlib.util.format_time(elapsed)} elapsed, {left} left",
            flush=True,
        )


# ----------------------------------------------------------------------------
# Feature statistics.

FEATURE_KINDS = ("all", "mean_cov")


class FeatureStats:
    """Features of a set of images: either all rows (kind 'all') or running float64 sums for
    their mean and covariance (kind 'mean_cov'). Rows past `max_items` are dropped."""

    def __init__(self, kind: str, max_items: int | None = None):
        if kind not in FEATURE_KINDS:
            raise ValueError(f"Invalid feature kind {kind!r}, expected one of {FEATURE_KINDS}.")
        self.kind = kind
        self.max_items = max_items  # None = no limit.
        self.num_items = 0
        self.num_features: int | None = None
        self._rows: list[np.ndarray] = []
        # Sums of (x - shift), where shift is the first batch's mean, so the covariance does not
        # lose digits by subtracting two large numbers when the features have a large mean.
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._sum_outer: np.ndarray | None = None

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray) -> None:
        """Add feature rows [N, D]; rows beyond max_items are ignored."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"Features must have shape [N, D], got {list(x.shape)}.")
        if self.num_features is None:
            self.num_features = x.shape[1]
        elif x.shape[1] != self.num_features:
            raise ValueError(f"Features have {x.shape[1]} columns, expected {self.num_features}.")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        if len(x) == 0:
            return
        self.num_items += len(x)
        if self.kind == "all":
            self._rows.append(x.astype(np.float32))
            return
        x64 = x.astype(np.float64)
        if self._shift is None:
            self._shift = x64.mean(axis=0)
            self._sum = np.zeros_like(self._shift)
            self._sum_outer = np.zeros([x.shape[1], x.shape[1]])
        centered = x64 - self._shift
        self._sum += centered.sum(axis=0)
        self._sum_outer += centered.T @ centered

    def get_all(self) -> np.ndarray:
        """Return all features, float32 [N, D]."""
        if self.kind != "all":
            raise ValueError("get_all() needs statistics of kind 'all'.")
        if not self._rows:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self._rows)

    def get_mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the mean [D] and unbiased covariance [D, D] (divided by N - 1, as numpy.cov), float64."""
        if self.num_items < 2:
            raise ValueError(f"A covariance needs at least 2 feature rows, got {self.num_items}.")
        if self.kind == "all":
            x = self.get_all().astype(np.float64)
            return x.mean(axis=0), np.cov(x, rowvar=False)
        n = self.num_items
        mean_centered = self._sum / n
        cov = (self._sum_outer - n * np.outer(mean_centered, mean_centered)) / (n - 1)
        return self._shift + mean_centered, cov

    def save(self, path: str) -> None:
        """Write the statistics to an .npz file atomically."""
        arrays: dict[str, np.ndarray] = dict(
            kind=np.array(self.kind), num_items=np.array(self.num_items)
        )
        if self.kind == "all":
            arrays["features"] = self.get_all()
        else:
            arrays.update(shift=self._shift, sum=self._sum, sum_outer=self._sum_outer)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with dnnlib.util.atomic_write(path) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> FeatureStats:
        """Read statistics written by save(); the file is read without pickle."""
        with np.load(path, allow_pickle=False) as data:
            stats = cls(str(data["kind"]))
            if stats.kind == "all":
                stats.append(data["features"])
            else:
                stats._shift = data["shift"]
                stats._sum = data["sum"]
                stats._sum_outer = data["sum_outer"]
                stats.num_features = len(stats._shift)
                stats.num_items = int(data["num_items"])
        return stats


# ----------------------------------------------------------------------------
# Sharding across processes.


def shard_indices(num_items: int, num_gpus: int, rank: int) -> list[int]:
    """Item indices this rank processes: rank, rank + num_gpus, ... up to num_items rounded up
    to a multiple of num_gpus, so every rank gets the same count. Indices past the end wrap
    around to 0, 1, ..., and gather_features() puts them last, where max_items drops them."""
    padded = -(-num_items // num_gpus) * num_gpus
    return [i % num_items for i in range(rank, padded, num_gpus)]


def gather_features(x: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """Gather a batch of features [B, D] from every rank into [B * num_gpus, D].

    Row j of rank r lands at j * num_gpus + r, which restores the item order of
    shard_indices() when every rank passes batch j of its shard at the same time.
    """
    if num_gpus == 1:
        return x
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(f"num_gpus={num_gpus} needs an initialized torch.distributed group.")
    parts = [torch.empty_like(x) for _ in range(num_gpus)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)  # [B, num_gpus, D] -> [B * num_gpus, D]


def _broadcast_flag(flag: bool, opts: MetricOptions) -> bool:
    """Return rank 0's value of `flag` on every rank."""
    if opts.num_gpus == 1:
        return flag
    tensor = torch.tensor([float(flag)], device=opts.device)
    torch.distributed.broadcast(tensor, src=0)
    return bool(tensor.item() != 0)


# ----------------------------------------------------------------------------
# Real images.


def real_stats_cache_file(
    opts: MetricOptions, kind: str, num_items: int, network: detector_lib.FeatureNetwork,
    feature: str = "inception",
) -> str:  # fmt: skip
    """Return the cache path of real-data statistics, keyed on the data's content and every
    setting that changes the features, including the feature network's file hash."""
    dataset = opts.dataset
    fields = dict(
        dataset_class=opts.dataset_kwargs.get("class_name"),
        fingerprint=dataset.content_fingerprint(),
        num_items=num_items,
        **_selection_fields(dataset, opts.dataset_kwargs, num_items),
        resolution=dataset.resolution,
        detector_sha256=network.sha256,
        feature=feature,
        kind=kind,
        pipeline=FEATURE_PIPELINE_VERSION,
    )
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    name = re.sub(r"[^0-9A-Za-z_.-]", "_", str(dataset.name)) or "dataset"
    prefix = name if feature == "inception" else f"{name}-{feature}"
    return dnnlib.make_cache_dir_path("gan-metrics", f"{prefix}-{kind}-{key[:32]}.npz")


def _selection_fields(dataset: Any, dataset_kwargs: dict, num_items: int) -> dict[str, Any]:
    """Return cache-key fields that identify which images the first `num_items` items are.

    Datasets of training.dataset expose their selection (raw image index and x-flip of every
    item), which is keyed directly, so that max_size=None and a max_size of at least the image
    count (as training records) share one cache file. Other datasets are keyed on the options
    that choose the subset.
    """
    raw_idx = getattr(dataset, "_raw_idx", None)
    xflip = getattr(dataset, "_xflip", None)
    if raw_idx is None or xflip is None:
        return dict(
            max_size=dataset_kwargs.get("max_size"),
            random_seed=dataset_kwargs.get("random_seed", 0),
            xflip=bool(dataset_kwargs.get("xflip", False)),
        )
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(raw_idx[:num_items], dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(xflip[:num_items], dtype=np.uint8).tobytes())
    return dict(selection=digest.hexdigest())


def compute_real_stats(
    opts: MetricOptions, kind: str, max_items: int | None = None, feature: str = "inception"
) -> tuple[FeatureStats, str | None]:
    """Return `feature` features (one of FEATURES) of the real images (the first `max_items`,
    None = all) and the cache file used (None when caching is off). A cached file is read
    instead of computing."""
    num_items = len(opts.dataset) if max_items is None else min(len(opts.dataset), max_items)
    if num_items < 1:
        raise ValueError(f"Dataset {opts.dataset_kwargs.get('path')!r} has no images.")
    network = opts.load_feature_network(feature)
    cache_file = None
    if opts.cache:
        cache_file = real_stats_cache_file(opts, kind, num_items, network, feature)
    if cache_file is not None and _broadcast_flag(os.path.isfile(cache_file), opts):
        return FeatureStats.load(cache_file), cache_file

    stats = FeatureStats(kind, max_items=num_items)
    monitor = ProgressMonitor("Real images", num_items, opts.progress)
    for images in _iterate_real_images(opts, num_items):
        features = compute_network_features(network, feature, images.to(opts.device))
        stats.append(gather_features(features, opts.num_gpus).cpu().numpy())
        monitor.update(stats.num_items)

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats, cache_file


def _iterate_real_images(opts: MetricOptions, num_items: int) -> Iterator[torch.Tensor]:
    """Yield this rank's batches of real images, uint8 [B, C, H, W]."""
    indices = shard_indices(num_items, opts.num_gpus, opts.rank)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(opts.dataset, indices),
        batch_size=opts.batch_size,
        shuffle=False,
        num_workers=opts.num_workers,
        pin_memory=opts.device.type == "cuda",
    )
    for images, _labels in loader:
        yield images


# ----------------------------------------------------------------------------
# Generated images.


def sample_latents(
    indices: list[int], z_dim: int, c_dim: int, dataset: Any, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return z float32 [N, z_dim] and c float32 [N, c_dim] for the given image indices.

    Each image draws from its own generator seeded with (seed, index), so image i is the same
    for every batch size and process count. c is the label of a random real image.
    """
    z = np.empty([len(indices), z_dim], dtype=np.float32)
    c = np.zeros([len(indices), c_dim], dtype=np.float32)
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, index])
        z[row] = rng.standard_normal(z_dim)
        if c_dim > 0:
            c[row] = dataset.get_label(int(rng.integers(len(dataset))))
    return z, c


# Third entry of the seed of an image's noise, so that it is drawn independently of the image's
# latent and label (which use the seed (seed, index)).
_NOISE_STREAM = 1


class NoiseBuffer(NamedTuple):
    """A per-pixel noise buffer of the generator: the module that owns it and its shape."""

    module: torch.nn.Module
    shape: tuple[int, int]


def find_noise_buffers(G: torch.nn.Module) -> list[NoiseBuffer]:
    """Return the generator's `noise_const` buffers [H, W] in named_buffers() order. StyleGAN3
    and BigGAN have none."""
    buffers = []
    for name, buffer in G.named_buffers():
        module_name, _, buffer_name = name.rpartition(".")
        if buffer_name != "noise_const":
            continue
        if buffer.ndim != 2:
            raise ValueError(
                f"Generator buffer {name} has shape {list(buffer.shape)}, but the metrics "
                f"expect per-pixel noise buffers of shape [H, W]."
            )
        buffers.append(NoiseBuffer(G.get_submodule(module_name), tuple(buffer.shape)))
    return buffers


def noise_seeds(indices: list[int], seed: int) -> np.ndarray:
    """Return one noise seed per image index, drawn from a generator seeded with
    (seed, index, _NOISE_STREAM)."""
    return np.array(
        [np.random.default_rng([seed, index, _NOISE_STREAM]).integers(2**63) for index in indices],
        dtype=np.uint64,
    )


def set_sample_noise(
    buffers: list[NoiseBuffer], seeds: np.ndarray, device: torch.device, copies: int = 1
) -> None:
    """Give every sample its own noise: replace each noise_const buffer [H, W] of a copy of G
    by noise [copies * N, 1, H, W], where rows k, k + N, ... share sample k's noise (PPL
    renders both ends of a path with copies=2).

    Sample k's noise is torch.randn of the total size of all buffers, drawn from a
    torch.Generator on `device` seeded with seeds[k] and split across the buffers in order, so
    it does not depend on the batch. CPU and CUDA generators give different numbers for the
    same seed. Call G with noise_mode='const' to use it.
    """
    sizes = [math.prod(buffer.shape) for buffer in buffers]
    if not sizes:
        return
    rows = []
    for seed in seeds:
        generator = torch.Generator(device=device).manual_seed(int(seed))
        rows.append(torch.randn([sum(sizes)], generator=generator, device=device))
    noise = torch.stack(rows).repeat(copies, 1)  # [copies * N, total]
    for buffer, part in zip(buffers, noise.split(sizes, dim=1)):
        # The synthesis layers add noise_const times a learned strength to their output
        # [N, C, H, W], so noise [N, 1, H, W] broadcasts to one noise image per sample.
        buffer.module.noise_const = part.reshape(-1, 1, *buffer.shape)


def check_labels(G: torch.nn.Module, dataset: Any, dataset_kwargs: dict) -> None:
    if G.c_dim > 0 and list(dataset.label_shape) != [G.c_dim]:
        raise ValueError(
            f"The generator is conditional with c_dim={G.c_dim}, but dataset "
            f"{dataset_kwargs.get('path')!r} has labels of shape {list(dataset.label_shape)}. "
            f"Use the labeled dataset the network was trained on, with use_labels=True."
        )


def evaluation_copy(opts: MetricOptions) -> torch.nn.Module:
    """Return a copy of opts.G in eval mode on opts.device, without gradients, after checking
    that the dataset has the labels a conditional G needs."""
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    if G.c_dim > 0:
        check_labels(G, opts.dataset, opts.dataset_kwargs)
    return G


def generate_images(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Run G on z [N, z_dim] and c [N, c_dim] with noise_mode='const' and return uint8 images
    [N, C, H, W]. set_sample_noise() makes that noise random per sample."""
    img = G(z=z, c=c, noise_mode="const")
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def compute_generated_stats(
    opts: MetricOptions, kind: str, num_gen: int, feature: str = "inception"
) -> FeatureStats:
    """Return `feature` features (one of FEATURES) of `num_gen` images from opts.G, split
    across the ranks.

    Image i gets its latent, label and per-pixel noise from generators seeded with
    (opts.seed, i), so it is the same for every batch size and process count. The noise is
    random per image, as in upstream's metrics, which call G with its default random noise.
    """
    if opts.G is None:
        raise ValueError("This metric needs a generator: pass G to calc_metric().")
    G = evaluation_copy(opts)
    noise_buffers = find_noise_buffers(G)
    network = opts.load_feature_network(feature)
    stats = FeatureStats(kind, max_items=num_gen)
    monitor = ProgressMonitor("Generated images", num_gen, opts.progress)
    indices = shard_indices(num_gen, opts.num_gpus, opts.rank)
    for start in range(0, len(indices), opts.batch_size):
        batch = indices[start : start + opts.batch_size]
        z, c = sample_latents(batch, G.z_dim, G.c_dim, opts.dataset, opts.seed)
        set_sample_noise(noise_buffers, noise_seeds(batch, opts.seed), opts.device)
        with torch.no_grad():
            images = generate_images(
                G, torch.from_numpy(z).to(opts.device), torch.from_numpy(c).to(opts.device)
            )
        features = compute_network_features(network, feature, images)
        stats.append(gather_features(features, opts.num_gpus).cpu().numpy())
        monitor.update(stats.num_items)
    return stats
