"""End-to-end runs of train.py with StyleGAN3-T and -R generators, adaptive augmentation and
DMD on the bundled Fashion-MNIST images, and their resume: p and the DMD state continue from
the snapshot, and -R's blur of D's inputs stays off after resuming."""

import json
import os

import pytest
from test_train_e2e import only_run_dir, read_jsonl, run_train

from training import snapshot as snapshot_lib

pytestmark = pytest.mark.slow

# A small StyleGAN3 generator: at most 16 channels (8 in the last layers), 32x32 output.
# StyleGAN3-R doubles G's channel base and max, so it starts from half of -T's.
SIZE_ARGS = {
    "stylegan3-t": ["--cbase=128", "--cmax=16"],
    "stylegan3-r": ["--cbase=64", "--cmax=8"],
}
COMMON_ARGS = ["--aug=ada", "--target=0", "--metrics=none", "--dmd=1", "--dmd-interval=0.032"]


@pytest.fixture(scope="module", params=["stylegan3-t", "stylegan3-r"])
def sg3_run(request, tmp_path_factory, small_data):
    cfg = request.param
    outdir = tmp_path_factory.mktemp(cfg)
    args = [f"--cfg={cfg}", *SIZE_ARGS[cfg], *COMMON_ARGS, "--kimg=0.064"]
    result = run_train(outdir, small_data, *args)
    (run_dir,) = only_run_dir(outdir)
    return cfg, run_dir, result


def test_sg3_snapshot_contents(sg3_run):
    cfg, run_dir, _result = sg3_run
    data = snapshot_lib.load_network_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    assert type(data.G_ema).__module__ == "training.networks_stylegan3"
    assert type(data.D).__name__ == "DMDDiscriminator"
    assert type(data.augment_pipe).__name__ == "AugmentPipe"
    assert data.G_ema.init_kwargs.get("use_radial_filters", False) == (cfg == "stylegan3-r")
    with open(os.path.join(run_dir, "training_options.json"), encoding="utf-8") as f:
        options = json.load(f)
    assert options["G_kwargs"]["class_name"] == "training.networks_stylegan3.Generator"
    assert options["ada_target"] == 0
    if cfg == "stylegan3-r":
        assert options["loss_kwargs"]["blur_init_sigma"] == 10


def test_sg3_stats_have_p_and_dmd(sg3_run):
    _cfg, run_dir, result = sg3_run
    stats = read_jsonl(os.path.join(run_dir, "stats.jsonl"))
    p_values = [s["Progress/augment"]["mean"] for s in stats]
    assert len(p_values) == 3  # ticks at 8, 40 and 64 images
    assert all(p >= 0 for p in p_values)
    assert "augment 0." in result.stdout
    assert any("DMD/speed" in s for s in stats)
    for s in stats:
        for name in ("Loss/G/loss", "Loss/D/loss"):
            assert name in s
            assert s[name]["num"] > 0

    # The snapshot's p is the one of the last tick.
    data = snapshot_lib.read_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    saved_p = float(data["augment_pipe"]["state_dict"]["p"])
    assert saved_p == pytest.approx(p_values[-1], abs=1e-7)


def test_sg3_resume_keeps_p_and_dmd(sg3_run, small_data, tmp_path):
    cfg, run_dir, _result = sg3_run
    pkl = os.path.join(run_dir, "network-snapshot-000000.pkl")
    first = snapshot_lib.read_snapshot(pkl)
    args = [f"--cfg={cfg}", *SIZE_ARGS[cfg], *COMMON_ARGS, "--kimg=0.072"]
    result = run_train(tmp_path, small_data, *args, f"--resume={pkl}")
    assert "Resumed at kimg 0.1" in result.stdout
    saved_p = float(first["augment_pipe"]["state_dict"]["p"])
    assert f"p = {saved_p:.6g}" in result.stdout
    (resumed_dir,) = only_run_dir(tmp_path)
    with open(os.path.join(resumed_dir, "training_options.json"), encoding="utf-8") as f:
        options = json.load(f)
    assert options["loss_kwargs"].get("blur_init_sigma", 0) == 0
    # p comes back from the snapshot, so ADA keeps its normal speed (no ada_kimg override).
    assert "ada_kimg" not in options

    second = snapshot_lib.read_snapshot(os.path.join(resumed_dir, "network-snapshot-000000.pkl"))
    assert first["progress"]["batch_idx"] == 8
    assert second["progress"]["cur_nimg"] == 72
    assert second["progress"]["batch_idx"] == 9
    # ADA adjusts p after every 4th minibatch, so none ran in minibatch 9: p is the saved one.
    assert float(second["augment_pipe"]["state_dict"]["p"]) == saved_p
    before = first["D"]["state_dict"]["_extra_state"]
    after = second["D"]["state_dict"]["_extra_state"]
    assert (
        after["detector"]["speeds"][: len(before["detector"]["speeds"])]
        == (before["detector"]["speeds"])
    )


def test_sg3_baseline_with_p_one(small_data, tmp_path):
    # p = 1 augments every input of D, so the first minibatch's R1 term takes its second
    # derivative through the whole bgc pipeline inside a real run.
    args = ["--cfg=stylegan3-t", "--cbase=128", "--cmax=16", "--aug=fixed", "--p=1", "--dmd=0"]
    run_train(tmp_path, small_data, *args, "--metrics=none", "--kimg=0.008")
    (run_dir,) = only_run_dir(tmp_path)
    data = snapshot_lib.read_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    assert float(data["augment_pipe"]["state_dict"]["p"]) == 1
    assert data["D"]["class_name"] == "training.networks_stylegan2.Discriminator"
    (stats,) = read_jsonl(os.path.join(run_dir, "stats.jsonl"))
    assert stats["Progress/augment"]["mean"] == 1
    assert stats["Loss/r1_penalty"]["num"] == 8
    assert stats["Loss/r1_penalty"]["mean"] > 0
