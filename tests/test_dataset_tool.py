"""Tests for dataset_tool.py: every source format, transforms, labels, atomic output and errors.

Source files (PNG folders, IDX files, fake CIFAR-10 and CIFAR-100 tarballs) are written by
the tests from numpy arrays, and converted output is read back with zipfile and PIL alone.
"""

import gzip
import io
import json
import os
import pickle
import re
import struct
import tarfile
import warnings
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from tests.test_dataset import flip_member_byte, png_bytes, write_zip
from training.dataset import ImageFolderDataset


def random_image(seed, height=8, width=8, channels=3):
    """uint8 [H, W, C], or [H, W] for channels=1, from a seeded generator."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array).save(path)


def make_folder(root, arrays, labels=None):
    """Write {name: array} as PNGs under `root`, plus dataset.json when labels is not None."""
    for name, array in arrays.items():
        write_png(os.path.join(root, name), array)
    if labels is not None:
        with open(os.path.join(root, "dataset.json"), "w") as f:
            json.dump(labels, f)
    return str(root)


def read_output(path):
    """Read a converted zip or folder as (sorted image names, {name: [H, W(, C)]}, labels)."""
    if str(path).endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            files = {n: archive.read(n) for n in archive.namelist()}
    else:
        files = {}
        for base, _dirs, names in os.walk(path):
            for name in names:
                full = os.path.join(base, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, path).replace(os.sep, "/")] = f.read()
    images = {
        n: np.asarray(PIL.Image.open(io.BytesIO(d)))
        for n, d in files.items()
        if n != "dataset.json"
    }
    labels = json.loads(files["dataset.json"])["labels"]
    return sorted(images), images, labels


def convert(*args):
    """Run the dataset_tool command line in-process and return the click result."""
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args])


def write_idx(path, array, compress):
    """Write a uint8 IDX file: magic 0x0000 08 ndim, big-endian uint32 dims, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data)
    return str(path)


class _Py2StylePickler(pickle._Pickler):
    """Protocol-2 pickler that stores bytes with the STRING opcodes of Python 2's str, as the
    original CIFAR-10 batches (written by Python 2) do."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def py2_style_pickle(obj):
    buffer = io.BytesIO()
    _Py2StylePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def make_cifar_tarball(path, images_per_batch=2, batch_payload=None):
    """Write a fake cifar-10-python.tar.gz: five pickled batches of random images, in the
    original layout (rows of 3072 bytes: 1024 red, then green, then blue, row-major)."""
    rows, labels = [], []
    with tarfile.open(path, "w:gz") as tar:
        for batch in range(5):
            data = random_image(batch, height=images_per_batch, width=3072, channels=1)
            batch_labels = [(batch * images_per_batch + i) % 10 for i in range(images_per_batch)]
            payload = py2_style_pickle({b"data": data, b"labels": batch_labels})
            if batch_payload is not None and batch == 2:
                payload = batch_payload
            info = tarfile.TarInfo(f"cifar-10-batches-py/data_batch_{batch + 1}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
            rows.append(data)
            labels += batch_labels
    return str(path), np.concatenate(rows), labels


# ----------------------------------------------------------------------------
# Folder and zip sources.


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dest_name", ["out.zip", "out-folder"])
def test_folder_round_trip(tmp_path, channels, dest_name):
    arrays = {
        "z.png": random_image(0, channels=channels),
        "a.png": random_image(1, channels=channels),
        "sub/m.png": random_image(2, channels=channels),
    }
    labels = {"labels": [["a.png", 2], ["sub/m.png", 0], ["z.png", 1]]}
    source = make_folder(tmp_path / "src", arrays, labels)
    dest = tmp_path / dest_name
    result = convert("--source", source, "--dest", dest)
    assert result.exit_code == 0, result.output
    assert "3/3 images" in result.output

    names, images, out_labels = read_output(dest)
    expected_order = ["a.png", "sub/m.png", "z.png"]
    assert names == [f"00000/img{i:08d}.png" for i in range(3)]
    assert out_labels == [[names[i], labels["labels"][i][1]] for i in range(3)]
    for name, source_name in zip(names, expected_order):
        np.testing.assert_array_equal(images[name], arrays[source_name])

    dataset = ImageFolderDataset(str(dest), use_labels=True)
    assert dataset.image_shape == [channels, 8, 8]
    for idx, source_name in enumerate(expected_order):
        reference = np.asarray(PIL.Image.open(os.path.join(source, source_name)))
        reference = reference[np.newaxis] if channels == 1 else reference.transpose(2, 0, 1)
        np.testing.assert_array_equal(dataset[idx][0], reference)
        assert dataset.get_details(idx).raw_label == labels["labels"][idx][1]


def test_zip_source_and_vector_labels(tmp_path):
    arrays = {"a.png": random_image(0), "b.png": random_image(1)}
    labels = {"labels": [["a.png", [0.5, 1.0]], ["b.png", [2.0, -1.0]]]}
    folder = make_folder(tmp_path / "src", arrays, labels)
    source = tmp_path / "src.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for name in ["a.png", "b.png", "dataset.json"]:
            archive.write(os.path.join(folder, name), name)
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    names, images, out_labels = read_output(tmp_path / "out.zip")
    np.testing.assert_array_equal(images[names[1]], arrays["b.png"])
    assert out_labels == [[names[0], [0.5, 1.0]], [names[1], [2.0, -1.0]]]


def test_unlabeled_folder_writes_null(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    assert convert("--source", source, "--dest", tmp_path / "out.zip").exit_code == 0
    assert read_output(tmp_path / "out.zip")[2] is None


def test_partial_labels_write_null_and_warn(tmp_path):
    arrays = {f"{i}.png": random_image(i) for i in range(4)}
    labels = {"labels": [["0.png", 1], ["2.png", 0]]}
    source = make_folder(tmp_path / "src", arrays, labels)
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    assert "2 of 4 images have no label" in result.output
    assert "1.png, 3.png" in result.output
    assert "labels null" in result.output
    assert read_output(tmp_path / "out.zip")[2] is None


def test_partial_labels_fine_within_max_images(tmp_path):
    arrays = {f"{i}.png": random_image(i) for i in range(3)}
    labels = {"labels": [["0.png", 1], ["1.png", 0]]}
    source = make_folder(tmp_path / "src", arrays, labels)
    result = convert("--source", source, "--dest", tmp_path / "out.zip", "--max-images", 2)
    assert result.exit_code == 0, result.output
    names, _images, out_labels = read_output(tmp_path / "out.zip")
    assert out_labels == [[names[0], 1], [names[1], 0]]


def test_labels_for_missing_files_noted(tmp_path):
    labels = {"labels": [["a.png", 1], ["gone.png", 0]]}
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)}, labels)
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    assert "gone.png" in result.output
    assert read_output(tmp_path / "out.zip")[2] == [["00000/img00000000.png", 1]]


def test_help_mentions_null_labels():
    result = convert("--help")
    assert result.exit_code == 0
    assert "labels null" in result.output


def test_output_is_reproducible(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0), "b.png": random_image(1)})
    assert convert("--source", source, "--dest", tmp_path / "one.zip").exit_code == 0
    assert convert("--source", source, "--dest", tmp_path / "two.zip").exit_code == 0
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()


# ----------------------------------------------------------------------------
# IDX sources.


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    suffix = ".gz" if compress else ""
    images = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    source = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    result = convert("--source", source, "--dest", tmp_path / "out.zip", "--max-images", 4)
    assert result.exit_code == 0, result.output
    assert "4/4 images" in result.output
    names, out, out_labels = read_output(tmp_path / "out.zip")
    assert len(names) == 4
    for idx, name in enumerate(names):
        np.testing.assert_array_equal(out[name], images[idx])
    assert out_labels == [[n, int(v)] for n, v in zip(names, labels[:4])]


def test_idx_pad_transform(tmp_path):
    images = np.random.default_rng(0).integers(1, 256, size=(3, 12, 12), dtype=np.uint8)
    source = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2], np.uint8), True)
    dest = tmp_path / "out.zip"
    result = convert("--source", source, "--dest", dest, "--transform=pad", "--resolution=16x16")
    assert result.exit_code == 0, result.output
    names, out, _labels = read_output(dest)
    for idx, name in enumerate(names):
        assert out[name].shape == (16, 16)
        np.testing.assert_array_equal(out[name][2:14, 2:14], images[idx])
        border = out[name].copy()
        border[2:14, 2:14] = 0
        assert border.max() == 0


def test_idx_without_labels_file(tmp_path):
    images = np.zeros((2, 4, 4), np.uint8)
    source = write_idx(tmp_path / "train-images-idx3-ubyte", images, False)
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    assert "no labels file found" in result.output
    assert read_output(tmp_path / "out.zip")[2] is None


def test_idx_truncated_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((2, 4, 4), np.uint8), False)
    path.write_bytes(path.read_bytes()[:-5])
    result = convert("--source", path, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte" in result.output
    assert "truncated" in result.output


def test_idx_labels_too_short(tmp_path):
    source = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8), False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8), False)
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert "train-labels-idx1-ubyte: expected a 1-D labels array" in result.output


# ----------------------------------------------------------------------------
# CIFAR-10 sources and the restricted unpickler.


def test_cifar_round_trip(tmp_path):
    source, rows, labels = make_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    names, out, out_labels = read_output(tmp_path / "out.zip")
    assert len(names) == 10
    for idx, name in enumerate(names):
        image = out[name]  # [H, W, C]
        assert image.shape == (32, 32, 3)
        for channel, y, x in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 17, 3)]:
            assert image[y, x, channel] == rows[idx, channel * 1024 + y * 32 + x]
    assert out_labels == [[n, v] for n, v in zip(names, labels)]


def test_cifar_max_images(tmp_path):
    source, _rows, labels = make_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    result = convert("--source", source, "--dest", tmp_path / "out.zip", "--max-images", 3)
    assert result.exit_code == 0, result.output
    assert read_output(tmp_path / "out.zip")[2] == [
        [f"00000/img{i:08d}.png", labels[i]] for i in range(3)
    ]


# A protocol-0 pickle that calls os.system('touch <marker>') when loaded without restrictions.
def os_system_pickle(marker):
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def test_unpickler_rejects_os_system(tmp_path):
    marker = tmp_path / "marker"
    payload = os_system_pickle(marker)
    unpickler = dataset_tool.RestrictedUnpickler(io.BytesIO(payload), "evil.pkl")
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pkl.*os\.system"):
        unpickler.load()
    assert not marker.exists()


def test_unpickler_loads_numpy_arrays():
    array = random_image(3)
    for payload in [pickle.dumps({b"data": array}, protocol=4), py2_style_pickle({b"data": array})]:
        loaded = dataset_tool.RestrictedUnpickler(io.BytesIO(payload), "ok.pkl").load()
        np.testing.assert_array_equal(loaded[b"data"], array)


def test_cifar_tarball_with_os_system(tmp_path):
    marker = tmp_path / "marker"
    source, _rows, _labels = make_cifar_tarball(
        tmp_path / "cifar-10-python.tar.gz", batch_payload=os_system_pickle(marker)
    )
    dest = tmp_path / "out.zip"
    result = convert("--source", source, "--dest", dest)
    assert result.exit_code == 1
    assert "cifar-10-batches-py/data_batch_3" in result.output
    assert "os.system" in result.output
    assert not marker.exists()
    assert not dest.exists()


def test_cifar_tarball_missing_batch(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    result = convert("--source", path, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert "cifar-10-python.tar.gz has no file cifar-10-batches-py/data_batch_1" in result.output


# ----------------------------------------------------------------------------
# Transforms.


def test_resize_without_transform_uses_lanczos(tmp_path):
    array = random_image(0, height=16, width=16)
    source = make_folder(tmp_path / "src", {"a.png": array})
    result = convert("--source", source, "--dest", tmp_path / "out.zip", "--resolution=8x8")
    assert result.exit_code == 0, result.output
    names, out, _labels = read_output(tmp_path / "out.zip")
    reference = PIL.Image.fromarray(array).resize((8, 8), PIL.Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(out[names[0]], np.asarray(reference))


def test_center_crop(tmp_path):
    array = random_image(0, height=8, width=16)
    source = make_folder(tmp_path / "src", {"a.png": array})
    args = ["--source", source, "--transform=center-crop"]
    assert convert(*args, "--dest", tmp_path / "same.zip", "--resolution=8x8").exit_code == 0
    names, out, _labels = read_output(tmp_path / "same.zip")
    np.testing.assert_array_equal(out[names[0]], array[:, 4:12])  # No resampling at 8x8.

    assert convert(*args, "--dest", tmp_path / "small.zip", "--resolution=4x4").exit_code == 0
    names, out, _labels = read_output(tmp_path / "small.zip")
    crop = PIL.Image.fromarray(np.ascontiguousarray(array[:, 4:12]))
    reference = crop.resize((4, 4), PIL.Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(out[names[0]], np.asarray(reference))


def test_center_crop_wide(tmp_path):
    array = random_image(0, height=16, width=16)
    source = make_folder(tmp_path / "src", {"a.png": array})
    dest = tmp_path / "out.zip"
    args = ["--transform=center-crop-wide", "--resolution=16x8"]
    result = convert("--source", source, "--dest", dest, *args)
    assert result.exit_code == 0, result.output
    names, out, _labels = read_output(dest)
    image = out[names[0]]
    assert image.shape == (16, 16, 3)
    np.testing.assert_array_equal(image[4:12], array[4:12])  # Middle rows, no resampling.
    assert image[:4].max() == 0
    assert image[12:].max() == 0


def test_pad_rejects_larger_image(tmp_path):
    source = make_folder(tmp_path / "src", {"big.png": random_image(0, 16, 16)})
    result = convert(
        "--source", source, "--dest", tmp_path / "o.zip", "--transform=pad", "--resolution=8x8"
    )
    assert result.exit_code == 1
    assert "big.png: the image is 16x16, larger than --resolution=8x8" in result.output


def test_transform_needs_resolution(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    result = convert("--source", source, "--dest", tmp_path / "o.zip", "--transform=center-crop")
    assert result.exit_code == 1
    assert "--transform=center-crop needs --resolution=WxH" in result.output


def test_mode_conversions(tmp_path):
    bilevel = PIL.Image.fromarray(random_image(0, channels=1) > 127)
    palette = PIL.Image.fromarray(random_image(1)).convert("P")
    folder = tmp_path / "src"
    folder.mkdir()
    bilevel.save(folder / "bilevel.png")
    palette.save(folder / "palette.png")
    for name, expected in [("bilevel.png", "L"), ("palette.png", "RGB")]:
        image = dataset_tool.load_image((folder / name).read_bytes(), name)
        assert image.mode == expected
    rgb = dataset_tool.load_image((folder / "palette.png").read_bytes(), "palette.png")
    np.testing.assert_array_equal(np.asarray(rgb), np.asarray(palette.convert("RGB")))


# ----------------------------------------------------------------------------
# Destinations.


def test_existing_zip_rejected(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    dest = tmp_path / "out.zip"
    dest.write_bytes(b"keep me")
    result = convert("--source", source, "--dest", dest)
    assert result.exit_code == 1
    assert f"--dest {dest} already exists. Delete it or pick another --dest." in result.output
    assert dest.read_bytes() == b"keep me"


def test_non_empty_folder_rejected(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("keep me")
    result = convert("--source", source, "--dest", dest)
    assert result.exit_code == 1
    assert f"--dest {dest} already exists and is not an empty folder" in result.output
    assert (dest / "old.txt").read_text() == "keep me"


def test_empty_dest_folder_accepted(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    dest = tmp_path / "out"
    dest.mkdir()
    assert convert("--source", source, "--dest", dest).exit_code == 0
    assert read_output(dest)[0] == ["00000/img00000000.png"]


@pytest.mark.parametrize("dest_name", ["out.zip", "out-folder"])
def test_failure_leaves_no_partial_output(tmp_path, dest_name):
    arrays = {f"{i}.png": random_image(i) for i in range(3)}
    source = make_folder(tmp_path / "src", arrays)
    (tmp_path / "src" / "9.png").write_bytes(b"broken")  # Sorted last, so it fails late.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = convert("--source", source, "--dest", out_dir / dest_name)
    assert result.exit_code == 1
    assert "9.png: cannot decode" in result.output
    assert os.listdir(out_dir) == []


# ----------------------------------------------------------------------------
# Source and option errors.


def test_mixed_sizes_name_both_files(tmp_path):
    arrays = {"a.png": random_image(0), "b.png": random_image(1, 16, 16)}
    source = make_folder(tmp_path / "src", arrays)
    result = convert("--source", source, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert "a.png is 8x8 RGB" in result.output
    assert "b.png is 16x16 RGB" in result.output
    assert not (tmp_path / "o.zip").exists()


def test_mixed_channels_name_both_files(tmp_path):
    arrays = {"a.png": random_image(0), "b.png": random_image(1, channels=1)}
    source = make_folder(tmp_path / "src", arrays)
    result = convert("--source", source, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert "a.png is 8x8 RGB" in result.output
    assert "b.png is 8x8 L" in result.output


def test_mixed_sizes_fine_with_resolution(tmp_path):
    arrays = {"a.png": random_image(0), "b.png": random_image(1, 16, 16)}
    source = make_folder(tmp_path / "src", arrays)
    result = convert("--source", source, "--dest", tmp_path / "o.zip", "--resolution=8x8")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", ["abc", "32", "32x", "0x32", "32x-4", "1.5x2"])
def test_bad_resolution_syntax(tmp_path, text):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    result = convert("--source", source, "--dest", tmp_path / "o.zip", f"--resolution={text}")
    assert result.exit_code == 1
    assert f"--resolution='{text}' is invalid" in result.output


def test_non_power_of_two_output(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0, 12, 12)})
    result = convert("--source", source, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert "Output images would be 12x12" in result.output
    assert "power-of-two" in result.output


def test_missing_source(tmp_path):
    result = convert("--source", tmp_path / "nowhere", "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert f"--source {tmp_path / 'nowhere'} does not exist" in result.output


def test_unknown_source_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = convert("--source", path, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert f"--source {path} has an unknown format" in result.output


def test_source_without_images(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    result = convert("--source", folder, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert f"--source {folder} contains no PNG or JPEG images" in result.output


def test_rgba_source_rejected(tmp_path):
    source = make_folder(tmp_path / "src", {"alpha.png": random_image(0, channels=4)})
    result = convert("--source", source, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert "alpha.png: image mode 'RGBA' is not supported" in result.output


def test_empty_source_image(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    (tmp_path / "src" / "b.png").write_bytes(b"")
    result = convert("--source", source, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert "b.png: the file is empty" in result.output


def test_malformed_source_labels(tmp_path):
    source = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    (tmp_path / "src" / "dataset.json").write_text("{oops")
    result = convert("--source", source, "--dest", tmp_path / "o.zip")
    assert result.exit_code == 1
    assert "dataset.json: invalid JSON" in result.output


# ----------------------------------------------------------------------------
# CIFAR-100 sources.

CIFAR100_FINE = [99, 0, 42, 7, 63]
CIFAR100_COARSE = [19, 4, 0, 11, 4]


def make_cifar100_tarball(path, train_payload=None, mode="w:gz"):
    """Write a fake cifar-100-python.tar.gz: meta, train and test pickles in the original
    layout, with five training images labeled CIFAR100_FINE and CIFAR100_COARSE."""
    rows = random_image(7, height=len(CIFAR100_FINE), width=3072, channels=1)
    train = {
        b"data": rows,
        b"fine_labels": list(CIFAR100_FINE),
        b"coarse_labels": list(CIFAR100_COARSE),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(rows))],
        b"batch_label": b"training batch 1 of 1",
    }
    test = dict(train, data=rows[:2], batch_label=b"testing batch 1 of 1")
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    payloads = {
        "cifar-100-python/meta": py2_style_pickle(meta),
        "cifar-100-python/train": train_payload or py2_style_pickle(train),
        "cifar-100-python/test": py2_style_pickle(test),
    }
    with tarfile.open(path, mode) as tar:
        for name, payload in payloads.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return str(path), rows


def cifar_row_to_image(row):
    """Rebuild an image [H, W, 3] from one CIFAR row: 1024 red, 1024 green, then 1024 blue
    bytes, each plane row-major."""
    planes = [row[i * 1024 : (i + 1) * 1024].reshape(32, 32) for i in range(3)]
    return np.stack(planes, axis=-1)


@pytest.mark.parametrize(
    "option, expected_labels, num_classes",
    [
        ([], CIFAR100_FINE, 100),
        (["--cifar100-labels=fine"], CIFAR100_FINE, 100),
        (["--cifar100-labels=coarse"], CIFAR100_COARSE, 20),
    ],
)
def test_cifar100_round_trip(tmp_path, option, expected_labels, num_classes):
    source, rows = make_cifar100_tarball(tmp_path / "cifar-100-python.tar.gz")
    dest = tmp_path / "out.zip"
    result = convert("--source", source, "--dest", dest, *option)
    assert result.exit_code == 0, result.output
    names, out, out_labels = read_output(dest)
    assert names == [f"00000/img{i:08d}.png" for i in range(5)]
    for idx, name in enumerate(names):
        np.testing.assert_array_equal(out[name], cifar_row_to_image(rows[idx]))
    assert out_labels == [[n, v] for n, v in zip(names, expected_labels)]
    dataset = ImageFolderDataset(str(dest), use_labels=True)
    assert dataset.label_shape == [num_classes]


def test_cifar100_max_images(tmp_path):
    source, rows = make_cifar100_tarball(tmp_path / "cifar-100-python.tar.gz")
    dest = tmp_path / "out.zip"
    result = convert(
        "--source", source, "--dest", dest, "--max-images=2", "--cifar100-labels=coarse"
    )
    assert result.exit_code == 0, result.output
    names, out, out_labels = read_output(dest)
    assert out_labels == [[names[0], CIFAR100_COARSE[0]], [names[1], CIFAR100_COARSE[1]]]
    np.testing.assert_array_equal(out[names[1]], cifar_row_to_image(rows[1]))


@pytest.mark.parametrize(
    "file_name, mode",
    [("cifar100.bin", "w:gz"), ("cifar-100-python.tar", "w"), ("cifar-10-python.tar.gz", "w:gz")],
)
def test_cifar100_detected_by_contents(tmp_path, file_name, mode):
    source, rows = make_cifar100_tarball(tmp_path / file_name, mode=mode)
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    names, out, out_labels = read_output(tmp_path / "out.zip")
    assert out_labels == [[n, v] for n, v in zip(names, CIFAR100_FINE)]
    np.testing.assert_array_equal(out[names[4]], cifar_row_to_image(rows[4]))


def test_cifar100_labels_with_cifar10_source(tmp_path):
    source, _rows, _labels = make_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    dest = tmp_path / "out.zip"
    result = convert("--source", source, "--dest", dest, "--cifar100-labels=coarse")
    assert result.exit_code == 1
    assert "--cifar100-labels=coarse applies only to the CIFAR-100 python tarball" in result.output
    assert f"--source {source} is the CIFAR-10 one" in result.output
    assert not dest.exists()


def test_cifar100_labels_with_other_sources(tmp_path):
    folder = make_folder(tmp_path / "src", {"a.png": random_image(0)})
    idx = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8), False)
    for source, kind in [(folder, "a folder"), (idx, "an IDX file")]:
        result = convert("--source", source, "--dest", tmp_path / "o.zip", "--cifar100-labels=fine")
        assert result.exit_code == 1
        assert (
            "--cifar100-labels=fine applies only to the CIFAR-100 python tarball" in result.output
        )
        assert f"--source {source} is {kind}. Remove --cifar100-labels." in result.output
    assert not (tmp_path / "o.zip").exists()


def test_cifar100_labels_invalid_choice(tmp_path):
    source, _rows = make_cifar100_tarball(tmp_path / "cifar-100-python.tar.gz")
    result = convert("--source", source, "--dest", tmp_path / "o.zip", "--cifar100-labels=super")
    assert result.exit_code == 2
    assert "'super' is not one of 'fine', 'coarse'" in result.output


def test_help_mentions_cifar100():
    result = convert("--help")
    assert result.exit_code == 0
    assert "--cifar100-labels" in result.output
    assert "cifar-100-python.tar.gz" in result.output


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_cifar100_truncated_tarball(tmp_path, mode):
    path = tmp_path / "cifar-100-python.tar.gz"
    make_cifar100_tarball(path, mode=mode)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    dest = tmp_path / "out.zip"
    result = convert("--source", path, "--dest", dest)
    assert result.exit_code == 1
    assert f"--source {path} is not a readable tar file" in result.output
    assert "truncated or corrupt" in result.output
    assert not dest.exists()


def test_cifar100_truncated_pickle(tmp_path):
    rows = random_image(0, height=len(CIFAR100_FINE), width=3072, channels=1)
    payload = py2_style_pickle({b"data": rows, b"fine_labels": CIFAR100_FINE})
    source, _rows = make_cifar100_tarball(
        tmp_path / "cifar-100-python.tar.gz", train_payload=payload[:-100]
    )
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert "cifar-100-python/train: cannot unpickle the batch" in result.output
    assert "truncated" in result.output


def test_cifar100_corrupt_pickle(tmp_path):
    source, _rows = make_cifar100_tarball(
        tmp_path / "cifar-100-python.tar.gz", train_payload=b"\x80\x02garbage"
    )
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert "cifar-100-python/train: cannot unpickle the batch" in result.output
    assert "truncated or corrupt" in result.output


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval")])
def test_cifar100_rejects_unexpected_globals(tmp_path, module, name):
    marker = tmp_path / "marker"
    payload = f"c{module}\n{name}\n(S'touch {marker}'\ntR.".encode()
    source, _rows = make_cifar100_tarball(
        tmp_path / "cifar-100-python.tar.gz", train_payload=payload
    )
    dest = tmp_path / "out.zip"
    result = convert("--source", source, "--dest", dest)
    assert result.exit_code == 1
    assert "cifar-100-python/train" in result.output
    assert f"references the global {module}.{name}" in result.output
    assert "rejected" in result.output
    assert not marker.exists()
    assert not dest.exists()


ONE_ROW = np.zeros((1, 3072), np.uint8)


@pytest.mark.parametrize(
    "batch",
    [
        {b"data": ONE_ROW, b"fine_labels": [100]},  # Label out of range.
        {b"data": ONE_ROW, b"fine_labels": [-1]},
        {b"data": ONE_ROW, b"fine_labels": ["3"]},
        {b"data": ONE_ROW, b"coarse_labels": [0]},  # No fine labels.
        {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0]},  # Count mismatch.
        {b"data": np.zeros((1, 3072), np.int64), b"fine_labels": [0]},
        {b"data": np.zeros((1, 32, 32, 3), np.uint8), b"fine_labels": [0]},
        [1, 2, 3],
    ],
)
def test_cifar100_invalid_batch(tmp_path, batch):
    source, _rows = make_cifar100_tarball(
        tmp_path / "cifar-100-python.tar.gz", train_payload=py2_style_pickle(batch)
    )
    result = convert("--source", source, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert f"{source}:cifar-100-python/train: expected a dict" in result.output
    assert "b'data' uint8 [N, 3072] and b'fine_labels' (N ints in 0..99)" in result.output
    assert "Use the original CIFAR-100 python file" in result.output


def test_coarse_label_out_of_range(tmp_path):
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [3], b"coarse_labels": [20]}
    source, _rows = make_cifar100_tarball(
        tmp_path / "cifar-100-python.tar.gz", train_payload=py2_style_pickle(batch)
    )
    assert convert("--source", source, "--dest", tmp_path / "fine.zip").exit_code == 0
    result = convert("--source", source, "--dest", tmp_path / "o.zip", "--cifar100-labels=coarse")
    assert result.exit_code == 1
    assert "b'coarse_labels' (N ints in 0..19)" in result.output


@pytest.mark.parametrize(
    "file_name, message",
    [
        ("cifar-100-python.tar.gz", "has no file cifar-100-python/train. Expected the CIFAR-100"),
        ("archive.tar.gz", "is a tar file, but not a CIFAR python tarball"),
    ],
)
def test_tarball_without_cifar_members(tmp_path, file_name, message):
    path = tmp_path / file_name
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/meta")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    result = convert("--source", path, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert message in result.output


def test_tar_name_without_tar_contents(tmp_path):
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(b"not a tarball at all")
    result = convert("--source", path, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1
    assert f"--source {path} is not a readable tar file" in result.output


# ----------------------------------------------------------------------------
# --verify: a data set in the training format, checked in one pass.

IMG0, IMG1, IMG2 = (f"00000/img{idx:08d}.png" for idx in range(3))


def verify(path):
    return convert("--verify", path)


@pytest.fixture
def good_zip(tmp_path):
    """A zip converted by dataset_tool.py: three 8x8 RGB images with class labels 0, 1, 2."""
    arrays = {f"{idx}.png": random_image(idx) for idx in range(3)}
    labels = {"labels": [[f"{idx}.png", idx] for idx in range(3)]}
    source = make_folder(tmp_path / "source", arrays, labels)
    dest = tmp_path / "good.zip"
    assert convert("--source", source, "--dest", dest).exit_code == 0
    return dest


def zip_members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite_zip(path, members):
    """Replace the zip at `path` with {name: bytes}, or a list of (name, bytes) pairs."""
    items = members.items() if isinstance(members, dict) else members
    os.remove(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about a repeated name.
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in items:
                archive.writestr(name, data)
    return str(path)


def labels_json(entries):
    return json.dumps({"labels": entries}).encode()


def damage_truncated(members):
    members[IMG1] = members[IMG1][: len(members[IMG1]) // 2]


def damage_garbage(members):
    members[IMG1] = np.random.default_rng(3).bytes(200)


def damage_wrong_size(members):
    members[IMG1] = png_bytes(random_image(3, height=16, width=16))


def damage_wrong_channels(members):
    members[IMG1] = png_bytes(random_image(3, channels=1))


def damage_unexpected_file(members):
    members["00000/notes.txt"] = b"stray"


def damage_invalid_json(members):
    members["dataset.json"] = b'{"labels": [['


def damage_missing_label(members):
    members["dataset.json"] = labels_json([[IMG0, 0], [IMG2, 2]])


def damage_label_for_missing_image(members):
    members["dataset.json"] = labels_json([[IMG0, 0], [IMG1, 1], [IMG2, 2], ["gone.png", 1]])


def damage_mixed_label_kinds(members):
    members["dataset.json"] = labels_json([[IMG0, 0], [IMG1, [0.5, 1.0]], [IMG2, 2]])


# Each damage makes exactly one problem: (function, member named, expected text).
DAMAGES = {
    "truncated": (damage_truncated, IMG1, "cannot decode the image"),
    "garbage": (damage_garbage, IMG1, "cannot decode the image"),
    "wrong-size": (
        damage_wrong_size,
        IMG1,
        r"the image is \[3, 16, 16\] \(\[C, H, W\]\), but 2 of 3 images are \[3, 8, 8\]",
    ),
    "wrong-channels": (damage_wrong_channels, IMG1, r"the image is \[1, 8, 8\]"),
    "unexpected-file": (damage_unexpected_file, "00000/notes.txt", "unexpected file"),
    "invalid-json": (damage_invalid_json, "dataset.json", "invalid JSON"),
    "missing-label": (damage_missing_label, IMG1, "has no label in dataset.json"),
    "label-for-missing-image": (
        damage_label_for_missing_image,
        "dataset.json",
        "has a label for gone.png, which is not an image",
    ),
    "mixed-label-kinds": (
        damage_mixed_label_kinds,
        "dataset.json",
        rf"the label of {IMG1} is a vector of length 2, but 2 of 3 labels are a class index",
    ),
}


def assert_one_problem(result, location, pattern):
    assert result.exit_code == 1, result.output
    assert "Problems (1):" in result.output, result.output
    problem = next(line for line in result.output.splitlines() if line.startswith("  "))
    assert problem.startswith(f"  {location}: "), problem
    assert re.search(pattern, problem), problem
    assert "has 1 problem(s), listed above" in result.output


def test_verify_good_zip(good_zip):
    result = verify(good_zip)
    assert result.exit_code == 0, result.output
    assert f"Checked 3 images in {good_zip}" in result.output
    assert "3/3 images checked (" in result.output
    assert "Image shape: [3, 8, 8] ([C, H, W])" in result.output
    assert "Labels: class indices 0..2 (3 classes)" in result.output
    assert "No problems found." in result.output


def test_verify_good_folder(tmp_path):
    source = make_folder(tmp_path / "source", {"a.png": random_image(0, channels=1)})
    assert convert("--source", source, "--dest", tmp_path / "out").exit_code == 0
    result = verify(tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "Image shape: [1, 8, 8]" in result.output
    assert "Labels: null (unlabeled)" in result.output


def test_verify_bundled_data():
    bundled = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
    result = verify(os.path.join(bundled, "fashion-mnist-32x32.zip"))
    assert result.exit_code == 0, result.output
    assert "Checked 10000 images" in result.output
    assert "Labels: class indices 0..9 (10 classes)" in result.output


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_verify_damaged_zip(good_zip, kind):
    damage, member, pattern = DAMAGES[kind]
    members = zip_members(good_zip)
    damage(members)
    rewrite_zip(good_zip, members)
    assert_one_problem(verify(good_zip), f"{good_zip}:{member}", pattern)


def test_verify_bad_crc(good_zip):
    flip_member_byte(good_zip, IMG1, len(zip_members(good_zip)[IMG1]) - 10)
    pattern = r"cannot read the member \(BadZipFile: Bad CRC-32"
    assert_one_problem(verify(good_zip), f"{good_zip}:{IMG1}", pattern)


def test_verify_repeated_member_name(good_zip):
    members = list(zip_members(good_zip).items())
    rewrite_zip(good_zip, members + [members[1]])
    pattern = "2 members of the archive have this name"
    assert_one_problem(verify(good_zip), f"{good_zip}:{IMG1}", pattern)


@pytest.mark.parametrize("kind", ["garbage", "wrong-channels", "unexpected-file"])
def test_verify_damaged_folder(tmp_path, good_zip, kind):
    damage, member, pattern = DAMAGES[kind]
    members = zip_members(good_zip)
    damage(members)
    folder = tmp_path / "damaged"
    for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert_one_problem(verify(folder), str(folder / member), pattern)


def test_verify_non_power_of_two(tmp_path):
    members = {f"{idx}.png": png_bytes(random_image(idx, 12, 12)) for idx in range(2)}
    path = write_zip(tmp_path / "odd.zip", members)
    pattern = "images are 12x12, but they must be square with a power-of-two side"
    assert_one_problem(verify(path), path, pattern)


def test_verify_no_images(tmp_path):
    path = write_zip(tmp_path / "empty.zip", {"dataset.json": labels_json(None)})
    assert_one_problem(verify(path), path, "contains no PNG or JPEG images")


def test_verify_without_labels_file_passes(tmp_path):
    path = write_zip(tmp_path / "plain.zip", {"a.png": png_bytes(random_image(0))})
    result = verify(path)
    assert result.exit_code == 0, result.output
    assert f"Note: {path} has no dataset.json, so training sees no labels." in result.output


def test_verify_lists_first_problems_then_counts(tmp_path):
    members = {f"{idx:02d}.png": b"garbage" for idx in range(25)}
    members["ok.png"] = png_bytes(random_image(0))
    result = verify(write_zip(tmp_path / "bad.zip", members))
    assert result.exit_code == 1
    listed = [line for line in result.output.splitlines() if "cannot decode" in line]
    assert len(listed) == 20
    assert listed[0].startswith(f"  {tmp_path / 'bad.zip'}:00.png: ")
    assert listed[-1].startswith(f"  {tmp_path / 'bad.zip'}:19.png: ")
    assert "  ... and 5 more." in result.output
    assert "has 25 problem(s)" in result.output


def test_verify_progress_lines(good_zip, capsys):
    report = dataset_tool.verify_dataset(str(good_zip), progress_seconds=0)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"{n}/3 images checked" for n in (1, 2, 3)]
    assert all(re.fullmatch(r".* \(\d+ images/s\)", line) for line in lines)
    assert report.problems == []
    assert report.num_images == 3


def test_verify_missing_path(tmp_path):
    result = verify(tmp_path / "nope.zip")
    assert result.exit_code == 1
    assert "nope.zip does not exist" in result.output


def test_verify_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    result = verify(tmp_path / "fake.zip")
    assert result.exit_code == 1
    assert "fake.zip is not a valid zip file" in result.output


def test_verify_with_conversion_options(tmp_path, good_zip):
    result = convert("--verify", good_zip, "--source", tmp_path, "--max-images", 2)
    assert result.exit_code == 2
    assert "--verify takes no other options. Remove --source, --max-images" in result.output


def test_no_source_dest_or_verify():
    result = convert()
    assert result.exit_code == 2
    assert "Missing option --source and --dest" in result.output
    assert "--verify=PATH" in result.output
