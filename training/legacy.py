"""Load network pickles in NVIDIA's StyleGAN2-ADA-PyTorch and StyleGAN3 format without running
code from the file, and this project's own snapshots through one function, load_network_pkl().

NVIDIA's pickles store every network as a `torch_utils.persistence` record: the Python source
of its module, the class name, the constructor's keyword arguments (`_init_kwargs`) and the
module's `__dict__` with its parameters, buffers and submodules. Unpickling them the usual way
imports and runs that source. Here a restricted unpickler resolves only the globals in
SAFE_GLOBALS, each mapped to a function of ours that builds plain data, so the embedded source
is never executed or imported. Our own classes (whose parameter names follow NVIDIA's) are then
built from the class name and keyword arguments, and every tensor is copied in by name.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import torch

import dnnlib
from training import snapshot as snapshot_lib

FORMAT_NVIDIA = "nvidia-pickle"
FORMAT_OURS = snapshot_lib.SNAPSHOT_FORMAT
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")


class LegacyPickleError(snapshot_lib.SnapshotError):
    """An NVIDIA-format pickle that is damaged, unsafe or describes networks we cannot build."""


# ----------------------------------------------------------------------------
# Safe stand-ins for the globals that NVIDIA's pickles reference.


@dataclass(frozen=True)
class PersistentRecord:
    """One `torch_utils.persistence` object: its class name and `__dict__`, never its code."""

    class_name: str
    state: dict

    def __setstate__(self, state: Any) -> None:
        # NVIDIA's reconstruction function returns a finished object, so a pickle that sets
        # state on one afterwards was not written by NVIDIA's code.
        raise pickle.UnpicklingError("unexpected state applied to a persistent object")


def reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    """Replace `torch_utils.persistence._reconstruct_persistent_obj`: keep the class name and
    state, and ignore `module_src`, the module source that NVIDIA's version executes."""
    expected = {"type", "version", "module_src", "class_name", "state"}
    if not isinstance(meta, dict) or set(meta) != expected:
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise pickle.UnpicklingError(f"persistent object with unexpected layout: {keys}")
    if meta["type"] != "class" or not isinstance(meta["class_name"], str):
        raise pickle.UnpicklingError(
            f"persistent object of type {meta['type']!r} named {meta['class_name']!r}: "
            "expected a class"
        )
    if not isinstance(meta["state"], dict):
        raise pickle.UnpicklingError(f"persistent {meta['class_name']} has no state dict")
    return PersistentRecord(class_name=meta["class_name"], state=meta["state"])


def load_storage_from_bytes(data: Any) -> Any:
    """Replace `torch.storage._load_from_bytes`: read a nested torch serialization of one
    storage with torch's weights-only unpickler."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"storage data of type {type(data).__name__}: expected bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
        raise pickle.UnpicklingError(f"nested torch data is a {type(storage).__name__}")
    return storage


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, *rest):
    """Replace `torch._utils._rebuild_tensor_v2`: a view of `storage`, dropping the gradient
    flag, backward hooks and metadata, which loaded networks do not use."""
    del requires_grad, backward_hooks, rest
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor built on a {type(storage).__name__}")
    with warnings.catch_warnings():  # TypedStorage.size() warns that TypedStorage is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        num_elements = storage.size()
    check_view_bounds(num_elements, storage_offset, size, stride)
    return torch._utils._rebuild_tensor(storage, storage_offset, tuple(size), tuple(stride))


def check_view_bounds(num_elements: int, offset: Any, size: Any, stride: Any) -> None:
    """Raise UnpicklingError unless a view (offset, size, stride) lies inside a storage of
    `num_elements` elements. torch would otherwise grow the storage and expose uninitialized
    memory, or allocate any size a crafted file requests."""
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
        raise pickle.UnpicklingError("tensor size and stride must be sequences")
    values = [offset, *size, *stride]
    if len(size) != len(stride) or not all(type(v) is int and v >= 0 for v in values):
        raise pickle.UnpicklingError(
            f"invalid tensor view: offset {offset!r}, size {size!r}, stride {stride!r}"
        )
    if any(n == 0 for n in size):
        return
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= num_elements:
        raise pickle.UnpicklingError(
            f"tensor view reaches element {last} of a storage of {num_elements} elements"
        )


def rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    """Replace `torch._utils._rebuild_parameter`: the parameter's tensor, without hooks."""
    del requires_grad, backward_hooks, rest
    if not torch.is_tensor(data):
        raise pickle.UnpicklingError(f"parameter built on a {type(data).__name__}")
    return data


class PickledEasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict`, which NVIDIA's training scripts use for nested
    keyword arguments such as `mapping_kwargs`. It contains the items and nothing else."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise pickle.UnpicklingError("EasyDict with attributes besides its items")


# numpy values: NVIDIA pickles hold numeric numpy scalars and arrays in constructor arguments.
# numpy's own reconstruction functions trust the pickled dtype state, whose flags can make
# numpy read memory outside an object. These checked versions replace them: they accept
# numeric dtypes only and build every value from bytes of the exact length.
NUMERIC_KINDS = "biufc"


class PickledDType:
    """Stand-in for numpy.dtype(name): a numeric dtype whose pickled state must be the plain
    state of that dtype, apart from the byte order."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False):
        if not isinstance(name, str):
            raise pickle.UnpicklingError(f"numpy dtype given as {type(name).__name__}")
        dtype = np.dtype(name)
        if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
            raise pickle.UnpicklingError(f"numpy dtype {name!r} is not a plain numeric type")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        expected = self.dtype.__reduce__()[2]
        if not (isinstance(state, tuple) and len(state) == len(expected)):
            raise pickle.UnpicklingError(f"numpy dtype {self.dtype} with state {state!r}")
        order = state[1]
        if (
            order not in ("<", ">", "|", "=")
            or state[:1] + state[2:] != expected[:1] + expected[2:]
        ):
            raise pickle.UnpicklingError(f"numpy dtype {self.dtype} with state {state!r}")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def numpy_scalar(dtype: Any, data: Any) -> np.generic:
    """Stand-in for numpy's scalar reconstruction: one value of a numeric dtype from exactly
    its bytes."""
    if not isinstance(dtype, PickledDType) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar without a numeric dtype and its bytes")
    if len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError(
            f"numpy scalar of {dtype.dtype} with {len(data)} bytes, expected {dtype.dtype.itemsize}"
        )
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0].copy()


class PickledArray:
    """Stand-in for numpy's array reconstruction: the array is built from its pickled state
    (shape, numeric dtype, order and exactly the raw bytes that shape needs) and replaces
    this object when the pickle's values are converted (see to_plain_value)."""

    def __init__(self, subtype: Any, shape: Any, dtype_code: Any):
        if subtype is not PickledNdarrayClass:
            raise pickle.UnpicklingError("numpy array of an unexpected class")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("numpy array with an unexpected state")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, PickledDType) or not isinstance(raw, bytes):
            raise pickle.UnpicklingError("numpy array without a numeric dtype and raw bytes")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"numpy array with shape {shape!r}")
        expected = math.prod(shape) * dtype.dtype.itemsize
        if len(raw) != expected:
            raise pickle.UnpicklingError(
                f"numpy array of shape {shape} and {dtype.dtype} with {len(raw)} bytes, "
                f"expected {expected}"
            )
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


class PickledNdarrayClass:
    """Stand-in for the numpy.ndarray class, which pickles pass to the array reconstruction."""


SAFE_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent_obj,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): load_storage_from_bytes,
    ("dnnlib.util", "EasyDict"): PickledEasyDict,
    ("numpy", "dtype"): PickledDType,
    ("numpy", "ndarray"): PickledNdarrayClass,
    # numpy 2 renamed numpy.core to numpy._core, so pickles name either.
    ("numpy.core.multiarray", "scalar"): numpy_scalar,
    ("numpy._core.multiarray", "scalar"): numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): PickledArray,
    ("numpy._core.multiarray", "_reconstruct"): PickledArray,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only SAFE_GLOBALS and rejects every other global by name."""

    def __init__(self, file: BinaryIO, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        safe = SAFE_GLOBALS.get((module, name))
        if safe is None:
            raise LegacyPickleError(
                f"{self.source} references the global {module}.{name}, which network pickles "
                "do not need, so the file was rejected before any of its code could run. "
                "Load only pickles from sources you trust."
            )
        return safe

    def persistent_load(self, pid: Any) -> Any:
        raise LegacyPickleError(f"{self.source} contains a persistent id, which is not allowed")


def unpickle_restricted(file: BinaryIO, source: str) -> Any:
    """Unpickle `file` with RestrictedUnpickler, turning parse errors into LegacyPickleError."""
    try:
        return RestrictedUnpickler(file, source).load()
    except LegacyPickleError:
        raise
    except EOFError as err:
        raise LegacyPickleError(
            f"{source} is truncated ({err or 'unexpected end of file'}); copy or download it again"
        ) from err
    except (
        pickle.UnpicklingError, ValueError, TypeError, RuntimeError, AttributeError, KeyError,
        IndexError, SystemError, RecursionError, OverflowError, MemoryError,
    ) as err:  # fmt: skip
        raise LegacyPickleError(
            f"{source} is a damaged or unsupported NVIDIA network pickle: "
            f"{type(err).__name__}: {err}"
        ) from err


# ----------------------------------------------------------------------------
# Mapping NVIDIA's classes and keyword arguments onto ours.


@dataclass(frozen=True)
class ClassSpec:
    """Mapping of one NVIDIA network class onto ours."""

    our_class: str  # Our class, built by name.
    top_kwargs: frozenset  # Accepted keyword arguments of the top-level constructor.
    nested_kwargs: dict  # Accepted keys of each nested kwargs dict, such as mapping_kwargs.
    submodule_classes: frozenset  # NVIDIA class names allowed below the top level.
    derived_buffers: dict  # NVIDIA buffers that our class computes itself: name -> reason.


_SG2_MAPPING_KWARGS = frozenset(
    {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier"}
    | {"w_avg_beta"}
)
_G_COMMON = frozenset({"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"})
_G_COMMON |= frozenset({"mapping_kwargs", "channel_base", "channel_max", "num_fp16_res"})

SG2_GENERATOR = ClassSpec(
    our_class="training.networks_stylegan2.Generator",
    top_kwargs=_G_COMMON
    | {"architecture", "resample_filter", "conv_clamp", "fp16_channels_last"}
    | {"fused_modconv_default", "kernel_size", "use_noise", "activation"},
    nested_kwargs={"mapping_kwargs": _SG2_MAPPING_KWARGS},
    submodule_classes=frozenset(
        {"MappingNetwork", "FullyConnectedLayer", "SynthesisNetwork", "SynthesisBlock"}
        | {"SynthesisLayer", "ToRGBLayer", "Conv2dLayer"}
    ),
    derived_buffers={},
)
SG3_GENERATOR = ClassSpec(
    our_class="training.networks_stylegan3.Generator",
    top_kwargs=_G_COMMON
    | {"num_layers", "num_critical", "first_cutoff", "first_stopband", "last_stopband_rel"}
    | {"margin_size", "output_scale", "conv_kernel", "filter_size", "lrelu_upsampling"}
    | {"use_radial_filters", "conv_clamp", "magnitude_ema_beta"},
    nested_kwargs={"mapping_kwargs": frozenset({"num_layers", "lr_multiplier", "w_avg_beta"})},
    submodule_classes=frozenset(
        {"MappingNetwork", "FullyConnectedLayer", "SynthesisNetwork", "SynthesisInput"}
        | {"SynthesisLayer"}
    ),
    derived_buffers={},
)
SG2_DISCRIMINATOR = ClassSpec(
    our_class="training.networks_stylegan2.Discriminator",
    top_kwargs=frozenset(
        {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base"}
        | {"channel_max", "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs"}
        | {"mapping_kwargs", "epilogue_kwargs"}
    ),
    nested_kwargs={
        "block_kwargs": frozenset(
            {"activation", "resample_filter", "fp16_channels_last", "freeze_layers"}
        ),
        "mapping_kwargs": _SG2_MAPPING_KWARGS - {"w_avg_beta"},
        "epilogue_kwargs": frozenset({"mbstd_group_size", "mbstd_num_channels", "activation"}),
    },
    submodule_classes=frozenset(
        {"DiscriminatorBlock", "Conv2dLayer", "MappingNetwork", "FullyConnectedLayer"}
        | {"DiscriminatorEpilogue", "MinibatchStdLayer"}
    ),
    derived_buffers={},
)
AUGMENT_PIPE = ClassSpec(
    our_class="training.augment.AugmentPipe",
    top_kwargs=frozenset(
        {"xflip", "rotate90", "xint", "xint_max", "scale", "rotate", "aniso", "xfrac"}
        | {"scale_std", "rotate_max", "aniso_std", "xfrac_std", "brightness", "contrast"}
        | {"lumaflip", "hue", "saturation", "brightness_std", "contrast_std", "hue_max"}
        | {"saturation_std", "imgfilter", "imgfilter_bands", "imgfilter_std", "noise"}
        | {"cutout", "noise_std", "cutout_size"}
    ),
    nested_kwargs={},
    submodule_classes=frozenset(),
    derived_buffers={
        "Hz_geom": "the sym6 resampling filter, which our AugmentPipe builds from the same taps",
        "Hz_fbank": "the sym2 octave filter bank, which our AugmentPipe builds itself",
    },
)
# NOTE: our AugmentPipe is written independently of NVIDIA's, so a loaded pipe has NVIDIA's
# strengths and probability p but is not checked to augment identically.


def identify_class(record: PersistentRecord, key: str, source: str) -> ClassSpec:
    """Pick the ClassSpec of a top-level record. NVIDIA's StyleGAN2 and StyleGAN3 generators
    share the class name Generator, so a synthesis network with a Fourier-feature `input`
    submodule marks StyleGAN3."""
    if record.class_name == "Generator":
        synthesis = record.state.get("_modules", {}).get("synthesis")
        modules = (
            synthesis.state.get("_modules", {}) if isinstance(synthesis, PersistentRecord) else {}
        )
        input_layer = modules.get("input")
        if isinstance(input_layer, PersistentRecord) and input_layer.class_name == "SynthesisInput":
            return SG3_GENERATOR
        return SG2_GENERATOR
    if record.class_name == "Discriminator":
        return SG2_DISCRIMINATOR
    if record.class_name == "AugmentPipe":
        return AUGMENT_PIPE
    raise LegacyPickleError(
        f"{source}: {key} is an instance of the NVIDIA class {record.class_name!r}, which has "
        "no counterpart here. Supported: Generator (StyleGAN2 and StyleGAN3), Discriminator "
        "(StyleGAN2, also used by StyleGAN3) and AugmentPipe."
    )


MAX_VALUE_DEPTH = 32  # Constructor arguments nest a few levels; deeper is a crafted file.


def to_plain_value(value: Any, depth: int = 0) -> Any:
    """Convert numpy scalars and arrays, tuples and EasyDicts to JSON-style Python values."""
    if depth > MAX_VALUE_DEPTH:
        raise LegacyPickleError(f"constructor arguments nested deeper than {MAX_VALUE_DEPTH}")
    if isinstance(value, PickledArray):
        if value.array is None:
            raise LegacyPickleError("numpy array without its data")
        value = value.array
    if isinstance(value, PickledDType):
        raise LegacyPickleError("a numpy dtype where a value was expected")
    if isinstance(value, dict):
        return {k: to_plain_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain_value(v, depth + 1) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def translate_kwargs(record: PersistentRecord, spec: ClassSpec, key: str, source: str) -> dict:
    """Return the keyword arguments of our class for a record, or raise naming every
    unsupported one."""
    if record.state.get("_init_args"):
        raise LegacyPickleError(
            f"{source}: {key} was built with positional arguments "
            f"{record.state['_init_args']!r}, which this loader cannot map"
        )
    kwargs = to_plain_value(dict(record.state.get("_init_kwargs") or {}))
    kwargs = flatten_synthesis_kwargs(kwargs, key, source)
    if spec is SG2_GENERATOR:
        # StyleGAN2-ADA-PyTorch has no fused_modconv_default and fuses the modulated
        # convolution only in eval mode, which 'inference_only' reproduces in float32.
        kwargs.setdefault("fused_modconv_default", "inference_only")
    unknown = [f"{name}={kwargs[name]!r}" for name in kwargs if name not in spec.top_kwargs]
    for group, allowed in spec.nested_kwargs.items():
        nested = kwargs.get(group) or {}
        unknown += [f"{group}.{name}={nested[name]!r}" for name in nested if name not in allowed]
    if unknown:
        raise LegacyPickleError(
            f"{source}: {key} ({record.class_name}) has constructor arguments that "
            f"{spec.our_class} does not support: {', '.join(unknown)}"
        )
    return kwargs


def flatten_synthesis_kwargs(kwargs: dict, key: str, source: str) -> dict:
    """Merge StyleGAN2-ADA-PyTorch's nested `synthesis_kwargs` into the top level, where
    StyleGAN3's release and our Generator take them."""
    nested = kwargs.pop("synthesis_kwargs", None) or {}
    clashes = sorted(set(nested) & set(kwargs))
    if clashes:
        raise LegacyPickleError(
            f"{source}: {key} sets {', '.join(clashes)} both at the top level and in "
            "synthesis_kwargs"
        )
    return {**kwargs, **nested}


# ----------------------------------------------------------------------------
# Copying tensors.


def collect_tensors(
    record: PersistentRecord, spec: ClassSpec, key: str, source: str
) -> dict[str, torch.Tensor]:
    """Return every persistent parameter and buffer below `record` by its state_dict name,
    checking that every submodule is one of the classes the spec allows."""
    tensors: dict[str, torch.Tensor] = {}
    stack = [("", record)]
    while stack:
        prefix, node = stack.pop()
        state = node.state
        skip = set(state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not torch.is_tensor(value):
                    raise LegacyPickleError(
                        f"{source}: {key}.{prefix}{name} is a {type(value).__name__}, not a tensor"
                    )
                tensors[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise LegacyPickleError(
                    f"{source}: {key}.{prefix}{name} is a {type(child).__name__}, not a "
                    "network module"
                )
            if child.class_name not in spec.submodule_classes:
                raise LegacyPickleError(
                    f"{source}: {key}.{prefix}{name} is an instance of {child.class_name!r}, "
                    f"which {spec.our_class} does not contain"
                )
            stack.append((f"{prefix}{name}.", child))
    return tensors


def copy_tensors(
    module: torch.nn.Module, tensors: dict, spec: ClassSpec, key: str, source: str
) -> None:
    """Copy every tensor into `module` by name, or raise listing every name that is missing,
    left over or of the wrong shape."""
    own = module.state_dict()
    missing = [name for name in own if name not in tensors]
    unused = [n for n in tensors if n not in own and n.split(".")[-1] not in spec.derived_buffers]
    mismatched = [
        f"{name}: {tuple(tensors[name].shape)} in the pickle, {tuple(own[name].shape)} here"
        for name in own
        if name in tensors and tensors[name].shape != own[name].shape
    ]
    if missing or unused or mismatched:
        lines = [f"{source}: {key} does not match {spec.our_class} built from its arguments:"]
        lines += [f"  missing from the pickle: {name}" for name in missing]
        lines += [f"  not used here: {name}" for name in unused]
        lines += [f"  shape mismatch: {text}" for text in mismatched]
        raise LegacyPickleError("\n".join(lines))
    module.load_state_dict({name: tensors[name] for name in own}, strict=True)


def build_network(record: Any, key: str, source: str) -> torch.nn.Module:
    """Build our module for one top-level NVIDIA record and copy its tensors in."""
    if not isinstance(record, PersistentRecord):
        raise LegacyPickleError(
            f"{source}: {key} is a {type(record).__name__}, not an NVIDIA network object"
        )
    spec = identify_class(record, key, source)
    kwargs = translate_kwargs(record, spec, key, source)
    try:
        module = dnnlib.util.construct_class_by_name(class_name=spec.our_class, **kwargs)
    except (TypeError, ValueError) as err:
        raise LegacyPickleError(
            f"{source}: could not build {spec.our_class} for {key} from its arguments: {err}"
        ) from err
    tensors = collect_tensors(record, spec, key, source)
    copy_tensors(module, tensors, spec, key, source)
    return module


# ----------------------------------------------------------------------------
# Entry point.


def load_nvidia_pickle(file: BinaryIO, source: str, device: str | torch.device) -> dnnlib.EasyDict:
    """Read an NVIDIA-format pickle from `file` into our networks (eval mode, on `device`)."""
    data = unpickle_restricted(file, source)
    try:
        return build_from_pickle(data, source, device)
    except LegacyPickleError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as err:
        raise LegacyPickleError(
            f"{source} is a malformed NVIDIA network pickle: {type(err).__name__}: {err}"
        ) from err


def build_from_pickle(data: Any, source: str, device: str | torch.device) -> dnnlib.EasyDict:
    """Build our networks from the unpickled contents of an NVIDIA-format pickle."""
    if not isinstance(data, dict):
        raise LegacyPickleError(
            f"{source} contains a {type(data).__name__}, but NVIDIA network pickles contain a dict"
        )
    result = dnnlib.EasyDict(format=FORMAT_NVIDIA)
    for key in NETWORK_KEYS:
        record = data.get(key)
        if record is None:
            result[key] = None
            continue
        module = build_network(record, key, source)
        result[key] = module.eval().requires_grad_(False).to(device)
    result.training_set_kwargs = check_training_set_kwargs(data.get("training_set_kwargs"), source)
    if all(result[key] is None for key in ("G", "D", "G_ema")):
        raise LegacyPickleError(f"{source} contains none of the networks G, D and G_ema")
    return result


DATASET_CLASS = "training.dataset.ImageFolderDataset"
DATASET_KWARGS = {"class_name", "path", "resolution", "use_labels", "max_size", "xflip"}
DATASET_KWARGS |= {"random_seed"}


def check_training_set_kwargs(kwargs: Any, source: str) -> dict | None:
    """Return the recorded dataset arguments as plain values, or raise unless they name
    DATASET_CLASS with only its arguments. calc_metrics.py builds the recorded class by name,
    so an arbitrary name from the file would let the file call any function."""
    if kwargs is None:
        return None
    kwargs = to_plain_value(kwargs)
    if not isinstance(kwargs, dict) or kwargs.get("class_name") != DATASET_CLASS:
        name = kwargs.get("class_name") if isinstance(kwargs, dict) else type(kwargs).__name__
        raise LegacyPickleError(
            f"{source}: training_set_kwargs names {name!r}; only {DATASET_CLASS} is allowed"
        )
    unknown = sorted(set(kwargs) - DATASET_KWARGS)
    if unknown:
        raise LegacyPickleError(
            f"{source}: training_set_kwargs has arguments {DATASET_CLASS} does not take: "
            f"{', '.join(unknown)}"
        )
    return kwargs


def is_nvidia_pickle(head: bytes) -> bool:
    """Return whether the first bytes of a file look like NVIDIA's PyTorch network pickles."""
    return head.startswith(b"\x80") and snapshot_lib.NVIDIA_TORCH_MARKER in head


def load_network_pkl(path_or_file: str | os.PathLike | BinaryIO, device="cpu") -> dnnlib.EasyDict:
    """Load G, D, G_ema and augment_pipe from one of our snapshots or an NVIDIA-format pickle.

    Returns an EasyDict with those keys (None where absent), `training_set_kwargs`, and
    `format`: FORMAT_OURS (with every other snapshot field, such as `progress`) or
    FORMAT_NVIDIA. Raises FileNotFoundError for a missing path and SnapshotError (or its
    subclass LegacyPickleError) naming the file and the problem for anything else.
    """
    if not isinstance(path_or_file, (str, os.PathLike)):
        return load_network_file(path_or_file, device)
    path = os.fspath(path_or_file)
    if snapshot_lib.is_nvidia_torch_pickle(path):
        with open(path, "rb") as f:
            return load_nvidia_pickle(f, path, device)
    result = snapshot_lib.load_network_snapshot(path, device=device)
    result.setdefault("training_set_kwargs", None)
    return result


def load_network_file(file: BinaryIO, device) -> dnnlib.EasyDict:
    """load_network_pkl() for an open binary file. One of our snapshots is copied to a
    temporary file first, because its checks read a path."""
    source = str(getattr(file, "name", "<file object>"))
    data = file.read()
    if is_nvidia_pickle(data[: snapshot_lib.HEAD_BYTES]):
        return load_nvidia_pickle(io.BytesIO(data), source, device)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, os.path.basename(source) or "network.pkl")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return load_network_pkl(path, device)
        except snapshot_lib.SnapshotError as err:
            raise snapshot_lib.SnapshotError(str(err).replace(path, source)) from err
