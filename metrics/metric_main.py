"""Metric names, evaluation of a metric by name, and the metric-<name>.jsonl records.

Names have the form <kind><count>[_full]: kind is fid or kid, count is the number of generated
images (100, 500, 1k, 2k, 5k, 10k or 50k). With _full the real statistics cover the whole
dataset; without it they cover the first <count> real images, as in upstream's fid50k.
fid50k_full and kid50k_full are the standard ones; the smaller counts are for quick CPU runs
and give values that are comparable only at equal counts.
"""

from __future__ import annotations

import json
import os
import re
import time

import dnnlib
from metrics import frechet_inception_distance, kernel_inception_distance, metric_utils

METRIC_COUNTS = {
    "100": 100,
    "500": 500,
    "1k": 1000,
    "2k": 2000,
    "5k": 5000,
    "10k": 10000,
    "50k": 50000,
}
METRIC_FUNCS = {
    "fid": frechet_inception_distance.compute_fid,
    "kid": kernel_inception_distance.compute_kid,
}
_NAME_PATTERN = re.compile(r"^(?P<kind>[a-z]+)(?P<count>\d+k?)(?P<full>_full)?$")


def list_valid_metrics() -> list[str]:
    return [
        f"{kind}{count}{suffix}"
        for kind in METRIC_FUNCS
        for suffix in ("_full", "")
        for count in METRIC_COUNTS
    ]


def is_valid_metric(metric: str) -> bool:
    return _parse_metric(metric) is not None


def _parse_metric(metric: str) -> tuple[str, int, int | None] | None:
    """Return (kind, number of generated images, max real images or None for all) for a
    valid name, else None."""
    match = _NAME_PATTERN.match(metric) if isinstance(metric, str) else None
    if match is None or match["kind"] not in METRIC_FUNCS or match["count"] not in METRIC_COUNTS:
        return None
    num_gen = METRIC_COUNTS[match["count"]]
    return match["kind"], num_gen, None if match["full"] else num_gen


def calc_metric(metric: str, **kwargs) -> dnnlib.EasyDict:
    """Evaluate one metric by name; kwargs are MetricOptions arguments (G, dataset_kwargs,
    num_gpus, rank, device, progress, cache, detector_path, batch_size, ...).

    Returns EasyDict(results={metric: value}, metric, total_time, total_time_str, num_gpus,
    num_real, num_gen, dataset_path, fingerprint, resolution, mirror, detector_sha256, device,
    cache_file). Ranks other than 0 get NaN values.
    """
    parsed = _parse_metric(metric)
    if parsed is None:
        raise ValueError(
            f"Unknown metric {metric!r}. Valid metrics: {', '.join(list_valid_metrics())}."
        )
    kind, num_gen, max_real = parsed
    opts = metric_utils.MetricOptions(**kwargs)

    start_time = time.time()
    value, info = METRIC_FUNCS[kind](opts, num_gen, max_real=max_real)
    total_time = time.time() - start_time

    return dnnlib.EasyDict(
        results=dnnlib.EasyDict({metric: value}),
        metric=metric,
        total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time),
        num_gpus=opts.num_gpus,
        **info,
        **opts.describe(),
    )


def report_metric(
    result_dict: dict, run_dir: str | None = None, snapshot_pkl: str | None = None
) -> None:
    """Print a result as one JSON line and append it to <run_dir>/metric-<metric>.jsonl.

    The line contains the result fields, the snapshot's file name and a Unix timestamp. The file is
    rewritten atomically with the new line at the end, so a crash never leaves half a line.
    """
    record = dict(result_dict)
    record["results"] = dict(result_dict["results"])
    record["snapshot_pkl"] = os.path.basename(snapshot_pkl) if snapshot_pkl else None
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
