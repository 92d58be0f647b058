"""End-to-end runs of train.py on real Fashion-MNIST images: every run-directory file, DMD
decisions in the log, metrics, resume with progress, optimizer and DMD state restored, and
--dmd=1 --dmd-policy=never training exactly like --dmd=0."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from training import snapshot as snapshot_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(ROOT, "data", "fashion-mnist-32x32.zip")

pytestmark = pytest.mark.slow


class MeanPoolDetector(torch.nn.Module):
    """A stand-in for the Inception network: 4x4 average pooling, flattened to 48 features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("detector") / "mean-pool.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(MeanPoolDetector()).save(path)
    return path


# A tiny StyleGAN2 configuration that trains on a CPU in seconds; other test files reuse it.
TINY_OPTIONS = [
    "--cfg=stylegan2",
    "--batch=8",
    "--gamma=0.1",
    "--cbase=256",
    "--cmax=32",
    "--map-depth=2",
    "--workers=0",
    "--device=cpu",
    "--tick=0.032",
    "--snap=2",
    "--seed=1",
]


def run_train(outdir, data, *extra, check=True):
    args = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--outdir={outdir}",
        f"--data={data}",
        "--gpus=1",
        *TINY_OPTIONS,
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def only_run_dir(outdir):
    names = sorted(os.listdir(outdir))
    return [os.path.join(outdir, n) for n in names]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def dmd_run(tmp_path_factory, small_data, detector):
    outdir = tmp_path_factory.mktemp("runs")
    result = run_train(
        outdir,
        small_data,
        "--kimg=0.128",
        "--metrics=fid100_full",
        f"--detector={detector}",
        "--dmd=1",
        "--dmd-interval=0.016",
    )
    (run_dir,) = only_run_dir(outdir)
    return outdir, run_dir, result


def test_run_directory_files(dmd_run):
    _outdir, run_dir, _result = dmd_run
    assert os.path.basename(run_dir).startswith(
        "00000-stylegan2-fmnist64-gpus1-batch8-gamma0.1-dmd-toggle"
    )
    for name in [
        "training_options.json",
        "log.txt",
        "stats.jsonl",
        "reals.png",
        "fakes_init.png",
        "fakes000000.png",
        "network-snapshot-000000.pkl",
        "metric-fid100_full.jsonl",
    ]:
        path = os.path.join(run_dir, name)
        assert os.path.isfile(path), f"{name} missing"
        assert os.path.getsize(path) > 0, f"{name} empty"


def test_log_has_ticks_and_dmd_decisions(dmd_run):
    _outdir, run_dir, _result = dmd_run
    log = open(os.path.join(run_dir, "log.txt"), encoding="utf-8").read()
    assert log.count("tick ") >= 4
    assert "DMD: retarded at kimg" in log
    assert "masks on" in log
    assert "dmd masked" in log


def test_stats_have_dmd_and_loss_figures(dmd_run):
    _outdir, run_dir, _result = dmd_run
    records = read_jsonl(os.path.join(run_dir, "stats.jsonl"))
    assert len(records) >= 4
    last = records[-1]
    for name in [
        "Loss/G/loss",
        "Loss/D/loss",
        "Loss/r1_penalty",
        "Loss/pl_penalty",
        "DMD/speed",
        "DMD/masked",
        "DMD/toggles",
        "Timing/sec_per_kimg",
        "Progress/kimg",
    ]:
        assert any(name in r for r in records), f"{name} never reported"
    assert last["Progress/kimg"]["mean"] == pytest.approx(0.128)
    assert max(r.get("DMD/toggles", {"mean": 0})["mean"] for r in records) >= 1


def test_metric_record_fields(dmd_run):
    _outdir, run_dir, _result = dmd_run
    records = read_jsonl(os.path.join(run_dir, "metric-fid100_full.jsonl"))
    assert len(records) >= 2
    record = records[-1]
    assert record["metric"] == "fid100_full"
    assert record["snapshot_pkl"] == "network-snapshot-000000.pkl"
    assert record["kimg"] == pytest.approx(0.128)
    assert records[0]["kimg"] == pytest.approx(0.008)  # Tick 0 ends after the first minibatch.
    assert record["results"]["fid100_full"] > 0


def test_snapshot_contents(dmd_run):
    _outdir, run_dir, _result = dmd_run
    data = snapshot_lib.load_network_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    assert data.progress["cur_nimg"] == 128
    assert type(data.D).__name__ == "DMDDiscriminator"
    assert set(data.optimizers) == {"G", "D"}
    assert data.training_options["D_kwargs"]["dmd_kwargs"]["interval_kimg"] == 0.016


def test_resume_restores_progress_optimizer_and_dmd_state(dmd_run, small_data, detector, tmp_path):
    _outdir, run_dir, _result = dmd_run
    first_pkl = os.path.join(run_dir, "network-snapshot-000000.pkl")
    first = snapshot_lib.read_snapshot(first_pkl)
    outdir = tmp_path / "resumed"
    result = run_train(
        outdir,
        small_data,
        "--kimg=0.136",
        "--metrics=none",
        "--dmd=1",
        "--dmd-interval=0.016",
        f"--resume={first_pkl}",
    )
    assert "Resumed at kimg 0.1" in result.stdout
    (resumed_dir,) = only_run_dir(outdir)
    second = snapshot_lib.read_snapshot(os.path.join(resumed_dir, "network-snapshot-000000.pkl"))

    # One more minibatch of 8 images: kimg continues, and each Adam state has exactly the step
    # count of an uninterrupted run to the same kimg (the lazy regularization phases included).
    assert first["progress"]["batch_idx"] == 16
    assert second["progress"]["cur_nimg"] == 136
    assert second["progress"]["batch_idx"] == 17
    run_train(
        tmp_path / "straight",
        small_data,
        "--kimg=0.136",
        "--metrics=none",
        "--dmd=1",
        "--dmd-interval=0.016",
    )
    (straight_dir,) = only_run_dir(tmp_path / "straight")
    straight = snapshot_lib.read_snapshot(os.path.join(straight_dir, "network-snapshot-000000.pkl"))
    for key in ("G", "D"):
        steps_before = [float(s["step"]) for s in first["optimizers"][key]["state"].values()]
        steps_resumed = [float(s["step"]) for s in second["optimizers"][key]["state"].values()]
        steps_straight = [float(s["step"]) for s in straight["optimizers"][key]["state"].values()]
        assert steps_resumed == steps_straight, (
            f"{key} optimizer steps differ from an uninterrupted run"
        )
        assert min(b - a for a, b in zip(steps_before, steps_resumed)) >= 1

    # The DMD state continues from the snapshot. No interval boundary lies between kimg 0.128
    # and 0.136, so a restored state keeps its speed history and toggle count unchanged. A
    # fresh state would have no history, and the uninterrupted run agrees with the restored one.
    before = first["D"]["state_dict"]["_extra_state"]
    after = second["D"]["state_dict"]["_extra_state"]
    reference = straight["D"]["state_dict"]["_extra_state"]
    assert len(before["detector"]["speeds"]) >= 3
    assert after["detector"]["speeds"] == before["detector"]["speeds"]
    assert reference["detector"]["speeds"] == before["detector"]["speeds"]
    assert before["masker"]["toggles"] >= 1
    assert after["masker"]["toggles"] == before["masker"]["toggles"]
    assert after["masker"]["masked"] == before["masker"]["masked"]
    assert after["interval_index"] == before["interval_index"]


def test_resume_with_other_architecture_lists_tensors(dmd_run, small_data, tmp_path):
    _outdir, run_dir, _result = dmd_run
    first_pkl = os.path.join(run_dir, "network-snapshot-000000.pkl")
    result = run_train(
        tmp_path / "bad",
        small_data,
        "--kimg=0.136",
        "--metrics=none",
        "--cmax=64",
        f"--resume={first_pkl}",
        check=False,
    )
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "shape mismatch: synthesis.b4.const" in output
    assert "Traceback" not in output
    assert not os.path.exists(tmp_path / "bad"), "a failed resume must not create a run directory"


def test_dmd_policy_never_trains_like_baseline(small_data, tmp_path):
    # Without augmentation, so that the --aug=noaug path runs end to end too.
    common = ["--kimg=0.064", "--metrics=none", "--aug=noaug"]
    run_train(tmp_path / "base", small_data, *common, "--dmd=0")
    run_train(
        tmp_path / "never",
        small_data,
        *common,
        "--dmd=1",
        "--dmd-policy=never",
        "--dmd-interval=0.016",
    )
    (base_dir,) = only_run_dir(tmp_path / "base")
    (never_dir,) = only_run_dir(tmp_path / "never")
    base = snapshot_lib.read_snapshot(os.path.join(base_dir, "network-snapshot-000000.pkl"))
    never = snapshot_lib.read_snapshot(os.path.join(never_dir, "network-snapshot-000000.pkl"))
    for key in ("G", "D", "G_ema"):
        for name, tensor in base[key]["state_dict"].items():
            other = never[key]["state_dict"][name]
            assert torch.equal(tensor, other), (
                f"{key}.{name} differs between --dmd=0 and policy never"
            )
    base_stats = read_jsonl(os.path.join(base_dir, "stats.jsonl"))
    never_stats = read_jsonl(os.path.join(never_dir, "stats.jsonl"))
    for a, b in zip(base_stats, never_stats):
        assert a["Loss/G/loss"]["mean"] == b["Loss/G/loss"]["mean"]


def test_gen_images_writes_grayscale_pngs(dmd_run, tmp_path):
    import numpy as np
    import PIL.Image

    _outdir, run_dir, _result = dmd_run
    outdir = tmp_path / "images"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "gen_images.py"),
            f"--network={os.path.join(run_dir, 'network-snapshot-000000.pkl')}",
            "--seeds=0-2",
            f"--outdir={outdir}",
            "--device=cpu",
            "--trunc=0.7",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    names = sorted(os.listdir(outdir))
    assert names == ["seed0000.png", "seed0001.png", "seed0002.png"]
    image = PIL.Image.open(outdir / "seed0000.png")
    assert image.mode == "L"
    assert image.size == (32, 32)
    assert np.array(image).std() > 0


def test_stats_lines_are_strict_json(dmd_run):
    _outdir, run_dir, _result = dmd_run
    with open(os.path.join(run_dir, "stats.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(
                line, parse_constant=lambda name: pytest.fail(f"{name} in stats.jsonl")
            )
            for name, value in record.items():
                if name != "timestamp":
                    assert value["num"] > 0, f"{name} written without a report"
