"""2D convolution combined with FIR-filtered upsampling or downsampling."""

import torch
import torch.nn.functional as F

from . import upfirdn2d as fir
from .upfirdn2d import _get_filter_size, _parse_padding

# ----------------------------------------------------------------------------


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """Run conv2d or conv_transpose2d so that flip_weight=True always means correlation with
    `w` (what conv2d computes) and flip_weight=False a true convolution.

    conv_transpose2d convolves, so it needs flipped taps for flip_weight=True. With
    flip_weight=False it takes `w` as is, which makes flip_weight=False the cheaper choice
    for upsampling layers whose weights are learned anyway.
    """
    kh, kw = w.shape[2:]
    flip = flip_weight if transpose else not flip_weight
    if flip and (kh > 1 or kw > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _transpose_grouped_weight(w, groups):
    """Rearrange conv2d weights [out, in / groups, kh, kw] into the conv_transpose2d layout
    [in, out / groups, kh, kw] for the same grouped mapping from inputs to outputs."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
    w = w.transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)


def _check_args(x, w, f, up, down, groups):
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError(f"conv2d_resample: expected input x [N, C, H, W], got {fir._describe(x)}")
    if not (isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype):
        raise ValueError(
            f"conv2d_resample: expected weight w [out, in / groups, kh, kw] with dtype "
            f"{x.dtype}, got {fir._describe(w)}" + (f" of {w.dtype}" if torch.is_tensor(w) else "")
        )
    if f is not None and not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        raise ValueError("conv2d_resample: f must be None or a 1D/2D filter from setup_filter()")
    if f is not None and f.dtype != torch.float32:
        raise ValueError(f"conv2d_resample: filter f must be float32, got {f.dtype}")
    for name, factor in (("up", up), ("down", down)):
        if not (isinstance(factor, int) and factor >= 1):
            raise ValueError(f"conv2d_resample: {name}={factor!r} must be an integer >= 1")
    if not (isinstance(groups, int) and groups >= 1 and w.shape[0] % groups == 0):
        raise ValueError(
            f"conv2d_resample: groups={groups!r} must be a positive divisor of the "
            f"{w.shape[0]} output channels"
        )
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(
            f"conv2d_resample: input has {x.shape[1]} channels but weight {list(w.shape)} "
            f"with groups={groups} expects {w.shape[1] * groups}"
        )


# ----------------------------------------------------------------------------


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding=0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve images with `w`, with optional FIR-filtered up- or downsampling.

    The result equals this composition, computed with cheaper but equivalent steps:
        up > 1:     t = upfirdn2d(x, f, up=up, padding=P, gain=up**2); y = conv2d(t, w),
                    then y = upfirdn2d(y, f, down=down) if down > 1.
        down > 1:   t = upfirdn2d(x, f, padding=P); y = conv2d(t, w, stride=down).
        otherwise:  y = conv2d(x zero-padded by P, w).
    P is `padding` plus the padding that upsample2d() and downsample2d() add for the filter,
    for example P = padding + [2, 1, 2, 1] for up=2 and f=[1,3,3,1] (4x4). So all zero
    padding is applied once, to the (zero-inserted) input.
    NOTE: this is not upsample2d() followed by conv2d(padding=...). That composition pads
    the filtered image with zeros and differs in the outermost output pixels.
    With flip_weight=False, `w` is flipped first (a true convolution instead of conv2d's
    correlation), which is cheaper for up > 1.

    x:           input [N, in, H, W].
    w:           weight [out, in / groups, kh, kw], same dtype as x.
    f:           float32 FIR filter from setup_filter(), or None for no filtering.
    up, down:    integer resampling factors (1 = none).
    padding:     zero padding of the convolution input, an int, [x, y] or [x0, x1, y0, y1],
                 counted in upsampled pixels.
    groups:      conv2d groups.
    flip_weight: False flips `w` before use.
    flip_filter: correlate with `f` instead of convolving (the same for symmetric filters).
    Returns [N, out, H', W'], for example [N, out, H * up, W * up] for up > 1 with
    padding=kh // 2 and an odd kh.
    """
    _check_args(x, w, f, up, down, groups)
    kh, kw = w.shape[2:]
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Padding for the filter taps, the same amounts that upsample2d() and downsample2d() add.
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]
    args = dict(groups=groups, flip_weight=flip_weight, flip_filter=flip_filter)

    if up > 1:
        return _conv_up(x, w, f, up, down, pad, **args)
    if down > 1:
        return _conv_down(x, w, f, down, pad, **args)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = fir.upfirdn2d(x, None, padding=pad)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


def _conv_down(x, w, f, down, pad, groups, flip_weight, flip_filter):
    """Downsample by `down`: filter, then a strided convolution."""
    kh, kw = w.shape[2:]
    if kh == 1 and kw == 1:
        # A 1x1 convolution commutes with the subsampling, so subsample first.
        x = fir.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    x = fir.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
    return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)


def _conv_up(x, w, f, up, down, pad, groups, flip_weight, flip_filter):
    """Upsample by `up`, optionally followed by downsampling by `down`."""
    kh, kw = w.shape[2:]
    if kh == 1 and kw == 1 and down == 1:
        # A 1x1 convolution commutes with zero insertion, so convolve at the low resolution.
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return fir.upfirdn2d(x, f, up=up, padding=pad, gain=up * up, flip_filter=flip_filter)

    # A stride-`up` transposed convolution equals zero insertion followed by a full
    # convolution. That is a valid convolution of the zero-inserted image padded by kw - 1 on
    # the left and kw - up on the right, since zero insertion leaves up - 1 trailing zeros.
    # The filter pass adds the remaining padding. This is exact because a full convolution
    # is zero outside its support, so padding its output equals padding its input.
    px0, px1, py0, py1 = pad
    px0, px1 = px0 - (kw - 1), px1 - (kw - up)
    py0, py1 = py0 - (kh - 1), py1 - (kh - up)

    # Let conv_transpose2d crop what both sides would crop anyway.
    crop_x = max(min(-px0, -px1), 0)
    crop_y = max(min(-py0, -py1), 0)
    w_transposed = _transpose_grouped_weight(w, groups)
    x = _conv(
        x, w_transposed, stride=up, padding=[crop_y, crop_x], groups=groups, transpose=True,
        flip_weight=flip_weight,
    )  # fmt: skip
    pad = [px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y]
    x = fir.upfirdn2d(x, f, padding=pad, gain=up * up, flip_filter=flip_filter)
    if down > 1:
        x = fir.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
