"""End-to-end runs of train.py --cfg=biggan on labelled Fashion-MNIST images: a tiny
class-conditional run with DMD writes the usual run directory, computes a metric and resumes
with its progress, optimizer and DMD state."""

import json
import os

import pytest
import torch
from test_train_e2e import detector, only_run_dir, read_jsonl, run_train  # noqa: F401 (fixture)

from training import snapshot as snapshot_lib

pytestmark = pytest.mark.slow

# run_train passes StyleGAN options (--gamma, --cbase, --cmax, --map-depth); these runs need
# a command line of their own, so they call train.py through run_biggan below.
BIGGAN_ARGS = ["--cfg=biggan", "--ch=4", "--cond=1", "--dmd=1", "--dmd-interval=0.032"]


def run_biggan(outdir, data, *extra):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = [
        sys.executable, os.path.join(root, "train.py"), f"--outdir={outdir}", f"--data={data}",
        "--gpus=1", "--batch=8", "--workers=0", "--device=cpu", "--tick=0.032", "--snap=2",
        "--seed=1", *BIGGAN_ARGS, *extra,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(args, capture_output=True, text=True, cwd=root, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def biggan_run(tmp_path_factory, small_data, detector):  # noqa: F811
    outdir = tmp_path_factory.mktemp("biggan")
    metric_args = ["--metrics=fid100_full", f"--detector={detector}"]
    result = run_biggan(outdir, small_data, "--kimg=0.064", *metric_args)
    (run_dir,) = only_run_dir(outdir)
    return run_dir, result


def test_biggan_run_directory(biggan_run):
    run_dir, result = biggan_run
    assert (
        os.path.basename(run_dir) == "00000-biggan-fmnist64-gpus1-batch8-dmd-toggle-r0.25-int0.032"
    )
    for name in ("training_options.json", "log.txt", "stats.jsonl", "reals.png", "fakes_init.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert "tick 2" in result.stdout
    assert "dmd masked" in result.stdout
    (record, *_) = read_jsonl(os.path.join(run_dir, "metric-fid100_full.jsonl"))
    assert record["results"]["fid100_full"] > 0


def test_biggan_snapshot_contents(biggan_run):
    run_dir, _result = biggan_run
    data = snapshot_lib.load_network_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    assert type(data.G_ema).__module__ == "training.networks_biggan"
    assert type(data.D).__name__ == "DMDBigGANDiscriminator"
    assert data.augment_pipe is None  # BigGAN trains without augmentation by default
    assert data.G_ema.c_dim == 10
    z = torch.randn([2, data.G_ema.z_dim])
    c = torch.nn.functional.one_hot(torch.tensor([1, 7]), 10).float()
    img = data.G_ema(z, c)
    assert img.shape == (2, 1, 32, 32)
    assert torch.isfinite(img).all()
    assert img.abs().max() <= 1  # tanh output


def test_biggan_four_D_steps_per_G(biggan_run):
    run_dir, _result = biggan_run
    data = snapshot_lib.read_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    # 8 minibatches: D stepped on each one, G on minibatches 0 and 4 (counting from 0).
    assert data["progress"]["batch_idx"] == 8
    d_steps = {float(s["step"]) for s in data["optimizers"]["D"]["state"].values()}
    g_steps = {float(s["step"]) for s in data["optimizers"]["G"]["state"].values()}
    assert d_steps == {8.0}
    assert g_steps == {2.0}
    with open(os.path.join(run_dir, "training_options.json"), encoding="utf-8") as f:
        options = json.load(f)
    assert options["num_D_steps"] == 4


def test_biggan_resume_continues(biggan_run, small_data, tmp_path):
    run_dir, _result = biggan_run
    pkl = os.path.join(run_dir, "network-snapshot-000000.pkl")
    first = snapshot_lib.read_snapshot(pkl)
    result = run_biggan(tmp_path, small_data, "--kimg=0.104", "--metrics=none", f"--resume={pkl}")
    assert "Resumed at kimg 0.1" in result.stdout
    (resumed_dir,) = only_run_dir(tmp_path)
    second = snapshot_lib.read_snapshot(os.path.join(resumed_dir, "network-snapshot-000000.pkl"))
    assert second["progress"]["batch_idx"] == 13
    # Minibatches 8 to 12 (counting from 0) add 5 D steps and two G steps (8 and 12).
    d_steps = {float(s["step"]) for s in second["optimizers"]["D"]["state"].values()}
    g_steps = {float(s["step"]) for s in second["optimizers"]["G"]["state"].values()}
    assert d_steps == {13.0}
    assert g_steps == {4.0}
    before = first["D"]["state_dict"]["_extra_state"]
    after = second["D"]["state_dict"]["_extra_state"]
    assert (
        after["detector"]["speeds"][: len(before["detector"]["speeds"])]
        == (before["detector"]["speeds"])
    )
    assert len(after["detector"]["speeds"]) == len(before["detector"]["speeds"]) + 1
