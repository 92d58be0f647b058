"""experiments/sweep.py: the train.py commands of each sweep, skipping of finished runs and one
real tiny sweep end to end."""

import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_PY = os.path.join(ROOT, "experiments", "sweep.py")
BUNDLED = os.path.join(ROOT, "data", "fashion-mnist-32x32.zip")
TINY_BASE = (
    "--cfg=stylegan2 --gpus=1 --batch=8 --gamma=0.1 --cbase=256 --cmax=32 --map-depth=2 "
    "--workers=0 --device=cpu --tick=0.032 --snap=2 --metrics=none --dmd-interval=0.016"
)


def run_sweep(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, SWEEP_PY, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)


def train_commands(output):
    """Return the printed train.py commands as {desc: {flag: value}}."""
    commands = {}
    for line in output.splitlines():
        tokens = shlex.split(line)
        if len(tokens) < 2 or not tokens[1].endswith("train.py"):
            continue
        flags = dict(token.split("=", 1) for token in tokens[2:])
        commands[flags["--desc"]] = flags
    return commands


@pytest.mark.parametrize(
    "sweep, flag, values",
    [
        ("baseline-vs-dmd", "--dmd", {"baseline": "0", "dmd": "1"}),
        ("ratio", "--dmd-ratio", {"ratio0.1": "0.1", "ratio0.25": "0.25", "ratio0.5": "0.5"}),
        ("interval", "--dmd-interval", {"interval1": "1", "interval4": "4", "interval16": "16"}),
        ("policy", "--dmd-policy", {"toggle": "toggle", "pulse": "pulse", "always": "always"}),
        (
            "layers",
            "--dmd-layers",
            {"layers-default": None, "layers16": "16", "layers8-16": "8,16"},
        ),
        ("detect", "--dmd-detect", {"detect-prev": "prev", "detect-ema": "ema"}),
    ],
)
def test_dry_run_commands(tmp_path, sweep, flag, values):
    result = run_sweep(sweep, f"--outdir={tmp_path}", "--seeds=0,2", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = train_commands(result.stdout)
    expected = {f"{name}-seed{seed}" for name in values for seed in (0, 2)}
    assert set(commands) == expected
    for name, value in values.items():
        for seed in (0, 2):
            flags = commands[f"{name}-seed{seed}"]
            assert flags.get(flag) == value
            assert flags["--seed"] == str(seed)
            assert flags["--kimg"] == "8"
            assert flags["--data"] == BUNDLED
            assert flags["--outdir"] == str(tmp_path)
            assert flags["--batch"] == "16"
            assert flags["--cbase"] == "2048"
            assert flags["--metrics"] == "fid500"
            if sweep != "baseline-vs-dmd":
                assert flags["--dmd"] == "1"
    assert not os.listdir(tmp_path)


def test_layer_sets_follow_resolution():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import sweep

    assert sweep.layer_sets(32) == [None, [16], [8, 16]]
    assert sweep.layer_sets(256) == [None, [64], [32, 64]]
    assert sweep.layer_sets(16) == [None, [4], [4, 8]]


def test_extra_args_win_and_conflicts_fail(tmp_path):
    result = run_sweep("ratio", f"--outdir={tmp_path}", "--seeds=0", "--dry-run", "--", "--gamma=2")
    assert result.returncode == 0, result.stderr
    flags = [line for line in result.stdout.splitlines() if "train.py" in line]
    assert all(line.endswith("--gamma=2") for line in flags)
    result = run_sweep("ratio", f"--outdir={tmp_path}", "--dry-run", "--", "--dmd-ratio=0.3")
    assert result.returncode != 0
    assert "--dmd-ratio is what this sweep varies" in result.stderr
    result = run_sweep("ratio", f"--outdir={tmp_path}", "--dry-run", "--base-args=--seed=4")
    assert result.returncode != 0
    assert "use --seeds instead" in result.stderr


def test_long_interval_warns(tmp_path):
    result = run_sweep("interval", f"--outdir={tmp_path}", "--seeds=0", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "interval16: --dmd-interval=16 with --kimg=8 reaches no DMD decision" in result.stderr
    assert "interval4" not in result.stderr


def test_missing_data_and_bad_seeds(tmp_path):
    result = run_sweep("ratio", f"--outdir={tmp_path}", f"--data={tmp_path / 'no.zip'}")
    assert result.returncode != 0
    assert "no.zip: file or folder not found" in result.stderr
    result = run_sweep("ratio", f"--outdir={tmp_path}", "--seeds=a", "--dry-run")
    assert result.returncode != 0
    assert "--seeds" in result.stderr


def fake_finished_run(outdir, name, seed, kimg, data, nimg):
    """Write the files by which a run counts as finished: options, last tick and snapshot."""
    run_dir = outdir / name
    run_dir.mkdir(parents=True)
    options = {"random_seed": seed, "total_kimg": kimg, "training_set_kwargs": {"path": data}}
    (run_dir / "training_options.json").write_text(json.dumps(options))
    record = {"Progress/kimg": {"num": 1, "mean": nimg / 1000, "std": 0}}
    (run_dir / "stats.jsonl").write_text(json.dumps(record) + "\n")
    (run_dir / f"network-snapshot-{nimg // 1000:06d}.pkl").write_bytes(b"")
    return run_dir


def test_finished_runs_are_skipped(tmp_path):
    done = fake_finished_run(tmp_path, "00000-x-dmd-seed0", 0, 8, BUNDLED, 8000)
    fake_finished_run(tmp_path, "00001-x-baseline-seed0", 0, 8, BUNDLED, 7000)  # Unfinished.
    fake_finished_run(tmp_path, "00002-x-baseline-seed1", 1, 4, BUNDLED, 4000)  # Other kimg.
    fake_finished_run(tmp_path, "00003-x-dmd-seed1", 0, 8, BUNDLED, 8000)  # Seed mismatch.
    result = run_sweep("baseline-vs-dmd", f"--outdir={tmp_path}", "--seeds=0,1", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"dmd-seed0: finished run in {done}; skipped" in result.stdout
    assert set(train_commands(result.stdout)) == {"baseline-seed0", "baseline-seed1", "dmd-seed1"}


@pytest.mark.slow
def test_tiny_sweep_writes_comparison(tmp_path):
    outdir = tmp_path / "sweep"
    args = ["baseline-vs-dmd", f"--outdir={outdir}", "--kimg=0.064", "--seeds=0"]
    result = run_sweep(*args, f"--base-args={TINY_BASE}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (outdir / "comparison.md").read_text(encoding="utf-8")
    lines = table.splitlines()
    assert lines[2].startswith("| baseline | 1 |")
    assert lines[3].startswith("| dmd toggle r0.25 int0.016 layers=auto | 1 |")
    assert "| 0.064 |" in lines[3]
    runs = sorted(name for name in os.listdir(outdir) if name[0].isdigit())
    assert len(runs) == 2
    if os.path.isfile(os.path.join(ROOT, "plot_runs.py")):
        assert (outdir / "plots" / "losses.png").is_file()

    # A second call trains nothing and rewrites the same table.
    again = run_sweep(*args, f"--base-args={TINY_BASE}")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("; skipped") == 2
    assert sorted(name for name in os.listdir(outdir) if name[0].isdigit()) == runs
    assert (outdir / "comparison.md").read_text(encoding="utf-8") == table
