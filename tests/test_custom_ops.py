"""The --ops policy, the build of the CUDA kernels and the autograd wiring of the kernel paths.

The CPU tests run the kernel paths of bias_act, upfirdn2d and filtered_lrelu with a stand-in
extension built from plain PyTorch, so they check the autograd functions (gradients through
transposed parameters, double backward) against finite differences and the reference ops.
The CUDA tests at the end check the real kernels and are skipped without a GPU.
"""

import fcntl
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import types
import warnings

import click
import numpy as np
import pytest
import torch
import torch.utils.cpp_extension

import calc_metrics
import gen_images
import train
from torch_utils import custom_ops
from torch_utils.ops import bias_act as ba
from torch_utils.ops import filtered_lrelu as flr
from torch_utils.ops import upfirdn2d as fir

CUDA = torch.device("cuda")
ACTS = list(custom_ops.ACTIVATIONS)


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Start every test with no policy set, no DMD_OPS, no loaded extension and no warning."""
    monkeypatch.delenv(custom_ops.ENV_VAR, raising=False)
    for name, value in [("_policy", None), ("_extension", None), ("_build_error", None)]:
        monkeypatch.setattr(custom_ops, name, value)
    monkeypatch.setattr(custom_ops, "_warned", False)
    yield
    os.environ.pop(custom_ops.ENV_VAR, None)  # set_policy() writes it directly.


def cuda_like():
    """An object whose device reads as CUDA, enough for kernels_for()'s device test."""
    return types.SimpleNamespace(device=CUDA)


# ----------------------------------------------------------------------------
# Policy and dispatch.


def test_policy_defaults_to_auto():
    assert custom_ops.get_policy() == "auto"


def test_policy_from_environment(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "ref")
    assert custom_ops.get_policy() == "ref"


def test_policy_invalid_environment_value(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "fast")
    with pytest.raises(ValueError, match=r"\$DMD_OPS='fast' is not a valid ops policy.*auto"):
        custom_ops.get_policy()


def test_set_policy_exports_environment():
    custom_ops.set_policy("ref")
    assert custom_ops.get_policy() == "ref"
    assert os.environ["DMD_OPS"] == "ref"
    code = "from torch_utils import custom_ops; print(custom_ops.get_policy())"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert child.stdout.strip() == "ref"


def test_set_policy_rejects_unknown():
    with pytest.raises(ValueError, match=r"--ops='gpu' is not a valid ops policy"):
        custom_ops.set_policy("gpu")


@pytest.mark.parametrize("policy", ["auto", "cuda", "ref"])
def test_cpu_tensors_always_use_reference(monkeypatch, policy):
    monkeypatch.setattr(custom_ops, "VALIDATED", dict.fromkeys(custom_ops.VALIDATED, True))
    monkeypatch.setattr(custom_ops, "load_extension", lambda: pytest.fail("must not build"))
    monkeypatch.setenv("DMD_OPS", policy)
    for op in custom_ops.VALIDATED:
        assert custom_ops.kernels_for(op, torch.zeros(1)) is None


def test_mixed_devices_use_reference(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "cuda")
    monkeypatch.setattr(custom_ops, "load_extension", lambda: pytest.fail("must not build"))
    assert custom_ops.kernels_for("bias_act", cuda_like(), torch.zeros(1)) is None


def test_ref_policy_never_builds(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "ref")
    monkeypatch.setattr(custom_ops, "load_extension", lambda: pytest.fail("must not build"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert custom_ops.kernels_for("upfirdn2d", cuda_like()) is None


def test_cuda_policy_ignores_validation(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "cuda")
    sentinel = object()
    monkeypatch.setattr(custom_ops, "load_extension", lambda: sentinel)
    for op in custom_ops.VALIDATED:
        assert not custom_ops.VALIDATED[op]
        assert custom_ops.kernels_for(op, cuda_like()) is sentinel


def test_compiled_code_uses_reference_ops(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "cuda")
    monkeypatch.setattr(custom_ops, "load_extension", lambda: object())
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for op in custom_ops.VALIDATED:
        assert custom_ops.kernels_for(op, cuda_like()) is None


def test_cuda_policy_build_failure_is_fatal(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "cuda")

    def fail():
        raise custom_ops.OpsBuildError("ninja not found on PATH")

    monkeypatch.setattr(custom_ops, "load_extension", fail)
    with pytest.raises(custom_ops.OpsBuildError, match="ninja not found"):
        custom_ops.kernels_for("bias_act", cuda_like())


def test_kernels_for_unknown_op():
    with pytest.raises(ValueError, match="Unknown op 'conv2d'"):
        custom_ops.kernels_for("conv2d", cuda_like())


def test_every_kernel_unvalidated():
    assert custom_ops.VALIDATED == {
        "bias_act": False,
        "upfirdn2d": False,
        "filtered_lrelu": False,
    }


def test_auto_unvalidated_warns_once(monkeypatch):
    monkeypatch.setattr(custom_ops, "load_extension", lambda: pytest.fail("must not build"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for op in ["bias_act", "upfirdn2d", "bias_act", "filtered_lrelu"]:
            assert custom_ops.kernels_for(op, cuda_like()) is None
    assert len(caught) == 1
    message = str(caught[0].message)
    assert caught[0].category is custom_ops.ReferenceOpsWarning
    assert "bias_act kernel has not been validated on a GPU" in message
    assert "typically several times slower on GPU" in message
    assert "estimate" in message


def test_auto_validated_uses_kernel(monkeypatch):
    monkeypatch.setitem(custom_ops.VALIDATED, "upfirdn2d", True)
    sentinel = object()
    monkeypatch.setattr(custom_ops, "load_extension", lambda: sentinel)
    assert custom_ops.kernels_for("upfirdn2d", cuda_like()) is sentinel
    with pytest.warns(custom_ops.ReferenceOpsWarning, match="bias_act kernel"):
        assert custom_ops.kernels_for("bias_act", cuda_like()) is None


def test_auto_build_failure_falls_back_with_warning(monkeypatch):
    monkeypatch.setitem(custom_ops.VALIDATED, "bias_act", True)

    def fail():
        raise custom_ops.OpsBuildError("nvcc not found at /opt/cuda/bin/nvcc")

    monkeypatch.setattr(custom_ops, "load_extension", fail)
    with pytest.warns(custom_ops.ReferenceOpsWarning, match="failed to build: nvcc not found"):
        assert custom_ops.kernels_for("bias_act", cuda_like()) is None


def test_wants_kernels():
    assert not custom_ops.wants_kernels()  # auto, nothing validated
    custom_ops.set_policy("cuda")
    assert custom_ops.wants_kernels()
    custom_ops.set_policy("ref")
    assert not custom_ops.wants_kernels()


# ----------------------------------------------------------------------------
# Build tools: each missing piece gets its own message.


@pytest.fixture
def toolkit(tmp_path, monkeypatch):
    """A fake CUDA 12.4 toolkit folder with nvcc and cuda_runtime.h, with every tool found
    and torch claiming CUDA 12.1. Tests remove one piece each."""
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "include").mkdir()
    (home / "bin" / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.4'\n")
    (home / "bin" / "nvcc").chmod(0o755)
    (home / "include" / "cuda_runtime.h").write_text("")
    monkeypatch.setenv("CUDA_HOME", str(home))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    found = {"ninja": "/usr/bin/ninja", "c++": "/usr/bin/c++"}
    monkeypatch.setattr(custom_ops.shutil, "which", lambda name: found.get(name))
    return types.SimpleNamespace(home=home, found=found)


def test_build_tools_complete(toolkit):
    custom_ops.check_build_tools()
    assert custom_ops.nvcc_version(str(toolkit.home / "bin" / "nvcc")) == "12.4"


def test_build_tools_cpu_torch(toolkit, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(custom_ops.OpsBuildError, match=r"no CUDA support.*--ops=ref"):
        custom_ops.check_build_tools()


def test_build_tools_missing_ninja(toolkit):
    del toolkit.found["ninja"]
    with pytest.raises(custom_ops.OpsBuildError, match="ninja not found on PATH"):
        custom_ops.check_build_tools()


def test_build_tools_missing_compiler(toolkit, monkeypatch):
    monkeypatch.setenv("CXX", "clang++-99")
    with pytest.raises(custom_ops.OpsBuildError, match="host C\\+\\+ compiler 'clang\\+\\+-99'"):
        custom_ops.check_build_tools()


def test_build_tools_missing_nvcc(toolkit):
    (toolkit.home / "bin" / "nvcc").unlink()
    with pytest.raises(custom_ops.OpsBuildError, match=r"nvcc not found at .*cuda/bin/nvcc"):
        custom_ops.check_build_tools()


def test_build_tools_missing_headers(toolkit):
    (toolkit.home / "include" / "cuda_runtime.h").unlink()
    with pytest.raises(custom_ops.OpsBuildError, match=r"CUDA headers not found.*cuda_runtime"):
        custom_ops.check_build_tools()


def test_build_tools_version_mismatch(toolkit, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "11.8")
    pattern = r"CUDA toolkit 12\.4 .* does not match the CUDA 11\.8 that PyTorch"
    with pytest.raises(custom_ops.OpsBuildError, match=pattern):
        custom_ops.check_build_tools()


def test_nvcc_version_unreadable(tmp_path):
    nvcc = tmp_path / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'something else'\n")
    nvcc.chmod(0o755)
    with pytest.raises(custom_ops.OpsBuildError, match="printed no 'release X.Y' line"):
        custom_ops.nvcc_version(str(nvcc))


def test_find_cuda_home_none(monkeypatch):
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(custom_ops.shutil, "which", lambda name: None)
    monkeypatch.setattr(custom_ops.os.path, "isdir", lambda path: False)
    with pytest.raises(custom_ops.OpsBuildError, match="nvcc not found: no CUDA_HOME"):
        custom_ops.find_cuda_home()


def test_set_policy_cuda_checks_tools(toolkit, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    del toolkit.found["ninja"]
    with pytest.raises(click.BadParameter, match="ninja not found") as info:
        custom_ops.apply_ops_option("cuda")
    assert info.value.param_hint == "--ops"


def test_build_failure_names_folder_and_is_kept(toolkit, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    calls = []

    def failing_load(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("Error building extension 'dmd_ops': nvcc exited with 1")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", failing_load)
    for _ in range(2):
        with pytest.raises(custom_ops.OpsBuildError, match="nvcc exited with 1") as info:
            custom_ops.load_extension()
        assert str(tmp_path / "ext" / "dmd_ops-torch") in str(info.value)
    assert len(calls) == 1  # The failure is kept, not retried.
    assert calls[0]["build_directory"].startswith(str(tmp_path / "ext"))
    assert sorted(os.path.basename(s) for s in calls[0]["sources"]) == sorted(custom_ops.SOURCES)


def test_build_removes_stale_torch_lock(toolkit, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    directory = custom_ops.build_dir()
    os.makedirs(directory)
    with open(os.path.join(directory, "lock"), "w"):
        pass
    module = types.ModuleType("dmd_ops")

    def load(**kwargs):
        assert not os.path.exists(os.path.join(kwargs["build_directory"], "lock"))
        return module

    monkeypatch.setattr(torch.utils.cpp_extension, "load", load)
    assert custom_ops.load_extension() is module
    assert custom_ops.load_extension() is module


def test_build_dir_default_under_dnnlib_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    directory = custom_ops.build_dir()
    assert os.path.dirname(directory) == str(tmp_path / "torch_extensions")
    assert os.path.basename(directory).startswith(f"dmd_ops-torch{torch.__version__[:4]}")


def test_build_lock_timeout(tmp_path):
    lock_path = tmp_path / "build.lock"
    with open(lock_path, "a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(custom_ops.OpsBuildError) as info:
            with custom_ops.build_lock(str(tmp_path), timeout_s=0.3):
                pytest.fail("the lock is held elsewhere")
    message = str(info.value)
    assert "timed out after 0.3 s" in message
    assert str(lock_path) in message
    assert f"building the CUDA kernels in {tmp_path}" in message
    with custom_ops.build_lock(str(tmp_path), timeout_s=0.3):
        pass  # Free again once the holder let go.


# ----------------------------------------------------------------------------
# Multi-process build order.


def mock_ranks(monkeypatch, rank, events, fail_rank0=False):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: events.append("barrier"))

    def load():
        events.append("load")
        if fail_rank0 and rank == 0:
            raise custom_ops.OpsBuildError("ninja not found on PATH")

    monkeypatch.setattr(custom_ops, "load_extension", load)


@pytest.mark.parametrize("rank, expected", [(0, ["load", "barrier"]), (1, ["barrier", "load"])])
def test_rank0_builds_first(monkeypatch, rank, expected):
    custom_ops.set_policy("ref")
    custom_ops._policy = "cuda"  # Without the tool check that set_policy('cuda') runs.
    events = []
    mock_ranks(monkeypatch, rank, events)
    custom_ops.build_kernels_rank0_first(CUDA)
    assert events == expected


def test_rank0_failure_still_reaches_barrier(monkeypatch):
    custom_ops._policy = "cuda"
    events = []
    mock_ranks(monkeypatch, 0, events, fail_rank0=True)
    with pytest.raises(custom_ops.OpsBuildError, match="ninja"):
        custom_ops.build_kernels_rank0_first(CUDA)
    assert events == ["load", "barrier"]


def test_rank0_first_skips_cpu_and_unneeded(monkeypatch):
    events = []
    mock_ranks(monkeypatch, 0, events)
    custom_ops._policy = "cuda"
    custom_ops.build_kernels_rank0_first(torch.device("cpu"))
    custom_ops._policy = "auto"  # Nothing validated, so nothing to build.
    custom_ops.build_kernels_rank0_first(CUDA)
    assert events == []


# ----------------------------------------------------------------------------
# The --ops option of the scripts.


class PolicySet(Exception):
    pass


@pytest.mark.parametrize(
    "script, args",
    [
        (train, ["--outdir=x", "--cfg=stylegan2", "--data=missing.zip", "--batch=8"]),
        (gen_images, ["--network=missing.pkl", "--seeds=0", "--outdir=x"]),
        (calc_metrics, ["--network=missing.pkl"]),
    ],
)
@pytest.mark.parametrize("ops", [None, "auto", "cuda", "ref"])
def test_ops_option_set_first(monkeypatch, script, args, ops):
    """The policy is set before the script reads any file: here every file is missing."""

    def record(value):
        raise PolicySet(value)

    monkeypatch.setattr(custom_ops, "apply_ops_option", record)
    extra = [] if ops is None else [f"--ops={ops}"]
    with pytest.raises(PolicySet) as info:
        script.main(args + extra, standalone_mode=False)
    assert info.value.args == (ops,)


@pytest.mark.parametrize("script", [train, gen_images, calc_metrics])
def test_ops_option_rejects_unknown(script):
    with pytest.raises(click.BadParameter, match="'fast' is not one of 'auto', 'cuda', 'ref'"):
        script.main(["--ops=fast"], standalone_mode=False)


def test_ops_option_none_keeps_environment(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "ref")
    custom_ops.apply_ops_option(None)
    assert custom_ops.get_policy() == "ref"
    custom_ops.apply_ops_option("auto")
    assert os.environ["DMD_OPS"] == "auto"


def test_ops_option_invalid_environment(monkeypatch):
    monkeypatch.setenv("DMD_OPS", "fastest")
    with pytest.raises(click.BadParameter, match=r"\$DMD_OPS='fastest' is not a valid"):
        custom_ops.apply_ops_option(None)


# ----------------------------------------------------------------------------
# Kernel paths on the CPU with a stand-in extension. Its bias_act derives act' and act''
# with autograd from the reference activation, independently of the formulas in
# bias_act.cu; its upfirdn2d is the reference op. gradcheck compares the autograd functions
# with finite differences.


def stand_in_bias_act(x, b, dy, order, act, alpha, gain, clamp, dim):
    z = x
    if b.numel() > 0:
        z = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    func = ba.activation_funcs[ACTS[act]].func
    if order == 0:
        value = func(z, alpha) * gain
        return value.clamp(-clamp, clamp) if clamp >= 0 else value
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        value = func(z, alpha) * gain
        (slope,) = torch.autograd.grad(value.sum(), z, create_graph=True)
        if order == 2 and slope.requires_grad:
            (slope,) = torch.autograd.grad(slope.sum(), z)
        elif order == 2:
            slope = torch.zeros_like(z)  # act' is constant, as for linear.
    inside = (value >= -clamp) & (value <= clamp) if clamp >= 0 else torch.ones_like(z).bool()
    return torch.where(inside, dy * slope.detach(), torch.zeros_like(dy))


def stand_in_upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, gain):
    up, down, padding = (upx, upy), (downx, downy), (px0, px1, py0, py1)
    return fir._upfirdn2d_ref(x, f, up, down, padding, flip_filter=True, gain=gain)


@pytest.fixture
def stand_in(monkeypatch):
    """Route the kernel paths to the stand-in extension, for CPU tensors too."""
    module = types.SimpleNamespace(bias_act=stand_in_bias_act, upfirdn2d=stand_in_upfirdn2d)
    monkeypatch.setattr(custom_ops, "_extension", module)
    monkeypatch.setattr(custom_ops, "kernels_for", lambda op, *tensors: module)
    return module


def rand(shape, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, dtype=torch.float64, generator=gen) * scale).requires_grad_(True)


@pytest.mark.parametrize("act", ACTS)
def test_stand_in_bias_act_gradients(stand_in, act):
    x, b = rand([2, 3, 4], 0, 2), rand([3], 1)
    gain, clamp = 1.3, 1.1
    fn = lambda x, b: ba.bias_act(x, b, dim=1, act=act, alpha=0.1, gain=gain, clamp=clamp)  # noqa: E731
    ref = lambda x, b: ba.bias_act(x, b, 1, act, 0.1, gain, clamp, impl="ref")  # noqa: E731
    torch.testing.assert_close(fn(x, b), ref(x, b), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_stand_in_bias_act_matches_reference_double_backward(stand_in):
    x, b = rand([4, 5, 3, 3], 2, 2), rand([5], 3)
    grads = []
    for impl in (None, "ref"):
        y = ba.bias_act(x, b, act="swish", gain=0.7, clamp=0.9, impl=impl)
        (dx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
        grads.append(torch.autograd.grad((dx**2).sum(), [x, b]))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


UPFIRDN_CASES = [
    dict(up=1, down=1, padding=[1, 2, 0, 1], f=[[1, 2, 1], [0, 1, 3]], flip_filter=False),
    dict(up=2, down=1, padding=[2, 1, 1, 2], f=[1, 3, 3, 1], flip_filter=True),
    dict(up=1, down=2, padding=[1, 1, 2, 0], f=[[1, 2], [3, 4], [5, 6]], flip_filter=True),
    dict(
        up=[3, 2],
        down=[2, 3],
        padding=[-1, 2, 3, -2],
        f=[[1, -2, 3], [2, 1, 1], [0, 1, 4]],
        flip_filter=False,
    ),
    dict(up=2, down=2, padding=0, f=[1, 2, 5, 3, 1], flip_filter=False),
    dict(up=1, down=1, padding=[0, 3, 2, 1], f=[[0, 2, -1, 1]], flip_filter=True),
]


@pytest.mark.parametrize("case", UPFIRDN_CASES)
def test_stand_in_upfirdn2d_gradients(stand_in, monkeypatch, case):
    monkeypatch.setattr(fir, "default_impl", "auto")
    x = rand([1, 2, 5, 6], 4)
    f = torch.tensor(case["f"], dtype=torch.float32)
    args = dict(up=case["up"], down=case["down"], padding=case["padding"], gain=1.7)
    args["flip_filter"] = case["flip_filter"]
    fn = lambda x: fir.upfirdn2d(x, f, **args)  # noqa: E731
    expected = fir.upfirdn2d(x, f, impl="ref", **args)
    torch.testing.assert_close(fn(x), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_stand_in_filtered_lrelu_matches_reference(stand_in):
    x, b = rand([1, 2, 4, 5], 5), rand([2], 6)
    fu = fir.setup_filter([1, 3, 3, 1])
    fd = fir.setup_filter([1, 2, 5, 3, 2, 1, 1, 1], separable=True)
    args = dict(up=2, down=2, padding=[3, 2, 4, 1], gain=math.sqrt(2), slope=0.2, clamp=1.5)
    fn = lambda x, b: flr.filtered_lrelu(x, fu, fd, b, **args)  # noqa: E731
    expected = flr.filtered_lrelu(x, fu, fd, b, impl="ref", **args)
    torch.testing.assert_close(fn(x, b), expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_stand_in_filtered_lrelu_without_filters(stand_in):
    x = rand([1, 2, 6, 6], 7)
    args = dict(up=1, down=2, padding=0, gain=2.0, slope=1.0, clamp=None)
    got = flr.filtered_lrelu(x, None, None, None, **args)
    expected = flr.filtered_lrelu(x, None, None, None, impl="ref", **args)
    torch.testing.assert_close(got, expected)


def test_transposed_padding_by_hand():
    # 5 samples, 3 taps, no resampling, padding 1 each side: the gradient pads 1 and 1.
    assert fir._transposed_padding(5, 3, 1, 1, 1, 1) == (1, 1)
    # Upsampling by 2 with 4 taps and padding (2, 1) gives 10 + 3 - 4 + 1 = 10 outputs. The
    # gradient pads them by 4 - 1 - 2 = 1 in front and by 1 behind, so keeping every 2nd
    # of its (12 - 4) + 1 filtered samples gives back 5.
    assert fir._transposed_padding(5, 4, 2, 1, 2, 1) == (1, 1)


# ----------------------------------------------------------------------------
# The CUDA sources compile (here without linking: this machine may have no GPU).


def compile_command(source, output, stub_dir):
    """Return the command that compiles `source` into the object file `output`."""
    include = [f"-I{path}" for path in torch.utils.cpp_extension.include_paths()]
    include += [f"-I{custom_ops.SOURCE_DIR}", f"-I{stub_dir}"]
    if source.endswith(".cpp"):
        python_include = sysconfig.get_paths()["include"]
        flags = ["-std=c++20", "-fPIC", "-DTORCH_EXTENSION_NAME=dmd_ops", f"-I{python_include}"]
        return ["c++", "-c", source, "-o", output, *flags, *include]
    flags = ["-std=c++20", "--expt-relaxed-constexpr", "-gencode=arch=compute_80,code=sm_80"]
    flags += [f"-D__CUDA_NO_{name}__" for name in ("HALF_OPERATORS", "HALF_CONVERSIONS")]
    return ["nvcc", "-c", source, "-o", output, *flags, *include]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("nvcc") is None or shutil.which("c++") is None,
    reason="nvcc (CUDA toolkit) or the host compiler c++ is not installed",
)
def test_sources_compile(tmp_path):
    """Compile every source to an object file, in parallel. The CPU wheel of torch lacks
    the generated header c10/cuda/impl/cuda_cmake_macros.h, so a stand-in defines its one
    macro."""
    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    jobs = []
    for name in custom_ops.SOURCES:
        output = str(tmp_path / (name + ".o"))
        command = compile_command(os.path.join(custom_ops.SOURCE_DIR, name), output, tmp_path)
        jobs.append((name, output, subprocess.Popen(command, stderr=subprocess.PIPE, text=True)))
    for name, output, process in jobs:
        _, errors = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name} failed to compile:\n{errors[-4000:]}"
        assert os.path.getsize(output) > 0


# ----------------------------------------------------------------------------
# The kernels on a GPU. Every VALIDATED flag stays False until these pass on one.

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the CUDA kernels need a CUDA device"
)


@pytest.fixture
def kernels(monkeypatch):
    custom_ops._policy = "cuda"
    return custom_ops.load_extension()


def cuda_rand(shape, seed, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    return x.to(device=CUDA, dtype=dtype).requires_grad_(True)


@needs_cuda
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cuda_bias_act(kernels, act, dim):
    rng = np.random.default_rng(ACTS.index(act) * 3 + dim)
    shape = [int(n) for n in rng.integers(1, 7, size=3)]
    x = cuda_rand(shape, 0, scale=3)
    b = cuda_rand([shape[dim]], 1)
    gain = float(rng.uniform(0.5, 2))
    for clamp in (None, float(rng.uniform(0.2, 1.5))):
        args = dict(dim=dim, act=act, alpha=0.15, gain=gain, clamp=clamp)
        torch.testing.assert_close(ba.bias_act(x, b, **args), ba.bias_act(x, b, impl="ref", **args))
        fn = lambda x, b: ba.bias_act(x, b, **args)  # noqa: E731, B023
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_cuda_bias_act_low_precision(kernels, dtype):
    x, b = cuda_rand([4, 16, 8, 8], 2, dtype, 2), cuda_rand([16], 3, torch.float32)
    for act in ACTS:
        got = ba.bias_act(x, b, act=act, clamp=256)
        expected = ba.bias_act(x, b, act=act, clamp=256, impl="ref")
        assert got.dtype == dtype
        tol = 1e-2 if dtype == torch.float16 else 1e-5
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


@needs_cuda
@pytest.mark.parametrize("seed", range(6))
def test_cuda_upfirdn2d(kernels, seed):
    rng = np.random.default_rng(seed)
    up = [int(v) for v in rng.integers(1, 4, size=2)]
    down = [int(v) for v in rng.integers(1, 4, size=2)]
    padding = [int(v) for v in rng.integers(-1, 5, size=4)]
    taps = rng.normal(size=[int(rng.integers(1, 7)), int(rng.integers(1, 7))])
    f = torch.tensor(taps if seed % 2 else taps[0], dtype=torch.float32, device=CUDA)
    x = cuda_rand([2, 3, int(rng.integers(6, 12)), int(rng.integers(6, 12))], seed)
    args = dict(up=up, down=down, padding=padding, flip_filter=bool(seed % 3), gain=1.5)
    fn = lambda x: fir.upfirdn2d(x, f, **args)  # noqa: E731
    torch.testing.assert_close(fn(x), fir.upfirdn2d(x, f, impl="ref", **args))
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@needs_cuda
@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 2)])
def test_cuda_filtered_lrelu(kernels, up, down):
    x, b = cuda_rand([2, 4, 10, 10], up * 7 + down), cuda_rand([4], 1)
    fu = fir.setup_filter(np.hanning(12), device=CUDA, separable=True)
    fd = fir.setup_filter([1, 3, 3, 1], device=CUDA)
    args = dict(up=up, down=down, padding=[5, 4, 6, 3], gain=math.sqrt(2), slope=0.2, clamp=2.0)
    fn = lambda x, b: flr.filtered_lrelu(x, fu, fd, b, **args)  # noqa: E731
    torch.testing.assert_close(fn(x, b), flr.filtered_lrelu(x, fu, fd, b, impl="ref", **args))
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
