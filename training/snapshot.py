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

import os
import pickle
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
    with atomic_write(path) as f:
        torch.save(data, f)


# ----------------------------------------------------------------------------
# Loading.


def read_snapshot(path: str) -> dict:
    """Read a snapshot file into plain data, checking that it is one of ours."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Network snapshot not found: {path}")
    if os.path.getsize(path) == 0:
        raise SnapshotError(f"{path} is empty; pick an earlier network-snapshot-*.pkl")
    if not zipfile.is_zipfile(path):
        raise SnapshotError(
            f"{path} is not a network snapshot written by this project (expected a torch.save "
            f"archive). NVIDIA-format pickles are not supported by this loader; a truncated "
            f"download or an HTML error page also ends up here."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()  # Reads every member and checks its CRC-32.
    except (zipfile.BadZipFile, OSError) as err:
        raise SnapshotError(f"Could not read {path} as a zip archive: {err}") from err
    if bad_member is not None:
        raise SnapshotError(
            f"{path} is corrupted: {bad_member} fails its checksum. "
            f"Pick an earlier network-snapshot-*.pkl."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as err:
        raise SnapshotError(f"Could not read {path} as a safe snapshot: {err}") from err
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
    """Load a snapshot: networks G, D, G_ema (eval mode, on `device`) and the other fields."""
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
