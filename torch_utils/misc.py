"""Helpers for tensors, modules, distributed training and data sampling."""

import contextlib
import datetime
import os
import re
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from dnnlib import EasyDict

# ----------------------------------------------------------------------------
# Cached constant tensors.

_constant_cache: dict = {}


def constant(value, shape=None, dtype=None, device=None, memory_format=None) -> torch.Tensor:
    """Return a tensor filled from `value` (a scalar or array), created once per distinct
    (value, shape, dtype, device, memory_format) and reused afterwards.

    shape:         broadcast `value` to this shape; None keeps the shape of `value`.
    dtype:         None means torch's default dtype.
    device:        None means the CPU.
    memory_format: None means torch.contiguous_format.
    Callers must not modify the returned tensor in place, because it is shared.
    """
    value = np.asarray(value)
    shape = None if shape is None else tuple(shape)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.device("cpu") if device is None else torch.device(device)
    memory_format = torch.contiguous_format if memory_format is None else memory_format

    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor = tensor.broadcast_to(shape)
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


# ----------------------------------------------------------------------------
# Shape checks that also work while tracing with torch.jit.trace.


@contextlib.contextmanager
def suppress_tracer_warnings() -> Iterator[None]:
    """Silence torch.jit.TracerWarning inside the block, for example around shape checks
    that convert traced sizes to Python ints. Under torch.compile it does nothing, because
    Dynamo cannot trace changes of the warning filters and would split the graph there."""
    if torch.compiler.is_compiling():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence) -> None:
    """Raise AssertionError unless `tensor` has len(ref_shape) dimensions and each size
    equals the matching entry of `ref_shape`. None entries match any size."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(
            f"Wrong number of dimensions: got {tensor.ndim} (shape {list(tensor.shape)}), "
            f"expected {len(ref_shape)} (shape {list(ref_shape)})"
        )
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        with suppress_tracer_warnings():
            if int(size) != int(ref_size):
                raise AssertionError(
                    f"Wrong size for dimension {idx}: got {int(size)}, expected {int(ref_size)} "
                    f"(tensor shape {list(tensor.shape)}, expected {list(ref_shape)})"
                )


# ----------------------------------------------------------------------------
# Profiling.


def profiled_function(fn):
    """Decorate `fn` so that its calls appear under its name in torch.profiler traces."""

    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)

    decorator.__name__ = fn.__name__
    decorator.__qualname__ = fn.__qualname__
    decorator.__doc__ = fn.__doc__
    return decorator


# ----------------------------------------------------------------------------
# Sampling.


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless stream of dataset indices for one rank of a data-parallel job.

    Every rank draws the same global stream from numpy.random.RandomState(seed). The stream
    is cut into chunks of chunk_size indices, and rank r keeps chunks r, r + num_replicas,
    r + 2 * num_replicas, ..., so ranks see disjoint parts of it. With chunk_size equal to
    the per-rank batch, rank r's batch holds positions [r * chunk_size, (r + 1) * chunk_size)
    of the global batch, whatever the number of ranks. Each
    pass of the global stream over the dataset contains every index exactly once. After an
    index is emitted, it is swapped with a random earlier position of the same pass, at
    most window_size * len(dataset) - 1 positions back, so the next pass comes in a new
    order without reshuffling the whole dataset at once.

    `start` skips the first `start` positions of the global stream, so a resumed run continues
    the data order where it stopped. The skipped positions are replayed (about 2 us each on a
    CPU), because the swaps depend on every earlier draw.
    """

    def __init__(
        self,
        dataset,
        rank: int = 0,  # Index of this process, in [0, num_replicas).
        num_replicas: int = 1,  # Number of processes sharing the stream.
        shuffle: bool = True,  # False yields 0, 1, 2, ... forever.
        seed: int = 0,  # Seed of the shuffling RandomState.
        window_size: float = 0.5,  # Swap window as a fraction of the dataset; 0 disables it.
        chunk_size: int = 1,  # Consecutive stream positions given to one rank in turn.
        start: int = 0,  # Global stream positions already consumed by all ranks together.
    ):
        if len(dataset) <= 0:
            raise ValueError("InfiniteSampler: the dataset is empty")
        if not (isinstance(num_replicas, int) and num_replicas >= 1):
            raise ValueError(f"InfiniteSampler: num_replicas={num_replicas!r} must be >= 1")
        if not (isinstance(rank, int) and 0 <= rank < num_replicas):
            raise ValueError(f"InfiniteSampler: rank={rank!r} must be in [0, {num_replicas})")
        if not 0 <= window_size <= 1:
            raise ValueError(f"InfiniteSampler: window_size={window_size!r} must be in [0, 1]")
        if not (isinstance(chunk_size, int) and chunk_size >= 1):
            raise ValueError(f"InfiniteSampler: chunk_size={chunk_size!r} must be >= 1")
        if not (isinstance(start, int) and start >= 0):
            raise ValueError(f"InfiniteSampler: start={start!r} must be an integer >= 0")
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.chunk_size = chunk_size
        self.start = start

    def __iter__(self) -> Iterator[int]:
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))

        step = 0
        while True:
            pos = step % order.size
            if step >= self.start and (step // self.chunk_size) % self.num_replicas == self.rank:
                yield int(order[pos])
            if window >= 2:
                # Swap only with emitted positions, so the rest of this pass is unchanged.
                other = pos - rnd.randint(min(window, pos + 1))
                order[pos], order[other] = order[other], order[pos]
            step += 1


# ----------------------------------------------------------------------------
# Parameters and buffers.


def params_and_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    """Return the parameters followed by the buffers of `module`."""
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Return (name, tensor) for the parameters followed by the buffers of `module`."""
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(
    src_module: torch.nn.Module, dst_module: torch.nn.Module, require_all: bool = False
) -> None:
    """Copy every parameter and buffer of `dst_module` from the tensor with the same name in
    `src_module`. Names missing from the source are skipped unless require_all=True, which
    raises KeyError. Shapes must match. requires_grad of the destination is kept."""
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(
                    f"copy_params_and_buffers: {name!r} of {type(dst_module).__name__} is "
                    f"missing from the source {type(src_module).__name__}"
                )
            continue
        src = src_tensors[name]
        if src.shape != tensor.shape:
            raise ValueError(
                f"copy_params_and_buffers: {name!r} has shape {list(src.shape)} in the source "
                f"but {list(tensor.shape)} in the destination"
            )
        tensor.copy_(src.detach())


# ----------------------------------------------------------------------------
# Distributed training.


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Run the block with gradient synchronization of a DistributedDataParallel `module`
    switched off unless `sync` is True. Other modules are not affected."""
    is_ddp = isinstance(module, torch.nn.parallel.DistributedDataParallel)
    if sync or not is_ddp:
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str | None = None) -> None:
    """Raise AssertionError naming the parameters and buffers that differ from rank 0.

    Names fully matching `ignore_regex` (prefixed with the module's class name, for example
    'Generator.synthesis.b4.conv1.noise_const') are skipped. NaNs compare as equal. Every
    tensor is compared before raising, so all ranks join the same broadcasts. Does nothing
    unless torch.distributed is initialized.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    mismatches = []
    for name, tensor in named_params_and_buffers(module):
        full_name = f"{type(module).__name__}.{name}"
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        reference = tensor.clone()
        torch.distributed.broadcast(tensor=reference, src=0)
        if not torch.equal(tensor, reference):
            mismatches.append(full_name)
    if mismatches:
        names = ", ".join(mismatches)
        raise AssertionError(f"Tensors differ between rank 0 and this rank: {names}")


# ----------------------------------------------------------------------------
# Module summary.


def _flatten_tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _flatten_tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _flatten_tensors(item)]
    return []


def _record_module_calls(module, inputs, max_nesting):
    """Run module(*inputs) and return (outputs, calls): one EasyDict(mod, outputs) per
    submodule call at most `max_nesting` levels deep, in the order the calls finished."""
    nesting = [0]
    calls = []

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            calls.append(EasyDict(mod=mod, outputs=_flatten_tensors(outputs)))

    handles = []
    for submodule in module.modules():
        handles.append(submodule.register_forward_pre_hook(pre_hook))
        handles.append(submodule.register_forward_hook(post_hook))
    try:
        outputs = module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, calls


def print_module_summary(module: torch.nn.Module, inputs, max_nesting: int = 3):
    """Run `module` on `inputs` (a tuple or list of positional arguments) and print one row
    per submodule call up to `max_nesting` levels deep: name, parameter count, buffer count,
    output shape and dtype. Calls without outputs, parameters or buffers of their own are
    left out. Returns the module's outputs."""
    if not isinstance(inputs, (tuple, list)):
        raise TypeError("print_module_summary: inputs must be a tuple or list of arguments")
    outputs, calls = _record_module_calls(module, inputs, max_nesting)
    names = {mod: name for name, mod in module.named_modules()}
    names[module] = "<top-level>"

    # Count each tensor once, for the first call that owns it (the top level comes last).
    seen: set[int] = set()
    rows = [["Module", "Parameters", "Buffers", "Output shape", "Datatype"]]
    total_params = total_buffers = 0
    for call in calls:
        params = [t for t in call.mod.parameters() if id(t) not in seen]
        buffers = [t for t in call.mod.buffers() if id(t) not in seen]
        seen.update(id(t) for t in params + buffers)
        if call.mod is not module and not (params or buffers or call.outputs):
            continue
        num_params = sum(t.numel() for t in params)
        num_buffers = sum(t.numel() for t in buffers)
        total_params += num_params
        total_buffers += num_buffers
        shapes = [str(list(t.shape)) for t in call.outputs] or ["-"]
        dtypes = [str(t.dtype).split(".")[-1] for t in call.outputs] or ["-"]
        name = names.get(call.mod, type(call.mod).__name__)
        rows.append([name, str(num_params or "-"), str(num_buffers or "-"), shapes[0], dtypes[0]])
        rows.extend(["", "", "", shape, dtype] for shape, dtype in zip(shapes[1:], dtypes[1:]))
    rows.append(["Total", str(total_params), str(total_buffers), "", ""])
    _print_table(rows)
    return outputs


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    rule = ["-" * width for width in widths]
    for row in [rows[0], rule, *rows[1:-1], rule, rows[-1]]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print()


# ----------------------------------------------------------------------------
# Process set-up.

DEFAULT_DIST_TIMEOUT_MIN = 30.0  # Minutes a collective may wait before it fails.
_dist_timeout_min = DEFAULT_DIST_TIMEOUT_MIN  # Set by init_process(), quoted in error messages.


def torchrun_env() -> EasyDict | None:
    """Return rank, world_size and local_rank from torchrun's environment variables, or None
    when RANK and WORLD_SIZE are not both set (a process not started by torchrun)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    values = EasyDict()
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = os.environ.get(key, "0" if key == "LOCAL_RANK" else "")
        try:
            values[key.lower()] = int(text)
        except ValueError:
            raise ValueError(
                f"Environment variable {key}={text!r} is not an integer; torchrun sets RANK, "
                f"WORLD_SIZE and LOCAL_RANK, so unset them when not running under torchrun"
            ) from None
    if not 0 <= values.rank < values.world_size:
        raise ValueError(
            f"Environment variables RANK={values.rank} and WORLD_SIZE={values.world_size} are "
            f"inconsistent: RANK must be in [0, WORLD_SIZE)"
        )
    return values


def init_process(
    rank: int,
    num_gpus: int,
    device_type: str,
    temp_dir: str | None,
    timeout_min: float = DEFAULT_DIST_TIMEOUT_MIN,  # Limit of every collective, in minutes.
    local_rank: int | None = None,  # CUDA device index. None = rank (one machine).
) -> torch.device:
    """Join the process group of `num_gpus` processes (when more than one) and return this
    rank's device: cuda:<local_rank> for device_type 'cuda', else the CPU.

    The group meets through a file in `temp_dir`, or through torchrun's MASTER_ADDR and
    MASTER_PORT (env://) when temp_dir is None. It uses NCCL on CUDA and gloo on the CPU.
    On CUDA it then builds the custom kernels that the --ops policy needs, rank 0 first.
    """
    global _dist_timeout_min
    _dist_timeout_min = float(timeout_min)
    local_rank = rank if local_rank is None else local_rank
    device = torch.device("cuda", local_rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        # Before the NCCL group, so its communicator binds to this rank's GPU.
        torch.cuda.set_device(device)
    if num_gpus > 1:
        if temp_dir is None:
            init_method = "env://"
        else:
            init_file = os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))
            init_method = f"file://{init_file}"
        torch.distributed.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            init_method=init_method,
            rank=rank,
            world_size=num_gpus,
            timeout=datetime.timedelta(minutes=timeout_min),
        )
    # Build the custom CUDA kernels that the --ops policy requires on rank 0 first, while the
    # other ranks wait, so they never compile into the same folder at once.
    from torch_utils import custom_ops

    custom_ops.build_kernels_rank0_first(device)
    return device


class CollectiveError(RuntimeError):
    """A torch.distributed collective failed or timed out; the message names the rank, the
    training phase and the kimg at which it happened."""

    def __init__(self, message: str, rank: int, phase: str, kimg: float):
        super().__init__(message)
        self.rank = rank
        self.phase = phase
        self.kimg = kimg


@contextlib.contextmanager
def collective_phase(phase: str, kimg: float) -> Iterator[None]:
    """Run collectives inside the block, turning their RuntimeError (a timeout, a closed
    connection to a rank that died) into a CollectiveError naming this rank, `phase` and
    `kimg`. Without an initialized process group the block runs as it is.

    Wrap only the collective calls themselves: any RuntimeError raised in the block is taken
    for a failed collective.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        yield
        return
    try:
        yield
    except CollectiveError:
        raise
    except RuntimeError as err:
        rank = torch.distributed.get_rank()
        world_size = torch.distributed.get_world_size()
        raise CollectiveError(
            f"Rank {rank} of {world_size}: a collective operation in phase {phase} at kimg "
            f"{kimg:.3f} failed or timed out (limit --dist-timeout={_dist_timeout_min:g} min). "
            f"Another rank probably failed or stalled before reaching it; look for its error "
            f"above. Cause: {type(err).__name__}: {err}",
            rank=rank,
            phase=phase,
            kimg=kimg,
        ) from err


def broadcast_object(value, phase: str, kimg: float = 0.0):
    """Return rank 0's `value` on every rank (any picklable object)."""
    holder = [value]
    with collective_phase(phase, kimg):
        torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]
