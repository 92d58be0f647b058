"""Metric names, evaluation of a metric by name, and the metric-<name>.jsonl records.

Names follow upstream StyleGAN2-ADA/StyleGAN3, with <count> the number of generated images:
100, 500, 1k, 2k, 5k, 10k or 50k. The 50k names are the standard ones; the smaller counts are
for quick CPU runs and give values that are comparable only at equal counts.

- fid<count>_full, kid<count>_full: Frechet and Kernel Inception Distance against every real
  image (up to 1,000,000 for KID, which keeps every feature vector). Without _full (fid50k,
  kid2k) the real statistics cover the first <count> images.
- pr<count>3_full, pr<count>3: precision and recall with k = 3 nearest neighbours in VGG16
  feature space, against up to 200,000 real images (_full) or the first <count>. Results
  <name>_precision and <name>_recall.
- is<count>: Inception Score over 10 splits; results <name>_mean and <name>_std.
- ppl_zfull, ppl_wfull, ppl_zend, ppl_wend, ppl2_wend: perceptual path length over 50,000
  pairs in Z or W, at random points ("full") or at path ends ("end"); the ppl_ variants crop
  the image center, ppl2_wend does not. A suffix _<count> (ppl2_wend_2k) takes fewer pairs.
- eqt<count>_int, eqt<count>_frac, eqr<count>: equivariance of a StyleGAN3 generator to
  integer and fractional translation and to rotation, as PSNR in dB.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Callable

import dnnlib
from metrics import metric_utils

METRIC_COUNTS = {
    "100": 100,
    "500": 500,
    "1k": 1000,
    "2k": 2000,
    "5k": 5000,
    "10k": 10000,
    "50k": 50000,
}
_COUNT = "(?P<count>" + "|".join(METRIC_COUNTS) + ")"
PR_MAX_REAL_FULL = 200_000  # Real images of pr*_full: bounds the N^2 distance computation.
KID_MAX_REAL_FULL = 1_000_000  # Real images of kid*_full, as upstream: bounds the memory.
PPL_SAMPLES = 50_000  # Pairs of the ppl names without a count suffix.
PPL_VARIANTS = {  # name: (space, sampling, crop)
    "ppl_zfull": ("z", "full", True),
    "ppl_wfull": ("w", "full", True),
    "ppl_zend": ("z", "end", True),
    "ppl_wend": ("w", "end", True),
    "ppl2_wend": ("w", "end", False),
}
EQ_KINDS = {"eqt_int": "eqt{count}_int", "eqt_frac": "eqt{count}_frac", "eqr": "eqr{count}"}


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: what it computes and what it needs."""

    name: str
    compute: Callable  # (opts) -> (value or dict of values, info dict)
    networks: tuple[str, ...]  # FeatureNetwork methods it calls (keys of detector.METHODS).
    generator: str = "any"  # "any", "stylegan" (mapping + synthesis) or "stylegan3".


def parse_metric(name: str) -> MetricSpec | None:
    """Return the MetricSpec of a valid metric name, else None."""
    if not isinstance(name, str):
        return None
    for parser in _PARSERS:
        spec = parser(name)
        if spec is not None:
            return spec
    return None


def _parse_fid_kid(name: str) -> MetricSpec | None:
    match = re.fullmatch(f"(?P<kind>fid|kid){_COUNT}(?P<full>_full)?", name)
    if match is None:
        return None
    num_gen = METRIC_COUNTS[match["count"]]
    max_real = num_gen
    if match["full"]:
        max_real = None if match["kind"] == "fid" else KID_MAX_REAL_FULL
    func = dict(
        fid="frechet_inception_distance.compute_fid", kid="kernel_inception_distance.compute_kid"
    )[match["kind"]]
    return MetricSpec(name, _bind(func, num_gen, max_real=max_real), ("inception_features",))


def _parse_pr(name: str) -> MetricSpec | None:
    match = re.fullmatch(f"pr{_COUNT}3(?P<full>_full)?", name)
    if match is None:
        return None
    num_gen = METRIC_COUNTS[match["count"]]
    max_real = PR_MAX_REAL_FULL if match["full"] else num_gen
    compute = _bind("precision_recall.compute_pr", num_gen, max_real=max_real, nhood_size=3)
    return MetricSpec(name, compute, ("vgg16_features",))


def _parse_is(name: str) -> MetricSpec | None:
    match = re.fullmatch(f"is{_COUNT}", name)
    if match is None:
        return None
    compute = _bind("inception_score.compute_is", METRIC_COUNTS[match["count"]], num_splits=10)
    return MetricSpec(name, compute, ("inception_probabilities",))


def _parse_ppl(name: str) -> MetricSpec | None:
    match = re.fullmatch(f"(?P<variant>{'|'.join(PPL_VARIANTS)})(_{_COUNT})?", name)
    if match is None:
        return None
    space, sampling, crop = PPL_VARIANTS[match["variant"]]
    num = METRIC_COUNTS[match["count"]] if match["count"] else PPL_SAMPLES
    compute = _bind(
        "perceptual_path_length.compute_ppl", num, epsilon=1e-4, space=space, sampling=sampling,
        crop=crop,
    )  # fmt: skip
    return MetricSpec(name, compute, ("vgg16_lpips",), generator="stylegan")


def _parse_eq(name: str) -> MetricSpec | None:
    for kind, pattern in EQ_KINDS.items():
        match = re.fullmatch(pattern.format(count=_COUNT), name)
        if match is not None:
            compute = _bind(
                "equivariance.compute_equivariance", METRIC_COUNTS[match["count"]], kind
            )
            return MetricSpec(name, compute, (), generator="stylegan3")
    return None


def _bind(func_name: str, *args, **kwargs) -> Callable:
    """metrics.<func_name>(opts, *args, **kwargs) as a function of opts alone. The module is
    imported on the first call, so parsing a name imports no metric code."""

    def compute(opts):
        func = dnnlib.util.get_obj_by_name(f"metrics.{func_name}")
        return func(opts, *args, **kwargs)

    return compute


_PARSERS = (_parse_fid_kid, _parse_pr, _parse_is, _parse_ppl, _parse_eq)


def list_valid_metrics() -> list[str]:
    """Return every valid metric name."""
    names = []
    for count in METRIC_COUNTS:
        names += [f"fid{count}_full", f"fid{count}", f"kid{count}_full", f"kid{count}"]
        names += [f"pr{count}3_full", f"pr{count}3", f"is{count}"]
        names += [pattern.format(count=count) for pattern in EQ_KINDS.values()]
    for variant in PPL_VARIANTS:
        names += [variant] + [f"{variant}_{count}" for count in METRIC_COUNTS]
    return names


def describe_valid_metrics() -> str:
    """Return the valid names in one sentence, for error messages."""
    counts = ", ".join(METRIC_COUNTS)
    return (
        f"fid<count>_full, fid<count>, kid<count>_full, kid<count>, pr<count>3_full, "
        f"pr<count>3, is<count>, eqt<count>_int, eqt<count>_frac, eqr<count> with <count> one of "
        f"{counts} (fid50k_full is the standard FID); {', '.join(PPL_VARIANTS)}, optionally "
        f"followed by _<count>"
    )


def is_valid_metric(metric: str) -> bool:
    return parse_metric(metric) is not None


# ----------------------------------------------------------------------------
# Checks at start-up.


def check_generator(metric: str, G) -> None:
    """Raise ValueError when `metric` cannot be computed for generator G."""
    spec = _require_spec(metric)
    if spec.generator == "stylegan" and not all(hasattr(G, a) for a in ("mapping", "synthesis")):
        raise ValueError(
            f"Metric {metric} needs a StyleGAN generator (separate mapping and synthesis "
            f"networks); {_class_name(G)} has none."
        )
    if spec.generator == "stylegan3":
        transform = getattr(
            getattr(getattr(G, "synthesis", None), "input", None), "transform", None
        )
        if transform is None:
            raise ValueError(
                f"Metric {metric} needs a StyleGAN3 generator (one whose input can be translated "
                f"and rotated); {_class_name(G)} is not one."
            )


def _class_name(module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def resolve_feature_networks(
    metrics: list[str], detector: str | None = None, vgg16: str | None = None
) -> dnnlib.EasyDict:
    """Find and check every feature network the metrics need, so that a missing or unsuitable
    file fails before any work.

    Each file is loaded once on the CPU and checked for what the metrics call it for (for
    example class probabilities for the Inception Score), then released. Returns
    EasyDict(detector_path, vgg16_path): the files found, or the arguments as given where no
    metric needs that network. Raises FileNotFoundError or ValueError naming the file to
    provide and where to put it.
    """
    from metrics import detector as detector_lib

    methods = sorted({method for metric in metrics for method in _require_spec(metric).networks})
    inception_methods = [m for m in methods if m.startswith("inception")]
    vgg16_methods = [m for m in methods if m.startswith("vgg16")]
    paths = dnnlib.EasyDict(detector_path=detector, vgg16_path=vgg16)
    if inception_methods:
        paths.detector_path = detector_lib.resolve_inception_detector(
            detector, need_classifier="inception_probabilities" in inception_methods
        )
        detector_lib.check_feature_network(paths.detector_path, inception_methods)
    if vgg16_methods:
        paths.vgg16_path = detector_lib.resolve_vgg16_detector(vgg16)
        detector_lib.check_feature_network(paths.vgg16_path, vgg16_methods)
    return paths


def _require_spec(metric: str) -> MetricSpec:
    spec = parse_metric(metric)
    if spec is None:
        raise ValueError(f"Unknown metric {metric!r}. Valid metrics: {describe_valid_metrics()}.")
    return spec


# ----------------------------------------------------------------------------
# Evaluation and records.


def calc_metric(metric: str, **kwargs) -> dnnlib.EasyDict:
    """Evaluate one metric by name; kwargs are MetricOptions arguments (G, dataset_kwargs,
    num_gpus, rank, device, progress, cache, detector_path, vgg16_path, batch_size, ...).

    Returns EasyDict(results, metric, total_time, total_time_str, num_gpus, num_real, num_gen,
    cache_file, detector, detector_sha256, dataset_path, fingerprint, resolution, mirror,
    device). results maps <metric> to its value, or <metric>_<part> to each part of a metric
    with several values (precision and recall, mean and std). Ranks other than 0 get NaN values.
    """
    spec = _require_spec(metric)
    opts = metric_utils.MetricOptions(**kwargs)
    if opts.G is not None:
        check_generator(metric, opts.G)

    start_time = time.time()
    value, info = spec.compute(opts)
    total_time = time.time() - start_time

    if isinstance(value, dict):
        results = {f"{metric}_{part}": part_value for part, part_value in value.items()}
    else:
        results = {metric: value}
    record = dict(num_real=None, num_gen=None, cache_file=None)
    record.update(info)
    record.update(metric_utils.detector_info(_network_used(spec, opts)))
    return dnnlib.EasyDict(
        results=dnnlib.EasyDict(results),
        metric=metric,
        total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time),
        num_gpus=opts.num_gpus,
        **record,
        **opts.describe(),
    )


def _network_used(spec: MetricSpec, opts: metric_utils.MetricOptions):
    if any(method.startswith("vgg16") for method in spec.networks):
        return opts.load_vgg16()
    if spec.networks:
        return opts.load_detector(need_classifier="inception_probabilities" in spec.networks)
    return None


def report_metric(
    result_dict: dict, run_dir: str | None = None, snapshot_pkl: str | None = None
) -> None:
    """Print a result as one JSON line and append it to <run_dir>/metric-<metric>.jsonl.

    The line holds the result fields, the snapshot's file name (snapshot_pkl, relative to the
    run directory as upstream writes it) and absolute path (snapshot_path), and a Unix
    timestamp. The file is rewritten atomically with the new line at the end, so a crash
    never leaves half a line.
    """
    record = dict(result_dict)
    record["results"] = dict(result_dict["results"])
    record["snapshot_pkl"] = os.path.basename(snapshot_pkl) if snapshot_pkl else None
    record["snapshot_path"] = os.path.abspath(snapshot_pkl) if snapshot_pkl else None
    record["timestamp"] = time.time()
    line = json.dumps(record)
    print(line)
    if run_dir is None:
        return
    path = os.path.join(run_dir, f"metric-{result_dict['metric']}.jsonl")
    previous = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            previous = f.read()
        if previous and not previous.endswith(b"\n"):
            previous += b"\n"
    with dnnlib.util.atomic_write(path) as f:
        f.write(previous + (line + "\n").encode("utf-8"))
