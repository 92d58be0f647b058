"""Read training run directories into tidy, plot-ready structures.

A run directory is what `train.py` writes: `training_options.json`, `stats.jsonl` (one JSON
object per tick) and optional `metric-<name>.jsonl` files. The API:

    runs = load_runs(["training-runs"])       # run directories, or folders that contain them
    run = load_run("training-runs/00000-...")  # one run directory
    run.options                              # training_options.json as a dict
    run.records                              # stats.jsonl as a list of dicts, one per tick
    run.stats["Loss/G/loss"]                 # Series: kimg, mean, std, num per tick
    run.metrics["fid50k_full"]               # MetricSeries: kimg, value, snapshot_pkl
    run.dmd                                  # DMDEvents from the DMD/* stats, or None
    run.dmd.detection_kimg                   # tick ends at which detection fired
    run.dmd.masked_spans                     # MaskedSpan(start_kimg, end_kimg, fraction)
    groups = group_runs(runs)                # RunGroup(label, runs): same options, other seeds

Two runs have the same configuration when their training options are equal apart from
`random_seed`, `run_dir`, the DMD mask seed (`D_kwargs.dmd_kwargs.seed`) and the `seed` of
each training hook.

Every problem with a file raises RunDirError with the path, what is wrong and what to do.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re

import numpy as np

# Options that differ between seeds of one configuration: ignored when grouping runs. The
# `seed` of every training hook (e.g. the diagnostics hook) is ignored as well.
SEED_OPTION_PATHS = (("random_seed",), ("run_dir",), ("D_kwargs", "dmd_kwargs", "seed"))

MAX_LABEL_OPTIONS = 2  # Differing options named in a label shared by several configurations.
DMD_CLASS_NAME = "dmd_patch.networks.DMDDiscriminator"
OPTIONS_FILE = "training_options.json"
STATS_FILE = "stats.jsonl"
METRIC_FILE_PATTERN = re.compile(r"^metric-(.+)\.jsonl$")
SNAPSHOT_PATTERN = re.compile(r"network-snapshot-(\d+)\.pkl$")


class RunDirError(ValueError):
    """A path is not a readable run directory, or one of its files is invalid."""


@dataclasses.dataclass
class Series:
    """One stats.jsonl figure over training, one entry per tick that reported it."""

    kimg: np.ndarray  # Training progress at the end of the tick, in kimg. [T]
    mean: np.ndarray  # Mean of the values reported during the tick; NaN when num is 0. [T]
    std: np.ndarray  # Standard deviation of those values. [T]
    num: np.ndarray  # Number of values reported during the tick (0 = name registered only). [T]


@dataclasses.dataclass
class MetricSeries:
    """One metric result over training, one entry per evaluation, sorted by kimg."""

    kimg: np.ndarray  # Training progress of the evaluated snapshot, in kimg. [E]
    value: np.ndarray  # The result, e.g. the FID. [E]
    snapshot_pkl: list[str | None]  # File name of the evaluated snapshot, None if not recorded.


@dataclasses.dataclass
class MaskedSpan:
    """A stretch of training during which the DMD masks were on."""

    start_kimg: float
    end_kimg: float
    fraction: float  # Share of the interval boundaries in the span that left masks on, (0, 1].


@dataclasses.dataclass
class DMDEvents:
    """The DMD/* figures per tick in which at least one DMD interval boundary fell.

    A tick that contains several boundaries reports their mean, so `retarded` counts the
    detections in the tick and `masked` is the fraction of its boundaries after which the
    masks were on. With one boundary per tick (the default: 4 kimg each) both are exact.
    """

    kimg: np.ndarray  # Last boundary in each tick with one, or the tick's end, in kimg. [B]
    boundaries: np.ndarray  # Interval boundaries in the tick. [B]
    speed: np.ndarray  # Mean learning speed over the tick's boundaries; NaN if none had one. [B]
    retarded: np.ndarray  # Detections in the tick. [B]
    masked: np.ndarray  # Fraction of the tick's boundaries after which masks were on. [B]
    toggles: np.ndarray  # Mean count of mask state changes so far. [B]
    end_kimg: float  # Training progress of the last tick of the run, in kimg.

    @property
    def detection_kimg(self) -> np.ndarray:
        """Positions (as in `kimg`) of the ticks in which detection fired at least once."""
        return self.kimg[self.retarded > 0]

    @property
    def masked_spans(self) -> list[MaskedSpan]:
        """Spans with masks on, from the ticks' mask states.

        The mask state after the boundaries of tick i applies from its position in `kimg` to
        the next tick's position (or the run's end). Adjacent spans with the same fraction merge.
        """
        spans: list[MaskedSpan] = []
        ends = list(self.kimg[1:]) + [self.end_kimg]
        for start, end, fraction in zip(self.kimg, ends, self.masked):
            if not fraction > 0 or end <= start:
                continue
            if spans and spans[-1].end_kimg == start and spans[-1].fraction == fraction:
                spans[-1].end_kimg = float(end)
            else:
                spans.append(MaskedSpan(float(start), float(end), float(fraction)))
        return spans


@dataclasses.dataclass
class Run:
    """Everything read from one run directory."""

    run_dir: str
    options: dict  # training_options.json.
    records: list[dict]  # stats.jsonl, one dict per tick.
    stats: dict[str, Series]  # Every figure in stats.jsonl by its slash name.
    metrics: dict[str, MetricSeries]  # Every result in metric-*.jsonl by its result name.
    dmd: DMDEvents | None  # None when the run reported no DMD/* figures.

    @property
    def name(self) -> str:
        """The run directory's base name, e.g. '00003-stylegan2-...-nodmd'."""
        return os.path.basename(os.path.normpath(self.run_dir))

    @property
    def uses_dmd(self) -> bool:
        """Whether the run trained with the dynamically masked discriminator."""
        return self.options.get("D_kwargs", {}).get("class_name") == DMD_CLASS_NAME

    @property
    def config_key(self) -> str:
        """The training options without the seeds and run_dir, as canonical JSON."""
        return config_key(self.options)


@dataclasses.dataclass
class RunGroup:
    """Runs of one configuration, e.g. several seeds."""

    label: str  # Short configuration name, e.g. 'baseline' or 'dmd toggle r0.25 int4'.
    runs: list[Run]


# ----------------------------------------------------------------------------
# Finding and loading run directories.


def is_run_dir(path: str) -> bool:
    """Return True if `path` is a folder that contains a training_options.json."""
    return os.path.isfile(os.path.join(path, OPTIONS_FILE))


def find_run_dirs(paths: list[str]) -> list[str]:
    """Expand each path to run directories: itself, or the run directories directly inside it.

    Raises RunDirError for a path that is neither, naming the file it lacks.
    """
    run_dirs: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            raise RunDirError(f"{path}: not found or not a folder; give a run directory")
        if is_run_dir(path):
            run_dirs.append(path)
            continue
        children = sorted(os.path.join(path, name) for name in os.listdir(path))
        found = [child for child in children if os.path.isdir(child) and is_run_dir(child)]
        if not found:
            raise RunDirError(
                f"{path}: not a run directory (missing {OPTIONS_FILE}) and no run "
                f"directories inside it; give a folder written by train.py or its parent"
            )
        run_dirs.extend(found)
    return run_dirs


def load_runs(paths: list[str]) -> list[Run]:
    """Load every run directory that find_run_dirs() finds under `paths`."""
    return [load_run(run_dir) for run_dir in find_run_dirs(paths)]


def load_run(run_dir: str) -> Run:
    """Read one run directory. Raises RunDirError for missing, empty or invalid files."""
    options_path = os.path.join(run_dir, OPTIONS_FILE)
    stats_path = os.path.join(run_dir, STATS_FILE)
    for path in (options_path, stats_path):
        if not os.path.isfile(path):
            raise RunDirError(
                f"{run_dir}: not a run directory (missing {os.path.basename(path)}); give a "
                f"folder written by train.py"
            )
    options = read_json(options_path)
    if not isinstance(options, dict):
        raise RunDirError(f"{options_path}: expected a JSON object of training options")
    records = read_jsonl(stats_path)
    if not records:
        raise RunDirError(
            f"{stats_path} is empty: the run has not finished its first tick yet; wait for "
            f"its first status line or leave it out"
        )
    stats = stats_series(records, stats_path, dmd_interval_kimg(options))
    return Run(
        run_dir=run_dir,
        options=options,
        records=records,
        stats=stats,
        metrics=load_metrics(run_dir),
        dmd=dmd_events(stats, dmd_interval_kimg(options)),
    )


def read_json(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}: invalid JSON ({err}); the file is damaged") from err


def read_jsonl(path: str) -> list[dict]:
    """Parse one JSON object per line. A partial last line (a run still writing) is skipped."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    records = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if line_no == len(lines):  # No newline after it: train.py is still writing this line.
                break
            raise RunDirError(f"{path}, line {line_no}: invalid JSON ({err})") from err
        if not isinstance(record, dict):
            raise RunDirError(f"{path}, line {line_no}: expected a JSON object")
        records.append(record)
    return records


# ----------------------------------------------------------------------------
# Stats and metrics.


def stats_series(
    records: list[dict], path: str = STATS_FILE, interval_kimg: float | None = None
) -> dict[str, Series]:
    """Turn per-tick stats records into one Series per figure, placed at Progress/kimg.

    train.py's collector repeats a figure's last num, mean and std in ticks without new
    reports. The DMD/* series keep only the ticks in which a DMD interval boundary fell
    (see fresh_dmd_ticks); other figures keep the repeats, as stats.jsonl has them.
    """
    kimgs = tick_kimgs(records, path)
    fresh = fresh_dmd_ticks(records, kimgs, interval_kimg)
    columns: dict[str, list[tuple[float, float, float, int]]] = {}
    for kimg, record, is_fresh in zip(kimgs, records, fresh):
        for name, value in record.items():
            if name.startswith("DMD/") and not is_fresh:
                continue
            if isinstance(value, dict) and "mean" in value:
                entry = (kimg, as_float(value["mean"]), as_float(value.get("std")), value["num"])
                columns.setdefault(name, []).append(entry)
    series = {}
    for name, rows in columns.items():
        kimg, mean, std, num = (np.array(column) for column in zip(*rows))
        series[name] = Series(kimg=kimg, mean=mean, std=std, num=num.astype(np.int64))
    return series


def tick_kimgs(records: list[dict], path: str) -> list[float]:
    """Return Progress/kimg of every record, rounded to whole images."""
    kimgs = []
    for index, record in enumerate(records):
        try:
            # Progress/kimg passes through float32; rounding to whole images undoes that.
            kimgs.append(round(float(record["Progress/kimg"]["mean"]) * 1000) / 1000)
        except (KeyError, TypeError, ValueError) as err:
            raise RunDirError(
                f"{path}, record {index + 1}: missing Progress/kimg mean; expected a stats.jsonl "
                f"written by train.py"
            ) from err
    return kimgs


def fresh_dmd_ticks(
    records: list[dict], kimgs: list[float], interval_kimg: float | None
) -> list[bool]:
    """Return, per tick, whether its DMD/* entries come from boundaries inside the tick.

    Boundaries fall where cur_nimg passes a multiple of the interval, so tick i > 0 has one
    when nimg_(i-1) // interval_nimg < nimg_i // interval_nimg. The first tick keeps its
    entries because nothing earlier can repeat. Without a known interval, a tick whose DMD/*
    entries equal the previous tick's counts as a repeat: a new boundary would bring a new
    speed.
    """
    fresh = []
    for index, record in enumerate(records):
        has_entries = any(name.startswith("DMD/") for name in record)
        if index == 0 or not has_entries:
            fresh.append(has_entries)
        elif interval_kimg is not None:
            interval_nimg = max(int(round(interval_kimg * 1000)), 1)
            before = int(round(kimgs[index - 1] * 1000)) // interval_nimg
            after = int(round(kimgs[index] * 1000)) // interval_nimg
            fresh.append(after > before)
        else:
            fresh.append(dmd_entries(record) != dmd_entries(records[index - 1]))
    return fresh


def dmd_entries(record: dict) -> dict:
    return {name: value for name, value in record.items() if name.startswith("DMD/")}


def dmd_interval_kimg(options: dict) -> float | None:
    """Return the DMD interval in kimg from the training options; None when not recorded.

    DMD runs store it in D_kwargs.dmd_kwargs, baseline runs with diagnostics in a hook's kwargs.
    """
    candidates = [options.get("D_kwargs", {}).get("dmd_kwargs")] + list(
        options.get("hook_kwargs") or []
    )
    for kwargs in candidates:
        if isinstance(kwargs, dict) and kwargs.get("interval_kimg") is not None:
            return float(kwargs["interval_kimg"])
    return None


def as_float(value: object) -> float:
    return math.nan if value is None else float(value)


def load_metrics(run_dir: str) -> dict[str, MetricSeries]:
    """Read every metric-<name>.jsonl in `run_dir` into one MetricSeries per result name."""
    rows: dict[str, list[tuple[float, float, str | None]]] = {}
    for file_name in sorted(os.listdir(run_dir)):
        if not METRIC_FILE_PATTERN.match(file_name):
            continue
        path = os.path.join(run_dir, file_name)
        for index, record in enumerate(read_jsonl(path)):
            results = record.get("results")
            if not isinstance(results, dict):
                raise RunDirError(f"{path}, record {index + 1}: no 'results' object")
            kimg = metric_kimg(record, f"{path}, record {index + 1}")
            for name, value in results.items():
                rows.setdefault(name, []).append((kimg, float(value), record.get("snapshot_pkl")))
    metrics = {}
    for name, entries in rows.items():
        entries.sort(key=lambda entry: entry[0])
        metrics[name] = MetricSeries(
            kimg=np.array([entry[0] for entry in entries]),
            value=np.array([entry[1] for entry in entries]),
            snapshot_pkl=[entry[2] for entry in entries],
        )
    return metrics


def metric_kimg(record: dict, where: str) -> float:
    """Return the record's kimg, or the whole kimg in its snapshot name for older records."""
    if record.get("kimg") is not None:
        return float(record["kimg"])
    # NOTE: snapshot names contain cur_nimg // 1000, so this fallback drops the fraction of a kimg.
    match = SNAPSHOT_PATTERN.search(str(record.get("snapshot_pkl") or ""))
    if match is None:
        raise RunDirError(
            f"{where}: neither 'kimg' nor a network-snapshot-NNNNNN.pkl name; cannot place the "
            f"result on the kimg axis"
        )
    return float(int(match.group(1)))


# ----------------------------------------------------------------------------
# DMD events.


def dmd_events(stats: dict[str, Series], interval_kimg: float | None = None) -> DMDEvents | None:
    """Collect the ticks with a DMD interval boundary; None when the run reported none.

    Each tick is placed at its last boundary when `interval_kimg` is known, else at its end.
    """
    # Baseline runs with diagnostics report DMD/speed but no mask state.
    masked = stats.get("DMD/masked")
    ticks = masked if masked is not None else stats.get("DMD/speed")
    if ticks is None or not (ticks.num > 0).any():
        return None
    keep = ticks.num > 0
    kimg = ticks.kimg[keep]
    boundaries = ticks.num[keep]
    placed = kimg
    if interval_kimg is not None:
        interval_nimg = max(int(round(interval_kimg * 1000)), 1)
        placed = np.round(kimg * 1000).astype(np.int64) // interval_nimg * interval_nimg / 1000
    return DMDEvents(
        kimg=placed,
        boundaries=boundaries,
        speed=values_at(stats.get("DMD/speed"), kimg),
        retarded=np.nan_to_num(np.rint(values_at(stats.get("DMD/retarded"), kimg) * boundaries)),
        masked=np.nan_to_num(values_at(masked, kimg)),
        toggles=values_at(stats.get("DMD/toggles"), kimg),
        end_kimg=float(stats["Progress/kimg"].kimg[-1]),
    )


def values_at(series: Series | None, kimg: np.ndarray) -> np.ndarray:
    """Return the series' means at the given tick kimgs, NaN where it has no value."""
    out = np.full(len(kimg), math.nan)
    if series is None:
        return out
    lookup = {k: m for k, m, n in zip(series.kimg, series.mean, series.num) if n > 0}
    for index, k in enumerate(kimg):
        out[index] = lookup.get(k, math.nan)
    return out


# ----------------------------------------------------------------------------
# Grouping by configuration.


def config_key(options: dict) -> str:
    """Return the options without the seeds and run_dir as canonical JSON."""
    stripped = copy.deepcopy(options)
    for path in SEED_OPTION_PATHS:
        parent = stripped
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    for hook in stripped.get("hook_kwargs") or []:
        if isinstance(hook, dict):
            hook.pop("seed", None)
    return json.dumps(stripped, sort_keys=True)


def config_name(options: dict) -> str:
    """Return a short name: 'baseline' or 'dmd <policy> r<ratio> int<interval kimg>'."""
    dmd = options.get("D_kwargs", {}).get("dmd_kwargs")
    if dmd is None:
        return "baseline"
    return f"dmd {dmd.get('policy')} r{dmd.get('ratio'):g} int{dmd.get('interval_kimg'):g}"


def group_runs(runs: list[Run], mode: str = "auto") -> list[RunGroup]:
    """Group runs by configuration ('auto') or keep one group per run ('none').

    Groups keep the order of their first run. Groups that would share a short name get the
    options in which they differ appended, e.g. 'baseline (loss_kwargs.r1_gamma=1)'.
    """
    if mode == "none":
        return [RunGroup(label=run.name, runs=[run]) for run in runs]
    if mode != "auto":
        raise ValueError(f"Invalid group mode {mode!r}; use 'auto' or 'none'")
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.config_key, []).append(run)
    groups = [
        RunGroup(label=config_name(members[0].options), runs=members) for members in by_key.values()
    ]
    disambiguate_labels(groups)
    return groups


def disambiguate_labels(groups: list[RunGroup]) -> None:
    by_label: dict[str, list[RunGroup]] = {}
    for group in groups:
        by_label.setdefault(group.label, []).append(group)
    for same in by_label.values():
        if len(same) < 2:
            continue
        flats = [flatten_options(json.loads(group.runs[0].config_key)) for group in same]
        keys = sorted(set().union(*flats))
        differing = [key for key in keys if len({repr(flat.get(key)) for flat in flats}) > 1]
        # Lists such as hook_kwargs make unreadable labels, so only scalars are named.
        scalars = [key for key in differing if not any(isinstance(f.get(key), list) for f in flats)]
        for index, (group, flat) in enumerate(zip(same, flats)):
            details = ", ".join(f"{key}={flat.get(key)}" for key in scalars[:MAX_LABEL_OPTIONS])
            group.label = f"{group.label} ({details or f'configuration {index + 1}'})"


def flatten_options(options: dict, prefix: str = "") -> dict[str, object]:
    """Flatten nested option dicts to dotted keys, e.g. {'loss_kwargs.r1_gamma': 1}."""
    flat: dict[str, object] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_options(value, name + "."))
        else:
            flat[name] = value
    return flat
