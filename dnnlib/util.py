"""Attribute dicts, construction by class name, a tee logger, atomic writes and a URL cache."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, Callable, Iterator


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


# ----------------------------------------------------------------------------
# Construction by name.


def get_obj_by_name(name: str) -> Any:
    """Import the module part of a dotted name such as `training.loss.StyleGAN2Loss` and
    return the attribute it names. Raises ImportError naming `name` when either is missing."""
    module_name, _, attr_path = name.rpartition(".")
    if not module_name:
        raise ImportError(f"Invalid object name {name!r}: expected 'module.attribute'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ImportError(f"Module {module_name!r} has no attribute {part!r} (from {name!r})")
        obj = getattr(obj, part)
    return obj


def call_func_by_name(*args: Any, func_name: str, **kwargs: Any) -> Any:
    """Look up `func_name` with get_obj_by_name() and call it with the remaining arguments."""
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f"{func_name!r} is not callable")
    return func(*args, **kwargs)


def construct_class_by_name(*args: Any, class_name: str, **kwargs: Any) -> Any:
    """Construct the class named by `class_name` with the remaining arguments."""
    return call_func_by_name(*args, func_name=class_name, **kwargs)


# ----------------------------------------------------------------------------
# Text helpers.


def format_time(seconds: float) -> str:
    """Format a duration as '12s', '3m 04s', '5h 02m 07s' or '2d 03h 04m'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 60 * 60:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 24 * 60 * 60:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


# ----------------------------------------------------------------------------
# Logging of stdout and stderr to a file.


class Logger:
    """Copy everything written to stdout and stderr into a log file, line-buffered.

    Use as a context manager or call close(); the original streams are restored on close."""

    def __init__(
        self, file_name: str | None = None, file_mode: str = "a", should_flush: bool = True
    ):
        self.file = open(file_name, file_mode, encoding="utf-8") if file_name else None
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = self
        sys.stderr = self

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(self, text: str) -> int:
        if not text:
            return 0
        if self.file is not None:
            self.file.write(text)
        self.stdout.write(text)
        if self.should_flush:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
        self.stdout.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.flush()
        if sys.stdout is self:
            sys.stdout = self.stdout
        if sys.stderr is self:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None


# ----------------------------------------------------------------------------
# Atomic file writes.


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` and rename it onto `path` once the block succeeds.

    The data is flushed and fsynced before the rename, so a reader sees either the old file or
    the complete new one. On an exception the temporary file is removed and `path` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(
        prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        # mkstemp creates the file with mode 0600; give it the mode open() would, 0666 less umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise


# ----------------------------------------------------------------------------
# Cache directory and URL downloads.


def make_cache_dir_path(*paths: str) -> str:
    """Return a path under the cache directory: $DNNLIB_CACHE_DIR if set, else
    $XDG_CACHE_HOME/dnnlib, else ~/.cache/dnnlib."""
    if "DNNLIB_CACHE_DIR" in os.environ:
        root = os.environ["DNNLIB_CACHE_DIR"]
    elif "XDG_CACHE_HOME" in os.environ:
        root = os.path.join(os.environ["XDG_CACHE_HOME"], "dnnlib")
    else:
        root = os.path.join(os.path.expanduser("~"), ".cache", "dnnlib")
    return os.path.join(root, *paths)


def is_url(obj: Any) -> bool:
    """True for a string with a scheme and network location, such as https://host/file."""
    if not isinstance(obj, str) or "://" not in obj:
        return False
    parsed = urllib.parse.urlparse(obj)
    return bool(parsed.scheme) and bool(parsed.netloc or parsed.scheme == "file")


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_url(
    url: str,
    cache_dir: str | None = None,
    cache: bool = True,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    timeout_s: float = 60.0,
    verbose: bool = True,
) -> BinaryIO:
    """Open a local path, a file:// URL or an http(s) URL for binary reading.

    Remote files are downloaded once into `cache_dir` (default: make_cache_dir_path('downloads'))
    under a name derived from the URL, written atomically. When `expected_sha256` or
    `expected_size` is given, a download or cached copy that differs raises ValueError naming
    the URL and both values, and a bad cached copy is deleted so the next call downloads again.
    """
    if not is_url(url):
        return open(url, "rb")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return open(urllib.request.url2pathname(parsed.path), "rb")

    if cache_dir is None:
        cache_dir = make_cache_dir_path("downloads")
    url_hash = hashlib.md5(url.encode("utf-8")).hexdigest()
    safe_name = re.sub(r"[^0-9A-Za-z_.-]", "_", os.path.basename(parsed.path)) or "file"
    cache_path = os.path.join(cache_dir, f"{url_hash}_{safe_name}")

    if cache and os.path.isfile(cache_path):
        problem = check_file(cache_path, expected_sha256, expected_size)
        if problem is None:
            return open(cache_path, "rb")
        os.remove(cache_path)

    if verbose:
        print(f"Downloading {url} ...", end="", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data = response.read()
    except OSError as err:
        raise OSError(
            f"Download of {url} failed: {err}. Check the address and the network, "
            f"or download the file by hand and pass its local path instead."
        ) from err
    if verbose:
        print(" done")

    if not cache:
        tmp = io.BytesIO(data)
        problem = _check_bytes(data, expected_sha256, expected_size)
        if problem is not None:
            raise ValueError(f"Download of {url} is invalid: {problem}")
        return tmp  # type: ignore[return-value]

    os.makedirs(cache_dir, exist_ok=True)
    with atomic_write(cache_path) as f:
        f.write(data)
    problem = check_file(cache_path, expected_sha256, expected_size)
    if problem is not None:
        os.remove(cache_path)
        raise ValueError(f"Download of {url} is invalid: {problem}")
    return open(cache_path, "rb")


def _check_bytes(data: bytes, expected_sha256: str | None, expected_size: int | None) -> str | None:
    if expected_size is not None and len(data) != expected_size:
        return f"size {len(data)} bytes, expected {expected_size}"
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            return f"sha256 {actual}, expected {expected_sha256}"
    return None


def check_file(
    path: str,
    expected_sha256: str | None,
    expected_size: int | None,
    sha256_fn: Callable[[str], str] | None = None,
) -> str | None:
    """Return a description of how the file differs from the expected size and sha256, or None
    when it matches (None for an expected value skips that check). `sha256_fn` replaces the
    default hashing, for example by one that caches digests."""
    size = os.path.getsize(path)
    if expected_size is not None and size != expected_size:
        return f"size {size} bytes, expected {expected_size}"
    if expected_sha256 is not None:
        actual = (sha256_fn or _sha256_of)(path)
        if actual != expected_sha256:
            return f"sha256 {actual}, expected {expected_sha256}"
    return None
