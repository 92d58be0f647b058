"""Run one experiment recipe: train.py once per (setting, seed), then compare and plot the runs.

Each sweep varies one DMD option with everything else fixed, for example

    python experiments/sweep.py ratio --outdir=sweeps/ratio

trains --dmd-ratio 0.1, 0.25 and 0.5 with seeds 0, 1 and 2 on the bundled Fashion-MNIST data,
then writes sweeps/ratio/comparison.md (compare_runs.py) and the figures in sweeps/ratio/plots
(plot_runs.py). Runs go one after another. A run whose directory already contains its final
snapshot is skipped, so rerunning the same command after an interruption continues the sweep.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # Run as a script from any directory: dmd_patch and plots live in ROOT.

from dmd_patch.config import DMDConfig, block_output_resolutions  # noqa: E402
from plots import run_data  # noqa: E402

TRAIN_PY = os.path.join(ROOT, "train.py")
COMPARE_PY = os.path.join(ROOT, "compare_runs.py")
PLOT_PY = os.path.join(ROOT, "plot_runs.py")
DEFAULT_DATA = os.path.join(ROOT, "data", "fashion-mnist-32x32.zip")

# The demo-scale network of scripts/demo.sh, sized for a CPU. The 1-kimg DMD interval gives
# several detections within the default 8 kimg; train.py's default interval (4 kimg) would give
# one, at the very end. No augmentation, so that DMD is the only difference between runs (and
# docs/results stays reproducible); add --aug=ada to --base-args to study the two together.
CPU_BASE_ARGS = (
    "--cfg=stylegan2 --gpus=1 --batch=16 --gamma=0.1 --cbase=2048 --cmax=128 --map-depth=2 "
    "--workers=1 --metrics=fid500 --tick=1 --dmd-interval=1 --aug=noaug"
)

# train.py flags that sweep.py sets for every run, with the sweep.py option to use instead.
OWNED_FLAGS = {
    "--outdir": "--outdir",
    "--data": "--data",
    "--kimg": "--kimg",
    "--seed": "--seeds",
    "--desc": "(the setting and seed name the run)",
}

SWEEPS = ("baseline-vs-dmd", "ratio", "interval", "policy", "layers", "detect")


@dataclasses.dataclass
class Setting:
    """One configuration of a sweep: a short name and the train.py flags that make it."""

    name: str  # Used in the run directory names, e.g. 'ratio0.25'.
    flags: list[str]


@dataclasses.dataclass
class PlannedRun:
    setting: Setting
    seed: int
    command: list[str]
    finished_dir: str | None  # An earlier run of the same setting and seed that finished.

    @property
    def desc(self) -> str:
        return run_desc(self.setting, self.seed)


# ----------------------------------------------------------------------------
# Sweep settings.


def dmd_setting(name: str, *flags: str) -> Setting:
    return Setting(name=name, flags=["--dmd=1", *flags])


def layer_sets(img_resolution: int) -> list[list[int] | None]:
    """Return the masked-layer choices for the layers sweep: the default, its neighbour, both.

    The neighbour is the block at twice the default resolution when the discriminator has one,
    else the block at half of it. None stands for train.py's default, max(8, resolution / 8).
    """
    legal = block_output_resolutions(img_resolution)
    (default,) = DMDConfig().resolve_layers(img_resolution)
    neighbours = [res for res in (default * 2, default // 2) if res in legal]
    if default not in legal or not neighbours:
        raise click.ClickException(
            f"the layers sweep needs at least two discriminator blocks to choose from; a "
            f"{img_resolution}x{img_resolution} image has blocks at {legal}"
        )
    neighbour = neighbours[0]
    return [None, [neighbour], sorted([default, neighbour])]


def sweep_settings(sweep: str, img_resolution: int | None) -> list[Setting]:
    """Return the settings of a sweep, baseline or default setting first."""
    if sweep == "baseline-vs-dmd":
        return [Setting("baseline", ["--dmd=0"]), dmd_setting("dmd")]
    if sweep == "ratio":
        return [dmd_setting(f"ratio{r}", f"--dmd-ratio={r}") for r in ("0.1", "0.25", "0.5")]
    if sweep == "interval":
        return [dmd_setting(f"interval{k}", f"--dmd-interval={k}") for k in ("1", "4", "16")]
    if sweep == "policy":
        return [dmd_setting(p, f"--dmd-policy={p}") for p in ("toggle", "pulse", "always")]
    if sweep == "detect":
        return [dmd_setting(f"detect-{d}", f"--dmd-detect={d}") for d in ("prev", "ema")]
    if sweep == "layers":
        settings = []
        for layers in layer_sets(img_resolution):
            if layers is None:
                settings.append(dmd_setting("layers-default"))
            else:
                text = ",".join(str(res) for res in layers)
                settings.append(
                    dmd_setting("layers" + text.replace(",", "-"), f"--dmd-layers={text}")
                )
        return settings
    raise click.ClickException(f"unknown sweep {sweep!r}; choose one of {', '.join(SWEEPS)}")


def read_resolution(data: str) -> int:
    """Open the training data the way train.py does and return its image resolution."""
    from training.dataset import ImageFolderDataset

    try:
        dataset = ImageFolderDataset(path=data)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"--data={data}: {err}") from err
    resolution = dataset.resolution
    dataset.close()
    return resolution


# ----------------------------------------------------------------------------
# Command lines.


def flag_name(token: str) -> str | None:
    return token.split("=", 1)[0] if token.startswith("--") else None


def split_options(tokens: list[str]) -> list[list[str]]:
    """Split train.py arguments into options: ['--a=1'], ['--a', '1'] or a lone token."""
    options: list[list[str]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        takes_next = (
            token.startswith("--")
            and "=" not in token
            and index + 1 < len(tokens)
            and not tokens[index + 1].startswith("-")
        )
        options.append(tokens[index : index + 2] if takes_next else [token])
        index += 2 if takes_next else 1
    return options


def check_flags(tokens: list[str], source: str, varied: set[str]) -> None:
    """Reject flags that sweep.py sets itself, naming the option to use instead."""
    for option in split_options(tokens):
        name = flag_name(option[0])
        if name in OWNED_FLAGS:
            raise click.ClickException(
                f"{source}: {name} is set by sweep.py for every run; use {OWNED_FLAGS[name]} "
                f"instead"
            )
        if name in varied:
            raise click.ClickException(
                f"{source}: {name} is what this sweep varies; remove it from {source}"
            )


def without_flags(tokens: list[str], names: set[str]) -> list[str]:
    kept = [opt for opt in split_options(tokens) if flag_name(opt[0]) not in names]
    return [token for option in kept for token in option]


def run_desc(setting: Setting, seed: int) -> str:
    return f"{setting.name}-seed{seed}"


def train_command(
    setting: Setting, seed: int, base: list[str], extra: list[str], opts: dict
) -> list[str]:
    """Build one train.py command line. Later flags win in train.py, so the order matters."""
    return [
        sys.executable,
        TRAIN_PY,
        f"--outdir={opts['outdir']}",
        f"--data={opts['data']}",
        f"--kimg={opts['kimg']:g}",
        *base,
        *setting.flags,
        f"--seed={seed}",
        f"--desc={run_desc(setting, seed)}",
        *extra,
    ]


# ----------------------------------------------------------------------------
# Finished runs.


def is_finished(run_dir: str) -> bool:
    """Return True when the run reached its total_kimg and wrote the snapshot of that tick.

    train.py appends the last stats.jsonl record after the final snapshot and its metrics, so
    that record is proof that both are complete.
    """
    try:
        with open(os.path.join(run_dir, "training_options.json"), encoding="utf-8") as f:
            total_kimg = float(json.load(f)["total_kimg"])
        records = run_data.read_jsonl(os.path.join(run_dir, "stats.jsonl"))
        cur_nimg = int(round(float(records[-1]["Progress/kimg"]["mean"]) * 1000))
    except (OSError, ValueError, KeyError, IndexError, TypeError, run_data.RunDirError):
        return False
    snapshot = os.path.join(run_dir, f"network-snapshot-{cur_nimg // 1000:06d}.pkl")
    return cur_nimg >= int(total_kimg * 1000) and os.path.isfile(snapshot)


def matches(run_dir: str, seed: int, opts: dict) -> bool:
    """Return True when the run used this seed, kimg and data."""
    try:
        with open(os.path.join(run_dir, "training_options.json"), encoding="utf-8") as f:
            options = json.load(f)
        return (
            options["random_seed"] == seed
            and abs(float(options["total_kimg"]) - opts["kimg"]) < 1e-9
            and options["training_set_kwargs"]["path"] == opts["data"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def find_finished_run(desc: str, seed: int, opts: dict) -> str | None:
    """Return the newest finished run directory named ...-<desc> with this seed, kimg and data.

    NOTE: other options (the base and extra arguments) are not compared. Use a new --outdir
    after changing them.
    """
    outdir = opts["outdir"]
    if not os.path.isdir(outdir):
        return None
    pattern = re.compile(r"^\d+-.*-" + re.escape(desc) + "$")
    for name in sorted(os.listdir(outdir), reverse=True):
        run_dir = os.path.join(outdir, name)
        if pattern.match(name) and matches(run_dir, seed, opts) and is_finished(run_dir):
            return run_dir
    return None


# ----------------------------------------------------------------------------
# Planning and running.


def plan_runs(settings: list[Setting], seeds: list[int], base, extra, opts) -> list[PlannedRun]:
    plan = []
    for setting in settings:
        for seed in seeds:
            command = train_command(setting, seed, base, extra, opts)
            finished = find_finished_run(run_desc(setting, seed), seed, opts)
            plan.append(PlannedRun(setting, seed, command, finished))
    return plan


def decision_warnings(plan: list[PlannedRun], base: list[str], kimg: float) -> list[str]:
    """Warn about settings whose DMD interval is too long for any decision within --kimg.

    The first decision compares two speeds, so it comes at the end of the second interval.
    """
    warnings = []
    for setting in dict.fromkeys(run.setting.name for run in plan):
        flags = next(run.setting.flags for run in plan if run.setting.name == setting)
        tokens = base + flags
        if "--dmd=1" not in tokens:
            continue
        interval = 4.0
        for option in split_options(tokens):
            if flag_name(option[0]) == "--dmd-interval":
                interval = float(option[0].split("=", 1)[1] if "=" in option[0] else option[1])
        if kimg < 2 * interval:
            warnings.append(
                f"Warning: {setting}: --dmd-interval={interval:g} with --kimg={kimg:g} reaches "
                f"no DMD decision (the first comes at {2 * interval:g} kimg)"
            )
    return warnings


def run_training(plan: list[PlannedRun], opts: dict, dry_run: bool) -> list[str]:
    """Run each planned train.py command that has no finished run; return all run directories."""
    run_dirs = []
    for index, run in enumerate(plan, start=1):
        prefix = f"[{index}/{len(plan)}] {run.desc}"
        if run.finished_dir is not None:
            click.echo(f"{prefix}: finished run in {run.finished_dir}; skipped")
            run_dirs.append(run.finished_dir)
            continue
        click.echo(f"{prefix}:\n{shlex.join(run.command)}")
        if dry_run:
            continue
        result = subprocess.run(run.command)
        if result.returncode != 0:
            raise click.ClickException(
                f"train.py exited with code {result.returncode} for {run.desc}; fix the problem "
                f"and rerun the same sweep command, which skips the runs that finished"
            )
        run_dir = find_finished_run(run.desc, run.seed, opts)
        if run_dir is None:
            raise click.ClickException(
                f"train.py exited normally for {run.desc} but no finished run directory named "
                f"*-{run.desc} is in {opts['outdir']}"
            )
        run_dirs.append(run_dir)
    return run_dirs


def report_commands(run_dirs: list[str], outdir: str) -> list[list[str]]:
    compare = [
        sys.executable,
        COMPARE_PY,
        *run_dirs,
        f"--output={os.path.join(outdir, 'comparison.md')}",
    ]
    commands = [compare]
    if os.path.isfile(PLOT_PY):
        commands.append(
            [sys.executable, PLOT_PY, *run_dirs, f"--outdir={os.path.join(outdir, 'plots')}"]
        )
    return commands


def run_reports(run_dirs: list[str], outdir: str) -> None:
    """Write comparison.md with compare_runs.py, then the figures with plot_runs.py if present."""
    compare, *plot = report_commands(run_dirs, outdir)
    click.echo(shlex.join(compare))
    if subprocess.run(compare).returncode != 0:
        raise click.ClickException("compare_runs.py failed; see its message above")
    if not plot:
        click.echo(f"{PLOT_PY} not found; no figures written")
        return
    click.echo(shlex.join(plot[0]))
    if subprocess.run(plot[0]).returncode != 0:
        click.echo("Warning: plot_runs.py failed (see above); comparison.md is complete", err=True)


def parse_seeds(value: str) -> list[int]:
    """Parse '0,1,2' or '0-2' (or a mix) into a list of distinct seeds >= 0."""
    seeds: list[int] = []
    for item in value.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        if match is None:
            raise click.BadParameter(
                f"expected integers >= 0 or ranges like 0-2, comma-separated; got {value!r}",
                param_hint="--seeds",
            )
        low, high = int(match[1]), int(match[2] or match[1])
        seeds += [seed for seed in range(low, high + 1) if seed not in seeds]
    if not seeds:
        raise click.BadParameter(f"no seeds in {value!r}", param_hint="--seeds")
    return seeds


# ----------------------------------------------------------------------------
# Command line.


# fmt: off
@click.command(context_settings={"show_default": True})
@click.argument("sweep", type=click.Choice(SWEEPS))
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- TRAIN_ARGS...]")
@click.option("--outdir",    help="Folder for the run directories, comparison.md and plots/", metavar="DIR", type=str, required=True)
@click.option("--data",      help="Training data: a zip or folder made by dataset_tool.py", metavar="ZIP", type=str, default=DEFAULT_DATA)
@click.option("--kimg",      help="Training duration of each run, in kimg", metavar="KIMG", type=click.FloatRange(min=0, min_open=True), default=8)
@click.option("--seeds",     help="Seeds, comma-separated or a range such as 0-2", metavar="LIST", type=str, default="0,1,2")
@click.option("--base-args", help="train.py options shared by every run; replace for GPU-sized runs", metavar="ARGS", type=str, default=CPU_BASE_ARGS)
@click.option("-n", "--dry-run", help="Print the commands without running them", is_flag=True)
# fmt: on
def main(sweep, train_args, outdir, data, kimg, seeds, base_args, dry_run):
    """Train every setting of SWEEP with every seed, then write comparison.md and plots/.

    \b
    Sweeps and what they vary (all but the baseline use --dmd=1):
      baseline-vs-dmd  --dmd=0 and --dmd=1
      ratio            --dmd-ratio 0.1, 0.25, 0.5
      interval         --dmd-interval 1, 4, 16 kimg
      policy           --dmd-policy toggle, pulse, always
      layers           --dmd-layers default, its neighbour block, both (from the resolution)
      detect           --dmd-detect prev, ema

    Arguments after -- go to every train.py command and win over the base options. Base
    options that the sweep varies are dropped; extra arguments may not set them.

    \b
    python experiments/sweep.py ratio --outdir=sweeps/ratio --dry-run
    python experiments/sweep.py baseline-vs-dmd --outdir=sweeps/bvd --kimg=16 -- --device=cpu
    """
    opts = {"outdir": os.path.abspath(outdir), "data": os.path.abspath(data), "kimg": kimg}
    if not os.path.exists(opts["data"]):
        raise click.ClickException(f"--data={data}: file or folder not found")
    seed_list = parse_seeds(seeds)
    resolution = read_resolution(opts["data"]) if sweep == "layers" else None
    settings = sweep_settings(sweep, resolution)
    varied = {flag_name(f) for s in settings for f in s.flags}
    try:
        base = shlex.split(base_args)
    except ValueError as err:
        raise click.ClickException(f"--base-args={base_args!r}: {err}") from err
    extra = list(train_args)
    base = without_flags(base, varied)
    check_flags(base, "--base-args", set())
    check_flags(extra, "the arguments after --", varied)

    plan = plan_runs(settings, seed_list, base, extra, opts)
    for warning in decision_warnings(plan, base, kimg):
        click.echo(warning, err=True)
    run_dirs = run_training(plan, opts, dry_run)
    if dry_run:
        click.echo(
            f"Then: compare_runs.py on the {len(plan)} run directories, writing "
            f"{os.path.join(opts['outdir'], 'comparison.md')}, and plot_runs.py into "
            f"{os.path.join(opts['outdir'], 'plots')} (when present)."
        )
        return
    run_reports(run_dirs, opts["outdir"])


if __name__ == "__main__":
    main()
