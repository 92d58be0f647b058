"""Convert image collections into the zip or folder format that training/dataset.py reads.

Examples:

    python dataset_tool.py --source=~/downloads/cifar-10-python.tar.gz --dest=data/cifar10-32x32.zip
    python dataset_tool.py --source=~/downloads/cifar-100-python.tar.gz \\
        --dest=data/cifar100-coarse-32x32.zip --cifar100-labels=coarse
    python dataset_tool.py --source=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\
        --dest=data/fashion-mnist-32x32.zip --transform=pad --resolution=32x32
    python dataset_tool.py --source=~/photos --dest=~/datasets/photos-256.zip \\
        --transform=center-crop --resolution=256x256
    python dataset_tool.py --verify=~/datasets/photos-256.zip
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip
import io
import json
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import time
import zipfile
import zlib
from typing import Any, Callable, Iterator

import click
import numpy as np
import PIL.Image

import dnnlib
from training.dataset import (
    LABELS_FILE,
    DataFiles,
    DatasetError,
    check_square_power_of_two,
    decode_image,
    is_image_name,
    labels_to_array,
    parse_labels_json,
)

# ----------------------------------------------------------------------------
# Sources. Each opener returns a Source whose records are produced lazily.


@dataclasses.dataclass
class Record:
    """One source image: where it came from (for messages), the image, and its label."""

    source: str
    image: PIL.Image.Image
    label: Any  # Class index (int), list of numbers, or None for unlabeled data.


@dataclasses.dataclass
class Source:
    """A source data set: the number of images that will be converted and their records."""

    num_images: int
    records: Iterator[Record]
    has_labels: bool


def open_source(path: str, max_images: int | None, cifar100_labels: str | None = None) -> Source:
    """Detect the format of `path` and open it: a folder, a zip, a CIFAR-10 or CIFAR-100 python
    tarball or an IDX images file (gzipped or not). `cifar100_labels` is --cifar100-labels,
    None for the default. Raises FileNotFoundError or ValueError naming `path`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--source {path} does not exist. Check the path.")
    kind = _detect_source_kind(path)
    if kind == "a tar file":
        return open_cifar(path, max_images, cifar100_labels)
    if cifar100_labels is not None:
        raise ValueError(
            f"--cifar100-labels={cifar100_labels} applies only to the CIFAR-100 python tarball "
            f"{CIFAR100.file_name}, but --source {path} is {kind}. Remove --cifar100-labels."
        )
    if kind == "a folder":
        return open_image_archive(_FolderReader(path), max_images)
    if kind == "a zip file":
        return open_image_archive(_ZipReader(path), max_images)
    return open_idx(path, max_images)


def _detect_source_kind(path: str) -> str:
    """Return "a folder", "a zip file", "a tar file" or "an IDX file" for an existing `path`."""
    if os.path.isdir(path):
        return "a folder"
    if path.lower().endswith(".zip"):
        return "a zip file"
    if path.lower().endswith((".tar.gz", ".tgz", ".tar")):
        return "a tar file"
    if _is_idx_file(path):
        return "an IDX file"
    if _is_tar_file(path):
        return "a tar file"
    raise ValueError(
        f"--source {path} has an unknown format. Supported sources: a folder or .zip of PNG/JPEG "
        f"images, an IDX images file such as train-images-idx3-ubyte[.gz], or the CIFAR-10 or "
        f"CIFAR-100 python tarball ({CIFAR10.file_name}, {CIFAR100.file_name})."
    )


# Folders and zips of images.


class _FolderReader:
    def __init__(self, path: str):
        self.path = path
        names = []
        for root, _dirs, files in os.walk(path):
            for file_name in files:
                names.append(os.path.relpath(os.path.join(root, file_name), path))
        self.names = sorted(n.replace(os.sep, "/") for n in names)

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.path, name), "rb") as f:
            return f.read()

    def describe(self, name: str) -> str:
        return os.path.join(self.path, name)


class _ZipReader:
    def __init__(self, path: str):
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self.names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        except zipfile.BadZipFile as err:
            raise ValueError(f"--source {path} is not a valid zip file ({err}).") from err

    def read(self, name: str) -> bytes:
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(name)

    def describe(self, name: str) -> str:
        return f"{self.path}:{name}"


def open_image_archive(reader: _FolderReader | _ZipReader, max_images: int | None) -> Source:
    """Open a folder or zip of images, with labels from its dataset.json when present."""
    all_names = [n for n in reader.names if is_image_name(n)]
    if not all_names:
        raise ValueError(f"--source {reader.path} contains no PNG or JPEG images.")
    names = all_names[:max_images] if max_images is not None else all_names
    labels = None
    if LABELS_FILE in reader.names:
        labels_source = reader.describe(LABELS_FILE)
        labels = parse_labels_json(reader.read(LABELS_FILE), labels_source)
        labels = _keep_complete_labels(labels, names, all_names, labels_source)

    def records() -> Iterator[Record]:
        for name in names:
            image = load_image(reader.read(name), reader.describe(name))
            yield Record(reader.describe(name), image, labels[name] if labels else None)

    return Source(num_images=len(names), records=records(), has_labels=labels is not None)


def _keep_complete_labels(
    labels: dict[str, Any] | None, names: list[str], all_names: list[str], labels_source: str
) -> dict[str, Any] | None:
    """Return `labels` when every image in `names` has one. Otherwise print a warning naming
    the unlabeled images and return None, so that no partial labels are written."""
    if labels is None:
        return None
    unknown = sorted(set(labels) - set(all_names))
    if unknown:
        print(
            f"Note: {labels_source} names {len(unknown)} file(s) that are not images of the "
            f"source, first: {', '.join(unknown[:3])}. Those entries are ignored."
        )
    unlabeled = [n for n in names if n not in labels]
    if not unlabeled:
        return labels
    print(
        f"Warning: {len(unlabeled)} of {len(names)} images have no label in {labels_source}, "
        f"first: {', '.join(unlabeled[:5])}. Writing labels null (an unlabeled data set) "
        f"instead of partial labels. Label every image to keep the labels."
    )
    return None


def load_image(data: bytes, source: str) -> PIL.Image.Image:
    """Decode image bytes into an L or RGB image, converting bilevel, palette, CMYK and YCbCr
    images. Images with alpha or a high bit depth raise ValueError naming `source`."""
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes). Replace or delete it.")
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, PIL.Image.DecompressionBombError) as err:
        raise ValueError(
            f"{source}: cannot decode the image ({err}). Replace or delete it."
        ) from err
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("CMYK", "YCbCr") or (image.mode == "P" and "transparency" not in image.info):
        return image.convert("RGB")
    raise ValueError(
        f"{source}: image mode {image.mode!r} is not supported. Convert it to RGB or grayscale "
        f"(L) first, flattening any alpha channel onto a background."
    )


# IDX files (MNIST, Fashion-MNIST).

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open_maybe_gzip(path: str) -> Any:
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def _parse_idx_header(magic: bytes) -> tuple[str, int] | None:
    """Return (dtype, ndim) from the 4-byte IDX magic number, or None when it is not one."""
    if len(magic) != 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_DTYPES:
        return None
    return _IDX_DTYPES[magic[2]], magic[3]


def _is_idx_file(path: str) -> bool:
    try:
        with _open_maybe_gzip(path) as f:
            return _parse_idx_header(f.read(4)) is not None
    except (OSError, EOFError):
        return False


def read_idx(path: str) -> np.ndarray:
    """Read a whole IDX file (gzipped or not) into an array with the dimensions it declares."""
    try:
        with _open_maybe_gzip(path) as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read the IDX file ({err}).") from err
    header = _parse_idx_header(data[:4])
    if header is None:
        raise ValueError(f"{path}: not an IDX file (invalid magic number).")
    dtype, ndim = header
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: the IDX header is truncated. Download the file again.")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = data[4 + 4 * ndim :]
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(payload) != expected:
        raise ValueError(
            f"{path}: the header declares shape {list(shape)} ({expected} bytes of data), but the "
            f"file has {len(payload)}. The file is truncated or corrupt. Download it again."
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def find_idx_labels(images_path: str) -> str | None:
    """Return the labels file beside an images file by the standard name: for
    `train-images-idx3-ubyte[.gz]` that is `train-labels-idx1-ubyte[.gz]`. None if absent."""
    folder, base = os.path.split(images_path)
    if "images-idx3-ubyte" not in base:
        return None
    stem = base.replace("images-idx3-ubyte", "labels-idx1-ubyte").removesuffix(".gz")
    for candidate in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    return None


def open_idx(path: str, max_images: int | None) -> Source:
    """Open an IDX images file [N, H, W] uint8, with labels from the labels file beside it."""
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected uint8 images [N, H, W], got {images.dtype} {list(images.shape)}."
        )
    images = images[:max_images] if max_images is not None else images
    labels = None
    labels_path = find_idx_labels(path)
    if labels_path is None:
        print(f"Note: no labels file found beside {path}; converting without labels.")
    else:
        labels = read_idx(labels_path)
        if labels.ndim != 1 or labels.shape[0] < images.shape[0]:
            raise ValueError(
                f"{labels_path}: expected a 1-D labels array with at least {images.shape[0]} "
                f"entries, got shape {list(labels.shape)}. Check that it belongs to {path}."
            )

    def records() -> Iterator[Record]:
        for idx, image in enumerate(images):
            label = int(labels[idx]) if labels is not None else None
            yield Record(f"{path}[{idx}]", PIL.Image.fromarray(image, mode="L"), label)

    return Source(num_images=len(images), records=records(), has_labels=labels is not None)


# CIFAR-10 and CIFAR-100 python tarballs.


@dataclasses.dataclass(frozen=True)
class CifarLayout:
    """Layout of a CIFAR python tarball: the members with its training images and the labels
    to read."""

    name: str  # Data set name for messages, such as "CIFAR-10".
    file_name: str  # Name of the tarball as distributed, for messages.
    members: tuple[str, ...]  # Pickled training batches, in image order.
    label_key: bytes  # Key of the labels list in each batch dict.
    num_classes: int  # Labels must lie in [0, num_classes).


CIFAR10 = CifarLayout(
    name="CIFAR-10",
    file_name="cifar-10-python.tar.gz",
    members=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    label_key=b"labels",
    num_classes=10,
)
CIFAR100 = CifarLayout(
    name="CIFAR-100",
    file_name="cifar-100-python.tar.gz",
    members=("cifar-100-python/train",),
    label_key=b"fine_labels",
    num_classes=100,
)
# --cifar100-labels: the label key and class count of each CIFAR-100 label kind.
CIFAR100_LABEL_KINDS = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}

# The CIFAR batches are pickled dicts whose only non-builtin objects are numpy arrays, so
# these array reconstruction globals are all an unpickler needs. Both module spellings occur:
# numpy.core (NumPy 1.x, and the original files) and numpy._core (NumPy 2.x).
_ARRAY_RECONSTRUCT = np.ndarray((0,), dtype=np.uint8).__reduce__()[0]
_CIFAR_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RejectedGlobalError(pickle.UnpicklingError):
    """Error for a pickle that names a global which RestrictedUnpickler does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array and dtype globals, so a pickle cannot name a
    function (such as os.system) for the loader to call."""

    def __init__(self, file: Any, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source  # File name for error messages.

    def find_class(self, module: str, name: str) -> Any:
        obj = _CIFAR_ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise RejectedGlobalError(
                f"{self.source}: the pickle references the global {module}.{name}, which is not "
                f"a numpy array or dtype, so it was rejected. Use the original CIFAR python file."
            )
        return obj


def _is_tar_file(path: str) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False


def detect_cifar_layout(path: str, member_names: list[str]) -> CifarLayout:
    """Return the CIFAR layout whose first training batch is in `member_names`, the names of
    the tarball's members. Raises ValueError naming the missing file when neither is."""
    for layout in (CIFAR10, CIFAR100):
        if layout.members[0] in member_names:
            return layout
    # A tarball named like one of the data sets gets that data set's missing file in the error.
    base = os.path.basename(path).lower()
    for layout, prefix in ((CIFAR100, "cifar-100"), (CIFAR10, "cifar-10")):
        if base.startswith(prefix):
            raise ValueError(
                f"{path} has no file {layout.members[0]}. Expected the {layout.name} python "
                f"version ({layout.file_name})."
            )
    raise ValueError(
        f"--source {path} is a tar file, but not a CIFAR python tarball: it contains neither "
        f"{CIFAR10.members[0]} ({CIFAR10.file_name}) nor {CIFAR100.members[0]} "
        f"({CIFAR100.file_name})."
    )


def select_cifar_labels(path: str, layout: CifarLayout, label_kind: str | None) -> CifarLayout:
    """Apply --cifar100-labels (None = fine) to a CIFAR-100 layout. Raises ValueError when the
    option is set for a CIFAR-10 source."""
    if layout.name != CIFAR100.name:
        if label_kind is not None:
            raise ValueError(
                f"--cifar100-labels={label_kind} applies only to the CIFAR-100 python tarball, "
                f"but --source {path} is the {layout.name} one. Remove --cifar100-labels."
            )
        return layout
    if label_kind not in (None, *CIFAR100_LABEL_KINDS):
        raise ValueError(
            f"--cifar100-labels={label_kind!r} is invalid. Use one of "
            f"{', '.join(CIFAR100_LABEL_KINDS)}."
        )
    label_key, num_classes = CIFAR100_LABEL_KINDS[label_kind or "fine"]
    return dataclasses.replace(layout, label_key=label_key, num_classes=num_classes)


def _load_cifar_batch(
    tar: tarfile.TarFile, member: str, source: str, layout: CifarLayout
) -> tuple[np.ndarray, list[int]]:
    """Load one batch as (images uint8 [N, 32, 32, 3], labels)."""
    try:
        data = tar.extractfile(member).read()
    except (KeyError, AttributeError) as err:
        raise ValueError(
            f"{source} has no file {member}. Expected the {layout.name} python version "
            f"({layout.file_name})."
        ) from err
    name = f"{source}:{member}"
    try:
        batch = RestrictedUnpickler(io.BytesIO(data), name).load()
    except RejectedGlobalError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError) as err:
        raise ValueError(
            f"{name}: cannot unpickle the batch ({err}). The file is truncated or corrupt. "
            f"Download it again."
        ) from err
    return _check_cifar_batch(batch, name, layout)


def _check_cifar_batch(batch: Any, name: str, layout: CifarLayout) -> tuple[np.ndarray, list]:
    """Check an unpickled batch dict and return (images uint8 [N, 32, 32, 3], labels)."""
    images = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(layout.label_key) if isinstance(batch, dict) else None
    valid = isinstance(images, np.ndarray) and isinstance(labels, list)
    valid = valid and all(isinstance(v, int) and 0 <= v < layout.num_classes for v in labels)
    if not valid or images.dtype != np.uint8 or images.shape != (len(labels), 3 * 32 * 32):
        key = layout.label_key.decode()
        raise ValueError(
            f"{name}: expected a dict with b'data' uint8 [N, 3072] and b'{key}' (N ints in "
            f"0..{layout.num_classes - 1}). Use the original {layout.name} python file."
        )
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def open_cifar(path: str, max_images: int | None, label_kind: str | None = None) -> Source:
    """Open the training images of the CIFAR-10 or CIFAR-100 python tarball with their labels,
    detecting which one it is by its members. `label_kind` is --cifar100-labels."""
    try:
        with tarfile.open(path, "r:*") as tar:
            layout = detect_cifar_layout(path, tar.getnames())
            layout = select_cifar_labels(path, layout, label_kind)
            batches = [_load_cifar_batch(tar, member, path, layout) for member in layout.members]
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"--source {path} is not a readable tar file ({err}). The file is truncated or "
            f"corrupt. Download it again."
        ) from err
    images = np.concatenate([b[0] for b in batches])  # [N, 32, 32, 3]
    labels = [int(v) for b in batches for v in b[1]]
    count = len(images) if max_images is None else min(max_images, len(images))

    def records() -> Iterator[Record]:
        for idx in range(count):
            yield Record(f"{path}[{idx}]", PIL.Image.fromarray(images[idx], "RGB"), labels[idx])

    return Source(num_images=count, records=records(), has_labels=True)


# ----------------------------------------------------------------------------
# Transforms. Each returns a function that maps a PIL image to the output PIL image.


def make_transform(
    transform: str | None, resolution: tuple[int, int] | None
) -> Callable[[PIL.Image.Image, str], PIL.Image.Image]:
    """Build the image transform from --transform and --resolution (width, height)."""
    if transform is not None and resolution is None:
        raise ValueError(f"--transform={transform} needs --resolution=WxH.")
    if transform is None:
        if resolution is None:
            return lambda image, _source: image
        return lambda image, _source: _resize(image, resolution)
    width, height = resolution
    if transform == "center-crop":
        return lambda image, _source: _resize(_crop_to_aspect(image, 1, 1), resolution)
    if transform == "center-crop-wide":
        side = max(width, height)

        def crop_wide(image: PIL.Image.Image, _source: str) -> PIL.Image.Image:
            cropped = _resize(_crop_to_aspect(image, width, height), resolution)
            return _pad(cropped, side, side)

        return crop_wide
    if transform == "pad":

        def pad(image: PIL.Image.Image, source: str) -> PIL.Image.Image:
            if image.width > width or image.height > height:
                raise ValueError(
                    f"{source}: the image is {image.width}x{image.height}, larger than "
                    f"--resolution={width}x{height}, so --transform=pad cannot fit it. Use a "
                    f"larger --resolution or --transform=center-crop."
                )
            return _pad(image, width, height)

        return pad
    raise ValueError(
        f"Unknown --transform {transform!r}. Use center-crop, center-crop-wide or pad."
    )


def _resize(image: PIL.Image.Image, size: tuple[int, int]) -> PIL.Image.Image:
    if image.size == tuple(size):
        return image
    return image.resize(size, PIL.Image.Resampling.LANCZOS)


def _crop_to_aspect(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """Crop the centered largest region whose aspect ratio is width:height."""
    crop_w = min(image.width, int(round(image.height * width / height)))
    crop_h = min(image.height, int(round(image.width * height / width)))
    left = (image.width - crop_w) // 2
    top = (image.height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


def _pad(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """Center the image on a black canvas of width x height. An odd margin puts the extra
    pixel on the right or at the bottom."""
    canvas = PIL.Image.new(image.mode, (width, height))
    canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    """Parse 'WxH' into (width, height); None passes through."""
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--resolution={text!r} is invalid. Expected WxH, for example 256x256.")
    width, height = (int(p) for p in parts)
    if width < 1 or height < 1:
        raise ValueError(f"--resolution={text!r} is invalid. Width and height must be positive.")
    return width, height


# ----------------------------------------------------------------------------
# Destinations: a zip or a folder, built beside the destination and renamed into place.


@contextlib.contextmanager
def open_dest(dest: str) -> Iterator[Callable[[str, bytes], None]]:
    """Yield a function write(name, data) that adds a file to the destination. The output
    appears at `dest` only when the block succeeds. On an exception, the partial output is
    deleted."""
    parent = os.path.dirname(os.path.abspath(dest))
    if dest.lower().endswith(".zip"):
        if os.path.exists(dest):
            raise FileExistsError(
                f"--dest {dest} already exists. Delete it or pick another --dest."
            )
        os.makedirs(parent, exist_ok=True)
        with dnnlib.util.atomic_write(dest) as f, zipfile.ZipFile(f, "w") as archive:
            os.chmod(f.fileno(), _default_file_mode())  # The temporary file starts as 0600.

            def write_zip(name: str, data: bytes) -> None:
                # A fixed timestamp makes the archive's bytes depend only on its content.
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED  # PNG data is already compressed.
                archive.writestr(info, data)

            yield write_zip
        return

    if os.path.isfile(dest) or (os.path.isdir(dest) and os.listdir(dest)):
        raise FileExistsError(
            f"--dest {dest} already exists and is not an empty folder. Delete it or pick "
            f"another --dest."
        )
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=os.path.basename(dest) + ".", suffix=".tmp", dir=parent)
    try:

        def write_file(name: str, data: bytes) -> None:
            path = os.path.join(tmp_dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)

        yield write_file
        os.chmod(tmp_dir, _default_file_mode() | 0o111)  # mkdtemp() creates it as 0700.
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.replace(tmp_dir, dest)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _default_file_mode() -> int:
    """Permissions of a newly created file under the current umask: 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# ----------------------------------------------------------------------------
# Conversion.


def convert_dataset(
    source: str,
    dest: str,
    max_images: int | None = None,
    transform: str | None = None,
    resolution: tuple[int, int] | None = None,
    cifar100_labels: str | None = None,
) -> None:
    """Convert `source` into a zip or folder at `dest`: PNG images under
    `NNNNN/imgNNNNNNNN.png` plus dataset.json. `cifar100_labels` selects the fine (None or
    "fine") or "coarse" labels of a CIFAR-100 source. Raises ValueError, FileNotFoundError or
    FileExistsError with a message naming the file or option at fault."""
    if max_images is not None and max_images < 1:
        raise ValueError(f"--max-images={max_images} is invalid. It must be at least 1.")
    apply_transform = make_transform(transform, resolution)
    src = open_source(source, max_images, cifar100_labels)
    labels: list[list[Any]] = []
    first: tuple[str, tuple[int, int, str]] | None = None
    progress_step = max(1, src.num_images // 20)

    with open_dest(dest) as write:
        for idx, record in enumerate(src.records):
            image = apply_transform(record.image, record.source)
            shape = (image.width, image.height, image.mode)
            if first is None:
                first = (record.source, shape)
                _check_output_size(image, transform, resolution)
            elif shape != first[1]:
                raise ValueError(_mismatch_message(first, record.source, shape))

            name = f"{idx:08d}"
            name = f"{name[:5]}/img{name}.png"
            png = io.BytesIO()
            image.save(png, format="png")
            write(name, png.getvalue())
            labels.append([name, record.label])
            if (idx + 1) % progress_step == 0 or idx + 1 == src.num_images:
                print(f"{idx + 1}/{src.num_images} images", flush=True)

        doc = {"labels": labels if src.has_labels else None}
        write(LABELS_FILE, json.dumps(doc).encode("utf-8"))
    labels_text = "with labels" if src.has_labels else "without labels"
    print(f"Wrote {len(labels)} images {labels_text} to {dest}")


def _check_output_size(
    image: PIL.Image.Image, transform: str | None, resolution: tuple[int, int] | None
) -> None:
    """Raise ValueError unless the output images are square with a power-of-two side."""
    side = image.width
    if image.height == side and side >= 1 and side & (side - 1) == 0:
        return
    raise ValueError(
        f"Output images would be {image.width}x{image.height} (--transform={transform}, "
        f"--resolution={_format_resolution(resolution)}), but training needs square images "
        f"with a power-of-two side. Pass --resolution=RxR, for example 256x256, and "
        f"--transform=center-crop or pad when the source is not square."
    )


def _format_resolution(resolution: tuple[int, int] | None) -> str:
    return "None" if resolution is None else f"{resolution[0]}x{resolution[1]}"


def _mismatch_message(first: tuple[str, tuple[int, int, str]], source: str, shape: tuple) -> str:
    (first_source, (w0, h0, mode0)), (w1, h1, mode1) = first, shape
    return (
        f"Source images differ in size or mode: {first_source} is {w0}x{h0} {mode0} but "
        f"{source} is {w1}x{h1} {mode1}. Pass --resolution=WxH (with --transform where the "
        f"aspect ratio differs) to give them one size, and store them all as RGB or all as L."
    )


# ----------------------------------------------------------------------------
# Verification of a data set in the training format (--verify).

MAX_LISTED_PROBLEMS = 20  # --verify prints this many problems, then only counts the rest.


@dataclasses.dataclass
class VerifyReport:
    """Result of verify_dataset(): a summary of the data set and every problem found."""

    path: str
    num_images: int = 0
    image_shape: list[int] | None = None  # The most common [C, H, W]; None without images.
    labels: str = "none"  # The labels in words, for the summary.
    notes: list[str] = dataclasses.field(default_factory=list)  # Findings that are not errors.
    problems: list[str] = dataclasses.field(default_factory=list)  # "file: what is wrong".


def verify_dataset(path: str, progress_seconds: float = 5.0) -> VerifyReport:
    """Check a zip or folder in the training format in one pass. Every file must be readable
    (zip CRC-32 included) and every image must decode, with one square power-of-two [C, H, W]
    for all. dataset.json must parse and give every image the same kind of label, and no other
    files may be present. Prints progress at most every `progress_seconds` and at the end.
    Raises ValueError or FileNotFoundError when `path` is neither a zip nor a folder."""
    files = DataFiles(path)
    report = VerifyReport(path=files.path)
    try:
        image_names = sorted({n for n in files.names if is_image_name(n)})
        report.num_images = len(image_names)
        if not image_names:
            report.problems.append(f"{files.path}: contains no PNG or JPEG images.")
        report.problems += _member_problems(files)
        shapes = _read_image_shapes(files, image_names, report.problems, progress_seconds)
        report.image_shape, shape_problems = _shape_problems(files, shapes)
        report.problems += shape_problems
        _check_labels(files, image_names, report)
    finally:
        files.close()
    return report


def _member_problems(files: DataFiles) -> list[str]:
    """Problems with the file list: names stored twice in a zip, and files that are neither
    images nor dataset.json."""
    problems = []
    for name, count in collections.Counter(files.names).items():
        if count > 1:
            problems.append(
                f"{files.describe(name)}: {count} members of the archive have this name, so "
                f"training would read the last one {count} times."
            )
        if not is_image_name(name) and name != LABELS_FILE:
            problems.append(
                f"{files.describe(name)}: unexpected file, neither a PNG or JPEG image nor "
                f"{LABELS_FILE}. Training ignores it."
            )
    return problems


def _read_image_shapes(
    files: DataFiles, names: list[str], problems: list[str], progress_seconds: float
) -> dict[str, list[int]]:
    """Decode every image and return {name: [C, H, W]}, appending a problem for each one that
    cannot be read or decoded."""
    shapes = {}
    start = last_print = time.monotonic()
    for done, name in enumerate(names, start=1):
        try:
            shapes[name] = list(decode_image(files.read(name), files.describe(name)).shape)
        except DatasetError as err:
            problems.append(str(err))
        now = time.monotonic()
        if now - last_print >= progress_seconds or done == len(names):
            rate = done / max(now - start, 1e-6)
            print(f"{done}/{len(names)} images checked ({rate:.0f} images/s)", flush=True)
            last_print = now
    return shapes


def _shape_problems(
    files: DataFiles, shapes: dict[str, list[int]]
) -> tuple[list[int] | None, list[str]]:
    """Return the most common [C, H, W] and a problem for each image of another shape, plus
    one when that shape is not square with a power-of-two side."""
    counts = collections.Counter(tuple(shape) for shape in shapes.values())
    if not counts:
        return None, []
    common, count = counts.most_common(1)[0]
    problems = []
    try:
        check_square_power_of_two(list(common), files.path)
    except ValueError as err:
        problems.append(str(err))
    for name, shape in shapes.items():
        if tuple(shape) != common:
            problems.append(
                f"{files.describe(name)}: the image is {shape} ([C, H, W]), but {count} of "
                f"{len(shapes)} images are {list(common)}."
            )
    return list(common), problems


def _check_labels(files: DataFiles, image_names: list[str], report: VerifyReport) -> None:
    """Check dataset.json: it parses, names only images, labels every image, and every label
    is a class index or every label is a vector of one length."""
    if LABELS_FILE not in files.names:
        report.labels = f"none (no {LABELS_FILE})"
        report.notes.append(f"{files.path} has no {LABELS_FILE}, so training sees no labels.")
        return
    source = files.describe(LABELS_FILE)
    try:
        labels = parse_labels_json(files.read(LABELS_FILE), source)
    except ValueError as err:  # Includes DatasetError for an unreadable member.
        report.labels = "unreadable"
        report.problems.append(str(err))
        return
    if labels is None:
        report.labels = "null (unlabeled)"
        return
    for name in sorted(set(labels) - set(image_names)):
        report.problems.append(f"{source}: has a label for {name}, which is not an image.")
    labeled = [n for n in image_names if n in labels]
    for name in image_names:
        if name not in labels:
            report.problems.append(f"{files.describe(name)}: has no label in {LABELS_FILE}.")
    report.problems += _label_kind_problems(source, labels, labeled)
    report.labels = _describe_labels([labels[n] for n in labeled])


def _label_kind(label: Any) -> str:
    return "a class index" if isinstance(label, int) else f"a vector of length {len(label)}"


def _label_kind_problems(source: str, labels: dict[str, Any], names: list[str]) -> list[str]:
    """Return a problem for each image whose label kind differs from the most common kind,
    unless all labels are class indices or all are vectors of one length."""
    try:
        labels_to_array([labels[n] for n in names], source)
        return []
    except ValueError:
        pass
    kinds = {name: _label_kind(labels[name]) for name in names}
    common, count = collections.Counter(kinds.values()).most_common(1)[0]
    return [
        f"{source}: the label of {name} is {kind}, but {count} of {len(kinds)} labels are {common}."
        for name, kind in kinds.items()
        if kind != common
    ]


def _describe_labels(values: list[Any]) -> str:
    if not values:
        return "none"
    if all(isinstance(v, int) for v in values):
        return f"class indices 0..{max(values)} ({max(values) + 1} classes)"
    return ", ".join(sorted({_label_kind(v) for v in values})).replace("a vector", "vectors")


def print_report(report: VerifyReport, max_listed: int = MAX_LISTED_PROBLEMS) -> None:
    """Print the summary of a VerifyReport and its first `max_listed` problems."""
    shape = "none" if report.image_shape is None else f"{report.image_shape} ([C, H, W])"
    print(f"Checked {report.num_images} images in {report.path}")
    print(f"Image shape: {shape}")
    print(f"Labels: {report.labels}")
    for note in report.notes:
        print(f"Note: {note}")
    if not report.problems:
        print("No problems found.")
        return
    print(f"Problems ({len(report.problems)}):")
    for problem in report.problems[:max_listed]:
        print(f"  {problem}")
    if len(report.problems) > max_listed:
        print(f"  ... and {len(report.problems) - max_listed} more.")


def run_verify(path: str) -> None:
    """Verify the data set at `path` and print the report. Raises click.ClickException, so the
    exit status is 1, when the data set has a problem or cannot be opened."""
    try:
        report = verify_dataset(path)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from err
    print_report(report)
    if report.problems:
        raise click.ClickException(
            f"{path} has {len(report.problems)} problem(s), listed above. Re-create the data "
            f"set from the source images with dataset_tool.py --source --dest."
        )


# ----------------------------------------------------------------------------
# Command line.


@click.command()
@click.option(
    "--source",
    metavar="PATH",
    help="Input: a folder or .zip of PNG/JPEG images (labels from its dataset.json), an IDX "
    "images file such as train-images-idx3-ubyte[.gz] (labels from the *-labels-idx1-ubyte[.gz] "
    "file beside it), or cifar-10-python.tar.gz or cifar-100-python.tar.gz (the training "
    "images, recognized by the tarball's contents)",
)
@click.option(
    "--dest",
    metavar="PATH",
    help="Output: a .zip file or an empty folder. Existing data is never overwritten",
)
@click.option(
    "--max-images",
    metavar="INT",
    type=click.IntRange(min=1),
    help="Convert only the first N images  [default: all]",
)
@click.option(
    "--transform",
    type=click.Choice(["center-crop", "center-crop-wide", "pad"]),
    help="center-crop: crop to a square, then resize. center-crop-wide: crop to the W:H aspect "
    "ratio, resize, then pad to a square. pad: zero-pad to WxH without resampling  "
    "[default: resize only]",
)
@click.option(
    "--resolution",
    metavar="WxH",
    help="Output size in pixels. Without --transform, images are resized with Lanczos  "
    "[default: keep the source size]",
)
@click.option(
    "--cifar100-labels",
    type=click.Choice(list(CIFAR100_LABEL_KINDS)),
    help="Labels of a CIFAR-100 source: fine (100 classes) or coarse (20 superclasses)  "
    "[default: fine]",
)
@click.option(
    "--verify",
    metavar="PATH",
    help="Check an existing data set (a zip or folder in the training format) instead of "
    "converting: every image decodes with one size and channel count, dataset.json labels "
    "every image, and no other files are present. Exits with status 1 on any problem",
)
def main(
    source: str | None,
    dest: str | None,
    max_images: int | None,
    transform: str | None,
    resolution: str | None,
    cifar100_labels: str | None,
    verify: str | None,
) -> None:
    """Convert an image collection into a data set for training: PNG images and a
    dataset.json with labels, in a zip or folder. With --verify, check a data set instead.

    When only some images of a folder or zip source have a label in its dataset.json, the tool
    prints how many are unlabeled with their first names, and writes labels null (no labels)
    rather than partial labels.
    """
    conversion_options = {
        "--source": source,
        "--dest": dest,
        "--max-images": max_images,
        "--transform": transform,
        "--resolution": resolution,
        "--cifar100-labels": cifar100_labels,
    }
    if verify is not None:
        conflicting = [flag for flag, value in conversion_options.items() if value is not None]
        if conflicting:
            raise click.UsageError(
                f"--verify takes no other options. Remove {', '.join(conflicting)} to check "
                f"{verify}, or remove --verify to convert."
            )
        run_verify(verify)
        return
    missing = [flag for flag in ("--source", "--dest") if conversion_options[flag] is None]
    if missing:
        raise click.UsageError(
            f"Missing option {' and '.join(missing)}. Pass --source and --dest to convert, or "
            f"--verify=PATH to check a data set."
        )
    try:
        convert_dataset(
            source=source,
            dest=dest,
            max_images=max_images,
            transform=transform,
            resolution=parse_resolution(resolution),
            cifar100_labels=cifar100_labels,
        )
    except (ValueError, OSError, pickle.UnpicklingError) as err:
        raise click.ClickException(str(err)) from err


if __name__ == "__main__":
    main()
