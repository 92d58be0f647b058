"""Shared test setup: make the repository root importable and keep torch on few threads."""

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Point the dnnlib cache at a per-session folder so tests never touch ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "dnnlib-cache"
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(cache))
