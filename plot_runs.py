"""Plot metrics, DMD learning speed and losses of training runs as PNG files.

Example, a baseline and a DMD run over three seeds each, all in one folder:

    python plot_runs.py training-runs --outdir=plots-out

Writes metric-<name>.png (one line per configuration, a band over its seeds), speed.png
(DMD/speed per DMD run, detections and masked spans marked), feature_cos.png (when any run
reported DMD/feature_cos) and losses.png, and prints the path of each file it writes.
"""

from __future__ import annotations

import os

import click

from plots import figures, run_data

# ----------------------------------------------------------------------------
# Figure selection.


def select_metrics(runs: list[run_data.Run], metric: str | None) -> list[str]:
    """Return the metrics to plot: all of them, or the one --metric names."""
    available = figures.metric_names(runs)
    if metric is None:
        return available
    for name in (metric, f"{metric}_full"):
        if name in available:
            return [name]
    raise click.BadParameter(
        f"no run has a metric {metric!r}; available: {', '.join(available) or 'none'}",
        param_hint="--metric",
    )


def write_figures(runs: list[run_data.Run], outdir: str, metric: str | None, group: str) -> None:
    """Build every figure for `runs` and write the PNGs to `outdir`, printing each path."""
    groups = run_data.group_runs(runs, mode=group)
    styles = figures.run_styles(groups)
    metrics = select_metrics(runs, metric)
    if not metrics:
        print("Note: no run has metric-*.jsonl records; skipping the metric figures.")
    for name in metrics:
        save(figures.metric_figure(groups, name), outdir, f"metric-{name}.png")

    speed = figures.speed_figure(runs, styles)
    if speed is None:
        print(
            "Note: no run reported DMD/speed (neither --dmd=1 nor DMD diagnostics); skipping speed.png."
        )
    else:
        save(speed, outdir, "speed.png")

    feature_cos = figures.feature_cos_figure(runs, styles)
    if feature_cos is None:
        print(f"Note: no run reported {figures.FEATURE_COS_NAME}; skipping feature_cos.png.")
    else:
        save(feature_cos, outdir, "feature_cos.png")

    save(figures.losses_figure(runs, styles), outdir, "losses.png")


def save(fig, outdir: str, file_name: str) -> None:
    path = os.path.join(outdir, file_name)
    figures.save_png(fig, path)
    print(path)


# ----------------------------------------------------------------------------
# Command line.


# fmt: off
@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--outdir", help="Where to write the PNG files", metavar="DIR",                      type=str, required=True)
@click.option("--metric", help="Plot only this metric  [default: every metric]", metavar="NAME",   type=str)
@click.option("--group",  help="auto: one line per configuration, banded over seeds; none: one line per run", type=click.Choice(["auto", "none"]), default="auto", show_default=True)
# fmt: on
def main(paths: tuple[str, ...], outdir: str, metric: str | None, group: str) -> None:
    """Plot training runs: RUN_DIR is a run directory or a folder of run directories.

    \b
    # Every run under training-runs, seeds of one configuration banded together
    python plot_runs.py training-runs --outdir=plots-out
    \b
    # Two runs, each drawn on its own, FID only
    python plot_runs.py training-runs/00000-... training-runs/00001-... \\
        --outdir=plots-out --metric=fid50k_full --group=none
    """
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f"{outdir} exists and is not a folder", param_hint="--outdir")
    try:
        runs = run_data.load_runs(list(paths))
    except run_data.RunDirError as err:
        raise click.ClickException(str(err)) from err
    write_figures(runs, outdir, metric, group)


if __name__ == "__main__":
    main()
