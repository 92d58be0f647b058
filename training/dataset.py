"""Image datasets for training and metrics: a zip or folder of PNG/JPEG images with labels.

A dataset is a zip archive or a folder of square, power-of-two images, all with the same size
and channel count (1 for grayscale, 3 for RGB), plus an optional `dataset.json` at its root:

    {"labels": [["00000/img00000000.png", 6], ["00000/img00000001.png", 2], ...]}

An integer label is a class index and becomes a one-hot vector; a list of numbers is used as
given. `"labels": null` means unlabeled. `dataset_tool.py` writes data in this format.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
import zlib
from typing import Any

import numpy as np
import PIL.Image
import torch

import dnnlib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LABELS_FILE = "dataset.json"
CONVERT_HINT = "Convert the data with dataset_tool.py"


def is_image_name(name: str) -> bool:
    """True for a file name ending in .png, .jpg or .jpeg (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def verify_advice(path: str) -> str:
    """Return the advice that error messages about a bad file in the dataset at `path` end with."""
    return (
        f"Run python dataset_tool.py --verify={path} to list every bad file, then re-create the "
        f"data set with dataset_tool.py."
    )


class DatasetError(ValueError):
    """Error for a dataset file that cannot be read or decoded, or that does not match the other
    images. The message starts with the file: a folder path or 'archive.zip:member'."""

    def __init__(self, message: str):
        super().__init__(_lead_with_worker_message(message, type(self).__name__))


def _lead_with_worker_message(text: str, class_name: str) -> str:
    """Move the original message of an error re-raised from a DataLoader worker to the front.

    torch.utils.data (ExceptionWrapper.reraise in torch/_utils.py, torch 2.13) re-raises a
    worker's exception in the main process as exc_type(text), where text is "Caught
    DatasetError in DataLoader worker process N.\nOriginal Traceback ..." and the original
    message comes last. Any other text is returned unchanged."""
    prefix = f"Caught {class_name} "
    header, _, rest = text.partition("\n")
    marker = f"{class_name}: "
    if not (text.startswith(prefix) and rest.startswith("Original Traceback") and marker in rest):
        return text
    original = rest[rest.rindex(marker) + len(marker) :].strip()
    where = header[len(prefix) :].rstrip(".")
    return f"{original}\n(Raised {where}. Its traceback follows.)\n{rest}"


# ----------------------------------------------------------------------------
# dataset.json parsing, shared with dataset_tool.py.


def parse_labels_json(data: bytes, source: str) -> dict[str, Any] | None:
    """Parse the bytes of a dataset.json file into {relative name: label}, or None when its
    labels are null. A label is a non-negative int or a non-empty list of numbers. Raises
    ValueError naming `source` when the JSON or its structure is invalid."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{source}: invalid JSON ({err}). {_LABELS_FORMAT}") from err
    if not isinstance(doc, dict) or "labels" not in doc:
        raise ValueError(f"{source}: expected an object with a 'labels' key. {_LABELS_FORMAT}")
    entries = doc["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ValueError(f"{source}: 'labels' must be a list or null. {_LABELS_FORMAT}")
    labels: dict[str, Any] = {}
    for pos, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(
                f"{source}: labels[{pos}] is {_short_repr(entry)}, expected [file name, label]. "
                f"{_LABELS_FORMAT}"
            )
        name, label = entry
        _check_label_value(label, f"{source}: label of {name!r}")
        if name.replace("\\", "/") in labels:
            raise ValueError(f"{source}: {name!r} has more than one label. Keep one entry.")
        labels[name.replace("\\", "/")] = label
    return labels


_LABELS_FORMAT = 'The expected format is {"labels": [["name.png", 3], ...]} or {"labels": null}.'


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_label_value(label: Any, where: str) -> None:
    if isinstance(label, int) and not isinstance(label, bool):
        if label < 0:
            raise ValueError(f"{where} is {label}, but a class index must be 0 or greater.")
        return
    if isinstance(label, list) and label and all(_is_number(v) for v in label):
        return
    raise ValueError(
        f"{where} is {_short_repr(label)}, but a label must be a class index (int) or a "
        f"non-empty list of numbers."
    )


def labels_to_array(labels: list[Any], source: str) -> np.ndarray:
    """Stack per-image labels in raw form: int64 [N] for class indices, float32 [N, L] for
    vectors. Raises ValueError naming `source` when the two kinds are mixed or lengths differ."""
    if all(isinstance(v, int) for v in labels):
        return np.array(labels, dtype=np.int64)
    if any(isinstance(v, int) for v in labels):
        raise ValueError(
            f"{source}: labels mix class indices and vectors. Use one kind for every image."
        )
    lengths = sorted({len(v) for v in labels})
    if len(lengths) > 1:
        raise ValueError(
            f"{source}: label vectors have different lengths {lengths}. Use one length."
        )
    return np.array(labels, dtype=np.float32)


# ----------------------------------------------------------------------------
# Image decoding, shared with dataset_tool.py. The errors name `source` and the fault, and the
# callers append what to do about it.

_MODE_CHANNELS = {"L": 1, "RGB": 3}


def _unsupported_mode(mode: str, source: str) -> DatasetError:
    return DatasetError(
        f"{source}: image mode {mode!r} is not supported, because images must be RGB or "
        f"grayscale (L). Convert it to RGB or L."
    )


def image_to_array(image: PIL.Image.Image, source: str) -> np.ndarray:
    """Convert a decoded L or RGB image to uint8 [C, H, W]. Raises DatasetError naming `source`
    for any other mode (RGBA, palette, 16-bit, CMYK, ...)."""
    if image.mode not in _MODE_CHANNELS:
        raise _unsupported_mode(image.mode, source)
    array = np.asarray(image, dtype=np.uint8)  # [H, W] or [H, W, 3]
    if array.ndim == 2:
        array = array[np.newaxis]
    else:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)  # [C, H, W]


def _pil_message(err: Exception) -> str:
    """Return PIL's error message without the repr of the in-memory file object it names
    ('cannot identify image file <_io.BytesIO object at 0x...>')."""
    return re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>", "", str(err)).strip()


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode PNG or JPEG bytes to uint8 [C, H, W]. Raises DatasetError naming `source` when the
    file is empty, cannot be decoded (truncated or damaged) or has an unsupported mode."""
    if not data:
        raise DatasetError(f"{source}: the file is empty (0 bytes).")
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
            return image_to_array(image, source)
    except (OSError, SyntaxError, PIL.Image.DecompressionBombError) as err:
        raise DatasetError(
            f"{source}: cannot decode the image ({_pil_message(err)}), so the file is damaged "
            f"or not an image."
        ) from err


def read_image_header(data_file: Any, source: str) -> tuple[list[int], str]:
    """Read only the header of an open image file: returns ([C, H, W], mode). Raises
    DatasetError naming `source` for unreadable files and unsupported modes."""
    try:
        with PIL.Image.open(data_file) as image:
            width, height = image.size
            mode = image.mode
    except (OSError, SyntaxError, PIL.Image.DecompressionBombError) as err:
        raise DatasetError(
            f"{source}: cannot decode the image ({_pil_message(err)}), so the file is damaged "
            f"or not an image."
        ) from err
    if mode not in _MODE_CHANNELS:
        raise _unsupported_mode(mode, source)
    return [_MODE_CHANNELS[mode], height, width], mode


# ----------------------------------------------------------------------------
# File access, shared with dataset_tool.py.

# Exceptions that reading a damaged or missing file raises. zipfile raises BadZipFile for a
# bad CRC-32 or local header, and EOFError or zlib.error for truncated or damaged compressed
# data. It raises NotImplementedError for an unsupported compression method and RuntimeError
# for an encrypted member.
_READ_ERRORS = (
    OSError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)


class DataFiles:
    """The files of a dataset zip archive or folder, by '/'-separated relative name.

    Each process opens its own zip handle, and pickling drops it, so a copy in a DataLoader
    worker never shares the parent's file offset."""

    def __init__(self, path: str):  # Zip archive or folder. Folders are searched recursively.
        self.path = os.fspath(path)
        self._zipfile: zipfile.ZipFile | None = None
        self._zipfile_pid: int | None = None
        if os.path.isdir(self.path):
            self.type = "dir"
            self.names = self._list_folder()
        elif os.path.isfile(self.path) and self.path.lower().endswith(".zip"):
            self.type = "zip"
            self.names = self._list_zip()
        elif os.path.exists(self.path):
            raise ValueError(
                f"Dataset path {self.path} is neither a folder nor a .zip file. {CONVERT_HINT}."
            )
        else:
            raise FileNotFoundError(
                f"Dataset path {self.path} does not exist. Check the path, or create the "
                f"dataset with dataset_tool.py."
            )

    def _list_folder(self) -> list[str]:
        names = []
        for root, _dirs, files in os.walk(self.path):
            for file_name in files:
                full = os.path.join(root, file_name)
                names.append(os.path.relpath(full, self.path).replace(os.sep, "/"))
        return sorted(names)

    def _list_zip(self) -> list[str]:
        """Return every member name except folders, sorted. A name stored twice is listed twice."""
        try:
            return sorted(n for n in self.archive().namelist() if not n.endswith("/"))
        except zipfile.BadZipFile as err:
            raise ValueError(
                f"Dataset {self.path} is not a valid zip file ({err}). {CONVERT_HINT}."
            ) from err

    def archive(self) -> zipfile.ZipFile:
        """Return this process's open handle of the zip archive. Only for zip datasets."""
        if self._zipfile is None or self._zipfile_pid != os.getpid():
            self._zipfile = zipfile.ZipFile(self.path)
            self._zipfile_pid = os.getpid()
        return self._zipfile

    def describe(self, name: str) -> str:
        """Location of a file for error messages: the folder path or 'archive.zip:name'."""
        if self.type == "dir":
            return os.path.join(self.path, name)
        return f"{self.path}:{name}"

    def open(self, name: str) -> Any:
        """Open a file for binary reading. The caller handles _READ_ERRORS."""
        if self.type == "dir":
            return open(os.path.join(self.path, name), "rb")
        return self.archive().open(name, "r")

    def size(self, name: str) -> int:
        if self.type == "dir":
            return os.path.getsize(os.path.join(self.path, name))
        return self.archive().getinfo(name).file_size

    def read(self, name: str) -> bytes:
        """Read a whole file, checking the CRC-32 of a zip member. Raises DatasetError naming
        the file when it cannot be read."""
        try:
            with self.open(name) as f:
                return f.read()
        except _READ_ERRORS as err:
            raise DatasetError(f"{self.describe(name)}: {_read_failure(self, err)}") from err

    def read_header(self, name: str) -> list[int]:
        """Read only an image's header and return its [C, H, W]. Raises DatasetError naming
        the file when it is empty, unreadable or not an L or RGB image."""
        source = self.describe(name)
        try:
            if self.size(name) == 0:
                raise DatasetError(f"{source}: the file is empty (0 bytes).")
            with self.open(name) as f:
                shape, _mode = read_image_header(f, source)
        except _READ_ERRORS as err:
            raise DatasetError(f"{source}: {_read_failure(self, err)}") from err
        return shape

    def close(self) -> None:
        if self._zipfile is not None and self._zipfile_pid == os.getpid():
            self._zipfile.close()
        self._zipfile = None
        self._zipfile_pid = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _zipfile=None, _zipfile_pid=None)


def _read_failure(files: DataFiles, err: BaseException) -> str:
    """Describe a read failure of a file in one sentence."""
    if files.type == "zip" and isinstance(err, KeyError):
        return "the member is missing from the archive, which changed after it was opened."
    if files.type == "zip" and not isinstance(err, OSError):
        return f"cannot read the member ({type(err).__name__}: {err}), so the archive is damaged."
    return f"cannot read the file ({err})."


# ----------------------------------------------------------------------------


class Dataset(torch.utils.data.Dataset):
    """Base class: index bookkeeping, max_size subsets, x-flips and labels.

    Subclasses implement _load_raw_image(raw_idx) -> uint8 [C, H, W] and _load_raw_labels()
    -> None or an array from labels_to_array(). Item i of the dataset maps to a raw image
    index. With xflip the index list is repeated and the second copy is mirrored.
    """

    def __init__(
        self,
        name: str,  # Short name shown in logs and run-directory names.
        raw_shape: list[int],  # Shape of the raw data: [num_images, C, H, W].
        max_size: int | None = None,  # Use at most this many images (seeded subset); None = all.
        use_labels: bool = False,  # Return labels; False = every label has shape [0].
        xflip: bool = False,  # Double the length with horizontally mirrored copies.
        random_seed: int = 0,  # Seed of the permutation that picks the max_size subset.
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels: np.ndarray | None = None
        self._label_shape: list[int] | None = None

        # Pick the subset, then add the mirrored half.
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None:
            if max_size < 1:
                raise ValueError(f"max_size must be None or at least 1, got {max_size}.")
            if self._raw_idx.size > max_size:
                permutation = np.random.RandomState(random_seed).permutation(self._raw_idx.size)
                self._raw_idx = np.sort(permutation[:max_size])
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        raise NotImplementedError

    def _load_raw_labels(self) -> np.ndarray | None:
        raise NotImplementedError

    def _describe_raw(self, raw_idx: int) -> str:
        """Location of raw image raw_idx for error messages."""
        return f"Image {raw_idx} of {self._name}"

    def _advice(self) -> str:
        """Return the advice that error messages about a bad image end with."""
        return f"{CONVERT_HINT} so all images match."

    def _get_raw_labels(self) -> np.ndarray:
        """Raw labels of all images: int64 [N] class indices, float32 [N, L] vectors, or
        float32 [N, 0] when labels are off."""
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            self._raw_labels = labels
        return self._raw_labels

    def close(self) -> None:
        """Release open files; the dataset reopens them on the next access."""

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # The interpreter may be shutting down, with modules half gone.
            pass

    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (image uint8 [C, H, W], label float32 [label_dim])."""
        raw_idx = int(self._raw_idx[idx])
        image = self._load_raw_image(raw_idx)
        if list(image.shape) != self.image_shape:
            raise DatasetError(
                f"{self._describe_raw(raw_idx)}: the image has shape {list(image.shape)} "
                f"([C, H, W]), but the data set's images are {self.image_shape}. {self._advice()}"
            )
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        # A writable copy: decoded PIL buffers are read-only, and torch warns when collating them.
        return np.array(image, order="C"), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        """Label of item idx as float32 [label_dim]: one-hot for class indices."""
        raw = self._get_raw_labels()[self._raw_idx[idx]]
        if raw.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[raw] = 1
            return onehot
        return raw.astype(np.float32, copy=True)

    def get_details(self, idx: int) -> dnnlib.EasyDict:
        """Raw index, mirror flag and raw label (class index or vector) of item idx."""
        raw_idx = int(self._raw_idx[idx])
        return dnnlib.EasyDict(
            raw_idx=raw_idx,
            xflip=bool(self._xflip[idx]),
            raw_label=self._get_raw_labels()[raw_idx].copy(),
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_shape(self) -> list[int]:
        """Shape of one image: [C, H, W]."""
        return list(self._raw_shape[1:])

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        return self.image_shape[1]

    @property
    def label_shape(self) -> list[int]:
        """[label_dim]: the number of classes for class indices, [0] without labels."""
        if self._label_shape is None:
            raw = self._get_raw_labels()
            if raw.dtype == np.int64:
                self._label_shape = [int(raw.max()) + 1]
            else:
                self._label_shape = list(raw.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self) -> int:
        return self.label_shape[0]

    @property
    def has_labels(self) -> bool:
        return self.label_dim > 0

    @property
    def has_onehot_labels(self) -> bool:
        return self._get_raw_labels().dtype == np.int64


# ----------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """Images from a zip archive or a folder (searched recursively, names sorted), with
    optional labels from dataset.json at the root. The whole file list and every image header
    are checked at construction, so a bad file is reported before training starts."""

    def __init__(
        self,
        path: str,  # Zip archive or folder of PNG/JPEG images.
        resolution: int | None = None,  # Expected resolution; None = take it from the data.
        use_labels: bool = False,  # Return dataset.json labels. ValueError if there are none.
        max_size: int | None = None,  # Use at most this many images (seeded subset); None = all.
        xflip: bool = False,  # Double the length with horizontally mirrored copies.
        random_seed: int = 0,  # Seed of the permutation that picks the max_size subset.
    ):
        self._files = DataFiles(path)
        self._path = self._files.path
        self._type = self._files.type
        self._all_names = self._files.names
        self._fingerprint: str | None = None
        self._image_names = sorted(n for n in self._all_names if is_image_name(n))
        if not self._image_names:
            raise ValueError(f"No PNG or JPEG images found in {self._path}. {CONVERT_HINT}.")

        image_shape = self._check_images()
        if resolution is not None and image_shape[1] != resolution:
            raise ValueError(
                f"Dataset {self._path} has resolution {image_shape[1]}, but resolution="
                f"{resolution} was requested. Pass the data's resolution or None, or convert "
                f"the data with dataset_tool.py --resolution."
            )
        name = os.path.splitext(os.path.basename(self._path.rstrip("/\\")))[0]
        raw_shape = [len(self._image_names)] + image_shape
        super().__init__(
            name=name,
            raw_shape=raw_shape,
            max_size=max_size,
            use_labels=use_labels,
            xflip=xflip,
            random_seed=random_seed,
        )
        if self._use_labels:
            self._get_raw_labels()  # Report label problems now, not in the first batch.

    # File access.

    def _describe(self, name: str) -> str:
        """Location of a member for error messages: the folder path or 'archive.zip:name'."""
        return self._files.describe(name)

    def _describe_raw(self, raw_idx: int) -> str:
        return self._describe(self._image_names[raw_idx])

    def _advice(self) -> str:
        return verify_advice(self._path)

    def close(self) -> None:
        self._files.close()

    # Validation.

    def _check_images(self) -> list[int]:
        """Read every image header and return the common [C, H, W]. Raises DatasetError naming
        the offending files."""
        first_name, first_shape = None, None
        for name in self._image_names:
            try:
                shape = self._files.read_header(name)
            except DatasetError as err:
                raise DatasetError(f"{err} {self._advice()}") from err
            if first_shape is None:
                first_name, first_shape = name, shape
                check_square_power_of_two(shape, self._describe(name))
            elif shape != first_shape:
                raise DatasetError(
                    f"Images in {self._path} differ in size or channel count: {first_name} is "
                    f"{first_shape} and {name} is {shape} ([C, H, W]). {CONVERT_HINT} "
                    f"--resolution to give them one size and mode. {self._advice()}"
                )
        return list(first_shape)

    # Loading.

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        name = self._image_names[raw_idx]
        try:
            return decode_image(self._files.read(name), self._describe(name))  # [C, H, W]
        except DatasetError as err:
            raise DatasetError(f"{err} {self._advice()}") from err

    def _load_raw_labels(self) -> np.ndarray | None:
        if LABELS_FILE not in self._all_names:
            raise ValueError(
                f"use_labels=True, but {self._path} has no {LABELS_FILE}. Train without labels "
                f"(--cond=False), or convert labeled data with dataset_tool.py."
            )
        labels = self._read_labels_file()
        if labels is None:
            raise ValueError(
                f"use_labels=True, but {self._describe(LABELS_FILE)} has labels null. Train "
                f"without labels (--cond=False), or convert labeled data with dataset_tool.py."
            )
        self._check_label_names(labels)
        raw = labels_to_array([labels[n] for n in self._image_names], self._describe(LABELS_FILE))
        return raw

    def _read_labels_file(self) -> dict[str, Any] | None:
        return parse_labels_json(self._files.read(LABELS_FILE), self._describe(LABELS_FILE))

    def _check_label_names(self, labels: dict[str, Any]) -> None:
        source = self._describe(LABELS_FILE)
        unknown = sorted(set(labels) - set(self._image_names))
        if unknown:
            raise ValueError(
                f"{source} names {len(unknown)} file(s) that are not images of the dataset, "
                f"first: {', '.join(unknown[:3])}. Remove those entries or add the images."
            )
        missing = [n for n in self._image_names if n not in labels]
        if missing:
            raise ValueError(
                f"{source} has no label for {len(missing)} of {len(self._image_names)} images, "
                f'first: {", ".join(missing[:3])}. Label every image, or set "labels": null '
                f"and train without labels."
            )

    # Metadata.

    @property
    def labels_available(self) -> bool:
        """True when dataset.json exists and its labels are not null, whatever use_labels is.
        Reading it does not check that every image has a label."""
        if LABELS_FILE not in self._all_names:
            return False
        return self._read_labels_file() is not None

    def content_fingerprint(self) -> str:
        """SHA-256 hex digest of the data's content, for caches keyed on the dataset.

        For a zip it covers every member's name, size and CRC-32 from the central directory plus
        the bytes of dataset.json. For a folder it covers the name, size and bytes of every image
        and of dataset.json, so it reads every file once (fine for small data sets)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(f"type={self._type}\n".encode())
            if self._type == "zip":
                for info in sorted(self._files.archive().infolist(), key=lambda i: i.filename):
                    digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
            for name in self._fingerprint_names():
                data = self._files.read(name)
                digest.update(f"{name}\0{len(data)}\0".encode())
                digest.update(hashlib.sha256(data).digest())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _fingerprint_names(self) -> list[str]:
        """Files whose bytes the fingerprint hashes: dataset.json, plus every image for a folder."""
        names = [LABELS_FILE] if LABELS_FILE in self._all_names else []
        if self._type == "dir":
            names += self._image_names
        return names


def check_square_power_of_two(shape: list[int], source: str) -> None:
    """Raise ValueError naming `source` unless the [C, H, W] images are square with a
    power-of-two side."""
    _channels, height, width = shape
    if height != width or height < 1 or (height & (height - 1)) != 0:
        raise ValueError(
            f"{source}: images are {width}x{height}, but they must be square with a power-of-two "
            f"side (for example 32x32 or 256x256). {CONVERT_HINT} --resolution=RxR "
            f"(with --transform=center-crop or pad where the aspect ratio differs)."
        )
