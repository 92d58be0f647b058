"""Upsample, pad, FIR-filter and downsample 2D images in one op, plus helpers that pick the
padding for plain filtering, 2x upsampling and 2x downsampling.

The op has two paths. 'ref' runs single-channel conv2d. 'matmul' writes each axis's whole
step as one banded matrix and multiplies by it, which is much faster on the CPU but only
works for separable filters: 1D taps, or 2D taps of rank 1 such as setup_filter()'s outer
products. Both are plain PyTorch ops, so autograd differentiates them to any order."""

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import custom_ops

# Implementation that upfirdn2d() and its wrappers use when a caller passes impl=None, as every
# op and network in this repository does. Set it to 'ref' or 'matmul' to force one path
# everywhere, for example to time or compare them.
default_impl = "auto"

_IMPLS = ("auto", "ref", "matmul")

# Largest input size per filter tap, along each axis, at which impl='auto' uses the matmul
# path. See _prefer_matmul() for the measurements behind it.
_MATMUL_SAMPLES_PER_TAP = 128

# ----------------------------------------------------------------------------
# Argument parsing.


def _parse_scaling(scaling) -> tuple[int, int]:
    """Return (sx, sy) from an int or an [sx, sy] pair."""
    if isinstance(scaling, numbers.Integral):
        scaling = [scaling, scaling]
    if not (isinstance(scaling, (list, tuple)) and len(scaling) == 2):
        raise ValueError(f"Invalid scaling factor {scaling!r}: expected an int or [x, y]")
    if not all(isinstance(s, numbers.Integral) and s >= 1 for s in scaling):
        raise ValueError(f"Invalid scaling factor {scaling!r}: factors must be integers >= 1")
    return int(scaling[0]), int(scaling[1])


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """Return (px0, px1, py0, py1) from an int, an [x, y] pair or [x0, x1, y0, y1]."""
    if isinstance(padding, numbers.Integral):
        padding = [padding, padding]
    if not (isinstance(padding, (list, tuple)) and len(padding) in (2, 4)):
        raise ValueError(
            f"Invalid padding {padding!r}: expected an int, [x, y] or [x0, x1, y0, y1]"
        )
    if not all(isinstance(p, numbers.Integral) for p in padding):
        raise ValueError(f"Invalid padding {padding!r}: entries must be integers")
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _check_impl(impl, name: str) -> str:
    """Return `impl` if it is a known implementation, else raise ValueError naming the setting
    `name`."""
    if impl not in _IMPLS:
        raise ValueError(
            f"Unknown upfirdn2d implementation {name}={impl!r}; only 'ref', 'matmul' and "
            "'auto' exist"
        )
    return impl


def _get_filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return (fw, fh) of a 2D filter [fh, fw], a separable 1D filter [fw] or None (1x1)."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError("Invalid FIR filter: expected a 1D or 2D tensor from setup_filter()")
    fw = f.shape[-1]
    fh = f.shape[0]
    return fw, fh


# ----------------------------------------------------------------------------


def setup_filter(
    f,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Convert filter taps into the float32 tensor that upfirdn2d() expects.

    f:           taps as a list, array or tensor: a scalar, 1D [fw] or 2D [fh, fw].
                 None means the 1x1 identity filter.
    device:      device of the returned tensor.
    normalize:   divide by the sum of the taps so that the filter has unit DC gain.
    flip_filter: flip the taps along every axis.
    gain:        overall gain applied to the filter (split evenly between the two passes
                 of a separable filter).
    separable:   keep a 1D filter 1D (two 1D passes) instead of taking its outer product.
                 None keeps 1D filters with 8 or more taps separable and expands shorter
                 ones, because a single small 2D pass is faster than two 1D passes.
    Returns float32 [fh, fw], or [fw] for a separable filter.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(np.asarray(f, dtype=np.float32) if not torch.is_tensor(f) else f)
    f = f.to(torch.float32)
    if f.ndim == 0:
        f = f[np.newaxis]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"Invalid FIR filter of shape {list(f.shape)}: expected 1D or 2D taps")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: separable=True needs 1D taps")

    if normalize:
        total = f.sum()
        if total == 0:
            raise ValueError("setup_filter: cannot normalize a filter whose taps sum to zero")
        f = f / total
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


# ----------------------------------------------------------------------------


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up=1,
    down=1,
    padding=0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, filter and downsample a batch of 2D images.

    In order: insert up-1 zeros after every sample along each axis, pad with zeros (negative
    padding crops), convolve with the FIR filter `f` (a true convolution, or a correlation
    when flip_filter=True), multiply by `gain`, and keep every down-th sample starting at 0.

    x:           images [N, C, H, W].
    f:           float filter [fh, fw], separable 1D filter [fw] (applied along both axes),
                 or None for the identity. Build it with setup_filter().
    up:          upsampling factor, an int or [x, y].
    down:        downsampling factor, an int or [x, y].
    padding:     an int, [x, y] or [x0, x1, y0, y1], counted in upsampled pixels.
    flip_filter: correlate with `f` instead of convolving (the same for symmetric filters).
    gain:        overall output scale.
    impl:        'ref' (single-channel conv2d), 'matmul' (banded matrices for 1D and rank-1
                 2D filters, conv2d for other 2D filters, for f=None and for any 2D filter
                 inside torch.compile), 'auto' (like
                 'matmul' on the CPU for sizes where it is faster, see _prefer_matmul(),
                 on CUDA the kernel when the --ops policy of torch_utils.custom_ops picks
                 it and `f` needs no gradient, else like 'ref'), or None for the
                 module-level `default_impl`.
    Returns [N, C, (H * up_y + py0 + py1 - fh) // down_y + 1, ... likewise for W].
    """
    if impl is None:
        impl = _check_impl(default_impl, "upfirdn2d.default_impl")
    _check_impl(impl, "impl")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected images [N, C, H, W], got {_describe(x)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = _get_filter_size(f)
    up, down, padding = _parse_scaling(up), _parse_scaling(down), _parse_padding(padding)
    px0, px1, py0, py1 = padding
    padded_h = x.shape[2] * up[1] + py0 + py1
    padded_w = x.shape[3] * up[0] + px0 + px1
    if padded_h < fh or padded_w < fw:
        raise ValueError(
            f"upfirdn2d: padded input {max(padded_h, 0)}x{max(padded_w, 0)} is smaller than "
            f"the {fh}x{fw} filter; increase the padding or the input size"
        )

    args = dict(up=up, down=down, padding=padding, flip_filter=flip_filter)
    if impl == "auto" and not f.requires_grad:
        if custom_ops.kernels_for("upfirdn2d", x, f) is not None:
            return upfirdn2d_cuda(x, f, gain=gain, **args)
    if (impl == "matmul" or (impl == "auto" and _prefer_matmul(x, f))) and not (
        f.ndim == 2 and torch.compiler.is_compiling()
    ):
        # Under torch.compile a 2D filter takes the conv2d path: the rank-1 test of
        # _separable_factors() reads tensor values, which would split the compiled graph at
        # every filtering (a graph break) and recompile the rest for each feature-map size.
        factors = _separable_factors(f.to(torch.promote_types(f.dtype, x.dtype)), gain)
        if factors is not None:
            return _upfirdn2d_matmul(x, *factors, **args)
    return _upfirdn2d_ref(x, f, gain=gain, **args)


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {list(x.shape)}"
    return f"a {type(x).__name__}"


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    N, C, H, W = x.shape

    # Zero insertion: [N, C, H, W] -> [N, C, H * upy, W * upx].
    if upx > 1 or upy > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(N, C, H * upy, W * upx)

    # Zero padding where positive, cropping where negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # conv2d correlates, so flip the taps for a true convolution.
    f = f.to(device=x.device, dtype=x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))

    # Filter each channel as its own image: [N, C, H, W] -> [N * C, 1, H, W]. A depthwise
    # conv2d (groups=C) is the obvious alternative, but in NVIDIA's reference implementation,
    # which uses it, the double backward that R1 and path length regularization need made the
    # whole R1 phase 15-20x slower on a loaded 2-core CPU (torch 2.13).
    # NOTE: the isolated op shows no clear winner. We timed the double backward of a 4x4
    # filter on [8, 128, 32, 32] (torch 2.13 CPU, 2 threads, medians of 3). On an idle
    # machine, depthwise took 23 ms and this layout 209 ms at stride 1, and 12 ms and 16 ms
    # at stride 2. With two busy processes on the two cores, one stride-2 run took 2.4-5.4 s
    # with depthwise and 16 ms with this layout, but a rerun was too noisy to rank them.
    h = x.shape[2]
    w = x.shape[3]
    x = x.reshape(N * C, 1, h, w)
    if f.ndim == 2:
        x = F.conv2d(x, f[np.newaxis, np.newaxis], stride=(downy, downx))
    else:
        x = F.conv2d(x, f[np.newaxis, np.newaxis, np.newaxis, :], stride=(1, downx))
        x = F.conv2d(x, f[np.newaxis, np.newaxis, :, np.newaxis], stride=(downy, 1))
    return x.reshape(N, C, x.shape[2], x.shape[3])


def _prefer_matmul(x, f) -> bool:
    """Return whether impl='auto' takes the matmul path: on the CPU, for inputs of at most 128
    samples per filter tap along both axes.

    Per output sample and axis, the banded matrix costs one multiply-add per input sample and
    the convolution one per tap. GEMM runs so much faster than single-channel conv2d on the
    CPU that the matmul path still wins at many times the work. The passes of
    benchmarks/fir.py on 2 shared cores (torch 2.13 CPU, min of 2-3 runs) took, in ms,
    ref -> matmul:
      StyleGAN3 12 taps, [8, 32, 54, 54] up 2:    fwd 137 -> 3.9, double bwd 1236 -> 23
      StyleGAN3 12 taps, [8, 4, 306, 306] down 2: fwd 33 -> 8.0, double bwd 128 -> 33
      StyleGAN2 4x4, [8, 512, 8, 8] down 2:       fwd 0.42 -> 0.41, double bwd 20 -> 1.5
      StyleGAN2 4x4, [8, 64, 256, 256] padding 2: fwd 763 -> 264, double bwd 7547 -> 1497
      4x4, [2, 4, 512, 512] padding 2:            fwd 46 -> 24, fwd+bwd 199 -> 49
      4x4, [1, 4, 1024, 1024] padding 2:          fwd 98 -> 91, fwd+bwd 382 -> 180
      12 taps, [1, 4, 1024, 1024] down 2:         fwd 71 -> 37, fwd+bwd 92 -> 71
    The forward pass of the 4-tap filter nearly ties at 1024 = 256 samples per tap, so the
    limit of 128 samples per tap keeps a margin. Per output sample the matrix work grows with
    the input size while the convolution's stays fixed, so larger inputs stay on conv2d.
    NOTE: inputs above 1024 samples, which the limit allows for 12 or more taps, are untimed.
    Other devices keep conv2d because the matmul path has not been timed there yet."""
    if x.device.type != "cpu":
        return False
    fw, fh = _get_filter_size(f)
    return x.shape[3] <= _MATMUL_SAMPLES_PER_TAP * fw and x.shape[2] <= _MATMUL_SAMPLES_PER_TAP * fh


def _separable_factors(f, gain):
    """Split `f` and `gain` into 1D taps and a scale per axis, ((fx, gain_x), (fy, gain_y)),
    with outer(fy, fx) * gain_y * gain_x == f * gain. Return None for a 2D filter of rank
    above 1, for the 1x1 filter, which only pads and resamples, and for a 2D filter that
    requires grad, whose gradient would reach only the row and column of the factors."""
    if f.ndim == 1:
        # Each axis gets sqrt(|gain|), as the conv path splits a positive gain, and the x axis
        # also gets the sign.
        scale = abs(gain) ** 0.5
        return (f, math.copysign(scale, gain)), (f, scale)
    if f.numel() == 1 or f.requires_grad:
        return None
    # A rank-1 filter is the outer product of the column and the row through its largest
    # tap. The tolerance allows rounding at the precision of f.dtype, so a float32 outer
    # product from setup_filter() passes. For float64 images, upfirdn2d() promotes f to
    # float64, where the float32 rounding of taps such as outer([1, 2, 5, 3]) / 121 shows.
    i, j = divmod(int(f.abs().argmax()), f.shape[1])
    fy = f[:, j]
    fx = f[i, :] / f[i, j]
    tol = 8 * torch.finfo(f.dtype).eps * float(f[i, j].abs())
    if not torch.allclose(torch.outer(fy, fx), f, rtol=0, atol=tol):
        return None
    return (fx, gain), (fy, 1.0)


def _axis_matrix(taps, scale, size, up, down, pad0, pad1, flip_filter, dtype, device):
    """Build A [out, size] so that A @ v does zero insertion, padding, FIR filtering with
    taps * scale and decimation of v [size] along one axis. Here out = (size * up + pad0 +
    pad1 - k) // down + 1 for k taps."""
    k = taps.shape[0]
    out = (size * up + pad0 + pad1 - k) // down + 1
    g = taps.to(device=device, dtype=dtype) * scale
    if not flip_filter:
        g = g.flip(0)  # A true convolution correlates with the flipped taps.
    # Output j correlates g with the padded, zero-inserted signal starting at j * down, and
    # input sample i sits at i * up + pad0 in that signal, so A[j, i] = g[i * up + pad0 -
    # j * down] wherever that index is a tap. Cropping needs no extra care because every tap
    # index of a valid output falls inside the padded signal.
    index = torch.arange(size, device=device) * up + pad0
    index = index[np.newaxis, :] - torch.arange(out, device=device)[:, np.newaxis] * down
    inside = (index >= 0) & (index < k)
    return torch.where(inside, g[index.clamp(0, k - 1)], 0)


def _upfirdn2d_matmul(x, factors_x, factors_y, up, down, padding, flip_filter):
    """Filter along W as x @ A_w^T and along H as A_h @ x, with one banded matrix per axis
    built from the (taps, scale) pairs of _separable_factors().

    The matrices are rebuilt on every call. That costs 25-100 us on the CPU, small next to
    the filtering itself, and a cache would have to track the filter's values, the device,
    the dtype and inference mode to stay correct."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    args = dict(flip_filter=flip_filter, dtype=x.dtype, device=x.device)
    matrix_w = _axis_matrix(*factors_x, x.shape[3], upx, downx, px0, px1, **args)  # [W', W]
    matrix_h = _axis_matrix(*factors_y, x.shape[2], upy, downy, py0, py1, **args)  # [H', H]
    x = torch.matmul(x, matrix_w.t())  # [N, C, H, W']
    return torch.matmul(matrix_h, x)  # [N, C, H', W']


# ----------------------------------------------------------------------------
# CUDA kernel path. The kernel takes 2D correlation taps, so a true convolution flips them
# first and a separable 1D filter runs as two passes, along W and then along H. The gradient
# of the op with respect to x is the op again with up and down swapped, the filter flipped
# and the padding transposed (_transposed_padding), so backward calls the same kernel and
# differentiates to any order.


def upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain) -> torch.Tensor:
    """Run upfirdn2d() with the CUDA kernel, with up, down and padding already parsed into
    (x, y) pairs and (x0, x1, y0, y1)."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    taps = f.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    if not flip_filter:
        taps = taps.flip(list(range(taps.ndim)))
    if taps.ndim == 2:
        params = (upx, upy, downx, downy, px0, px1, py0, py1, float(gain))
        return _Upfirdn2dCuda.apply(x, taps.contiguous(), params)
    # Separable: the W pass resamples and pads only x, the H pass only y and takes the gain.
    params_x = (upx, 1, downx, 1, px0, px1, 0, 0, 1.0)
    params_y = (1, upy, 1, downy, 0, 0, py0, py1, float(gain))
    x = _Upfirdn2dCuda.apply(x, taps[np.newaxis, :].contiguous(), params_x)
    return _Upfirdn2dCuda.apply(x, taps[:, np.newaxis].contiguous(), params_y)


def _transposed_padding(size, taps, up, down, pad0, pad1):
    """Return the padding (pad0', pad1') of the gradient op along one axis.

    The forward op reads padded position o * down + k for output o and correlation tap k,
    and padded position q contains input sample (q - pad0) / up. The gradient op upsamples the
    output gradient by `down`, pads it by (pad0', pad1'), correlates it with the reversed
    taps and keeps every up-th sample. Matching the two sums gives pad0' = taps - 1 - pad0.
    pad1' makes the gradient op's output exactly `size` samples long."""
    out = (size * up + pad0 + pad1 - taps) // down + 1
    pad0_t = taps - 1 - pad0
    pad1_t = (size - 1) * up + taps - out * down - pad0_t
    return pad0_t, pad1_t


class _Upfirdn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, taps, params):
        upx, upy, downx, downy, px0, px1, py0, py1, gain = params
        ctx.save_for_backward(taps)
        ctx.params = params
        ctx.in_size = (x.shape[2], x.shape[3])
        kernels = custom_ops.load_extension()
        return kernels.upfirdn2d(x.contiguous(), taps, *params)

    @staticmethod
    def backward(ctx, dy):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (taps,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1, gain = ctx.params
        h, w = ctx.in_size
        fh, fw = taps.shape
        tx0, tx1 = _transposed_padding(w, fw, upx, downx, px0, px1)
        ty0, ty1 = _transposed_padding(h, fh, upy, downy, py0, py1)
        params = (downx, downy, upx, upy, tx0, tx1, ty0, ty1, gain)
        dx = _Upfirdn2dCuda.apply(dy, taps.flip([0, 1]).contiguous(), params)
        return dx, None, None


# ----------------------------------------------------------------------------
# Wrappers that choose the padding so that the output size is a simple multiple of the
# input size for any filter length.


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl=None) -> torch.Tensor:
    """Filter images [N, C, H, W] with `f`; with padding=0 the output is [N, C, H, W].
    `padding` (int, [x, y] or [x0, x1, y0, y1]) adds to the padding that keeps the size."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl=None) -> torch.Tensor:
    """Upsample images [N, C, H, W] by `up` (int or [x, y]) with zero insertion and filter
    `f`; with padding=0 the output is [N, C, H * up_y, W * up_x]. The filter is scaled by
    up_x * up_y so that a constant image keeps its value."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(
        x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl
    )


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl=None) -> torch.Tensor:
    """Filter images [N, C, H, W] with `f` and keep every down-th sample (int or [x, y]);
    with padding=0 and H, W divisible by `down` the output is [N, C, H / down_y, W / down_x]."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
