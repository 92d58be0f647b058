"""upfirdn2d and its wrappers, checked against SciPy on float64 data."""

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d as fir

# Asymmetric taps, so that a flipped filter gives a different result.
TAPS_1D = [1.0, 2.0, 5.0, 3.0]
TAPS_2D = [[1.0, 2.0, 0.5, 3.0], [4.0, -1.0, 2.0, 1.0], [0.0, 1.0, 3.0, 2.0]]  # [fh=3, fw=4]

# (up, down, padding) with padding as [x0, x1, y0, y1]; negative entries crop.
CASES = [
    (1, 1, [0, 0, 0, 0]),
    (2, 1, [2, 1, 2, 1]),
    (1, 2, [1, 2, 0, 1]),
    (3, 1, [0, 0, 1, -1]),
    (2, 2, [-1, 2, 3, 0]),
    ([2, 1], [1, 2], [1, 1, 2, 2]),
]


def _scaling(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def reference_2d(x, taps, up, down, padding, flip_filter, gain):
    """Zero insertion, zero padding/cropping, scipy convolve2d and slicing, on numpy."""
    upx, upy = _scaling(up)
    downx, downy = _scaling(down)
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * upy, w * upx])
    z[:, :, ::upy, ::upx] = x
    z = np.pad(z, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    z = z[:, :, max(-py0, 0) : z.shape[2] - max(-py1, 0), max(-px0, 0) : z.shape[3] - max(-px1, 0)]
    taps = np.asarray(taps, dtype=np.float64)
    if flip_filter:
        taps = taps[::-1, ::-1]
    out = np.stack(
        [
            np.stack([scipy.signal.convolve2d(z[i, j], taps, mode="valid") for j in range(c)])
            for i in range(n)
        ]
    )
    return out[:, :, ::downy, ::downx] * gain


def reference_1d_axis(x, taps, up, down, pad0, pad1, axis):
    """Apply zero insertion, padding, FIR filtering and subsampling along one axis with
    scipy.signal.upfirdn, which returns the full convolution of the zero-inserted signal."""
    length = x.shape[axis]
    full = scipy.signal.upfirdn(taps, x, up=up, down=1, axis=axis)
    # Our output sample j is full-convolution sample j + (fw - 1) - pad0; the full
    # convolution is zero outside its support.
    fw = len(taps)
    out_len = length * up + pad0 + pad1 - fw + 1
    index = np.arange(out_len) + fw - 1 - pad0
    valid = (index >= 0) & (index < full.shape[axis])
    out = np.zeros(x.shape[:axis] + (out_len,) + x.shape[axis + 1 :])
    taken = np.take(full, index[valid], axis=axis)
    slices = [slice(None)] * x.ndim
    slices[axis] = np.nonzero(valid)[0]
    out[tuple(slices)] = taken
    slices[axis] = slice(None, None, down)
    return out[tuple(slices)]


def reference_separable(x, taps, up, down, padding, flip_filter, gain):
    upx, upy = _scaling(up)
    downx, downy = _scaling(down)
    px0, px1, py0, py1 = padding
    taps = np.asarray(taps, dtype=np.float64)
    if flip_filter:
        taps = taps[::-1]
    out = reference_1d_axis(x, taps, upx, downx, px0, px1, axis=3)
    out = reference_1d_axis(out, taps, upy, downy, py0, py1, axis=2)
    return out * gain


@pytest.mark.parametrize("up, down, padding", CASES)
@pytest.mark.parametrize("flip_filter", [False, True])
def test_upfirdn2d_2d_filter_matches_scipy(up, down, padding, flip_filter):
    x = np.random.default_rng(1).standard_normal([2, 3, 7, 9])
    taps = np.asarray(TAPS_2D)
    f = torch.as_tensor(taps)  # Raw taps, so the reference needs no normalization.
    y = fir.upfirdn2d(torch.as_tensor(x), f, up, down, padding, flip_filter, gain=1.5)
    ref = reference_2d(x, taps, up, down, padding, flip_filter, gain=1.5)
    assert list(y.shape) == list(ref.shape)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("up, down, padding", CASES)
@pytest.mark.parametrize("flip_filter", [False, True])
@pytest.mark.parametrize("taps", [TAPS_1D, [1.0, -2.0, 4.0, 3.0, 0.5, 2.0, 1.0, 6.0, 2.0]])
def test_upfirdn2d_separable_matches_scipy(up, down, padding, flip_filter, taps):
    x = np.random.default_rng(2).standard_normal([2, 3, 8, 10])
    padding = [p + len(taps) // 2 for p in padding]  # Room for the 9-tap filter.
    f = torch.as_tensor(taps, dtype=torch.float64)
    y = fir.upfirdn2d(torch.as_tensor(x), f, up, down, padding, flip_filter, gain=2.0)
    ref = reference_separable(x, taps, up, down, padding, flip_filter, gain=2.0)
    assert list(y.shape) == list(ref.shape)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_upfirdn2d_separable_equals_outer_product():
    x = torch.randn([1, 2, 6, 5], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    f = torch.tensor(TAPS_1D, dtype=torch.float64)
    y_sep = fir.upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1])
    y_2d = fir.upfirdn2d(x, torch.outer(f, f), up=2, padding=[2, 1, 2, 1])
    torch.testing.assert_close(y_sep, y_2d, rtol=1e-12, atol=1e-12)


def test_upfirdn2d_without_filter_only_resamples():
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    y = fir.upfirdn2d(x, None, down=2)
    assert y.tolist() == [[[[0.0, 2.0], [8.0, 10.0]]]]


def test_setup_filter_normalizes_and_expands():
    f = fir.setup_filter([1, 3, 3, 1])
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    assert f.dtype == torch.float32
    assert list(f.shape) == [4, 4]
    np.testing.assert_allclose(f.numpy(), expected, rtol=1e-6)


def test_setup_filter_long_taps_stay_separable():
    f = fir.setup_filter([1] * 8)
    assert list(f.shape) == [8]
    np.testing.assert_allclose(f.numpy(), np.full(8, 1 / 8), rtol=1e-6)
    assert list(fir.setup_filter([1, 2, 1], separable=True).shape) == [3]
    assert list(fir.setup_filter([1] * 8, separable=False).shape) == [8, 8]


def test_setup_filter_gain_and_flip():
    f = fir.setup_filter([[1, 2], [3, 4]], gain=4.0, flip_filter=True)
    np.testing.assert_allclose(f.numpy(), np.array([[4, 3], [2, 1]]) / 10 * 4, rtol=1e-6)
    f_sep = fir.setup_filter([1, 3], gain=4.0, separable=True)
    # Each of the two passes gets sqrt(gain), so the 2D response sums to gain.
    np.testing.assert_allclose(f_sep.numpy(), np.array([1, 3]) / 4 * 2, rtol=1e-6)
    raw = fir.setup_filter([1, 3], normalize=False, separable=True)
    np.testing.assert_allclose(raw.numpy(), [1, 3])


def test_setup_filter_rejects_bad_taps():
    with pytest.raises(ValueError, match="sum to zero"):
        fir.setup_filter([1, -1])
    with pytest.raises(ValueError, match="1D or 2D"):
        fir.setup_filter(np.ones([2, 2, 2]))


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1, 1]])
def test_resample_wrappers_keep_size_and_constant(taps):
    f = fir.setup_filter(taps)
    fw = len(taps)
    x = torch.ones([1, 2, 8, 6])
    up = fir.upsample2d(x, f)
    down = fir.downsample2d(x, f)
    same = fir.filter2d(x, f)
    assert list(up.shape) == [1, 2, 16, 12]
    assert list(down.shape) == [1, 2, 4, 3]
    assert list(same.shape) == [1, 2, 8, 6]
    # Away from the zero-padded border a normalized filter keeps a constant image constant.
    border = fw
    torch.testing.assert_close(
        up[:, :, border:-border, border:-border], torch.ones(1, 2, 16 - 2 * border, 12 - 2 * border)
    )
    torch.testing.assert_close(same[:, :, 2:-2, 2:-2], torch.ones(1, 2, 4, 2))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 1))


def test_upsample2d_padding_hand_computed():
    # Upsampling [1, 3, 3, 1] by 2 pads (fw + up - 1) // 2 = 2 before and (fw - up) // 2 = 1
    # after, with gain up * up = 4. For a 1-pixel row [1] that gives, along x, the valid
    # convolution of [0, 0, 1, 0, 0] with [1, 3, 3, 1] / 8 * 2 = [3, 3] / 4.
    f = fir.setup_filter([1, 3, 3, 1])
    y = fir.upsample2d(torch.ones([1, 1, 1, 1], dtype=torch.float64), f)
    expected = np.outer([3, 3], [3, 3]) / 16
    np.testing.assert_allclose(y[0, 0].numpy(), expected, rtol=1e-6)


def test_upfirdn2d_rejects_bad_arguments():
    x = torch.zeros([1, 1, 4, 4])
    f = fir.setup_filter([1, 3, 3, 1])
    with pytest.raises(ValueError, match=r"padding \[1, 2, 3\]"):
        fir.upfirdn2d(x, f, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="integers >= 1"):
        fir.upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError, match="smaller than the 4x4 filter"):
        fir.upfirdn2d(torch.zeros([1, 1, 2, 2]), f)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        fir.upfirdn2d(torch.zeros([4, 4]), f)
    with pytest.raises(ValueError, match="only 'ref'"):
        fir.upfirdn2d(x, f, impl="cuda")


@pytest.mark.parametrize("taps", [TAPS_1D, TAPS_2D])
def test_upfirdn2d_gradcheck(taps):
    x = torch.randn([1, 2, 4, 5], dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x.requires_grad_(True)
    f = torch.tensor(taps, dtype=torch.float64)

    def op(x):
        return fir.upfirdn2d(x, f, up=2, down=[1, 2], padding=[2, 1, 1, 2], gain=1.5)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


# ----------------------------------------------------------------------------
# The two paths, forced one at a time. Each forced test makes the other path raise, so a
# dispatch that silently takes the wrong path fails.


def _fail(*args, **kwargs):
    raise AssertionError("upfirdn2d took the path that this test disabled")


@pytest.fixture
def only_matmul(monkeypatch):
    monkeypatch.setattr(fir, "_upfirdn2d_ref", _fail)


@pytest.fixture
def only_ref(monkeypatch):
    monkeypatch.setattr(fir, "_upfirdn2d_matmul", _fail)


SEPARABLE_TAPS = [TAPS_1D, [1.0, -2.0, 4.0, 3.0, 0.5, 2.0, 1.0, 6.0, 2.0]]


@pytest.mark.parametrize("impl", ["matmul", "ref"])
@pytest.mark.parametrize("up, down, padding", CASES)
@pytest.mark.parametrize("flip_filter", [False, True])
@pytest.mark.parametrize("taps", SEPARABLE_TAPS)
def test_forced_path_separable_matches_scipy(request, impl, up, down, padding, flip_filter, taps):
    request.getfixturevalue(f"only_{impl}")
    x = np.random.default_rng(5).standard_normal([2, 3, 7, 10])  # Odd and non-square.
    padding = [p + len(taps) // 2 for p in padding]
    f = torch.as_tensor(taps, dtype=torch.float64)
    y = fir.upfirdn2d(torch.as_tensor(x), f, up, down, padding, flip_filter, gain=2.0, impl=impl)
    ref = reference_separable(x, taps, up, down, padding, flip_filter, gain=2.0)
    assert list(y.shape) == list(ref.shape)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("up, down, padding", CASES)
@pytest.mark.parametrize("flip_filter", [False, True])
def test_matmul_rank1_2d_filter_matches_scipy(only_matmul, up, down, padding, flip_filter):
    # Rows and columns differ, so swapping the axes or the factors changes the result.
    taps = np.outer([2.0, -1.0, 3.0], [1.0, 2.0, 5.0, 3.0])  # [fh=3, fw=4]
    x = np.random.default_rng(6).standard_normal([2, 3, 7, 9])
    f = torch.as_tensor(taps)
    y = fir.upfirdn2d(torch.as_tensor(x), f, up, down, padding, flip_filter, -1.5, "matmul")
    ref = reference_2d(x, taps, up, down, padding, flip_filter, gain=-1.5)
    assert list(y.shape) == list(ref.shape)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_matmul_negative_gain_separable(only_matmul):
    x = np.random.default_rng(7).standard_normal([1, 2, 6, 5])
    f = torch.as_tensor(TAPS_1D, dtype=torch.float64)
    y = fir.upfirdn2d(torch.as_tensor(x), f, up=2, padding=[2, 1, 2, 1], gain=-3.0, impl="matmul")
    ref = reference_separable(x, TAPS_1D, 2, 1, [2, 1, 2, 1], False, gain=-3.0)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 3, 5, 3, 1]])
def test_matmul_setup_filter_taps_use_matmul(only_matmul, taps):
    # setup_filter() expands short taps into a float32 outer product, which is rank 1 up to
    # rounding (for [1, 3, 5, 3, 1] the rounding error is not 0), and the rank test must
    # still accept it.
    f = fir.setup_filter(taps)
    x = np.random.default_rng(8).standard_normal([1, 2, 8, 8]).astype(np.float32)
    y = fir.upfirdn2d(torch.as_tensor(x), f, down=2, padding=2, impl="matmul")
    ref = reference_2d(x, f.double().numpy(), 1, 2, [2, 2, 2, 2], False, gain=1.0)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_matmul_keeps_conv_for_full_rank_2d(only_ref):
    x = np.random.default_rng(9).standard_normal([2, 3, 7, 9])
    f = torch.as_tensor(TAPS_2D)
    y = fir.upfirdn2d(torch.as_tensor(x), f, 2, 1, [2, 1, 2, 1], impl="matmul")
    ref = reference_2d(x, np.asarray(TAPS_2D), 2, 1, [2, 1, 2, 1], False, gain=1.0)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    # The 1x1 filter (f=None) only pads, and it takes the conv path too.
    fir.upfirdn2d(torch.as_tensor(x), None, padding=1, impl="matmul")


def test_matmul_float64_images_keep_rounded_filter(only_ref):
    # The float32 taps of outer([1, 2, 5, 3]) / 121 are rank 1 only up to float32 rounding,
    # which float64 images would show, so they take the conv path, exact for the given taps.
    f = fir.setup_filter([1, 2, 5, 3])
    x = np.random.default_rng(11).standard_normal([1, 2, 8, 8])
    y = fir.upfirdn2d(torch.as_tensor(x), f, padding=2, impl="matmul")
    ref = reference_2d(x, f.double().numpy(), 1, 1, [2, 2, 2, 2], False, gain=1.0)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_matmul_trainable_2d_filter_uses_conv(only_ref):
    f = torch.ones([2, 2], dtype=torch.float64, requires_grad=True)
    x = torch.randn([1, 1, 4, 4], dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    fir.upfirdn2d(x, f, impl="matmul").sum().backward()
    # Every tap sums the 3x3 input window that it touches.
    expected = [[x[0, 0, i : i + 3, j : j + 3].sum().item() for j in range(2)] for i in range(2)]
    np.testing.assert_allclose(f.grad.numpy()[::-1, ::-1], expected, rtol=1e-12)


def test_matmul_filter_gradient_1d(only_matmul):
    f = torch.tensor(TAPS_1D, dtype=torch.float64, requires_grad=True)
    x = torch.randn([1, 2, 5, 6], dtype=torch.float64, generator=torch.Generator().manual_seed(13))

    def op(f):
        return fir.upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl="matmul")

    assert torch.autograd.gradcheck(op, (f,))


@pytest.mark.parametrize(
    "taps", [TAPS_1D, np.outer([2.0, -1.0, 3.0], [1.0, 2.0, 5.0, 3.0]).tolist()]
)
def test_matmul_gradcheck(only_matmul, taps):
    x = torch.randn([1, 2, 5, 6], dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x.requires_grad_(True)
    f = torch.tensor(taps, dtype=torch.float64)

    def op(x):
        return fir.upfirdn2d(x, f, [2, 1], [1, 2], [2, -1, 1, 2], gain=1.5, impl="matmul")

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


# StyleGAN3 filtered_lrelu calls (up, down, taps, padding) at sizes of its res-32 generator.
SG3_CALLS = [
    (38, 2, 1, 12, [9, 8, 9, 8]),
    (82, 1, 2, 12, 0),
    (38, 4, 1, 24, [-6, -9, -6, -9]),
    (54, 2, 1, 12, [-11, -12, -11, -12]),
]


@pytest.mark.parametrize("size, up, down, taps, padding", SG3_CALLS)
def test_paths_agree_on_stylegan3_shapes(size, up, down, taps, padding):
    gen = torch.Generator().manual_seed(10)
    x = torch.randn([2, 3, size, size], generator=gen)
    f = fir.setup_filter(torch.rand([taps], generator=gen) + 0.1, separable=True)
    args = dict(up=up, down=down, padding=padding, gain=up * up)
    y_ref = fir.upfirdn2d(x, f, impl="ref", **args)
    y_mm = fir.upfirdn2d(x, f, impl="matmul", **args)
    torch.testing.assert_close(y_mm, y_ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# Choosing the path.


def test_auto_uses_matmul_for_small_cpu_inputs(only_matmul):
    f = fir.setup_filter([1, 3, 3, 1])
    fir.upfirdn2d(torch.zeros([1, 1, 16, 16]), f, down=2, padding=1, impl="auto")


def test_auto_uses_conv_for_large_inputs(only_ref):
    # 4 taps allow at most 4 * 128 = 512 samples along each axis.
    f = fir.setup_filter([1, 3, 3, 1], separable=True)
    fir.upfirdn2d(torch.zeros([1, 1, 8, 513]), f, impl="auto")
    fir.upfirdn2d(torch.zeros([1, 1, 513, 8]), f, impl="auto")


def test_default_impl_switch(monkeypatch):
    f = fir.setup_filter([1, 3, 3, 1])
    x = torch.zeros([1, 1, 8, 8])
    monkeypatch.setattr(fir, "default_impl", "ref")
    with monkeypatch.context() as patch:
        patch.setattr(fir, "_upfirdn2d_matmul", _fail)
        fir.upsample2d(x, f)
        fir.downsample2d(x, f)
        fir.filter2d(x, f)
    monkeypatch.setattr(fir, "default_impl", "matmul")
    with monkeypatch.context() as patch:
        patch.setattr(fir, "_upfirdn2d_ref", _fail)
        fir.upsample2d(x, f)
    monkeypatch.setattr(fir, "default_impl", "fast")
    with pytest.raises(ValueError, match="upfirdn2d.default_impl='fast'"):
        fir.upfirdn2d(x, f)
