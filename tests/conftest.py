"""Shared test setup: make the repository root importable and keep torch on few threads."""

import os
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
