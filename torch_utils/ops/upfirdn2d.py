"""Upsample, pad, FIR-filter and downsample 2D images in one op, plus helpers that pick the
padding for plain filtering, 2x upsampling and 2x downsampling."""

import numbers

import numpy as np
import torch
import torch.nn.functional as F

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
    impl: str = "ref",
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
    impl:        implementation; only 'ref' (plain PyTorch ops) exists.
    Returns [N, C, (H * up_y + py0 + py1 - fh) // down_y + 1, ... likewise for W].
    """
    if impl != "ref":
        raise ValueError(f"Unknown upfirdn2d implementation impl={impl!r}; only 'ref' exists")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected images [N, C, H, W], got {_describe(x)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _get_filter_size(f)
    return _upfirdn2d_ref(
        x,
        f,
        up=_parse_scaling(up),
        down=_parse_scaling(down),
        padding=_parse_padding(padding),
        flip_filter=flip_filter,
        gain=gain,
    )


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
    fw, fh = _get_filter_size(f)
    if x.shape[2] < fh or x.shape[3] < fw:
        raise ValueError(
            f"upfirdn2d: padded input {x.shape[2]}x{x.shape[3]} is smaller than the "
            f"{fh}x{fw} filter; increase the padding or the input size"
        )

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


# ----------------------------------------------------------------------------
# Wrappers that choose the padding so that the output size is a simple multiple of the
# input size for any filter length.


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="ref") -> torch.Tensor:
    """Filter images [N, C, H, W] with `f`; with padding=0 the output is [N, C, H, W].
    `padding` (int, [x, y] or [x0, x1, y0, y1]) adds to the padding that keeps the size."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="ref") -> torch.Tensor:
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


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="ref") -> torch.Tensor:
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
