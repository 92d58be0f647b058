"""Matplotlib figures of training runs: metrics, DMD learning speed, feature cosine and losses.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, so no display
and no global pyplot state are involved. Every figure has a fixed size in pixels (see the
*_SIZE constants at DPI) so that callers and tests can rely on it.
"""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib.figure import Figure

import dnnlib
from plots.run_data import Run, RunGroup

DPI = 100
METRIC_SIZE = (6.4, 4.0)  # Inches: 640 x 400 pixels.
FEATURE_COS_SIZE = (6.4, 4.0)
LOSSES_SIZE = (10.0, 7.0)
SPEED_WIDTH = 8.0
SPEED_PANEL_HEIGHT = 2.2  # Inches per run; the speed figure is 800 x 220 * runs pixels.

LOSS_TERMS = (
    ("Loss/G/loss", "G loss"),
    ("Loss/D/loss", "D loss"),
    ("Loss/r1_penalty", "R1 penalty"),
    ("Loss/pl_penalty", "path-length penalty"),
)
FEATURE_COS_NAME = "DMD/feature_cos"
COLORS = [f"C{index}" for index in range(10)]


# ----------------------------------------------------------------------------
# Run colors and labels.


def run_styles(groups: list[RunGroup]) -> dict[str, tuple[str, str, str]]:
    """Map each run directory to (color, line style, label): one color per group."""
    line_styles = ["-", "--", ":", "-."]
    styles = {}
    for group_index, group in enumerate(groups):
        color = COLORS[group_index % len(COLORS)]
        for run_index, run in enumerate(group.runs):
            label = group.label
            if len(group.runs) > 1:
                label += f" seed {run.options.get('random_seed')}"
            styles[run.run_dir] = (color, line_styles[run_index % len(line_styles)], label)
    return styles


# ----------------------------------------------------------------------------
# Metrics.


def metric_names(runs: list[Run]) -> list[str]:
    """Return every metric result name found in the runs, sorted."""
    return sorted({name for run in runs for name in run.metrics})


def group_band(
    curves: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return kimg, mean, min and max over the kimg values that every curve has.

    Evaluations that only some runs of a group reached (e.g. a run stopped early) are left out,
    so the band always covers the same runs.
    """
    common = set(np.round(curves[0][0], 6))
    for kimg, _values in curves[1:]:
        common &= set(np.round(kimg, 6))
    grid = np.array(sorted(common))
    stacked = []
    for kimg, values in curves:
        lookup = dict(zip(np.round(kimg, 6), values))
        stacked.append([lookup[k] for k in grid])
    table = np.array(stacked, dtype=np.float64).reshape(len(curves), len(grid))
    return grid, table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def metric_figure(groups: list[RunGroup], metric: str) -> Figure:
    """Plot one metric against kimg: a line per group, with a min-max band over its runs."""
    fig = Figure(figsize=METRIC_SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for group_index, group in enumerate(groups):
        curves = [
            (run.metrics[metric].kimg, run.metrics[metric].value)
            for run in group.runs
            if metric in run.metrics
        ]
        if not curves:
            continue
        color = COLORS[group_index % len(COLORS)]
        kimg, mean, low, high = group_band(curves)
        label = group.label if len(curves) == 1 else f"{group.label} (mean of {len(curves)} runs)"
        ax.plot(kimg, mean, color=color, marker="o", markersize=3, label=label)
        if len(curves) > 1:
            ax.fill_between(kimg, low, high, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("kimg")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} (bands: min to max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# ----------------------------------------------------------------------------
# DMD learning speed.


def speed_figure(runs: list[Run], styles: dict[str, tuple[str, str, str]]) -> Figure | None:
    """Plot DMD/speed against kimg, one panel per run that reported it; None when none did.

    Red triangles mark the ticks in which detection fired, and shading marks spans with masks
    on. A lighter shade marks a tick in which masks were on after only some of its boundaries.
    """
    dmd_runs = [run for run in runs if run.dmd is not None]
    if not dmd_runs:
        return None
    height = SPEED_PANEL_HEIGHT * len(dmd_runs)
    fig = Figure(figsize=(SPEED_WIDTH, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(dmd_runs), 1, squeeze=False, sharex=True)[:, 0]
    for ax, run in zip(axes, dmd_runs):
        draw_speed_panel(ax, run, styles[run.run_dir])
    axes[-1].set_xlabel("kimg")
    return fig


def draw_speed_panel(ax, run: Run, style: tuple[str, str, str]) -> None:
    color, _line_style, label = style
    events = run.dmd
    ax.plot(events.kimg, events.speed, color=color, marker=".", label="speed")
    for index, span in enumerate(events.masked_spans):
        ax.axvspan(
            span.start_kimg,
            span.end_kimg,
            color="gray",
            alpha=0.35 * span.fraction,
            linewidth=0,
            label="masks on" if index == 0 else None,
        )
    detected = events.retarded > 0
    if detected.any():
        ax.plot(
            events.kimg[detected],
            events.speed[detected],
            linestyle="none",
            marker="v",
            color="red",
            label="detection",
        )
    ax.set_ylabel("DMD/speed")
    ax.set_title(label, fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper right")


# ----------------------------------------------------------------------------
# Per-run stats lines: feature cosine and losses.


def draw_stat_lines(ax, runs: list[Run], name: str, styles) -> int:
    """Draw `name` against kimg for every run that reported it; return how many did."""
    drawn = 0
    for run in runs:
        series = run.stats.get(name)
        if series is None or not (series.num > 0).any():
            continue
        keep = series.num > 0
        color, line_style, label = styles[run.run_dir]
        ax.plot(
            series.kimg[keep], series.mean[keep], color=color, linestyle=line_style, label=label
        )
        drawn += 1
    return drawn


def feature_cos_figure(runs: list[Run], styles) -> Figure | None:
    """Plot DMD/feature_cos of every run in one axes; None when no run reported it."""
    if not any(FEATURE_COS_NAME in run.stats for run in runs):
        return None
    fig = Figure(figsize=FEATURE_COS_SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    draw_stat_lines(ax, runs, FEATURE_COS_NAME, styles)
    ax.set_xlabel("kimg")
    ax.set_ylabel(FEATURE_COS_NAME)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def losses_figure(runs: list[Run], styles) -> Figure:
    """Plot the G and D losses and the R1 and path-length penalties, one panel per term."""
    fig = Figure(figsize=LOSSES_SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (name, title) in zip(axes, LOSS_TERMS):
        if draw_stat_lines(ax, runs, name, styles) == 0:
            ax.text(0.5, 0.5, "not reported", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{title} ({name})", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("kimg")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize="x-small")
    return fig


# ----------------------------------------------------------------------------
# Output.


def save_png(fig: Figure, path: str) -> None:
    """Render `fig` to PNG in memory and write it to `path` atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with dnnlib.util.atomic_write(path) as f:
        f.write(buffer.getvalue())
