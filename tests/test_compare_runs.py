"""compare_runs.py on hand-written run directories (numbers checked against numpy) and on two
real tiny train.py runs."""

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_train_e2e import detector, run_train  # noqa: F401 (pytest fixture)

import compare_runs

FID = "fid100_full"


def make_run(parent, name, seed, fids, *, dmd=None, kimg=0.128, total_sec=60.0, **extra):
    """Write training_options.json, stats.jsonl and (unless fids is None) metric records."""
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    options = {
        "random_seed": seed,
        "run_dir": str(run_dir),
        "total_kimg": kimg,
        "training_set_kwargs": {"path": extra.get("data", "/data/fmnist.zip")},
        "loss_kwargs": {"r1_gamma": extra.get("gamma", 0.1)},
        "D_kwargs": {"class_name": "training.networks_stylegan2.Discriminator"},
        "hook_kwargs": [],
    }
    if dmd is not None:
        options["D_kwargs"] = {
            "class_name": "dmd_patch.networks.DMDDiscriminator",
            "dmd_kwargs": dict(dmd, seed=seed),
        }
        options["hook_kwargs"] = [{"class_name": "dmd_patch.hook.DMDHook"}]
    (run_dir / "training_options.json").write_text(json.dumps(options))
    ticks = [(kimg / 2, total_sec / 2), (kimg, total_sec)]
    lines = [
        json.dumps(
            {
                "Progress/kimg": {"num": 1, "mean": k, "std": 0},
                "Timing/total_sec": {"num": 1, "mean": t, "std": 0},
                "timestamp": 1.0,
            }
        )
        for k, t in ticks
    ]
    (run_dir / "stats.jsonl").write_text("\n".join(lines) + "\n")
    if fids is not None:
        records = [
            {"results": {FID: v}, "metric": FID, "kimg": kimg * i / (len(fids) - 1)}
            for i, v in enumerate(fids)
        ]
        text = "".join(json.dumps(r) + "\n" for r in records)
        (run_dir / f"metric-{FID}.jsonl").write_text(text)
    return run_dir


DMD = {
    "interval_kimg": 1.0,
    "detect": "prev",
    "ema_beta": 0.9,
    "tol": 0.0,
    "warmup_kimg": 0.0,
    "speed": "global",
    "policy": "toggle",
    "layers": None,
    "ratio": 0.25,
    "rescale": True,
    "resample": "interval",
}

BASE_FIDS = {0: [300.0, 250.0, 260.0], 1: [310.0, 240.0, 245.0], 2: [305.0, 270.0, 230.0]}
DMD_FIDS = {0: [300.0, 200.0, 210.0], 1: [290.0, 220.0, 215.0], 2: [295.0, 190.0, 205.0]}


@pytest.fixture
def runs(tmp_path):
    """Three seeds of a baseline and three of a DMD run, in shuffled directory order."""
    for seed in (2, 0, 1):
        make_run(tmp_path, f"0000{seed}-dmd", seed, DMD_FIDS[seed], dmd=DMD, total_sec=100 + seed)
        make_run(tmp_path, f"0001{seed}-base", seed, BASE_FIDS[seed], total_sec=200 + seed)
    return tmp_path


def invoke(*args):
    result = CliRunner().invoke(compare_runs.main, [str(a) for a in args])
    return result


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def table_rows(markdown):
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    rows = [line for line in lines[1:] if not line.startswith("| ---")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def test_csv_numbers_match_numpy(runs):
    result = invoke(runs, "--format=csv")
    assert result.exit_code == 0, result.output
    base, dmd = csv_rows(result.output)
    for row, fids in ((base, BASE_FIDS), (dmd, DMD_FIDS)):
        finals = np.array([fids[s][-1] for s in (0, 1, 2)])
        bests = np.array([min(fids[s]) for s in (0, 1, 2)])
        assert row["seeds"] == "3"
        assert float(row[f"{FID}_final_mean"]) == pytest.approx(finals.mean())
        assert float(row[f"{FID}_final_std"]) == pytest.approx(finals.std(ddof=1))
        assert float(row[f"{FID}_best_mean"]) == pytest.approx(bests.mean())
        assert float(row[f"{FID}_best_std"]) == pytest.approx(bests.std(ddof=1))
        assert row[f"{FID}_final_count"] == "3"
    assert float(base["wall_time_sec_mean"]) == pytest.approx(201.0)
    assert float(dmd["wall_time_sec_mean"]) == pytest.approx(101.0)
    assert float(base["final_kimg_max"]) == pytest.approx(0.128)


def test_markdown_rows_and_order(runs):
    result = invoke(runs)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [row[0] for row in rows] == ["baseline", "dmd toggle r0.25 int1 layers=auto"]
    finals = np.array([DMD_FIDS[s][-1] for s in (0, 1, 2)])
    expected = f"{finals.mean():.2f} ± {finals.std(ddof=1):.2f}"
    assert rows[1][2] == expected
    assert rows[1][1] == "3"
    assert rows[1][4] == "0.128"
    assert rows[1][5] == "1m 41s"
    assert "ddof=1" in result.output


def test_natural_order_and_extra_option_labels(tmp_path):
    for i, interval in enumerate((16.0, 4.0, 1.0)):
        make_run(tmp_path, f"0000{i}", 0, [1.0, 2.0], dmd=dict(DMD, interval_kimg=interval))
    make_run(tmp_path, "00005", 0, [1.0, 2.0], gamma=1.0)
    make_run(tmp_path, "00006", 0, [1.0, 2.0], gamma=0.1)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    labels = [row[0] for row in table_rows(result.output)]
    assert labels == [
        "baseline r1_gamma=0.1",
        "baseline r1_gamma=1",
        "dmd toggle r0.25 int1 layers=auto r1_gamma=0.1",
        "dmd toggle r0.25 int4 layers=auto r1_gamma=0.1",
        "dmd toggle r0.25 int16 layers=auto r1_gamma=0.1",
    ]


def test_dmd_label_lists_changed_options():
    options = dict(DMD, layers=[16, 8], detect="ema", ema_beta=0.5, resample="batch")
    label = compare_runs.dmd_label(options)
    assert label == "dmd toggle r0.25 int1 layers=8,16 detect=ema beta=0.5 resample=batch"


def test_single_seed_shows_value_only(tmp_path):
    make_run(tmp_path, "00000", 0, [280.0, 212.5, 214.25])
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = table_rows(result.output)
    assert row[1:4] == ["1", "214.25", "212.50"]


def test_run_without_metrics_is_na(tmp_path):
    make_run(tmp_path, "00000", 0, None)
    make_run(tmp_path, "00001", 0, None, dmd=DMD)
    make_run(tmp_path, "00002", 1, [5.0, 3.0], dmd=DMD)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    base, dmd = table_rows(result.output)
    assert base[2:4] == ["n/a", "n/a"]
    assert dmd[1] == "2"
    assert dmd[2] == "3.00 (n=1)"


def test_requested_metric_missing_everywhere(runs):
    result = invoke(runs, "--metric=kid100")
    assert result.exit_code == 0, result.output
    assert "no run has metric 'kid100'" in result.output
    assert table_rows(result.output)[0][2:4] == ["n/a", "n/a"]


def test_mixed_datasets_warn(tmp_path):
    make_run(tmp_path, "00000", 0, [1.0, 2.0], data="/data/a.zip")
    make_run(tmp_path, "00001", 0, [1.0, 2.0], data="/data/b.zip")
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 different datasets: a.zip (1 runs), b.zip (1 runs)" in result.output


def test_output_file_matches_stdout(runs, tmp_path):
    out = tmp_path / "cmp.md"
    result = invoke(runs, f"--output={out}")
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == result.output


def test_no_run_dirs_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke(tmp_path / "empty")
    assert result.exit_code != 0
    assert "training_options.json" in result.output
    result = invoke(tmp_path / "missing")
    assert result.exit_code != 0
    assert "missing" in result.output


def test_run_without_ticks_is_left_out(runs):
    (runs / "00099-fresh").mkdir()
    (runs / "00099-fresh" / "training_options.json").write_text(json.dumps({"random_seed": 9}))
    result = invoke(runs)
    assert result.exit_code == 0, result.output
    assert "no stats.jsonl records yet" in result.output
    assert len(table_rows(result.output)) == 2


def test_damaged_options_name_the_file(runs):
    (runs / "00010-base" / "training_options.json").write_text("{not json")
    result = invoke(runs)
    assert result.exit_code != 0
    assert "00010-base" in result.output


@pytest.mark.slow
def test_two_real_seeds_form_one_row(tmp_path, small_data, detector):  # noqa: F811
    for seed in (0, 1):
        run_train(
            tmp_path / "runs",
            small_data,
            "--kimg=0.064",
            "--metrics=fid100_full",
            f"--detector={detector}",
            "--dmd=1",
            "--dmd-interval=0.016",
            f"--seed={seed}",
        )
    result = invoke(tmp_path / "runs", "--format=csv")
    assert result.exit_code == 0, result.output
    (row,) = csv_rows(result.output)
    assert row["configuration"] == "dmd toggle r0.25 int0.016 layers=auto"
    assert row["seeds"] == "2"
    assert int(row[f"{FID}_final_count"]) == 2
    assert float(row["final_kimg_min"]) == pytest.approx(0.064)
