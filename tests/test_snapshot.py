"""Snapshots: round trip of networks and extra fields, loading runs no code from the file,
and every kind of bad file fails with a message naming it."""

import io
import os
import pickle
import zipfile

import pytest
import torch

from training import snapshot as snapshot_lib
from training.networks_stylegan2 import Discriminator, Generator

TINY = dict(img_resolution=16, img_channels=1, channel_base=128, channel_max=16)


def tiny_networks(seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, mapping_kwargs=dict(num_layers=2), **TINY)
    D = Discriminator(c_dim=0, **TINY)
    return G, D


def test_snapshot_round_trip(tmp_path):
    G, D = tiny_networks()
    path = str(tmp_path / "network-snapshot-000000.pkl")
    snapshot_lib.save_network_snapshot(
        path, {"G": G, "D": D, "G_ema": G}, progress={"cur_nimg": 1234}
    )
    data = snapshot_lib.load_network_snapshot(path)
    assert data.progress["cur_nimg"] == 1234
    for name, module in [("G", G), ("D", D), ("G_ema", G)]:
        loaded = data[name].state_dict()
        for key, value in module.state_dict().items():
            assert torch.equal(loaded[key], value), f"{name}.{key} differs after loading"
    z = torch.randn([2, 8])
    c = torch.zeros([2, 0])
    assert torch.equal(G(z, c, noise_mode="const"), data.G(z, c, noise_mode="const"))


def test_snapshot_rejects_non_finite_network(tmp_path):
    G, D = tiny_networks()
    with torch.no_grad():
        next(D.parameters()).view(-1)[0] = float("nan")
    path = tmp_path / "snap.pkl"
    with pytest.raises(snapshot_lib.SnapshotError, match="non-finite"):
        snapshot_lib.save_network_snapshot(str(path), {"G": G, "D": D})
    assert not path.exists()


def test_snapshot_save_keeps_old_file_on_failure(tmp_path):
    G, D = tiny_networks()
    path = str(tmp_path / "snap.pkl")
    snapshot_lib.save_network_snapshot(path, {"G": G, "D": D})
    before = open(path, "rb").read()
    with torch.no_grad():
        next(D.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(snapshot_lib.SnapshotError):
        snapshot_lib.save_network_snapshot(path, {"G": G, "D": D})
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["snap.pkl"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is empty"),
        (b"<html><body>404 Not Found</body></html>", "not a network snapshot"),
        (pickle.dumps({"G": 1}), "not a network snapshot"),
    ],
)
def test_snapshot_bad_files_named(tmp_path, content, expected):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(snapshot_lib.SnapshotError, match=expected) as info:
        snapshot_lib.load_network_snapshot(str(path))
    assert "bad.pkl" in str(info.value)


def test_snapshot_truncated_file(tmp_path):
    G, D = tiny_networks()
    path = tmp_path / "snap.pkl"
    snapshot_lib.save_network_snapshot(str(path), {"G": G, "D": D})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(snapshot_lib.SnapshotError) as info:
        snapshot_lib.load_network_snapshot(str(path))
    assert "snap.pkl" in str(info.value)


def test_snapshot_corrupted_bytes_detected(tmp_path):
    G, D = tiny_networks()
    path = tmp_path / "snap.pkl"
    snapshot_lib.save_network_snapshot(str(path), {"G": G, "D": D})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    with pytest.raises(snapshot_lib.SnapshotError) as info:
        snapshot_lib.load_network_snapshot(str(path))
    assert "snap.pkl" in str(info.value)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_snapshot_loading_executes_no_pickled_code(tmp_path):
    path = tmp_path / "evil.pkl"
    torch.save({"format": snapshot_lib.SNAPSHOT_FORMAT, "payload": _Exploit()}, str(path))
    assert zipfile.is_zipfile(path)
    with pytest.raises(snapshot_lib.SnapshotError, match="other than tensors and plain containers"):
        snapshot_lib.load_network_snapshot(str(path))


def test_snapshot_rejects_unknown_class_name(tmp_path):
    path = tmp_path / "snap.pkl"
    entry = {"class_name": "os.system", "init_kwargs": {}, "state_dict": {}}
    buffer = io.BytesIO()
    torch.save({"format": snapshot_lib.SNAPSHOT_FORMAT, "format_version": 1, "G": entry}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(
        snapshot_lib.SnapshotError, match="'os.system', which is not in the allowed set"
    ):
        snapshot_lib.load_network_snapshot(str(path))


def test_state_mismatch_lists_tensors():
    _G, D_small = tiny_networks()
    D_big = Discriminator(
        c_dim=0, img_resolution=16, img_channels=1, channel_base=256, channel_max=32
    )
    with pytest.raises(snapshot_lib.SnapshotError) as info:
        snapshot_lib.load_state_checked(D_big, D_small.state_dict(), source="old.pkl")
    message = str(info.value)
    assert "shape mismatch: b16.fromrgb.weight" in message
    assert "old.pkl" in message


def test_snapshot_keeps_augment_pipe_and_its_p(tmp_path):
    from training.augment import AUGPIPE_SPECS, AugmentPipe

    G, D = tiny_networks()
    pipe = AugmentPipe(**AUGPIPE_SPECS["bgc"], xint_max=0.25)
    pipe.p.fill_(0.3125)
    path = str(tmp_path / "network-snapshot-000000.pkl")
    snapshot_lib.save_network_snapshot(path, {"G": G, "D": D, "G_ema": G, "augment_pipe": pipe})
    data = snapshot_lib.load_network_snapshot(path)
    assert isinstance(data.augment_pipe, AugmentPipe)
    assert float(data.augment_pipe.p) == 0.3125
    assert data.augment_pipe.init_kwargs["xint_max"] == 0.25

    # Runs without augmentation store None, and loading gives None back.
    snapshot_lib.save_network_snapshot(path, {"G": G, "D": D, "G_ema": G, "augment_pipe": None})
    assert snapshot_lib.load_network_snapshot(path).augment_pipe is None
