"""End-to-end runs of train.py with --dmd-diagnostics: the diagnostics leave the trained weights
bitwise unchanged, and stats.jsonl contains their figures, for baseline and DMD runs."""

import os

import pytest
import torch

from tests.test_train_e2e import only_run_dir, read_jsonl, run_train
from training import snapshot as snapshot_lib

pytestmark = pytest.mark.slow

DIAGNOSTICS = ["DMD/feature_cos", "DMD/gen_feat_mean", "DMD/gen_feat_var"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data):  # noqa: F811
    """Run directories keyed by (dmd, diagnostics): 0.064 kimg, interval 0.016 kimg."""
    run_dirs = {}
    for dmd in (0, 1):
        for diagnostics in (0, 1):
            outdir = tmp_path_factory.mktemp(f"dmd{dmd}-diagnostics{diagnostics}")
            run_train(
                outdir,
                small_data,
                "--kimg=0.064",
                "--metrics=none",
                f"--dmd={dmd}",
                "--dmd-interval=0.016",
                f"--dmd-diagnostics={diagnostics}",
            )
            (run_dirs[dmd, diagnostics],) = only_run_dir(outdir)
    return run_dirs


@pytest.mark.parametrize("dmd", [0, 1])
def test_diagnostics_leave_weights_identical(runs, dmd):
    name = "network-snapshot-000000.pkl"
    with_diagnostics = snapshot_lib.read_snapshot(os.path.join(runs[dmd, 1], name))
    without = snapshot_lib.read_snapshot(os.path.join(runs[dmd, 0], name))
    for key in ("G", "D", "G_ema"):
        state = with_diagnostics[key]["state_dict"]
        for tensor_name, tensor in without[key]["state_dict"].items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, state[tensor_name]), (
                    f"--dmd={dmd}: {key}.{tensor_name} differs with diagnostics on"
                )
    for phase in ("G", "D"):
        steps = [float(s["step"]) for s in without["optimizers"][phase]["state"].values()]
        other = [float(s["step"]) for s in with_diagnostics["optimizers"][phase]["state"].values()]
        assert steps == other


@pytest.mark.parametrize("dmd", [0, 1])
def test_stats_contain_diagnostics(runs, dmd):
    records = read_jsonl(os.path.join(runs[dmd, 1], "stats.jsonl"))
    for name in DIAGNOSTICS + ["DMD/speed"]:
        assert any(name in record for record in records), f"{name} never reported"
    cos = [r["DMD/feature_cos"]["mean"] for r in records if "DMD/feature_cos" in r]
    assert all(-1 <= value <= 1 for value in cos)
    assert all(r["DMD/gen_feat_var"]["mean"] > 0 for r in records if "DMD/gen_feat_var" in r)


def test_stats_without_diagnostics(runs):
    records = read_jsonl(os.path.join(runs[0, 0], "stats.jsonl"))
    for name in DIAGNOSTICS + ["DMD/speed"]:
        assert not any(name in record for record in records), f"{name} reported"


def test_baseline_speed_equals_dmd_speed_before_masks(runs):
    # Both runs train alike until DMD first turns masks on, which needs two speeds first:
    # the first tick that reports a speed has the same value in both.
    def first_speed(run_dir):
        records = read_jsonl(os.path.join(run_dir, "stats.jsonl"))
        return next(r["DMD/speed"]["mean"] for r in records if "DMD/speed" in r)

    assert first_speed(runs[0, 1]) == pytest.approx(first_speed(runs[1, 1]), rel=1e-6)


def test_log_has_cos_field(runs):
    log = open(os.path.join(runs[0, 1], "log.txt"), encoding="utf-8").read()
    assert "DMD diagnostics: D features at 8x8 for 64 generated images" in log
    assert " cos 0." in log or " cos 1.000" in log
    assert " speed " in log
