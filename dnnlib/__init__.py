"""Small utilities shared by every entry point: attribute dicts, class construction by
name, logging to a run directory and a download cache."""

from .util import EasyDict, make_cache_dir_path

__all__ = ["EasyDict", "make_cache_dir_path"]
