"""calc_metrics.py: option errors, a run with stand-in networks, and a run on a real snapshot."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import calc_metrics

# The stand-in detectors are built with torch.jit.script, which PyTorch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


class MeanDetector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


class TinyGenerator(torch.nn.Module):
    """Images [N, 3, 8, 8] from a fixed linear map of z."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, 0, 8, 3
        self.linear = torch.nn.Linear(4, 3 * 8 * 8)
        torch.nn.init.normal_(self.linear.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, z, c, truncation_psi=1, noise_mode="random"):
        return torch.tanh(self.linear(z)).view(-1, 3, 8, 8)


@pytest.fixture
def detector_path(tmp_path):
    path = str(tmp_path / "mean-detector.pt")
    torch.jit.script(MeanDetector()).save(path)
    return path


def write_image_folder(folder, num, size=8, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(num):
        pixels = rng.integers(0, 256, size=[size, size, 3], dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return str(folder)


def run_cli(args):
    return CliRunner().invoke(calc_metrics.main, args, catch_exceptions=False)


# ----------------------------------------------------------------------------
# Option errors.


def test_unknown_metric_lists_valid_names(tmp_path):
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    result = run_cli(["--network", str(network), "--metrics", "fid50k_full,fidd50k"])
    assert result.exit_code == 2
    assert "--metrics" in result.output
    assert "fidd50k" in result.output
    assert "fid50k_full" in result.output
    assert "kid<count>_full" in result.output
    assert "ppl2_wend" in result.output


def test_missing_network_file(tmp_path):
    missing = str(tmp_path / "absent.pkl")
    result = run_cli(["--network", missing, "--metrics", "fid100_full"])
    assert result.exit_code == 2
    assert "--network" in result.output
    assert "absent.pkl" in result.output


def test_missing_data_path(tmp_path):
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    result = run_cli(["--network", str(network), "--data", str(tmp_path / "no-data")])
    assert result.exit_code == 2
    assert "--data" in result.output


def test_missing_detector(tmp_path):
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    result = run_cli(["--network", str(network), "--detector", str(tmp_path / "no.pt")])
    assert result.exit_code == 2
    assert "--detector" in result.output
    assert "no.pt" in result.output


def test_cuda_without_device(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    result = run_cli(["--network", str(network), "--device", "cuda"])
    assert result.exit_code == 2
    assert "--device" in result.output


def test_not_a_snapshot(tmp_path, detector_path):
    pytest.importorskip("training.snapshot")
    network = tmp_path / "net.pkl"
    network.write_bytes(b"not a snapshot")
    result = run_cli(["--network", str(network), "--detector", detector_path])
    assert result.exit_code == 2
    assert "--network" in result.output
    assert "net.pkl" in result.output


# ----------------------------------------------------------------------------
# Runs.


def test_run_with_recorded_dataset(tmp_path, detector_path, monkeypatch):
    pytest.importorskip("training.dataset")
    data = write_image_folder(tmp_path / "data", num=10)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    network = run_dir / "network-snapshot-000010.pkl"
    network.write_bytes(b"")
    snapshot = dict(
        G_ema=TinyGenerator(),
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path=data,
            use_labels=False,
            max_size=3,
            xflip=False,
            resolution=8,
        ),
    )
    monkeypatch.setattr(calc_metrics, "load_network", lambda path: snapshot)
    args = ["--network", str(network), "--metrics", "fid100_full,kid100_full"]
    args += ["--detector", detector_path, "--device", "cpu", "--mirror", "true"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output

    for metric in ["fid100_full", "kid100_full"]:
        lines = (run_dir / f"metric-{metric}.jsonl").read_text().splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert np.isfinite(record["results"][metric])
        assert record["snapshot_pkl"] == "network-snapshot-000010.pkl"
        assert record["num_real"] == 20  # all 10 images (max_size lifted) and their mirrors
        assert record["mirror"] is True
        assert record["num_gen"] == 100
        assert record["dataset_path"] == data
    assert "Generated images: 100/100 images" in result.output


def test_recorded_dataset_class_must_be_the_dataset(tmp_path, detector_path, monkeypatch):
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    marker = tmp_path / "must-not-appear"
    recorded = dict(class_name="subprocess.run", args=["touch", str(marker)])
    snapshot = dict(G_ema=TinyGenerator(), training_set_kwargs=recorded)
    monkeypatch.setattr(calc_metrics, "load_network", lambda path: snapshot)
    result = run_cli(["--network", str(network), "--detector", detector_path])
    assert result.exit_code == 2
    assert "subprocess.run" in result.output
    assert "--data" in result.output
    assert not marker.exists()


def test_snapshot_without_dataset_needs_data(tmp_path, detector_path, monkeypatch):
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    monkeypatch.setattr(calc_metrics, "load_network", lambda path: dict(G_ema=TinyGenerator()))
    result = run_cli(["--network", str(network), "--detector", detector_path])
    assert result.exit_code == 2
    assert "--data" in result.output


def test_run_on_real_snapshot(tmp_path, detector_path):
    pytest.importorskip("training.dataset")
    snapshot_lib = pytest.importorskip("training.snapshot")
    networks = pytest.importorskip("training.networks_stylegan2")
    torch.manual_seed(0)
    G = networks.Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=8,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        channel_base=64,
        channel_max=8,
    )
    network = str(tmp_path / "network-snapshot-000000.pkl")
    snapshot_lib.save_network_snapshot(network, {"G": G, "G_ema": G})
    data = write_image_folder(tmp_path / "data", num=6)
    args = ["--network", network, "--metrics", "fid100_full", "--data", data]
    args += ["--detector", detector_path, "--device", "cpu", "--verbose", "false", "--no-cache"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "metric-fid100_full.jsonl").read_text())
    assert record["num_real"] == 6
    assert record["cache_file"] is None
    assert np.isfinite(record["results"]["fid100_full"])


def test_data_resolution_mismatch_warns(tmp_path, detector_path, monkeypatch):
    pytest.importorskip("training.dataset")
    data = write_image_folder(tmp_path / "data", num=4, size=16)
    network = tmp_path / "net.pkl"
    network.write_bytes(b"")
    monkeypatch.setattr(calc_metrics, "load_network", lambda path: dict(G_ema=TinyGenerator()))
    args = ["--network", str(network), "--detector", detector_path, "--data", data]
    args += ["--metrics", "fid100_full", "--device", "cpu", "--no-cache", "--verbose", "false"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert "16x16" in result.stderr
    assert "8x8" in result.stderr
    record = json.loads((tmp_path / "metric-fid100_full.jsonl").read_text())
    assert record["resolution"] == 16
