"""filtered_lrelu checked against an explicit float64 numpy/scipy composition of its steps."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d as fir
from torch_utils.ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_output_size

# Filter taps by name: raw 1D or 2D taps, normalized to unit sum by both setup_filter() and
# the reference. Asymmetric taps make flip_filter visible. "lp12" is a 12-tap Kaiser-windowed
# sinc low-pass, the kind of filter that StyleGAN3 layers use for 2x resampling.
_SINC12 = np.sinc((np.arange(12) - 5.5) / 2) * np.kaiser(12, 4.0)
TAPS = {
    "none": None,
    "lp12": _SINC12,
    "asym4": np.array([1.0, 3.0, 2.0, 0.5]),
    "asym6": np.array([0.5, 1.0, 4.0, 2.0, 1.0, 3.0]),
    "2d3x4": np.array([[1.0, 2.0, 0.5, 3.0], [4.0, -1.0, 2.0, 1.0], [0.0, 1.0, 3.0, 2.0]]),
}


def _filter(name, separable=True):
    """Return the op's filter tensor: 1D taps stay separable, as setup_filter() keeps them."""
    taps = TAPS[name]
    if taps is None:
        return None
    return fir.setup_filter(taps, separable=separable if taps.ndim == 1 else None)


def _taps_2d(name):
    """Return the unit-sum 2D kernel [fh, fw] in float64, [[1]] for no filter."""
    taps = TAPS[name]
    if taps is None:
        return np.ones([1, 1])
    taps = np.asarray(taps, dtype=np.float64)
    if taps.ndim == 1:
        taps = np.outer(taps, taps)
    return taps / taps.sum()


def _convolve_valid(images, kernel):
    """Convolve every [H, W] image of [N, C, H, W] with `kernel`, keeping only full overlaps."""
    n, c = images.shape[:2]
    out = [[scipy.signal.convolve2d(images[i, j], kernel, mode="valid") for j in range(c)]
           for i in range(n)]  # fmt: skip
    return np.asarray(out)


def reference(x, b, fu, fd, up, down, padding, gain, slope, clamp, flip_filter):
    """Compose the steps on float64 numpy arrays. `fu` and `fd` are names in TAPS."""
    x = np.asarray(x, dtype=np.float64)
    if b is not None:
        x = x + np.asarray(b, dtype=np.float64).reshape(1, -1, 1, 1)
    n, c, h, w = x.shape

    # Zero insertion, then padding (positive) or cropping (negative).
    px0, px1, py0, py1 = padding
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    z = np.pad(z, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    z = z[:, :, max(-py0, 0) : z.shape[2] - max(-py1, 0), max(-px0, 0) : z.shape[3] - max(-px1, 0)]

    # flip_filter=True means correlation, which is convolution with the flipped kernel.
    ku, kd = _taps_2d(fu), _taps_2d(fd)
    if flip_filter:
        ku, kd = ku[::-1, ::-1], kd[::-1, ::-1]
    y = _convolve_valid(z, ku * up**2)
    y = np.where(y >= 0, y, y * slope) * gain
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return _convolve_valid(y, kd)[:, :, ::down, ::down]


def _random(shape, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=torch.float64, generator=gen) * scale


# (up, down, padding [x0, x1, y0, y1], fu, fd, flip_filter, gain, slope, clamp).
CASES = [
    # StyleGAN3 shapes: 12-tap filters around 2x upsampling and 2x downsampling.
    (2, 2, [11, 10, 11, 10], "lp12", "lp12", False, math.sqrt(2), 0.2, None),
    (2, 2, [11, 10, 11, 10], "lp12", "lp12", False, math.sqrt(2), 0.2, 0.4),
    (1, 2, [11, 11, 11, 11], "lp12", "lp12", False, math.sqrt(2), 0.2, None),
    (2, 1, [6, 5, 6, 5], "lp12", "lp12", False, math.sqrt(2), 0.2, None),
    (4, 2, [3, 2, 3, 2], "asym6", "lp12", False, math.sqrt(2), 0.2, None),
    (4, 4, [2, 2, 2, 2], "asym4", "asym6", True, 1.0, 0.1, None),
    # Asymmetric and negative padding, 2D and flipped filters.
    (2, 2, [4, 1, 0, 3], "2d3x4", "asym4", False, 1.5, 0.2, None),
    (2, 2, [4, 1, 0, 3], "2d3x4", "asym4", True, 1.5, 0.2, None),
    (3, 2, [-1, 2, 3, -2], "asym4", "2d3x4", True, 2.0, 0.3, 0.8),
    (1, 1, [2, 0, 1, 3], "asym4", "none", False, 1.0, 0.2, None),
    # Missing filters, gains <= 0 (which the op cannot fold into the upsampling taps) and
    # slopes that are negative or above 1.
    (1, 1, [0, 0, 0, 0], "none", "none", False, math.sqrt(2), 0.2, None),
    (2, 3, [0, 0, 0, 0], "none", "none", False, math.sqrt(2), 0.2, 0.5),
    (1, 2, [0, 0, 0, 0], "none", "asym6", False, -0.7, 0.2, 0.3),
    (1, 1, [2, -1, 0, 1], "none", "asym4", False, 1.2, 0.2, None),
    (2, 2, [1, 2, 2, 1], "asym4", "asym4", False, -0.7, 0.2, 0.3),
    (2, 2, [1, 2, 2, 1], "asym4", "asym4", False, 0.0, 0.2, None),
    (2, 2, [1, 2, 2, 1], "asym4", "asym4", False, 1.3, -0.5, None),
    (2, 1, [1, 2, 2, 1], "asym4", "none", True, 2.5, 1.5, 0.0),
    # Slope 1 (no nonlinearity), as in the StyleGAN3 toRGB layers.
    (1, 1, [0, 0, 0, 0], "none", "none", False, 1.0, 1.0, None),
    (2, 2, [1, 2, 2, 1], "asym4", "asym4", False, 0.8, 1.0, 0.5),
]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_filtered_lrelu_matches_numpy(case):
    up, down, padding, fu, fd, flip_filter, gain, slope, clamp = case
    x = _random([2, 3, 9, 8], seed=0)
    b = _random([3], seed=1, scale=0.5)
    expected = reference(x, b, fu, fd, up, down, padding, gain, slope, clamp, flip_filter)
    for separable in (True, False):
        y = filtered_lrelu(
            x, _filter(fu, separable), _filter(fd, separable), b, up=up, down=down,
            padding=padding, gain=gain, slope=slope, clamp=clamp, flip_filter=flip_filter,
        )  # fmt: skip
        assert y.dtype == torch.float64
        assert list(y.shape) == list(expected.shape), f"separable={separable}"
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_filtered_lrelu_float32_input():
    x = _random([1, 2, 6, 6], seed=2).float()
    y = filtered_lrelu(x, _filter("lp12"), _filter("lp12"), up=2, down=2, padding=[11, 10, 11, 10])
    expected = reference(x, None, "lp12", "lp12", 2, 2, [11, 10, 11, 10], math.sqrt(2), 0.2,
                         None, False)  # fmt: skip
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_filtered_lrelu_defaults_are_scaled_lrelu():
    x = _random([2, 3, 4, 5], seed=3)
    expected = np.where(x.numpy() >= 0, x.numpy(), 0.2 * x.numpy()) * math.sqrt(2)
    np.testing.assert_allclose(filtered_lrelu(x).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_filtered_lrelu_accepts_int_and_xy_padding():
    x = _random([1, 2, 5, 6], seed=4)
    f = _filter("asym4")
    expected = reference(x, None, "asym4", "asym4", 2, 2, [3, 3, 3, 3], 1.0, 0.2, None, False)
    for padding in (3, [3, 3], [3, 3, 3, 3]):
        y = filtered_lrelu(x, f, f, up=2, down=2, padding=padding, gain=1.0)
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------
# Output size, worked out by hand from
# (in * up + p0 + p1 - (fu_taps - 1) - (fd_taps - 1) + (down - 1)) // down.

SIZE_CASES = [
    # (in_size, up, down, padding, fu_size, fd_size, expected)
    (16, 2, 2, (11, 10), 12, 12, 16),  # (32 + 21 - 11 - 11 + 1) // 2 = 32 // 2
    (8, 1, 1, 0, 1, 1, 8),
    (8, 1, 2, 0, 1, 1, 4),  # (8 + 1) // 2
    (9, 1, 2, 0, 1, 1, 5),  # (9 + 1) // 2: a sample at every even index, 0 to 8
    (8, 2, 1, (3, 2), 6, 1, 16),  # 16 + 5 - 5
    (5, 4, 2, (1, 0), 8, 4, 6),  # (20 + 1 - 7 - 3 + 1) // 2 = 12 // 2
    (10, 1, 1, 2, 3, 3, 10),  # 10 + 4 - 2 - 2
    (7, 3, 2, (-1, -2), 4, 4, 6),  # (21 - 3 - 3 - 3 + 1) // 2 = 13 // 2
    (2, 1, 1, 0, 4, 1, -1),  # too small: 2 - 3
]


@pytest.mark.parametrize("case", SIZE_CASES)
def test_output_size_by_hand(case):
    *args, expected = case
    assert filtered_lrelu_output_size(*args) == expected


def test_output_shape_non_square():
    # H: (9 * 2 + 2 + 1 - 2 - 4 + 1) // 2 = 8, and W: (4 * 2 + 5 + 0 - 2 - 4 + 1) // 2 = 4.
    x = _random([1, 1, 9, 4], seed=5)
    fu = fir.setup_filter(np.ones([3, 3]))
    fd = fir.setup_filter(np.ones([5, 5]))
    y = filtered_lrelu(x, fu, fd, up=2, down=2, padding=[5, 0, 2, 1])
    assert list(y.shape) == [1, 1, 8, 4]


def test_output_too_small_names_sizes():
    x = _random([1, 1, 3, 8], seed=6)
    fd = _filter("lp12")
    # H: (3 + 0 - 0 - 11 + 1) // 2 = -4, and W: (8 - 11 + 1) // 2 = -1.
    with pytest.raises(ValueError, match=r"output size would be -4x-1") as info:
        filtered_lrelu(x, None, fd, down=2)
    assert "input 3x8" in str(info.value)
    assert "fd 12x12 taps" in str(info.value)


# ----------------------------------------------------------------------------
# Gradients in float64 with fixed filters. A pre-activation within the finite-difference
# step (1e-6) of a kink at 0 or +-clamp would fail these checks, and the seeded inputs have none.

GRAD_CASES = [
    (2, 2, [2, 1, 2, 1], "asym4", "asym4", False, None),
    (2, 2, [2, 1, 1, 2], "2d3x4", "asym4", True, 0.6),
    (1, 2, [1, 1, 1, 1], "asym4", "none", False, None),
    (2, 1, [0, 0, 0, 0], "none", "asym4", False, None),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[f"case{i}" for i in range(len(GRAD_CASES))])
def test_filtered_lrelu_gradients(case):
    up, down, padding, fu, fd, flip_filter, clamp = case
    x = _random([1, 2, 4, 3], seed=7).requires_grad_(True)
    b = _random([2], seed=8, scale=0.3).requires_grad_(True)
    fu_tensor, fd_tensor = _filter(fu), _filter(fd)

    def func(x, b):
        return filtered_lrelu(
            x, fu_tensor, fd_tensor, b, up=up, down=down, padding=padding, gain=1.3,
            slope=0.2, clamp=clamp, flip_filter=flip_filter,
        )  # fmt: skip

    assert torch.autograd.gradcheck(func, (x, b))
    assert torch.autograd.gradgradcheck(func, (x, b))


# ----------------------------------------------------------------------------
# Invalid arguments: each error names the argument and its value.


def _call(**overrides):
    args = dict(
        x=torch.zeros([1, 3, 8, 8]),
        fu=fir.setup_filter([1.0, 2.0, 1.0]),
        fd=fir.setup_filter([1.0, 2.0, 1.0]),
        b=torch.zeros([3]),
        up=2,
        down=2,
        padding=2,
    )
    args.update(overrides)
    return filtered_lrelu(**args)


ERROR_CASES = [
    (dict(up=0), r"up=0"),
    (dict(up=1.5), r"up=1\.5"),
    (dict(up=True), r"up=True"),
    (dict(down=-2), r"down=-2"),
    (dict(gain=float("nan")), r"gain=nan"),
    (dict(gain="2"), r"gain='2'"),
    (dict(slope=float("inf")), r"slope=inf"),
    (dict(clamp=-1.0), r"clamp=-1\.0"),
    (dict(clamp=float("nan")), r"clamp=nan"),
    (dict(fu=torch.ones([1, 3, 3])), r"filter fu.*shape \[1, 3, 3\]"),
    (dict(fd=[1.0, 2.0]), r"filter fd.*a list"),
    (dict(b=torch.zeros([4])), r"bias b.*shape \[3\].*shape \[4\]"),
    (dict(b=torch.zeros([3, 1])), r"bias b.*shape \[3, 1\]"),
    (dict(impl="cuda"), r"impl='cuda'; only 'ref' exists"),
    (dict(x=torch.zeros([3, 8, 8])), r"x \[N, C, H, W\].*shape \[3, 8, 8\]"),
    (dict(x=torch.zeros([1, 3, 8, 8], dtype=torch.int64)), r"floating-point.*torch\.int64"),
    (dict(padding=[1, 2, 3]), r"padding \[1, 2, 3\]"),
    (dict(flip_filter="yes"), r"flip_filter='yes'"),
]


@pytest.mark.parametrize("overrides, pattern", ERROR_CASES)
def test_invalid_argument_named(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        _call(**overrides)


def test_valid_call_for_error_cases():
    # The base call of the error table runs, so each error comes from its one override.
    assert list(_call().shape) == [1, 3, 8, 8]
