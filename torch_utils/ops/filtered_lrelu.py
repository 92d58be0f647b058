"""Filtered leaky ReLU: bias, FIR upsampling, leaky ReLU, gain, clamp and FIR downsampling in
one call. It is the nonlinearity of every StyleGAN3 synthesis layer: running the leaky ReLU
at a higher sampling rate between two low-pass filters keeps the aliasing it causes small."""

import math
import numbers

import torch
import torch.nn.functional as F

from torch_utils import custom_ops

from . import bias_act as ba
from . import upfirdn2d as fir
from .upfirdn2d import _get_filter_size, _parse_padding

# ----------------------------------------------------------------------------


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding=0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """Add a bias, upsample, apply leaky ReLU, gain and clamp, then downsample.

    The steps, in order:
    1. Add `b` per channel.
    2. Insert up-1 zeros after every sample along each axis, pad by `padding` (negative
       entries crop) and convolve with `fu` scaled by up**2. The scale keeps the DC level of
       the input when `fu` sums to 1.
    3. Apply leaky ReLU with negative slope `slope`, multiply by `gain` and clamp to
       [-clamp, clamp].
    4. Convolve with `fd` and keep every down-th sample, starting at 0.

    x:           images [N, C, H, W], floating point.
    fu:          upsampling filter from upfirdn2d.setup_filter(): 2D [fh, fw], separable 1D
                 [fw], or None for no filtering (the 1x1 identity).
    fd:          downsampling filter in the same forms as `fu`.
    b:           bias [C], or None for no bias.
    up:          upsampling factor, an int >= 1.
    down:        downsampling factor, an int >= 1.
    padding:     int, [x, y] or [x0, x1, y0, y1], in upsampled pixels, applied before `fu`.
    gain:        scale applied after the leaky ReLU.
    slope:       negative slope of the leaky ReLU.
    clamp:       bound applied after the gain, >= 0; None disables clamping.
    flip_filter: correlate with `fu` and `fd` instead of convolving, as in upfirdn2d().
    impl:        'ref' for upfirdn2d() and plain PyTorch ops, or None to follow the --ops
                 policy of torch_utils.custom_ops, which picks the CUDA kernels or 'ref' for
                 CUDA tensors.
    Returns [N, C, out_h, out_w] in the dtype of `x`, with each size as given by
    filtered_lrelu_output_size().
    """
    _check_args(x, fu, fd, b, up, down, gain, slope, clamp, flip_filter, impl)
    up, down, gain, slope = int(up), int(down), float(gain), float(slope)
    padding = _parse_padding(padding)
    out_h, out_w = _output_shape(x, fu, fd, up, down, padding)
    if impl is None and _use_kernels(x, fu, fd, b):
        x = _filtered_lrelu_cuda(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
        return _check_output(x, out_h, out_w)
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)

    # lrelu(g * t) == g * lrelu(t) for g > 0, so a positive gain rides on the upsampling
    # filter taps, which saves one elementwise pass over the largest tensor of the op.
    upsample = not (fu is None and up == 1 and not any(padding))
    fold_gain = upsample and gain > 0
    if upsample:
        up_gain = up**2 * gain if fold_gain else up**2
        x = fir.upfirdn2d(x, fu, up=up, padding=padding, flip_filter=flip_filter, gain=up_gain)
    if slope != 1:  # slope 1 is the identity, as in the StyleGAN3 toRGB layers.
        x = F.leaky_relu(x, slope)
    if not fold_gain and gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)

    if fd is None:
        x = x[:, :, ::down, ::down]
    else:
        x = fir.upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    return _check_output(x, out_h, out_w)


def _check_output(x, out_h, out_w):
    if x.shape[2:] != (out_h, out_w):
        raise RuntimeError(
            f"filtered_lrelu: produced {x.shape[2]}x{x.shape[3]} images but expected "
            f"{out_h}x{out_w}; this is a bug in filtered_lrelu"
        )
    return x


def _use_kernels(x, fu, fd, b) -> bool:
    """Return whether the --ops policy picks the CUDA kernels for these tensors. Filters
    that need a gradient stay on the reference path, which differentiates them."""
    filters = [f for f in (fu, fd) if f is not None]
    if any(f.requires_grad for f in filters):
        return False
    tensors = [x, *filters] + ([] if b is None else [b])
    return custom_ops.kernels_for("filtered_lrelu", *tensors) is not None


def _filtered_lrelu_cuda(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter):
    """Run the steps of filtered_lrelu() as kernel calls: bias, upsampling filter, then
    leaky ReLU with gain and clamp, then the downsampling filter. Unlike the reference path it
    does not fold the gain into the upsampling taps, so results agree to rounding only."""
    if b is not None:
        x = ba.bias_act_cuda(x, b, 1, "linear", 0.0, 1.0, -1.0)
    if not (fu is None and up == 1 and not any(padding)):
        taps = fu if fu is not None else torch.ones([1, 1], device=x.device)
        x = fir.upfirdn2d_cuda(x, taps, (up, up), (1, 1), padding, flip_filter, up**2)
    clamp = -1.0 if clamp is None else float(clamp)
    x = ba.bias_act_cuda(x, None, 1, "lrelu", slope, gain, clamp)
    if fd is None:
        return x[:, :, ::down, ::down]
    return fir.upfirdn2d_cuda(x, fd, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1.0)


def filtered_lrelu_output_size(
    in_size: int, up: int, down: int, padding, fu_size: int, fd_size: int
) -> int:
    """Return the output size of filtered_lrelu() along one axis.

    in_size: input size along the axis (H or W).
    padding: int for both sides, or (p0, p1) for the start and end of the axis.
    fu_size: taps of `fu` along the axis, 1 when `fu` is None.
    fd_size: taps of `fd` along the axis, 1 when `fd` is None.
    The result is below 1 when the input is too small for the filters and padding.
    """
    p0, p1 = (padding, padding) if isinstance(padding, numbers.Integral) else padding
    return (in_size * up + p0 + p1 - (fu_size - 1) - (fd_size - 1) + (down - 1)) // down


# ----------------------------------------------------------------------------


def _output_shape(x, fu, fd, up, down, padding) -> tuple[int, int]:
    """Return (out_h, out_w), or raise ValueError naming the sizes when either is < 1."""
    px0, px1, py0, py1 = padding
    fuw, fuh = _get_filter_size(fu)
    fdw, fdh = _get_filter_size(fd)
    out_h = filtered_lrelu_output_size(x.shape[2], up, down, (py0, py1), fuh, fdh)
    out_w = filtered_lrelu_output_size(x.shape[3], up, down, (px0, px1), fuw, fdw)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"filtered_lrelu: output size would be {out_h}x{out_w} (H x W) for input "
            f"{x.shape[2]}x{x.shape[3]}, up={up}, down={down}, padding [x0, x1, y0, y1]="
            f"{list(padding)}, fu {fuh}x{fuw} and fd {fdh}x{fdw} taps; increase the input "
            f"size or the padding"
        )
    return out_h, out_w


def _check_args(x, fu, fd, b, up, down, gain, slope, clamp, flip_filter, impl):
    if impl not in ("ref", None):
        raise ValueError(
            f"Unknown filtered_lrelu implementation impl={impl!r}; only 'ref' exists, and "
            f"None follows the --ops policy"
        )
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        raise ValueError(
            f"filtered_lrelu: expected floating-point images x [N, C, H, W], got {_describe(x)}"
        )
    for name, f in (("fu", fu), ("fd", fd)):
        if f is not None and not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
            raise ValueError(
                f"filtered_lrelu: invalid filter {name}: expected None or a 1D [fw] or 2D "
                f"[fh, fw] tensor from upfirdn2d.setup_filter(), got {_describe(f)}"
            )
    if b is not None and not (
        isinstance(b, torch.Tensor) and b.ndim == 1 and b.shape[0] == x.shape[1]
    ):
        raise ValueError(
            f"filtered_lrelu: invalid bias b: expected None or a tensor of shape "
            f"[{x.shape[1]}] (one entry per channel of x), got {_describe(b)}"
        )
    for name, value in (("up", up), ("down", down)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"filtered_lrelu: invalid {name}={value!r}: expected an int >= 1")
    for name, value in (("gain", gain), ("slope", slope)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value)):
            raise ValueError(f"filtered_lrelu: invalid {name}={value!r}: expected a finite number")
    if clamp is not None and not (isinstance(clamp, numbers.Real) and clamp >= 0):
        raise ValueError(
            f"filtered_lrelu: invalid clamp={clamp!r}: expected None (no clamping) or a number >= 0"
        )
    if not isinstance(flip_filter, bool):
        raise ValueError(f"filtered_lrelu: invalid flip_filter={flip_filter!r}: expected a bool")


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"
