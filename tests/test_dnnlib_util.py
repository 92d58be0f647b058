"""dnnlib.util: atomic writes keep the old file on failure and get the usual permissions."""

import os
import stat

import pytest

from dnnlib import util


def test_atomic_write_replaces_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with util.atomic_write(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), util.atomic_write(str(path)) as f:
        f.write(b"partial")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_mode_follows_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        with util.atomic_write(str(tmp_path / "out.bin")) as f:
            f.write(b"data")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode)
    assert mode == 0o644


def test_format_time_examples():
    assert util.format_time(12) == "12s"
    assert util.format_time(184) == "3m 04s"
    assert util.format_time(5 * 3600 + 2 * 60 + 7) == "5h 02m 07s"
    assert util.format_time(2 * 86400 + 3 * 3600 + 4 * 60) == "2d 03h 04m"
