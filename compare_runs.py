"""Compare training runs: one table row per configuration, with metrics as mean ± std over seeds.

Runs are grouped by their training_options.json, ignoring the options that only differ between
seeds of one experiment (random_seed, run_dir and the DMD mask seed). Each row shows the final
and the best value of every metric, the final kimg and the wall time.

Example, after two seeds each of a baseline and a DMD run under training-runs/:

    python compare_runs.py training-runs --metric=fid500 --output=comparison.md
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from typing import Any

import click
import numpy as np

import dnnlib
from dmd_patch.config import DMDConfig
from plots import run_data

# Options that follow from --dmd and are described by the DMD part of a label instead.
DMD_OPTIONS = (("D_kwargs", "dmd_kwargs"), ("D_kwargs", "class_name"), ("hook_kwargs",))

# Metrics whose best value is the lowest one. Every other metric is better when higher.
LOWER_IS_BETTER = ("fid", "kid")

# ----------------------------------------------------------------------------
# Reading and grouping run directories.


def load_runs(paths: list[str]) -> list[run_data.Run]:
    """Load the run directories under `paths`, skipping (with a warning) runs with no tick yet."""
    try:
        run_dirs = run_data.find_run_dirs(paths)
    except run_data.RunDirError as err:
        raise click.ClickException(str(err)) from err
    runs = []
    for run_dir in run_dirs:
        stats_path = os.path.join(run_dir, run_data.STATS_FILE)
        if not os.path.isfile(stats_path) or not os.path.getsize(stats_path):
            click.echo(f"Warning: {run_dir}: no stats.jsonl records yet; run left out", err=True)
            continue
        try:
            runs.append(run_data.load_run(run_dir))
        except run_data.RunDirError as err:
            raise click.ClickException(f"{err}; fix or remove that run directory") from err
    if not runs:
        raise click.ClickException(
            f"no finished ticks in any run directory under {', '.join(paths)}; "
            "wait for the first status line of a run"
        )
    return runs


def last_stat(run: run_data.Run, name: str) -> float | None:
    """Return the last per-tick mean of `name`, or None when the run never reported it."""
    series = run.stats.get(name)
    if series is None:
        return None
    values = series.mean[series.num > 0]
    return float(values[-1]) if len(values) else None


def metric_values(run: run_data.Run, metric: str) -> list[float]:
    """Return the run's values of `metric` in kimg order; empty when never evaluated."""
    series = run.metrics.get(metric)
    return [] if series is None else [float(v) for v in series.value]


def without_paths(options: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """Return a deep copy of `options` with the given key paths removed."""
    result = json.loads(json.dumps(options))
    for path in paths:
        node = result
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return result


def is_baseline(group: run_data.RunGroup) -> bool:
    return dmd_options(group.runs[0].options) is None


def dmd_options(options: dict[str, Any]) -> dict[str, Any] | None:
    d_kwargs = options.get("D_kwargs")
    return d_kwargs.get("dmd_kwargs") if isinstance(d_kwargs, dict) else None


def dmd_label(dmd_kwargs: dict[str, Any] | None) -> str:
    """Describe the DMD setting, e.g. 'dmd toggle r0.25 int1 layers=auto' or 'baseline'."""
    if dmd_kwargs is None:
        return "baseline"
    config = DMDConfig.from_dict({k: v for k, v in dmd_kwargs.items() if k != "seed"})
    layers = "auto" if config.layers is None else ",".join(str(r) for r in sorted(config.layers))
    parts = [
        "dmd",
        config.policy,
        f"r{config.ratio:g}",
        f"int{config.interval_kimg:g}",
        f"layers={layers}",
    ]
    # Options left at their defaults stay out of the label to keep it short.
    default = DMDConfig()
    if config.detect != default.detect:
        parts.append(f"detect={config.detect}")
    if config.detect == "ema":
        parts.append(f"beta={config.ema_beta:g}")
    for name in ("tol", "warmup_kimg", "speed", "rescale", "resample"):
        value = getattr(config, name)
        if value != getattr(default, name):
            parts.append(f"{name}={format_option(value)}")
    return " ".join(parts)


def flatten(options: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if not isinstance(options, dict):
        return {prefix: options}
    flat = {}
    for key, value in options.items():
        flat.update(flatten(value, prefix + (str(key),)))
    return flat


def format_option(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(format_option(v) for v in value)
    if isinstance(value, str) and os.sep in value:
        return os.path.basename(value)
    return str(value)


def assign_labels(groups: list[run_data.RunGroup]) -> None:
    """Label each group by its DMD setting plus the other options that differ between groups."""
    ignored = run_data.SEED_OPTION_PATHS + DMD_OPTIONS
    flats = [flatten(without_paths(g.runs[0].options, ignored)) for g in groups]
    keys = sorted(set().union(*flats)) if flats else []
    varying = [k for k in keys if len({json.dumps(f.get(k, "-")) for f in flats}) > 1]
    seen: dict[str, int] = {}
    for group, flat in zip(groups, flats):
        extras = [f"{key[-1]}={format_option(flat.get(key, '-'))}" for key in varying]
        label = " ".join([dmd_label(dmd_options(group.runs[0].options)), *dict.fromkeys(extras)])
        seen[label] = seen.get(label, 0) + 1
        group.label = label if seen[label] == 1 else f"{label} #{seen[label]}"


def natural_key(text: str) -> list[Any]:
    """Sort key that orders 'int4' before 'int16' and 'r0.1' before 'r0.25'."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return [(0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts)]


def ordered_groups(groups: list[run_data.RunGroup]) -> list[run_data.RunGroup]:
    """Baselines first, then by label."""
    return sorted(groups, key=lambda g: (not is_baseline(g), natural_key(g.label)))


# ----------------------------------------------------------------------------
# Summaries and table formats.


@dataclasses.dataclass
class Summary:
    """Mean and sample standard deviation (ddof=1) over the runs that have a value."""

    mean: float | None
    std: float | None  # None with fewer than two values.
    count: int


def summarize(values: list[float]) -> Summary:
    if not values:
        return Summary(None, None, 0)
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else None
    return Summary(float(np.mean(array)), std, len(array))


def best_value(metric: str, values: list[float]) -> float:
    return min(values) if metric.lower().startswith(LOWER_IS_BETTER) else max(values)


def summarize_group(group: run_data.RunGroup, metrics: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"label": group.label, "seeds": len(group.runs)}
    for metric in metrics:
        series = [v for v in (metric_values(run, metric) for run in group.runs) if v]
        row[f"{metric} final"] = summarize([values[-1] for values in series])
        row[f"{metric} best"] = summarize([best_value(metric, values) for values in series])
    kimgs = [k for k in (last_stat(run, "Progress/kimg") for run in group.runs) if k is not None]
    times = [t for t in (last_stat(run, "Timing/total_sec") for run in group.runs) if t is not None]
    row["kimg"] = kimgs
    row["wall"] = summarize(times)
    row["run_dirs"] = [run.run_dir for run in group.runs]
    return row


def format_number(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def format_summary(summary: Summary, num_runs: int) -> str:
    if summary.mean is None:
        return "n/a"
    text = format_number(summary.mean)
    if summary.std is not None:
        text += f" ± {format_number(summary.std)}"
    if summary.count < num_runs:
        text += f" (n={summary.count})"
    return text


def format_kimg(kimgs: list[float]) -> str:
    if not kimgs:
        return "n/a"
    low, high = min(kimgs), max(kimgs)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def column_names(metrics: list[str]) -> list[str]:
    return [name for metric in metrics for name in (f"{metric} final", f"{metric} best")]


def format_markdown(rows: list[dict[str, Any]], metrics: list[str], notes: list[str]) -> str:
    header = ["configuration", "seeds", *column_names(metrics), "kimg", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        wall = row["wall"]
        cells = [row["label"], str(row["seeds"])]
        cells += [format_summary(row[name], row["seeds"]) for name in column_names(metrics)]
        cells.append(format_kimg(row["kimg"]))
        cells.append("n/a" if wall.mean is None else dnnlib.util.format_time(wall.mean))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + notes) + "\n"


def format_csv(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    header = ["configuration", "seeds"]
    for name in column_names(metrics):
        key = name.replace(" ", "_")
        header += [f"{key}_mean", f"{key}_std", f"{key}_count"]
    header += ["final_kimg_min", "final_kimg_max", "wall_time_sec_mean", "run_dirs"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        cells: list[Any] = [row["label"], row["seeds"]]
        for name in column_names(metrics):
            summary = row[name]
            cells += [blank_if_none(summary.mean), blank_if_none(summary.std), summary.count]
        kimgs = row["kimg"]
        cells += [min(kimgs) if kimgs else "", max(kimgs) if kimgs else ""]
        cells += [blank_if_none(row["wall"].mean), ";".join(row["run_dirs"])]
        writer.writerow(cells)
    return out.getvalue()


def blank_if_none(value: float | None) -> Any:
    return "" if value is None else repr(value)


# ----------------------------------------------------------------------------
# Notes under the table.


def explain_values(metrics: list[str]) -> str:
    lower = [m for m in metrics if m.lower().startswith(LOWER_IS_BETTER)]
    higher = [m for m in metrics if m not in lower]
    best = []
    if lower:
        best.append(f"lowest value of a run for {', '.join(lower)}")
    if higher:
        best.append(f"highest value of a run for {', '.join(higher)}")
    text = (
        "Values are mean ± sample standard deviation (ddof=1) over seeds; a row with one seed "
        "shows its value alone. Final is the last evaluation of each run"
    )
    text += f"; best is the {' and the '.join(best)}." if best else "."
    return text + " n/a: not recorded. (n=k): only k of the row's runs have this metric."


def dataset_note(runs: list[run_data.Run]) -> str | None:
    """Return a warning line when the runs were trained on different datasets."""
    counts: dict[str, int] = {}
    for run in runs:
        path = str(run.options.get("training_set_kwargs", {}).get("path", "unknown"))
        counts[path] = counts.get(path, 0) + 1
    if len(counts) < 2:
        return None
    names = {os.path.basename(p) for p in counts}
    show = os.path.basename if len(names) == len(counts) else (lambda p: p)
    listing = ", ".join(f"{show(p)} ({n} runs)" for p, n in sorted(counts.items()))
    return (
        f"Warning: the runs use {len(counts)} different datasets: {listing}. "
        "Compare rows on the same data only."
    )


def duplicate_seed_notes(groups: list[run_data.RunGroup]) -> list[str]:
    notes = []
    for group in groups:
        seeds = [run.options.get("random_seed") for run in group.runs]
        repeated = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
        if repeated:
            notes.append(
                f"Warning: {group.label!r} contains several runs with seed "
                f"{', '.join(str(s) for s in repeated)}; pass one run directory per seed."
            )
    return notes


# ----------------------------------------------------------------------------
# Command line.


def compare(paths: list[str], metrics: list[str], fmt: str) -> str:
    """Read the runs under `paths` and return the comparison table as text."""
    runs = load_runs(paths)
    groups = run_data.group_runs(runs)
    assign_labels(groups)
    groups = ordered_groups(groups)
    found = sorted(set().union(*(run.metrics for run in runs)))
    if not metrics:
        metrics = found
    for metric in metrics:
        if metric not in found:
            click.echo(f"Warning: no run has metric {metric!r}; its columns show n/a", err=True)
    rows = [summarize_group(group, metrics) for group in groups]
    notes = [n for n in [dataset_note(runs)] if n] + duplicate_seed_notes(groups)
    if fmt == "csv":
        for note in notes:
            click.echo(note, err=True)
        return format_csv(rows, metrics)
    return format_markdown(rows, metrics, [explain_values(metrics), *notes])


# fmt: off
@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="RUN_DIR_OR_PARENT...")
@click.option("--metric", "metrics", help="Metric to show, e.g. fid500; repeat for several  [default: all found]", metavar="NAME", multiple=True)
@click.option("--format", "fmt",     help="Table format",                                          type=click.Choice(["markdown", "csv"]), default="markdown", show_default=True)
@click.option("--output",            help="Also write the table to this file", metavar="FILE",     type=str)
# fmt: on
def main(paths: tuple[str, ...], metrics: tuple[str, ...], fmt: str, output: str | None):
    """Compare training runs, one row per configuration with its seeds pooled.

    \b
    python compare_runs.py training-runs
    python compare_runs.py runs/00000-* runs/00001-* --metric=fid500 --format=csv --output=cmp.csv
    """
    text = compare(list(paths), list(metrics), fmt)
    click.echo(text, nl=False)
    if output:
        try:
            with dnnlib.util.atomic_write(output, "w") as f:
                f.write(text)
        except OSError as err:
            raise click.ClickException(f"--output={output}: cannot write the table ({err})") from err


if __name__ == "__main__":
    main()
