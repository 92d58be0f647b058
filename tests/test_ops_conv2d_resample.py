"""conv2d_resample, checked against an explicit float64 composition built from numpy/scipy
FIR filtering and F.conv2d."""

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d as fir
from torch_utils.ops.conv2d_resample import conv2d_resample

TAPS = [1.0, 2.0, 5.0, 3.0]  # Asymmetric, so that flip_filter matters.


def fir_numpy(x, taps2d, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    """Zero insertion, zero padding/cropping, true 2D convolution and subsampling."""
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    z = np.pad(z, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    z = z[:, :, max(-py0, 0) : z.shape[2] - max(-py1, 0), max(-px0, 0) : z.shape[3] - max(-px1, 0)]
    out = [
        [scipy.signal.convolve2d(z[i, j], taps2d, mode="valid") for j in range(c)] for i in range(n)
    ]
    return np.asarray(out)[:, :, ::down, ::down] * gain


def reference(x, w, taps2d, up, down, padding, groups, flip_weight):
    """Pad once on the (zero-inserted) input, filter, convolve, then filter and subsample
    again when both up > 1 and down > 1. This is the documented meaning of the op."""
    fh, fw = taps2d.shape
    px0 = py0 = px1 = py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = (px0, px1, py0, py1)
    w = torch.as_tensor(w if flip_weight else w[:, :, ::-1, ::-1].copy())
    if up > 1:
        t = fir_numpy(x, taps2d, up=up, padding=pad, gain=up * up)
        y = F.conv2d(torch.as_tensor(t), w, groups=groups).numpy()
        return fir_numpy(y, taps2d, down=down) if down > 1 else y
    if down > 1:
        t = fir_numpy(x, taps2d, padding=pad)
        return F.conv2d(torch.as_tensor(t), w, stride=down, groups=groups).numpy()
    t = fir_numpy(x, np.ones([1, 1]), padding=pad)
    return F.conv2d(torch.as_tensor(t), w, groups=groups).numpy()


@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (3, 2)])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_matches_composition(up, down, kernel, groups, flip_weight):
    rng = np.random.default_rng(0)
    x = rng.standard_normal([2, 4, 8, 6])
    w = rng.standard_normal([6, 4 // groups, *kernel])
    padding = kernel[0] // 2
    f = fir.setup_filter(TAPS)
    y = conv2d_resample(
        torch.as_tensor(x), torch.as_tensor(w), f=f, up=up, down=down, padding=padding,
        groups=groups, flip_weight=flip_weight,
    )  # fmt: skip
    ref = reference(x, w, f.double().numpy(), up, down, padding, groups, flip_weight)
    assert list(y.shape) == list(ref.shape)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_conv2d_resample_flip_filter_correlates():
    rng = np.random.default_rng(1)
    x = rng.standard_normal([1, 2, 5, 5])
    w = rng.standard_normal([3, 2, 3, 3])
    f = fir.setup_filter(TAPS)
    y = conv2d_resample(
        torch.as_tensor(x), torch.as_tensor(w), f=f, up=2, padding=1, flip_filter=True
    )
    flipped = f.flip([0, 1]).double().numpy()
    ref = reference(x, w, flipped, up=2, down=1, padding=1, groups=1, flip_weight=True)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_conv2d_resample_asymmetric_padding():
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.standard_normal([1, 2, 5, 6]))
    w = torch.as_tensor(rng.standard_normal([3, 2, 3, 3]))
    y = conv2d_resample(x, w, padding=[2, 0, 1, -1])
    # Pad x by 2 on the left, 1 on top, crop 1 row at the bottom, then a valid conv2d.
    ref = F.conv2d(F.pad(x, [2, 0, 1, 0])[:, :, :-1, :], w)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_resample_up_interior_equals_upsample_then_conv():
    # Away from the outermost pixels, the result equals upsample2d() followed by conv2d().
    # At the border they differ because conv2d pads the filtered image with zeros.
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.standard_normal([1, 3, 6, 6]))
    w = torch.as_tensor(rng.standard_normal([4, 3, 3, 3]))
    f = fir.setup_filter([1, 3, 3, 1])
    y = conv2d_resample(x, w, f=f, up=2, padding=1)
    ref = F.conv2d(fir.upsample2d(x, f), w, padding=1)
    assert list(y.shape) == [1, 4, 12, 12]
    torch.testing.assert_close(y[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("up, down, out_res", [(2, 1, 16), (1, 2, 4), (1, 1, 8)])
def test_conv2d_resample_output_size(up, down, out_res):
    x = torch.zeros([1, 2, 8, 8])
    w = torch.zeros([3, 2, 3, 3])
    y = conv2d_resample(x, w, f=fir.setup_filter([1, 3, 3, 1]), up=up, down=down, padding=1)
    assert list(y.shape) == [1, 3, out_res, out_res]


def test_conv2d_resample_rejects_bad_arguments():
    x = torch.zeros([1, 4, 8, 8])
    w = torch.zeros([6, 2, 3, 3])
    with pytest.raises(ValueError, match="input has 4 channels"):
        conv2d_resample(x, w)
    with pytest.raises(ValueError, match="groups=4 must be a positive divisor"):
        conv2d_resample(x, w, groups=4)
    with pytest.raises(ValueError, match="with dtype torch.float32"):
        conv2d_resample(x, w.double(), groups=2)
    with pytest.raises(ValueError, match="up=0"):
        conv2d_resample(x, w, groups=2, up=0)
    with pytest.raises(ValueError, match="must be float32"):
        conv2d_resample(x, w, f=torch.ones([2, 2], dtype=torch.float64), groups=2, down=2)


@pytest.mark.parametrize("up, down", [(2, 1), (1, 2), (1, 1)])
def test_conv2d_resample_gradcheck(up, down):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn([1, 4, 4, 4], dtype=torch.float64, generator=gen).requires_grad_(True)
    w = torch.randn([2, 2, 3, 3], dtype=torch.float64, generator=gen).requires_grad_(True)
    f = fir.setup_filter(TAPS)

    def op(x, w):
        return conv2d_resample(x, w, f=f, up=up, down=down, padding=1, groups=2)

    assert torch.autograd.gradcheck(op, (x, w))
    assert torch.autograd.gradgradcheck(op, (x, w))
