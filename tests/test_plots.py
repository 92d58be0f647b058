"""Tests of the run-directory reader (plots.run_data), the figures and the plot_runs.py CLI.

The reader is checked on small hand-written run directories with chosen values. The CLI runs
on real tiny train.py runs (two baseline seeds and one DMD run), which take about 30 s.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from test_train_e2e import MeanPoolDetector, run_train

import plot_runs
from plots import figures, run_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DMD_OPTIONS = {
    "random_seed": 0,
    "run_dir": "x",
    "D_kwargs": {
        "class_name": "dmd_patch.networks.DMDDiscriminator",
        "dmd_kwargs": {"policy": "toggle", "ratio": 0.25, "interval_kimg": 2, "seed": 0},
    },
    "loss_kwargs": {"r1_gamma": 1},
}


def stat(mean, num=1, std=0.0):
    return {"num": num, "mean": mean, "std": std}


def tick(kimg, **figures_by_name):
    record = {"Progress/kimg": stat(kimg)}
    for name, value in figures_by_name.items():
        record[name.replace("__", "/")] = value if isinstance(value, dict) else stat(value)
    record["timestamp"] = 0.0
    return record


def write_run(path, options, records, metric_records=None, metric="fid50k_full"):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "training_options.json"), "w") as f:
        json.dump(options, f)
    with open(os.path.join(path, "stats.jsonl"), "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    if metric_records is not None:
        with open(os.path.join(path, f"metric-{metric}.jsonl"), "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in metric_records)
    return str(path)


def dmd_tick(kimg, speed, retarded, masked):
    return tick(kimg, DMD__speed=speed, DMD__retarded=retarded, DMD__masked=masked)


# ----------------------------------------------------------------------------
# Reader on hand-written files.


def test_stats_series_values(tmp_path):
    records = [tick(1.0, Loss__G__loss=0.5), tick(2.0, Loss__G__loss=0.25)]
    run = run_data.load_run(write_run(tmp_path / "run", {"random_seed": 0}, records))
    series = run.stats["Loss/G/loss"]
    assert series.kimg.tolist() == [1.0, 2.0]
    assert series.mean.tolist() == [0.5, 0.25]
    assert series.num.tolist() == [1, 1]
    assert run.dmd is None
    assert not run.uses_dmd


def test_dmd_detections_and_masked_spans(tmp_path):
    # Interval 2 kimg, ticks of 1 kimg: boundaries at 2, 4, 6, 8. Ticks 3, 5 and 7 repeat the
    # previous tick's DMD entries, as train.py's collector does, and must be dropped.
    rows = [(2, 0.3, 0, 0), (3, 0.3, 0, 0), (4, 0.2, 1, 1), (5, 0.2, 1, 1), (6, 0.25, 0, 1)]
    rows += [(7, 0.25, 0, 1), (8, 0.1, 1, 0), (9, 0.1, 1, 0)]
    records = [tick(1.0)] + [dmd_tick(*row) for row in rows]
    run = run_data.load_run(write_run(tmp_path / "run", DMD_OPTIONS, records))
    assert run.uses_dmd
    assert run.dmd.kimg.tolist() == [2, 4, 6, 8]
    assert run.dmd.detection_kimg.tolist() == [4, 8]
    assert run.dmd.speed.tolist() == [0.3, 0.2, 0.25, 0.1]
    spans = [(s.start_kimg, s.end_kimg, s.fraction) for s in run.dmd.masked_spans]
    assert spans == [(4, 8, 1.0)]
    assert run.stats["DMD/speed"].kimg.tolist() == [2, 4, 6, 8]


def test_masked_span_runs_to_end(tmp_path):
    records = [dmd_tick(2, 0.3, 0, 0), dmd_tick(4, 0.2, 1, 1), tick(5.0)]
    run = run_data.load_run(write_run(tmp_path / "run", DMD_OPTIONS, records))
    spans = [(s.start_kimg, s.end_kimg, s.fraction) for s in run.dmd.masked_spans]
    assert spans == [(4, 5, 1.0)]


def test_tick_with_two_boundaries(tmp_path):
    # Ticks of 4 kimg, interval 2: each tick contains two boundaries, here one detection and one
    # of two boundaries with masks on. The tick is placed at its last boundary.
    records = [
        dmd_tick(4, stat(0.2, num=2), stat(0.5, num=2), stat(0.5, num=2)),
        dmd_tick(8, stat(0.1, num=2), stat(0.0, num=2), stat(1.0, num=2)),
    ]
    records.append(tick(9.0))
    run = run_data.load_run(write_run(tmp_path / "run", DMD_OPTIONS, records))
    assert run.dmd.boundaries.tolist() == [2, 2]
    assert run.dmd.retarded.tolist() == [1, 0]
    spans = [(s.start_kimg, s.end_kimg, s.fraction) for s in run.dmd.masked_spans]
    assert spans == [(4, 8, 0.5), (8, 9, 1.0)]


def test_repeats_dropped_without_interval(tmp_path):
    options = {"random_seed": 0, "D_kwargs": {"class_name": run_data.DMD_CLASS_NAME}}
    records = [dmd_tick(1, 0.3, 0, 0), dmd_tick(2, 0.3, 0, 0), dmd_tick(3, 0.2, 1, 1)]
    run = run_data.load_run(write_run(tmp_path / "run", options, records))
    assert run.dmd.kimg.tolist() == [1, 3]
    assert run.dmd.detection_kimg.tolist() == [3]


def test_metric_records_sorted_with_fallback(tmp_path):
    metric_records = [
        {"results": {"fid50k_full": 20.0}, "kimg": 8.5, "snapshot_pkl": "a.pkl"},
        {"results": {"fid50k_full": 30.0}, "snapshot_pkl": "network-snapshot-000004.pkl"},
    ]
    path = write_run(tmp_path / "run", {}, [tick(1.0)], metric_records)
    run = run_data.load_run(path)
    series = run.metrics["fid50k_full"]
    assert series.kimg.tolist() == [4.0, 8.5]
    assert series.value.tolist() == [30.0, 20.0]
    assert series.snapshot_pkl == ["network-snapshot-000004.pkl", "a.pkl"]


def test_grouping_ignores_seeds(tmp_path):
    runs = []
    for seed in (1, 2):
        options = json.loads(json.dumps(DMD_OPTIONS))
        options.update(random_seed=seed, run_dir=f"run{seed}")
        options["D_kwargs"]["dmd_kwargs"]["seed"] = seed
        options["hook_kwargs"] = [{"class_name": "h", "seed": seed}]
        runs.append(run_data.load_run(write_run(tmp_path / f"r{seed}", options, [tick(1.0)])))
    other = json.loads(json.dumps(DMD_OPTIONS))
    other["loss_kwargs"]["r1_gamma"] = 10
    runs.append(run_data.load_run(write_run(tmp_path / "r3", other, [tick(1.0)])))
    groups = run_data.group_runs(runs)
    assert [len(group.runs) for group in groups] == [2, 1]
    assert groups[0].label == "dmd toggle r0.25 int2 (loss_kwargs.r1_gamma=1)"
    assert groups[1].label == "dmd toggle r0.25 int2 (loss_kwargs.r1_gamma=10)"
    assert len(run_data.group_runs(runs, mode="none")) == 3


def test_group_band_matches_numpy():
    curves = [
        (np.array([0.0, 1.0, 2.0]), np.array([10.0, 8.0, 6.0])),
        (np.array([0.0, 1.0]), np.array([12.0, 4.0])),
    ]
    kimg, mean, low, high = figures.group_band(curves)
    assert kimg.tolist() == [0.0, 1.0]
    assert mean.tolist() == [11.0, 6.0]
    assert low.tolist() == [10.0, 4.0]
    assert high.tolist() == [12.0, 8.0]


# ----------------------------------------------------------------------------
# Errors.


def test_missing_options_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(run_data.RunDirError, match="missing training_options.json"):
        run_data.load_runs([str(tmp_path / "empty")])


def test_missing_stats_named(tmp_path):
    path = write_run(tmp_path / "run", {}, [])
    os.remove(os.path.join(path, "stats.jsonl"))
    with pytest.raises(run_data.RunDirError, match="missing stats.jsonl"):
        run_data.load_run(path)


def test_empty_stats_rejected(tmp_path):
    path = write_run(tmp_path / "run", {}, [])
    with pytest.raises(run_data.RunDirError, match="stats.jsonl is empty"):
        run_data.load_run(path)


def test_invalid_stats_line_named(tmp_path):
    path = write_run(tmp_path / "run", {}, [tick(1.0)])
    with open(os.path.join(path, "stats.jsonl"), "a") as f:
        f.write("{not json\n" + json.dumps(tick(2.0)) + "\n")
    with pytest.raises(run_data.RunDirError, match="line 2: invalid JSON"):
        run_data.load_run(path)


def test_partial_last_line_skipped(tmp_path):
    path = write_run(tmp_path / "run", {}, [tick(1.0)])
    with open(os.path.join(path, "stats.jsonl"), "a") as f:
        f.write('{"Progress/kimg": {"nu')
    assert len(run_data.load_run(path).records) == 1


def test_cli_error_names_path(tmp_path):
    (tmp_path / "notarun").mkdir()
    result = CliRunner().invoke(
        plot_runs.main, [str(tmp_path / "notarun"), f"--outdir={tmp_path / 'out'}"]
    )
    assert result.exit_code != 0
    assert "notarun" in result.output
    assert "missing training_options.json" in result.output


def test_cli_unknown_metric(tmp_path):
    path = write_run(tmp_path / "run", {}, [tick(1.0)])
    result = CliRunner().invoke(
        plot_runs.main, [path, f"--outdir={tmp_path / 'out'}", "--metric=kid50k_full"]
    )
    assert result.exit_code != 0
    assert "no run has a metric 'kid50k_full'" in result.output


# ----------------------------------------------------------------------------
# End to end on real tiny runs.


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Two baseline seeds and one DMD run of train.py, with FID from a stand-in detector."""
    base = tmp_path_factory.mktemp("plot_runs")
    data = str(base / "fmnist64.zip")
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "dataset_tool.py"), "--max-images=64"]
        + [f"--source={os.path.join(ROOT, 'data', 'fashion-mnist-32x32.zip')}", f"--dest={data}"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    detector = str(base / "mean-pool.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(MeanPoolDetector()).save(detector)
    outdir = base / "runs"
    common = ["--kimg=0.128", "--metrics=fid100_full", f"--detector={detector}"]
    run_train(outdir, data, *common, "--dmd=0")
    run_train(outdir, data, *common, "--dmd=0", "--seed=2")
    run_train(outdir, data, *common, "--dmd=1", "--dmd-interval=0.016")
    return str(outdir)


def check_png(path, size):
    image = np.asarray(PIL.Image.open(path).convert("RGB"))
    assert (image.shape[1], image.shape[0]) == size
    assert image.std() > 10, f"{path} looks blank"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, f"{path} has too few colors"


@pytest.mark.slow
def test_plot_runs_writes_pngs(real_runs, tmp_path):
    outdir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "plot_runs.py"), real_runs, f"--outdir={outdir}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for name in ["metric-fid100_full.png", "speed.png", "feature_cos.png", "losses.png"]:
        assert str(outdir / name) in result.stdout
    check_png(outdir / "metric-fid100_full.png", (640, 400))
    check_png(outdir / "losses.png", (1000, 700))
    check_png(outdir / "feature_cos.png", (640, 400))
    panels = sum("DMD/speed" in run.stats for run in run_data.load_runs([real_runs]))
    check_png(outdir / "speed.png", (800, 220 * panels))


@pytest.mark.slow
def test_real_runs_grouped_by_seed(real_runs):
    runs = run_data.load_runs([real_runs])
    assert len(runs) == 3
    groups = run_data.group_runs(runs)
    labels = [group.label for group in groups]
    assert labels == ["baseline", "dmd toggle r0.25 int0.016"]
    assert [len(group.runs) for group in groups] == [2, 1]
    dmd_run = groups[1].runs[0]
    assert dmd_run.dmd.detection_kimg.size >= 1
    assert dmd_run.metrics["fid100_full"].kimg[-1] == pytest.approx(0.128)
