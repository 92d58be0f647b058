"""Custom CUDA kernels for bias_act, upfirdn2d and filtered_lrelu, built on first use, and the
policy that decides when the ops use them.

The policy is set with `--ops` on train.py, gen_images.py and calc_metrics.py, or with the
environment variable DMD_OPS, which other scripts read and which the option overrides. The
option also sets DMD_OPS, so that spawned processes follow it:

  ref   The reference PyTorch ops always. They are the definition of every op, run on any
        device and differentiate to any order.
  cuda  The CUDA kernels for CUDA tensors. If the kernels cannot be built, the first op that
        needs them raises OpsBuildError. Its message names what is missing: ninja, nvcc, a
        host C++ compiler, the CUDA headers, or a CUDA toolkit of the major version that
        PyTorch was built with (torch.version.cuda).
  auto  (default) A kernel only where it is marked VALIDATED below and builds; everything
        else runs the reference ops, with one warning per process.

CPU tensors always run the reference ops, whatever the policy.

NOTE: no kernel has been run on a GPU yet, so every VALIDATED flag is False and `auto` runs
the reference ops everywhere. Set a flag to True only after the CUDA tests in
tests/test_custom_ops.py have passed on a GPU. Until then `--ops=cuda` is the way to try the
kernels.

The kernels (torch_utils/ops/cuda/) form one extension, built with ninja by
torch.utils.cpp_extension.load into a cache folder per machine, torch version and CUDA
version: $TORCH_EXTENSIONS_DIR/dmd_ops-<tag> when that variable is set, else
<dnnlib cache>/torch_extensions/dmd_ops-<tag>. An exclusive file lock in that folder lets one
process build while the others wait, up to BUILD_LOCK_TIMEOUT_S. In a multi-process run,
call build_kernels_rank0_first() once the process group exists, so that rank 0 builds and
the other ranks load its result after a barrier.
"""

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import warnings

import torch

import dnnlib

POLICIES = ("auto", "cuda", "ref")
ENV_VAR = "DMD_OPS"

# Whether each kernel has passed the CUDA tests of tests/test_custom_ops.py on a GPU. The
# `auto` policy uses a kernel only when its flag is True.
VALIDATED = {
    "bias_act": False,
    "upfirdn2d": False,
    "filtered_lrelu": False,
}

# Activation names in the order of the codes that the bias_act kernel uses (dmd_ops.h).
ACTIVATIONS = ("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish")

EXTENSION_NAME = "dmd_ops"
SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops", "cuda")
SOURCES = ("dmd_ops.cpp", "bias_act.cu", "upfirdn2d.cu")

# How long a process waits for another one that is building the extension, in seconds.
# Compiling the three sources to object files took about 2 minutes on 2 busy CPU cores.
BUILD_LOCK_TIMEOUT_S = 600.0
_LOCK_POLL_S = 0.5

# Estimate, not a measurement in this repository: the kernels have not run on a GPU yet.
SLOWDOWN_NOTE = (
    "the reference ops are typically several times slower on GPU for these layers (an "
    "estimate; no measurement exists yet)"
)


class OpsBuildError(RuntimeError):
    """The CUDA kernels could not be built or loaded; the message names what is missing."""


class ReferenceOpsWarning(UserWarning):
    """CUDA tensors run the reference ops because no usable kernel exists."""


_policy: str | None = None  # Set by set_policy(); None reads DMD_OPS.
_extension = None  # The loaded extension module.
_build_error: OpsBuildError | None = None  # The first build failure, kept so it is not retried.
_warned = False

# ----------------------------------------------------------------------------
# Policy.


def set_policy(policy: str, source: str = "--ops") -> None:
    """Set the policy for this process and, through DMD_OPS, for the processes it starts.

    With 'cuda' on a machine with a CUDA device, the build tools are checked at once, so a
    missing tool stops a script before any work starts. `source` names the setting in error
    messages. Raises ValueError for an unknown policy and OpsBuildError for a missing tool.
    """
    global _policy
    _policy = _check_policy(policy, source)
    os.environ[ENV_VAR] = _policy
    if _policy == "cuda" and torch.cuda.is_available():
        check_build_tools()


def apply_ops_option(value: str | None) -> None:
    """Set the policy from a command line's --ops value; None keeps $DMD_OPS, else 'auto'.

    Scripts call it before they build or load any network. Raises click.BadParameter
    naming --ops (or DMD_OPS) for an invalid value or a missing build tool."""
    import click

    try:
        if value is None:
            set_policy(get_policy(), source=f"${ENV_VAR}")
        else:
            set_policy(value)
    except (ValueError, OpsBuildError) as err:
        raise click.BadParameter(str(err), param_hint="--ops") from err


def get_policy() -> str:
    """Return the policy: the one set_policy() set, else $DMD_OPS, else 'auto'."""
    if _policy is not None:
        return _policy
    value = os.environ.get(ENV_VAR, "")
    return _check_policy(value, f"${ENV_VAR}") if value else "auto"


def _check_policy(policy: str, source: str) -> str:
    if policy not in POLICIES:
        raise ValueError(
            f"{source}={policy!r} is not a valid ops policy; use one of {', '.join(POLICIES)}"
        )
    return policy


def kernels_for(op: str, *tensors: torch.Tensor):
    """Return the extension module when `op` should run its CUDA kernel on `tensors`, or None
    when it should run the reference ops.

    None for CPU tensors, under 'ref' and inside torch.compile. Under 'auto', None with one
    warning per process when the kernel is not VALIDATED or the build failed. Under 'cuda',
    a build failure raises OpsBuildError.
    """
    if op not in VALIDATED:
        raise ValueError(f"Unknown op {op!r}; kernels exist for {', '.join(VALIDATED)}")
    if not all(t.device.type == "cuda" for t in tensors):
        return None
    if torch.compiler.is_compiling():
        # Dynamo cannot trace into the extension's functions and would split the graph at
        # every kernel call, so compiled code runs the reference ops through Inductor.
        return None
    policy = get_policy()
    if policy == "ref":
        return None
    if policy == "auto" and not VALIDATED[op]:
        _warn_reference(f"the {op} kernel has not been validated on a GPU yet")
        return None
    try:
        return load_extension()
    except OpsBuildError as err:
        if policy == "cuda":
            raise
        _warn_reference(f"the CUDA kernels failed to build: {err}")
        return None


def _warn_reference(reason: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"{ENV_VAR}=auto: CUDA tensors run the reference PyTorch ops because {reason}. "
        f"Expect slower training: {SLOWDOWN_NOTE}. --ops=cuda ({ENV_VAR}=cuda) uses the "
        f"kernels regardless of validation; --ops=ref silences this warning.",
        ReferenceOpsWarning,
        stacklevel=3,
    )


# ----------------------------------------------------------------------------
# Build tools.


def check_build_tools() -> None:
    """Check, without building, that everything the build needs exists: ninja, a host C++
    compiler, the CUDA toolkit's nvcc and headers, and a toolkit whose major version equals
    torch.version.cuda's. Raises OpsBuildError naming the first missing piece."""
    if torch.version.cuda is None:
        raise OpsBuildError(
            f"this PyTorch build ({torch.__version__}) has no CUDA support "
            f"(torch.version.cuda is None); install a CUDA build of torch or use --ops=ref"
        )

    if shutil.which("ninja") is None:
        raise OpsBuildError(
            "ninja not found on PATH; install it (pip install ninja or your package manager)"
        )
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise OpsBuildError(
            f"host C++ compiler {compiler!r} not found on PATH (set CXX to choose another); "
            f"install g++ or clang++"
        )

    cuda_home = find_cuda_home()
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    if not os.path.isfile(nvcc):
        raise OpsBuildError(
            f"nvcc not found at {nvcc}; install the CUDA toolkit or set CUDA_HOME to its folder"
        )
    header = os.path.join(cuda_home, "include", "cuda_runtime.h")
    if not os.path.isfile(header):
        raise OpsBuildError(
            f"CUDA headers not found: {header} is missing; install the CUDA toolkit's "
            f"development files or set CUDA_HOME to a complete toolkit"
        )

    toolkit = nvcc_version(nvcc)
    if toolkit.split(".")[0] != torch.version.cuda.split(".")[0]:
        raise OpsBuildError(
            f"CUDA toolkit {toolkit} ({nvcc}) does not match the CUDA {torch.version.cuda} "
            f"that PyTorch was built with; the major versions must be equal. Install CUDA "
            f"{torch.version.cuda}, point CUDA_HOME at it, or use --ops=ref"
        )


def find_cuda_home() -> str:
    """Return the CUDA toolkit folder: $CUDA_HOME, $CUDA_PATH, then the folder above the
    nvcc found on PATH, then /usr/local/cuda. Raises OpsBuildError when none exists."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(name):
            return os.environ[name]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    if os.path.isdir("/usr/local/cuda"):
        return "/usr/local/cuda"
    raise OpsBuildError(
        "nvcc not found: no CUDA_HOME or CUDA_PATH is set, nvcc is not on PATH and "
        "/usr/local/cuda does not exist; install the CUDA toolkit or set CUDA_HOME"
    )


def nvcc_version(nvcc: str) -> str:
    """Return the toolkit version that `nvcc --version` prints, such as '12.4'."""
    try:
        output = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise OpsBuildError(f"{nvcc} --version failed: {err}") from err
    match = re.search(r"release (\d+\.\d+)", output)
    if match is None:
        raise OpsBuildError(f"{nvcc} --version printed no 'release X.Y' line: {output!r}")
    return match.group(1)


# ----------------------------------------------------------------------------
# Build and load.


def build_dir() -> str:
    """Return the build folder of this machine's torch, CUDA and Python versions."""
    tag = "torch{}-cu{}-py{}{}".format(
        torch.__version__.split("+")[0],
        (torch.version.cuda or "none").replace(".", ""),
        *sys.version_info[:2],
    )
    name = f"{EXTENSION_NAME}-{tag}"
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return os.path.join(root, name)
    return dnnlib.make_cache_dir_path("torch_extensions", name)


def load_extension():
    """Build the extension if needed and return it; later calls return the same module.

    Raises OpsBuildError when a tool is missing, the build lock times out or the build
    fails. A failure is remembered, so later calls raise it again without rebuilding."""
    global _extension, _build_error
    if _extension is not None:
        return _extension
    if _build_error is not None:
        raise _build_error
    try:
        check_build_tools()
        directory = build_dir()
        os.makedirs(directory, exist_ok=True)
        with build_lock(directory):
            _extension = _build(directory)
    except OpsBuildError as err:
        _build_error = err
        raise
    return _extension


def _build(directory: str):
    from torch.utils import cpp_extension

    # torch's own lock file in the build folder is left behind when a build is killed, and
    # then makes every later build wait forever. The exclusive lock held here means no
    # other process of ours is building, so a leftover file is stale.
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, "lock"))
    try:
        return cpp_extension.load(
            name=EXTENSION_NAME,
            sources=[os.path.join(SOURCE_DIR, name) for name in SOURCES],
            extra_include_paths=[SOURCE_DIR],
            build_directory=directory,
            verbose=False,
        )
    except Exception as err:  # The compiler's or loader's error, whatever its type.
        raise OpsBuildError(
            f"building the CUDA kernels in {directory} failed: {type(err).__name__}: {err}"
        ) from err


@contextlib.contextmanager
def build_lock(directory: str, timeout_s: float | None = None):
    """Hold an exclusive lock on `directory`/build.lock for the block, waiting at most
    `timeout_s` (default BUILD_LOCK_TIMEOUT_S) for another process to release it. The
    operating system releases the lock when its holder exits, even after a crash."""
    timeout_s = BUILD_LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    path = os.path.join(directory, "build.lock")
    with open(path, "a") as lock_file:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OpsBuildError(
                        f"timed out after {timeout_s:g} s waiting for the build lock "
                        f"{path}: another process is building the CUDA kernels in "
                        f"{directory}. Wait for it, or stop it and retry; use --ops=ref to "
                        f"skip the kernels"
                    ) from None
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------
# Multi-process runs.


def wants_kernels() -> bool:
    """Return whether the policy would build the kernels for CUDA tensors: always under
    'cuda', under 'auto' only when some kernel is VALIDATED."""
    policy = get_policy()
    return policy == "cuda" or (policy == "auto" and any(VALIDATED.values()))


def build_kernels_rank0_first(device: torch.device) -> None:
    """Build the kernels on rank 0 while the other ranks wait at a barrier, then load them
    on every other rank from rank 0's build folder.

    Call it on every rank once torch.distributed's process group exists (after
    misc.init_process()) and before the networks run. It does nothing for CPU devices or
    when the policy needs no kernels. Without a process group it builds in this process.
    A failed build on rank 0 still reaches the barrier, so no rank waits for the collective
    timeout. After a failure, each rank raises OpsBuildError under 'cuda'. Under 'auto' it
    runs the reference ops and warns once.
    """
    if device.type != "cuda" or not wants_kernels():
        return
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    error = None
    if rank == 0:
        error = _try_load()
    if distributed:
        torch.distributed.barrier()
    if rank != 0:
        error = _try_load()
    if error is not None and get_policy() == "cuda":
        raise error


def _try_load() -> OpsBuildError | None:
    try:
        load_extension()
    except OpsBuildError as err:
        return err
    return None
