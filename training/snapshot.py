"""Network snapshots that load without executing code from the file.

A snapshot is a `torch.save` archive (named `network-snapshot-NNNNNN.pkl` as upstream names it)
holding only plain containers, numbers, strings and tensors:

    {"format": "dmd-gan-snapshot", "format_version": 1,
     "G" | "D" | "G_ema": {"class_name": str, "init_kwargs": dict, "state_dict": dict},
     "augment_pipe": the same, or None when training ran without augmentation,
     "optimizers": {"G": dict, "D": dict} or None, "progress": {"cur_nimg": int, ...},
     "loss_state": dict, "training_set_kwargs": dict or None, "training_options": dict or None}

It is read back with `torch.load(weights_only=True)`, which rejects any pickled global outside
torch's tensor types, and networks are rebuilt only from the class names in NETWORK_CLASSES.
Plug-in state such as the DMD detector and masks lives in the discriminator's state_dict
(through `get_extra_state`), so it travels with D.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import zipfile
from typing import Any

import torch

import dnnlib
from dnnlib.util import atomic_write

SNAPSHOT_FORMAT = "dmd-gan-snapshot"
SNAPSHOT_FORMAT_VERSION = 1
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")

# Network classes a snapshot may name. Anything else is rejected before it is imported.
NETWORK_CLASSES = {
    "training.networks_stylegan2.Generator",
    "training.networks_stylegan2.Discriminator",
    "training.networks_stylegan3.Generator",
    "training.augment.AugmentPipe",
    "dmd_patch.networks.DMDDiscriminator",
    "training.networks_biggan.Generator",
    "training.networks_biggan.Discriminator",
    "dmd_patch.networks.DMDBigGANDiscriminator",
}


class SnapshotError(ValueError):
    """A file that is not a readable snapshot, or a snapshot that does not fit the networks."""


# ----------------------------------------------------------------------------
# Saving.


def to_plain(obj: Any) -> Any:
    """Convert EasyDicts, tuples and other containers into dicts and lists that
    torch.load(weights_only=True) accepts."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def describe_network(module: torch.nn.Module) -> dict:
    """Return {class_name, init_kwargs, state_dict} for a network built by class name."""
    cls = type(module)
    class_name = f"{cls.__module__}.{cls.__qualname__}"
    init_kwargs = getattr(module, "init_kwargs", None)
    if init_kwargs is None:
        raise TypeError(f"{class_name} has no init_kwargs, so a snapshot could not rebuild it")
    state_dict = {
        k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in module.state_dict().items()
    }
    return {
        "class_name": class_name,
        "init_kwargs": to_plain(dict(init_kwargs)),
        "state_dict": to_plain(state_dict),
    }


def save_network_snapshot(path: str, networks: dict[str, torch.nn.Module], **extra: Any) -> None:
    """Write G, D and G_ema (any present in `networks`) plus `extra` fields atomically.

    Refuses to write networks holding NaN or Inf, so the last good snapshot stays the newest.
    """
    data: dict[str, Any] = {"format": SNAPSHOT_FORMAT, "format_version": SNAPSHOT_FORMAT_VERSION}
    for key, module in networks.items():
        if module is None:
            data[key] = None
            continue
        bad = [
            name
            for name, t in module.state_dict().items()
            if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
        ]
        if bad:
            raise SnapshotError(
                f"Not writing {path}: {key} has non-finite values in {', '.join(bad[:5])}"
            )
        data[key] = describe_network(module)
    data.update(to_plain(extra))
    try:
        with atomic_write(path) as f:
            torch.save(data, f)
    except OSError as err:
        raise SnapshotWriteError(describe_write_error(path, err)) from err


class SnapshotWriteError(OSError):
    """A snapshot that could not be written. Its temporary file is already removed."""


def describe_write_error(path: str, err: OSError) -> str:
    """Name the file, the cause, the free space of its folder and what to do next."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(folder).free / 2**30:.2f} GiB free in {folder}"
    except OSError:
        free = f"free space in {folder} unknown"
    cause = err.strerror or str(err)
    advice = "Check that the folder is writable and the disk healthy."
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "Free disk space or move the run to a larger disk."
    return (
        f"Could not write {path}: {cause} ({free}). The temporary file was removed and earlier "
        f"snapshots are unchanged. {advice} Then continue with --resume=<run directory>."
    )


# ----------------------------------------------------------------------------
# Loading.


def read_snapshot(path: str) -> dict:
    """Read a snapshot file into plain data, checking that it is one of ours.

    Raises FileNotFoundError for a missing file and SnapshotError, naming the file and what is
    wrong with it, for anything else that is not a readable snapshot.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Network snapshot not found: {path}")
    if os.path.getsize(path) == 0:
        raise SnapshotError(f"{path} is empty; pick an earlier network-snapshot-*.pkl")
    if not zipfile.is_zipfile(path):
        raise SnapshotError(f"{path} is not a network snapshot: {describe_non_zip(path)}")
    check_zip_members(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise SnapshotError(
            f"{path} is a torch.save archive containing Python objects other than tensors and "
            f"plain containers (a pickled model?), so it is not a network snapshot written by "
            f"train.py: {err}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise SnapshotError(f"Could not read {path} as a network snapshot: {err}") from err
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(
            f"{path} is a torch archive but not a {SNAPSHOT_FORMAT} network snapshot"
        )
    if data.get("format_version", 0) > SNAPSHOT_FORMAT_VERSION:
        raise SnapshotError(
            f"{path} has snapshot format version {data['format_version']}; "
            f"this code reads up to {SNAPSHOT_FORMAT_VERSION}, so update the code"
        )
    return data


# Byte strings found in NVIDIA's network pickles: StyleGAN2-ADA/StyleGAN3 (PyTorch) pickles
# reference torch_utils.persistence, and the original StyleGAN/StyleGAN2 ones dnnlib.tflib.
NVIDIA_TORCH_MARKER = b"torch_utils.persistence"
NVIDIA_TF_MARKER = b"dnnlib.tflib"
HEAD_BYTES = 1 << 20  # How much of a file describe_non_zip() inspects.


def describe_non_zip(path: str) -> str:
    """Say what a file that is not a zip archive most likely is, and what to do about it."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if head.startswith(b"PK\x03\x04"):
        return (
            "it starts like a zip archive but its end is missing or damaged (a truncated copy "
            "or an interrupted write). Pick an earlier network-snapshot-*.pkl or copy it again."
        )
    if head.startswith(b"\x80") and NVIDIA_TORCH_MARKER in head:
        return (
            "it is an NVIDIA StyleGAN2-ADA/StyleGAN3 network pickle, which is not a training "
            "snapshot of this project. gen_images.py, calc_metrics.py and train.py --resume=FILE "
            "load such pickles through training.legacy.load_network_pkl()."
        )
    if head.startswith(b"\x80") and NVIDIA_TF_MARKER in head:
        return (
            "it is a TensorFlow StyleGAN/StyleGAN2 network pickle from NVIDIA, which cannot be "
            "loaded here; only their PyTorch (StyleGAN2-ADA-PyTorch, StyleGAN3) pickles can."
        )
    if head.startswith(b"\x80"):
        return (
            "it is a Python pickle, not a torch.save archive written by train.py. Pick a "
            "network-snapshot-*.pkl from a run directory."
        )
    text = head.lstrip()[:512].lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return (
            "it is an HTML or XML page, probably an error page saved in place of the file. "
            "Download the snapshot again."
        )
    return (
        "it has no recognizable format (expected a torch.save zip archive). The file may be "
        "corrupted or of another kind; pick a network-snapshot-*.pkl written by train.py."
    )


def is_nvidia_torch_pickle(path: str) -> bool:
    """Return whether `path` is a file that starts like NVIDIA's PyTorch network pickles."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    return head.startswith(b"\x80") and NVIDIA_TORCH_MARKER in head


def check_zip_members(path: str) -> None:
    """Raise SnapshotError unless `path` is a readable zip whose members pass their CRC-32
    checks and which contains the data.pkl record of a torch.save archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad_member = archive.testzip()  # Reads every member and checks its CRC-32.
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise SnapshotError(
            f"{path} is a damaged zip archive ({err}); pick an earlier network-snapshot-*.pkl"
        ) from err
    if bad_member is not None:
        raise SnapshotError(
            f"{path} is corrupted: {bad_member} fails its checksum. "
            f"Pick an earlier network-snapshot-*.pkl."
        )
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        member_list = ", ".join(names[:5]) or "no members"
        raise SnapshotError(
            f"{path} is a zip archive but not a torch.save archive (it has no data.pkl; "
            f"members: {member_list}), so it is not a network snapshot written by train.py"
        )


def build_network(entry: dict, source: str = "snapshot") -> torch.nn.Module:
    """Construct the network an entry names and load its state_dict strictly."""
    class_name = entry.get("class_name")
    if class_name not in NETWORK_CLASSES:
        raise SnapshotError(
            f"{source} names network class {class_name!r}, which is not in the "
            f"allowed set {sorted(NETWORK_CLASSES)}"
        )
    module = dnnlib.util.construct_class_by_name(class_name=class_name, **entry["init_kwargs"])
    load_state_checked(module, entry["state_dict"], source=source)
    return module


def load_state_checked(
    module: torch.nn.Module,
    state_dict: dict,
    source: str = "snapshot",
    allow_missing_extra_state: bool = True,
) -> None:
    """Copy every tensor by name into `module`, or raise listing every mismatch.

    Extra state (plug-in state such as DMD's) missing from `state_dict` is allowed when
    `allow_missing_extra_state`, so a baseline snapshot can start a DMD run.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    if allow_missing_extra_state:
        missing = [k for k in missing if not k.endswith("_extra_state")]
    unexpected = [k for k in state_dict if k not in own and not k.endswith("_extra_state")]
    mismatched = [
        f"{k}: {tuple(state_dict[k].shape)} in {source} vs {tuple(own[k].shape)} expected"
        for k in own
        if k in state_dict
        and torch.is_tensor(own[k])
        and torch.is_tensor(state_dict[k])
        and own[k].shape != state_dict[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"The networks in {source} do not match the requested architecture:"]
        lines += [f"  missing: {k}" for k in missing]
        lines += [f"  unexpected: {k}" for k in unexpected]
        lines += [f"  shape mismatch: {m}" for m in mismatched]
        lines.append(
            "Use the same --cfg, --cbase, --cmax, --map-depth and resolution as the "
            "run that wrote it."
        )
        raise SnapshotError("\n".join(lines))
    usable = {k: v for k, v in state_dict.items() if k in own}
    module.load_state_dict(usable, strict=False)


def load_network_snapshot(path: str, device: str | torch.device = "cpu") -> dnnlib.EasyDict:
    """Load a snapshot: networks G, D, G_ema (eval mode, on `device`) and the other fields.

    An NVIDIA StyleGAN2-ADA/StyleGAN3 network pickle is passed on to
    training.legacy.load_network_pkl(), which loads it without running code from the file.
    """
    if is_nvidia_torch_pickle(path):
        from training import legacy  # Imported here because training.legacy imports this module.

        return legacy.load_network_pkl(path, device=device)
    data = read_snapshot(path)
    result = dnnlib.EasyDict()
    for key, value in data.items():
        if key in NETWORK_KEYS and value is not None:
            module = build_network(value, source=path)
            result[key] = module.eval().requires_grad_(False).to(device)
        else:
            result[key] = value
    for key in NETWORK_KEYS:
        result.setdefault(key, None)
    return result


# ----------------------------------------------------------------------------
# Finding the snapshot to resume from.

SNAPSHOT_NAME = re.compile(r"^network-snapshot-(\d+)\.pkl$")
RUN_DIR_NAME = re.compile(r"^(\d+)-")


def check_resumable(path: str) -> dict:
    """Read a snapshot and check that G, D and G_ema are present and finite; return its data."""
    data = read_snapshot(path)
    for name in ("G", "D", "G_ema"):
        entry = data.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("state_dict"), dict):
            raise SnapshotError(f"{path} contains no {name} network")
        bad = [
            key
            for key, value in entry["state_dict"].items()
            if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all()
        ]
        if bad:
            raise SnapshotError(f"{path}: {name} has non-finite values in {', '.join(bad[:5])}")
    return data


def list_snapshots(run_dir: str) -> list[str]:
    """Return the network-snapshot-NNNNNN.pkl files of `run_dir`, newest first (by the kimg in
    the name, then by modification time)."""
    found = []
    for name in os.listdir(run_dir):
        match = SNAPSHOT_NAME.match(name)
        path = os.path.join(run_dir, name)
        if match and os.path.isfile(path):
            found.append((int(match.group(1)), os.path.getmtime(path), path))
    return [path for _kimg, _mtime, path in sorted(found, reverse=True)]


def newest_valid_snapshot(run_dir: str, log=print) -> str | None:
    """Return the newest snapshot of `run_dir` that check_resumable() accepts, or None.

    Every rejected file is passed to `log` with the reason.
    """
    for path in list_snapshots(run_dir):
        try:
            check_resumable(path)
        except (SnapshotError, OSError) as err:
            log(f"Skipping {path}: {err}")
            continue
        return path
    return None


def find_resume_snapshot(resume: str, outdir: str, log=print) -> str:
    """Resolve a --resume value to a snapshot file.

    'latest' means the newest valid snapshot in the highest-numbered run directory under
    `outdir` that has one. A directory means its newest valid snapshot. Anything else is
    returned unchanged as a file path. Raises SnapshotError naming the folder when none is found.
    """
    if resume == "latest":
        if not os.path.isdir(outdir):
            raise SnapshotError(f"--resume=latest: the output folder {outdir} does not exist")
        run_dirs = []
        for name in os.listdir(outdir):
            match = RUN_DIR_NAME.match(name)
            if match and os.path.isdir(os.path.join(outdir, name)):
                run_dirs.append((int(match.group(1)), os.path.join(outdir, name)))
        for _run_id, run_dir in sorted(run_dirs, reverse=True):
            path = newest_valid_snapshot(run_dir, log=log)
            if path is not None:
                return path
        raise SnapshotError(
            f"--resume=latest: no run directory under {outdir} contains a valid "
            f"network-snapshot-*.pkl; give a snapshot file with --resume=PATH"
        )
    if os.path.isdir(resume):
        path = newest_valid_snapshot(resume, log=log)
        if path is None:
            raise SnapshotError(
                f"--resume={resume}: the folder contains no valid network-snapshot-*.pkl"
            )
        return path
    return resume
