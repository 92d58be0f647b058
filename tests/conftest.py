"""Shared test setup: make the repository root importable and keep torch on few threads."""

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Point the dnnlib cache at an empty per-session folder, so tests never read or write
    ~/.cache and start from a cold cache, as CI does. Session scope makes it apply before any
    module-scoped fixture runs train.py in a subprocess."""
    cache = tmp_path_factory.getbasetemp() / "dnnlib-cache"
    previous = os.environ.get("DNNLIB_CACHE_DIR")
    os.environ["DNNLIB_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["DNNLIB_CACHE_DIR"]
    else:
        os.environ["DNNLIB_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """64 labeled images taken from the bundled Fashion-MNIST data with dataset_tool.py, for
    the end-to-end runs of train.py. Tests must not modify the file."""
    path = str(tmp_path_factory.mktemp("data") / "fmnist64.zip")
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "dataset_tool.py"),
            f"--source={os.path.join(ROOT, 'data', 'fashion-mnist-32x32.zip')}",
            f"--dest={path}",
            "--max-images=64",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return path
