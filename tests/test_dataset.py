"""Tests for training/dataset.py: loading, labels, x-flips, subsets, fingerprints and errors.

Reference pixels come from PIL reading the test's own PNG files, independently of the loader.
"""

import io
import json
import os
import pickle
import re
import struct
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from training.dataset import DatasetError, ImageFolderDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_ZIP = os.path.join(ROOT, "data", "fashion-mnist-32x32.zip")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def random_image(seed, size=8, channels=3):
    """uint8 [H, W, C] (or [H, W] for channels=1) from a seeded generator."""
    shape = (size, size) if channels == 1 else (size, size, channels)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_png(path, array):
    """Save an array as PNG; PIL picks the mode from the shape and dtype."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array).save(path)


def make_folder(root, names, channels=3, size=8, labels=None):
    """Write one random PNG per name under `root`; labels is None, or a dataset.json object."""
    os.makedirs(root, exist_ok=True)
    for seed, name in enumerate(names):
        write_png(os.path.join(root, name), random_image(seed, size, channels))
    if labels is not None:
        with open(os.path.join(root, "dataset.json"), "w") as f:
            json.dump(labels, f)
    return str(root)


def zip_folder(folder, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for base, _dirs, files in os.walk(folder):
            for file_name in files:
                full = os.path.join(base, file_name)
                archive.write(full, os.path.relpath(full, folder).replace(os.sep, "/"))
    return str(zip_path)


def pil_pixels(path):
    """Reference [C, H, W] pixels read by PIL alone."""
    array = np.asarray(PIL.Image.open(path))
    return array[np.newaxis] if array.ndim == 2 else array.transpose(2, 0, 1)


NAMES = ["b.png", "a.png", "sub/c.png", "sub/deeper/d.png"]
SORTED_NAMES = ["a.png", "b.png", "sub/c.png", "sub/deeper/d.png"]


# ----------------------------------------------------------------------------
# Loading.


@pytest.mark.parametrize("kind", ["folder", "zip"])
@pytest.mark.parametrize("channels", [1, 3])
def test_pixels_match_source_pngs(tmp_path, kind, channels):
    folder = make_folder(tmp_path / "data", NAMES, channels=channels)
    path = folder if kind == "folder" else zip_folder(folder, tmp_path / "data.zip")
    dataset = ImageFolderDataset(path)
    assert len(dataset) == 4
    assert dataset.image_shape == [channels, 8, 8]
    assert dataset.num_channels == channels
    assert dataset.resolution == 8
    for idx, name in enumerate(SORTED_NAMES):
        image, label = dataset[idx]
        assert image.dtype == np.uint8
        assert image.shape == (channels, 8, 8)
        np.testing.assert_array_equal(image, pil_pixels(os.path.join(folder, name)))
        assert label.shape == (0,)
        assert label.dtype == np.float32


def test_name_from_path(tmp_path):
    folder = make_folder(tmp_path / "my-data", ["a.png"])
    assert ImageFolderDataset(folder).name == "my-data"
    assert ImageFolderDataset(zip_folder(folder, tmp_path / "cats-64.zip")).name == "cats-64"


def test_jpeg_images_load(tmp_path):
    folder = tmp_path / "jpeg"
    folder.mkdir()
    PIL.Image.fromarray(random_image(0)).save(folder / "x.jpg", quality=95)
    dataset = ImageFolderDataset(str(folder))
    np.testing.assert_array_equal(dataset[0][0], pil_pixels(folder / "x.jpg"))


def test_non_image_files_ignored(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png"])
    (tmp_path / "data" / "notes.txt").write_text("hello")
    assert len(ImageFolderDataset(folder)) == 1


def test_construct_by_class_name(tmp_path):
    import dnnlib

    folder = make_folder(tmp_path / "data", NAMES)
    dataset = dnnlib.util.construct_class_by_name(
        class_name="training.dataset.ImageFolderDataset",
        path=folder,
        use_labels=False,
        max_size=None,
        xflip=False,
    )
    assert len(dataset) == 4


# ----------------------------------------------------------------------------
# Labels.


def test_integer_labels_one_hot(tmp_path):
    labels = {"labels": [[n, i % 3] for i, n in enumerate(SORTED_NAMES)]}
    labels["labels"][3][1] = 4  # Five classes: 0..4, with 3 unused.
    folder = make_folder(tmp_path / "data", NAMES, labels=labels)
    dataset = ImageFolderDataset(folder, use_labels=True)
    assert dataset.has_labels
    assert dataset.has_onehot_labels
    assert dataset.label_shape == [5]
    assert dataset.label_dim == 5
    expected = np.eye(5, dtype=np.float32)[[0, 1, 2, 4]]
    for idx in range(4):
        label = dataset[idx][1]
        assert label.dtype == np.float32
        np.testing.assert_array_equal(label, expected[idx])
        np.testing.assert_array_equal(dataset.get_label(idx), expected[idx])
    assert dataset.get_details(3).raw_label == 4


def test_vector_labels_as_given(tmp_path):
    vectors = [[0.5, -1.0], [1, 2], [3.25, 0], [0, 0]]
    labels = {"labels": [[n, v] for n, v in zip(SORTED_NAMES, vectors)]}
    folder = make_folder(tmp_path / "data", NAMES, labels=labels)
    dataset = ImageFolderDataset(folder, use_labels=True)
    assert dataset.label_shape == [2]
    assert not dataset.has_onehot_labels
    for idx in range(4):
        np.testing.assert_array_equal(dataset[idx][1], np.array(vectors[idx], np.float32))


def test_labels_off_gives_empty_labels(tmp_path):
    labels = {"labels": [[n, 1] for n in SORTED_NAMES]}
    folder = make_folder(tmp_path / "data", NAMES, labels=labels)
    dataset = ImageFolderDataset(folder, use_labels=False)
    assert not dataset.has_labels
    assert dataset.label_shape == [0]
    assert dataset.labels_available
    assert dataset[0][1].shape == (0,)


def test_labels_available_false(tmp_path):
    folder = make_folder(tmp_path / "plain", NAMES)
    assert not ImageFolderDataset(folder).labels_available
    nulls = make_folder(tmp_path / "nulls", NAMES, labels={"labels": None})
    assert not ImageFolderDataset(nulls).labels_available


def test_zip_labels_with_backslash_names(tmp_path):
    labels = {"labels": [[n.replace("/", "\\"), 1] for n in SORTED_NAMES]}
    folder = make_folder(tmp_path / "data", NAMES, labels=labels)
    dataset = ImageFolderDataset(zip_folder(folder, tmp_path / "d.zip"), use_labels=True)
    assert dataset.label_shape == [2]


# ----------------------------------------------------------------------------
# x-flips and subsets.


def test_xflip_doubles_and_mirrors(tmp_path):
    labels = {"labels": [[n, i] for i, n in enumerate(SORTED_NAMES)]}
    folder = make_folder(tmp_path / "data", NAMES, labels=labels)
    plain = ImageFolderDataset(folder, use_labels=True)
    flipped = ImageFolderDataset(folder, use_labels=True, xflip=True)
    assert len(flipped) == 8
    for idx in range(4):
        np.testing.assert_array_equal(flipped[idx][0], plain[idx][0])
        np.testing.assert_array_equal(flipped[idx + 4][0], plain[idx][0][:, :, ::-1])
        np.testing.assert_array_equal(flipped[idx + 4][1], plain[idx][1])
        assert flipped[idx + 4][0].flags["C_CONTIGUOUS"]
        assert flipped.get_details(idx + 4).xflip
        assert not flipped.get_details(idx).xflip
        assert flipped.get_details(idx + 4).raw_idx == idx


def test_max_size_subset(tmp_path):
    names = [f"{i:02d}.png" for i in range(10)]
    folder = make_folder(tmp_path / "data", names)
    full = ImageFolderDataset(folder)
    subset = ImageFolderDataset(folder, max_size=4, random_seed=3)
    again = ImageFolderDataset(folder, max_size=4, random_seed=3)
    raw = [subset.get_details(i).raw_idx for i in range(len(subset))]
    assert len(subset) == 4
    assert raw == sorted(set(raw))
    assert all(0 <= r < 10 for r in raw)
    assert raw == [again.get_details(i).raw_idx for i in range(4)]
    for idx, raw_idx in enumerate(raw):
        np.testing.assert_array_equal(subset[idx][0], full[raw_idx][0])
    seeds = {
        tuple(ImageFolderDataset(folder, max_size=4, random_seed=s)._raw_idx) for s in range(5)
    }
    assert len(seeds) > 1
    assert len(ImageFolderDataset(folder, max_size=100)) == 10
    assert len(ImageFolderDataset(folder, max_size=4, xflip=True)) == 8


def test_max_size_zero_rejected(tmp_path):
    folder = make_folder(tmp_path / "data", NAMES)
    with pytest.raises(ValueError, match="max_size"):
        ImageFolderDataset(folder, max_size=0)


# ----------------------------------------------------------------------------
# Pickling and DataLoader workers.


def test_pickle_round_trip(tmp_path):
    folder = make_folder(tmp_path / "data", NAMES)
    dataset = ImageFolderDataset(zip_folder(folder, tmp_path / "d.zip"), xflip=True)
    dataset[0]  # Opens the zip, which must not be pickled.
    copy = pickle.loads(pickle.dumps(dataset))
    assert len(copy) == 8
    np.testing.assert_array_equal(copy[5][0], dataset[5][0])
    dataset.close()
    np.testing.assert_array_equal(dataset[5][0], copy[5][0])


def test_dataloader_workers_read_zip(tmp_path):
    names = [f"{i:02d}.png" for i in range(12)]
    folder = make_folder(tmp_path / "data", names)
    dataset = ImageFolderDataset(zip_folder(folder, tmp_path / "d.zip"))
    dataset[0]  # An open handle in the parent must not be shared with forked workers.
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
    images = torch.cat([batch[0] for batch in loader])
    assert images.shape == (12, 3, 8, 8)
    for idx, name in enumerate(names):
        np.testing.assert_array_equal(images[idx].numpy(), pil_pixels(os.path.join(folder, name)))


# ----------------------------------------------------------------------------
# Content fingerprint.


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_fingerprint_notices_changed_image(tmp_path, kind):
    folder = make_folder(tmp_path / "data", NAMES)

    def fingerprint():
        if kind == "folder":
            return ImageFolderDataset(folder).content_fingerprint()
        zip_path = tmp_path / "d.zip"
        if zip_path.exists():
            zip_path.unlink()
        return ImageFolderDataset(zip_folder(folder, zip_path)).content_fingerprint()

    before = fingerprint()
    assert len(before) == 64
    assert int(before, 16) >= 0
    assert fingerprint() == before
    changed = random_image(0)
    changed[0, 0, 0] ^= 1  # One pixel; same size, same file name.
    write_png(os.path.join(folder, "b.png"), changed)
    assert fingerprint() != before


def test_fingerprint_notices_changed_labels(tmp_path):
    folder = make_folder(tmp_path / "data", NAMES, labels={"labels": [[n, 0] for n in NAMES]})
    before = ImageFolderDataset(folder).content_fingerprint()
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"labels": [[n, 1] for n in NAMES]}, f)
    assert ImageFolderDataset(folder).content_fingerprint() != before


# ----------------------------------------------------------------------------
# Errors: each message names the file at fault.


def test_missing_path(tmp_path):
    path = str(tmp_path / "nope.zip")
    with pytest.raises(FileNotFoundError, match="nope.zip"):
        ImageFolderDataset(path)


def test_path_not_zip_or_folder(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="data.txt.*dataset_tool.py"):
        ImageFolderDataset(str(path))


def test_corrupt_zip(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="broken.zip.*not a valid zip"):
        ImageFolderDataset(str(path))


def test_no_images(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="No PNG or JPEG images found in .*empty"):
        ImageFolderDataset(str(folder))


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_mixed_sizes_name_both_files(tmp_path, kind):
    folder = make_folder(tmp_path / "data", ["a.png", "b.png"])
    write_png(os.path.join(folder, "c.png"), random_image(5, size=16))
    path = folder if kind == "folder" else zip_folder(folder, tmp_path / "d.zip")
    with pytest.raises(ValueError) as info:
        ImageFolderDataset(path)
    message = str(info.value)
    assert "a.png is [3, 8, 8]" in message
    assert "c.png is [3, 16, 16]" in message
    assert "dataset_tool.py" in message


def test_mixed_channels_name_both_files(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png"])
    write_png(os.path.join(folder, "b.png"), random_image(5, channels=1))
    with pytest.raises(ValueError) as info:
        ImageFolderDataset(folder)
    assert "a.png is [3, 8, 8]" in str(info.value)
    assert "b.png is [1, 8, 8]" in str(info.value)


@pytest.mark.parametrize(
    "mode, array",
    [
        ("RGBA", np.zeros((8, 8, 4), np.uint8)),
        ("LA", np.zeros((8, 8, 2), np.uint8)),
        ("I;16", np.zeros((8, 8), np.uint16)),
    ],
)
def test_unsupported_mode(tmp_path, mode, array):
    folder = make_folder(tmp_path / "data", ["a.png"])
    write_png(os.path.join(folder, "odd.png"), array)
    assert PIL.Image.open(os.path.join(folder, "odd.png")).mode == mode
    with pytest.raises(ValueError, match=r"odd\.png.*not supported.*Convert it to RGB or L"):
        ImageFolderDataset(folder)


def test_palette_image_rejected(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    PIL.Image.fromarray(random_image(0)).convert("P").save(folder / "pal.png")
    with pytest.raises(ValueError, match=r"pal\.png.*'P' is not supported"):
        ImageFolderDataset(str(folder))


def test_empty_image_file(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png"])
    open(os.path.join(folder, "zero.png"), "wb").close()
    with pytest.raises(ValueError, match=r"zero\.png: the file is empty"):
        ImageFolderDataset(folder)


def test_undecodable_image(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png"])
    with open(os.path.join(folder, "junk.png"), "wb") as f:
        f.write(b"this is not a png")
    with pytest.raises(ValueError, match=r"junk\.png: cannot decode"):
        ImageFolderDataset(folder)


def test_truncated_image_fails_on_load(tmp_path):
    buffer = io.BytesIO()
    PIL.Image.fromarray(random_image(1, size=64)).save(buffer, format="png")
    folder = make_folder(tmp_path / "data", [])
    with open(os.path.join(folder, "cut.png"), "wb") as f:
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    dataset = ImageFolderDataset(folder)  # The header alone is intact.
    with pytest.raises(ValueError, match=r"cut\.png: cannot decode"):
        dataset[0]


@pytest.mark.parametrize("size", [(8, 16), (12, 12)])
def test_non_square_or_non_power_of_two(tmp_path, size):
    folder = tmp_path / "data"
    folder.mkdir()
    height, width = size
    PIL.Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(folder / "odd.png")
    with pytest.raises(ValueError, match=rf"odd\.png: images are {width}x{height}.*power-of-two"):
        ImageFolderDataset(str(folder))


def test_resolution_argument_mismatch(tmp_path):
    folder = make_folder(tmp_path / "data", NAMES)
    assert ImageFolderDataset(folder, resolution=8).resolution == 8
    with pytest.raises(ValueError, match=r"data has resolution 8, but resolution=16"):
        ImageFolderDataset(folder, resolution=16)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "expected an object with a 'labels' key"),
        (b'{"labels": 5}', "'labels' must be a list or null"),
        (b'{"labels": [["a.png"]]}', r"labels\[0\] is \['a.png'\], expected \[file name, label\]"),
        (b'{"labels": [[3, 1]]}', r"labels\[0\] is \[3, 1\]"),
        (b'{"labels": [["a.png", "cat"]]}', "label of 'a.png' is 'cat'"),
        (b'{"labels": [["a.png", true]]}', "label of 'a.png' is True"),
        (b'{"labels": [["a.png", -1]]}', "class index must be 0 or greater"),
        (b'{"labels": [["a.png", []]]}', "non-empty list of numbers"),
        (b'{"labels": [["a.png", 1], ["a.png", 2]]}', "more than one label"),
    ],
)
def test_malformed_labels(tmp_path, content, pattern):
    folder = make_folder(tmp_path / "data", ["a.png"])
    with open(os.path.join(folder, "dataset.json"), "wb") as f:
        f.write(content)
    with pytest.raises(ValueError, match=r"dataset\.json") as info:
        ImageFolderDataset(folder, use_labels=True)
    assert info.match(pattern)


def test_mixed_label_kinds(tmp_path):
    labels = {"labels": [["a.png", 1], ["b.png", [0.5]]]}
    folder = make_folder(tmp_path / "data", ["a.png", "b.png"], labels=labels)
    with pytest.raises(ValueError, match=r"dataset\.json: labels mix class indices and vectors"):
        ImageFolderDataset(folder, use_labels=True)


def test_vector_lengths_differ(tmp_path):
    labels = {"labels": [["a.png", [1, 2]], ["b.png", [0.5]]]}
    folder = make_folder(tmp_path / "data", ["a.png", "b.png"], labels=labels)
    with pytest.raises(ValueError, match=r"dataset\.json: label vectors have different lengths"):
        ImageFolderDataset(folder, use_labels=True)


def test_incomplete_labels(tmp_path):
    labels = {"labels": [["a.png", 0]]}
    folder = make_folder(tmp_path / "data", SORTED_NAMES, labels=labels)
    with pytest.raises(ValueError) as info:
        ImageFolderDataset(folder, use_labels=True)
    message = str(info.value)
    assert "dataset.json has no label for 3 of 4 images" in message
    assert "b.png, sub/c.png, sub/deeper/d.png" in message


def test_labels_for_missing_files(tmp_path):
    labels = {"labels": [["a.png", 0], ["ghost.png", 1]]}
    folder = make_folder(tmp_path / "data", ["a.png"], labels=labels)
    with pytest.raises(ValueError, match=r"dataset\.json names 1 file.*ghost\.png"):
        ImageFolderDataset(folder, use_labels=True)


def test_use_labels_without_labels_file(tmp_path):
    folder = make_folder(tmp_path / "plain", ["a.png"])
    with pytest.raises(ValueError, match=r"use_labels=True, but .*plain has no dataset\.json"):
        ImageFolderDataset(folder, use_labels=True)


def test_use_labels_with_null_labels(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png"], labels={"labels": None})
    with pytest.raises(ValueError, match=r"dataset\.json has labels null"):
        ImageFolderDataset(folder, use_labels=True)


# ----------------------------------------------------------------------------
# Damaged files: the error names the archive and member (or the file) and suggests --verify.


def png_bytes(array):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """Write a zip of {name: bytes}, in the dict's order."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def flip_member_byte(zip_path, name, position):
    """Invert one byte of a member's stored (possibly compressed) data in place, so the data
    no longer matches the CRC-32 that the archive records."""
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(name)
    with open(zip_path, "r+b") as f:
        f.seek(info.header_offset + 26)  # File name and extra field lengths of the local header.
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_length + extra_length + position)
        value = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([value ^ 0xFF]))


def load_all(path):
    """Open a dataset and load every image, as training does over an epoch."""
    dataset = ImageFolderDataset(path)
    for idx in range(len(dataset)):
        dataset[idx]
    return dataset


# 64x64 images have headers far from the end of the file, so a damaged tail passes the
# header check at construction and fails only when the image is loaded.
GOOD_PNGS = {name: png_bytes(random_image(seed, size=64)) for seed, name in enumerate("acd")}
BAD_MEMBERS = {
    "truncated": (png_bytes(random_image(7, size=64))[:3000], "cannot decode the image"),
    "garbage": (np.random.default_rng(7).bytes(500), "cannot decode the image"),
    "wrong-size": (png_bytes(random_image(7, size=32)), r"differ in size.*b\.png is \[3, 32, 32\]"),
    "wrong-channels": (
        png_bytes(random_image(7, size=64, channels=1)),
        r"differ in size or channel count.*b\.png is \[1, 64, 64\]",
    ),
    "mode-la": (
        png_bytes(np.zeros((64, 64, 2), np.uint8)),
        r"image mode 'LA' is not supported",
    ),
}


def damaged_zip(tmp_path, bad_data, compression=zipfile.ZIP_STORED):
    """A zip of a.png, b.png, c.png and d.png in which b.png contains `bad_data`."""
    members = {"a.png": GOOD_PNGS["a"], "b.png": bad_data}
    members.update({"c.png": GOOD_PNGS["c"], "d.png": GOOD_PNGS["d"]})
    return write_zip(tmp_path / "damaged.zip", members, compression)


@pytest.mark.parametrize("kind", list(BAD_MEMBERS))
def test_damaged_zip_member_named(tmp_path, kind):
    bad_data, problem = BAD_MEMBERS[kind]
    path = damaged_zip(tmp_path, bad_data)
    with pytest.raises(DatasetError) as info:
        load_all(path)
    message = str(info.value)
    assert path in message
    assert "b.png" in message
    assert re.search(problem, message), message
    assert f"dataset_tool.py --verify={path}" in message


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"]
)
def test_bad_crc_member_named(tmp_path, compression):
    path = damaged_zip(tmp_path, GOOD_PNGS["a"], compression)
    with zipfile.ZipFile(path) as archive:
        stored_size = archive.getinfo("b.png").compress_size
    flip_member_byte(path, "b.png", stored_size - 100)
    with zipfile.ZipFile(path) as archive, pytest.raises(zipfile.BadZipFile):
        archive.read("b.png")  # The fixture: zipfile itself rejects the member.
    dataset = ImageFolderDataset(path)  # The member's header is intact.
    dataset[0]
    with pytest.raises(DatasetError) as info:
        dataset[1]
    message = str(info.value)
    assert message.startswith(f"{path}:b.png: cannot read the member (BadZipFile: Bad CRC-32")
    assert "the archive is damaged" in message
    assert f"dataset_tool.py --verify={path}" in message


@pytest.mark.parametrize("kind", ["truncated", "garbage", "wrong-channels"])
def test_damaged_folder_file_named(tmp_path, kind):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, data in GOOD_PNGS.items():
        (folder / f"{name}.png").write_bytes(data)
    bad_data, problem = BAD_MEMBERS[kind]
    (folder / "b.png").write_bytes(bad_data)
    with pytest.raises(DatasetError) as info:
        load_all(str(folder))
    message = str(info.value)
    assert "b.png" in message
    assert re.search(problem, message), message
    assert f"dataset_tool.py --verify={folder}" in message


def test_file_removed_after_open(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png", "b.png"])
    dataset = ImageFolderDataset(folder)
    os.remove(os.path.join(folder, "b.png"))
    with pytest.raises(DatasetError, match=r"b\.png: cannot read the file .*No such file"):
        dataset[1]


def test_file_replaced_with_other_size(tmp_path):
    folder = make_folder(tmp_path / "data", ["a.png", "b.png"])
    dataset = ImageFolderDataset(folder)
    write_png(os.path.join(folder, "b.png"), random_image(5, size=16))
    with pytest.raises(DatasetError) as info:
        dataset[1]
    message = str(info.value)
    assert message.startswith(os.path.join(folder, "b.png") + ": the image has shape [3, 16, 16]")
    assert "images are [3, 8, 8]" in message


def worker_error(dataset):
    """Load every batch through two DataLoader workers; return the error's message lines."""
    batches = iter(torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2))
    message = None
    try:
        for _batch in batches:
            pass
    except DatasetError as err:
        message = str(err)
    # After a worker error, torch 2.13 leaves the iterator in a reference cycle, and stopping
    # its workers from the garbage collector waits 5 s per worker. Stop them now instead.
    batches._shutdown_workers()
    assert message is not None, "no DatasetError from the DataLoader"
    return message.splitlines()


def test_worker_error_leads_with_member(tmp_path):
    path = damaged_zip(tmp_path, GOOD_PNGS["a"])
    flip_member_byte(path, "b.png", len(GOOD_PNGS["a"]) - 100)
    lines = worker_error(ImageFolderDataset(path))
    assert lines[0].startswith(f"{path}:b.png: cannot read the member (BadZipFile: Bad CRC-32")
    assert lines[0].endswith("then re-create the data set with dataset_tool.py.")
    assert re.fullmatch(
        r"\(Raised in DataLoader worker process \d\. Its traceback follows\.\)", lines[1]
    )
    assert lines[2] == "Original Traceback (most recent call last):"


def test_worker_error_names_folder_file(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, data in GOOD_PNGS.items():
        (folder / f"{name}.png").write_bytes(data)
    (folder / "b.png").write_bytes(BAD_MEMBERS["truncated"][0])
    lines = worker_error(ImageFolderDataset(str(folder)))
    assert lines[0].startswith(f"{folder / 'b.png'}: cannot decode the image")
    assert "DataLoader worker process" in lines[1]


def test_worker_message_moved_to_front():
    # The text torch.utils.data builds for a worker's exception, written out by hand.
    text = (
        "Caught DatasetError in DataLoader worker process 3.\n"
        "Original Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "training.dataset.DatasetError: d.zip:b.png: cannot decode the image (x). Run it.\n"
    )
    lines = str(DatasetError(text)).splitlines()
    assert lines[0] == "d.zip:b.png: cannot decode the image (x). Run it."
    assert lines[1] == "(Raised in DataLoader worker process 3. Its traceback follows.)"
    assert lines[2:] == text.splitlines()[1:]


def test_dataset_error_plain_message_kept():
    assert str(DatasetError("a.png: the file is empty (0 bytes).")) == (
        "a.png: the file is empty (0 bytes)."
    )
    error = pickle.loads(pickle.dumps(DatasetError("Caught nothing: a.png is bad.")))
    assert str(error) == "Caught nothing: a.png is bad."


# ----------------------------------------------------------------------------
# The bundled Fashion-MNIST data.


def test_bundled_dataset_loads():
    dataset = ImageFolderDataset(BUNDLED_ZIP, use_labels=True)
    assert len(dataset) == 10000
    assert dataset.image_shape == [1, 32, 32]
    assert dataset.label_shape == [10]
    assert dataset.has_onehot_labels
    counts = np.bincount([dataset.get_details(i).raw_label for i in range(len(dataset))])
    assert counts.tolist() == [942, 1027, 1016, 1019, 974, 989, 1021, 1022, 990, 1000]
    for idx in (0, 4321, 9999):
        image = dataset[idx][0]
        assert image.shape == (1, 32, 32)
        assert image[:, :2].max() == 0  # The 2-pixel zero border of the padding.
        assert image[:, 30:].max() == 0
        assert image[:, :, :2].max() == 0
        assert image[:, :, 30:].max() == 0


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR), reason="Debian package dataset-fashion-mnist missing"
)
def test_bundled_dataset_matches_idx_source():
    import gzip

    with gzip.open(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    dataset = ImageFolderDataset(BUNDLED_ZIP, use_labels=True)
    for idx in range(0, 10000, 499):
        image, label = dataset[idx]
        np.testing.assert_array_equal(image[0, 2:30, 2:30], images[idx])
        assert np.argmax(label) == labels[idx]
