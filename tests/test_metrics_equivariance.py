"""Equivariance metrics (EQ-T int, EQ-T frac, EQ-R). Resampling is checked against analytic
band-limited images and scipy.ndimage, masks by hand and by cropping, and PSNR by hand. The
whole metric runs on stand-in generators whose equivariance is known, on tiny StyleGAN3
networks and on two processes."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.ndimage
import torch

from metrics import equivariance as eq
from metrics import metric_utils
from tests.test_networks_stylegan3 import tiny_G
from training import networks_stylegan2

# ----------------------------------------------------------------------------
# Band-limited test images.


def wave_field(x, y, freqs, phases):
    """Mean of cos(2 pi (f . (x, y)) + phase) over the rows of freqs [K, 2] (cycles per pixel)."""
    waves = [np.cos(2 * np.pi * (f[0] * x + f[1] * y) + p) for f, p in zip(freqs, phases)]
    return sum(waves) / len(waves)


def smooth_image(size, seed=0, max_freq=0.15):
    """A sum of five sinusoids below max_freq cycles per pixel, sampled at the pixel centers
    (coordinates in pixels from the image center), with the function that made it."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(-max_freq, max_freq, size=(5, 2))
    phases = rng.uniform(0, 2 * np.pi, size=5)
    coords = np.arange(size) + 0.5 - size / 2
    y, x = np.meshgrid(coords, coords, indexing="ij")

    def field(x, y):
        return wave_field(x, y, freqs, phases)

    return field(x, y), field, x, y


# ----------------------------------------------------------------------------
# PSNR.


def test_psnr_by_hand():
    # MSE 1 leaves 20 log10(2) = 6.0206 dB, and MSE 0.01 adds 20 dB to that.
    assert eq.psnr_from_sums(4.0, 4) == pytest.approx(6.020600, abs=1e-6)
    assert eq.psnr_from_sums(0.03, 3) == pytest.approx(26.020600, abs=1e-6)
    assert eq.psnr_from_sums(0.0, 10) == float("inf")
    with pytest.raises(ValueError, match="No pixels remain"):
        eq.psnr_from_sums(1.0, 0)


def test_masked_squared_error_by_hand():
    ref = torch.zeros([1, 2, 2, 2])
    img = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.0], [0.0, 1.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    squared_error, count = eq.masked_squared_error(ref, img, mask)
    assert squared_error == pytest.approx(1 + 16 + 0.25 + 1)
    assert count == 4  # 2 pixels x 2 channels.
    with pytest.raises(ValueError, match="Mask shape"):
        eq.masked_squared_error(ref, img, mask[0])


# ----------------------------------------------------------------------------
# Translation.


def test_lanczos_kernel_by_hand():
    # L(0.5) = sinc(0.5) sinc(1/6) = (2 / pi) * (0.5 / (pi / 6)).
    assert eq.lanczos(0.5) == pytest.approx((2 / math.pi) * (3 / math.pi), rel=1e-12)
    assert eq.lanczos(0.0) == 1.0
    assert eq.lanczos(3.0) == 0.0
    assert eq.lanczos(-2.5) == pytest.approx(eq.lanczos(2.5), rel=1e-12)


def test_integer_shift_exact_with_hand_mask():
    img = torch.arange(20, dtype=torch.float32).reshape(1, 4, 5)
    out, mask = eq.translate_image(img, 2, -1)
    expected = np.zeros([4, 5], dtype=np.float32)
    expected[0:3, 2:5] = img[0, 1:4, 0:3].numpy()  # out[y, x] = img[y + 1, x - 2].
    np.testing.assert_array_equal(out[0].numpy(), expected)
    hand_mask = np.array([[0, 0, 1, 1, 1]] * 3 + [[0, 0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(mask[0].numpy(), hand_mask)


def test_fractional_shift_mask_by_hand():
    # dx = 0.5 reads input pixels i - 3 ... i + 2, all inside an 8-pixel row only for i = 3..5.
    out, mask = eq.translate_image(torch.ones([1, 8, 8]), 0.5, 0)
    assert mask.shape == (1, 8, 8)
    np.testing.assert_array_equal(mask[0, 0].numpy(), [0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(mask[0, :, 4].numpy(), np.ones(8))
    # Taps scaled to unit sum keep a constant image constant wherever the mask is 1.
    np.testing.assert_allclose(out[0][mask[0] > 0].numpy(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dx, dy", [(2.3, -1.7), (0.5, 0.25), (-3.9, 1.1)])
def test_fractional_shift_matches_analytic_and_scipy(dx, dy):
    img, field, x, y = smooth_image(32)
    out, mask = eq.translate_image(torch.from_numpy(img)[None], dx, dy)
    inside = mask[0].numpy() > 0
    assert inside.sum() > 600
    # Measured max errors at these offsets: 3.6e-3 to 7.6e-3 against the analytic image, about
    # half of what scipy's order-5 spline gets (7.7e-3 to 1.7e-2) on the same pixels.
    truth = field(x - dx, y - dy)
    spline = scipy.ndimage.shift(img, (dy, dx), order=5, mode="constant")
    assert np.abs(out[0].numpy() - truth)[inside].max() < 0.01
    assert np.abs(out[0].numpy() - spline)[inside].max() < 0.025
    assert np.abs(img - truth)[inside].max() > 0.1  # The offset is large enough to matter.


@pytest.mark.parametrize("dx, dy", [(3, -2), (1.25, -2.6)])
def test_shift_mask_ignores_outside_pixels(dx, dy):
    # Inside the mask, shifting a crop must equal cropping the shifted larger image.
    big = torch.from_numpy(np.random.default_rng(1).standard_normal([2, 40, 40]))
    crop = big[:, 10:30, 10:30]
    out_big, _ = eq.translate_image(big, dx, dy)
    out_crop, mask = eq.translate_image(crop, dx, dy)
    inside = mask[0] > 0
    assert int(inside.sum()) > 100
    torch.testing.assert_close(
        out_crop[:, inside], out_big[:, 10:30, 10:30][:, inside], rtol=0, atol=1e-12
    )
    assert (out_crop - out_big[:, 10:30, 10:30])[:, ~inside].abs().max() > 1e-3


# ----------------------------------------------------------------------------
# Rotation.


def test_radial_lowpass_response():
    # Measured gain of upsampling then downsampling a cosine along x: 1.01 at 0.05 cycles per
    # pixel, 1.09 at 0.2, 0.68 at 0.4 and 0.51 at 0.45.
    taps = eq.radial_lowpass_taps()
    assert taps.shape == (24, 24)
    torch.testing.assert_close(taps, taps.T, rtol=0, atol=1e-15)
    torch.testing.assert_close(taps, taps.flip(0), rtol=0, atol=1e-15)
    assert float(taps.sum()) == pytest.approx(1.0, abs=1e-12)
    x = np.arange(64) + 0.5
    gains = []
    for freq in [0.05, 0.4]:
        img = torch.from_numpy(np.tile(np.cos(2 * np.pi * freq * x), (64, 1)))[None, None]
        out = eq.downsample_image(eq.upsample_image(img, taps), taps)
        assert out.shape == img.shape
        gains.append(float(out[0, 0, 32, 16:48].abs().max()))
    assert gains[0] == pytest.approx(1.0, abs=0.02)
    assert 0.6 < gains[1] < 0.75


@pytest.mark.parametrize("degrees", [10, 45, -130])
def test_rotation_matches_scipy_through_same_filters(degrees):
    # The reference rotates on the 4x grid. The same filters applied to an order-5 spline
    # rotation (scipy turns the other way, since y points down the rows) or to the analytic
    # rotated image must agree with it inside the mask. Measured max errors: 3e-3 to 5e-3.
    img, field, x, y = smooth_image(32)
    angle = math.radians(degrees)
    ref, _, mask = eq.rotate_pair(torch.from_numpy(img)[None], torch.zeros([1, 32, 32]), angle)
    inside = mask[0].numpy() > 0
    assert inside.sum() > 250

    def filtered(image):
        _, pseudo, _ = eq.rotate_pair(torch.zeros([1, 32, 32]), torch.from_numpy(image)[None], 0)
        return pseudo[0].numpy()

    cos, sin = math.cos(angle), math.sin(angle)
    truth = filtered(field(cos * x + sin * y, -sin * x + cos * y))
    spline = filtered(scipy.ndimage.rotate(img, -degrees, reshape=False, order=5))
    assert np.abs(ref[0].numpy() - truth)[inside].max() < 0.01
    assert np.abs(ref[0].numpy() - spline)[inside].max() < 0.01
    mirrored = filtered(scipy.ndimage.rotate(img, degrees, reshape=False, order=5))
    assert np.abs(ref[0].numpy() - mirrored)[inside].max() > 0.1


def test_rotation_mask_by_hand():
    # At angle 0 the reference reaches 3 + 1/4 + 3 pixels from a pixel center and the pseudo
    # rotation 6. With centers at -7.5 ... 7.5 and the nearest outside ones at +-8.5, only
    # |x| <= 2.25 qualifies, which is the 4 center pixels of each axis.
    mask = eq.rotation_mask(16, 0.0, torch.device("cpu"))
    expected = np.zeros([16, 16], dtype=np.float32)
    expected[6:10, 6:10] = 1
    np.testing.assert_array_equal(mask[0].numpy(), expected)
    # A quarter turn maps the square onto itself, so the mask is the same.
    np.testing.assert_array_equal(
        eq.rotation_mask(16, math.pi / 2, torch.device("cpu"))[0], mask[0]
    )


@pytest.mark.parametrize("degrees", [30, 180])
def test_rotation_mask_ignores_outside_pixels(degrees):
    # Inside the mask, both outputs for a crop must equal the crop of the larger image's.
    rng = np.random.default_rng(2)
    big = torch.from_numpy(rng.standard_normal([2, 1, 48, 48]))
    angle = math.radians(degrees)
    ref_big, pseudo_big, _ = eq.rotate_pair(big[0], big[1], angle)
    ref, pseudo, mask = eq.rotate_pair(big[0, :, 8:40, 8:40], big[1, :, 8:40, 8:40], angle)
    inside = mask[0] > 0
    assert int(inside.sum()) > 50
    for small, large in [(ref, ref_big), (pseudo, pseudo_big)]:
        torch.testing.assert_close(
            small[:, inside], large[:, 8:40, 8:40][:, inside], rtol=0, atol=1e-10
        )
    assert (ref - ref_big[:, 8:40, 8:40]).abs().max() > 1e-3


# ----------------------------------------------------------------------------
# Per-sample input transforms of the StyleGAN3 synthesis input.


def test_synthesis_input_per_sample_transform():
    G = tiny_G(seed=0).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn([2, 32], generator=torch.Generator().manual_seed(0)), None)
    motions = [eq.draw_motion(0, i, "eqr", 0.125, 1.0, 32) for i in range(2)]
    inverse = torch.from_numpy(np.stack([np.linalg.inv(m) for m in motions]))
    saved = G.synthesis.input.transform
    with torch.no_grad():
        batched = eq.synthesize(G, ws, inverse)
        single = [eq.synthesize(G, ws[i : i + 1], inverse[i]) for i in range(2)]
        G.synthesis.input.transform = inverse[:1].float()
        with pytest.raises(ValueError, match=r"expected \[3, 3\] or \[2, 3, 3\]"):
            G.synthesis(ws)
    G.synthesis.input.transform = saved
    torch.testing.assert_close(batched, torch.cat(single), rtol=0, atol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 0.01


# ----------------------------------------------------------------------------
# Stand-in generators.


class CallLog(list):
    """A list that deepcopy shares instead of copying, so it records calls of a copied module."""

    def __deepcopy__(self, memo):
        return self


class WaveMapping(torch.nn.Module):
    def forward(self, z, c, **kwargs):
        return z[:, None]  # ws [N, 1, w_dim] = z.


class WaveInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("transform", torch.eye(3))


class WaveSynthesis(torch.nn.Module):
    """Channel ch of sample n at pixel center p (image widths) is sum_k a[n, k, ch]
    cos(2 pi (f_k . q + phase[n, k])) with q = transform_n p, computed in float64. The
    frequencies lie in a disc of radius max_freq cycles per pixel, so the image is the
    transformed band-limited signal, sampled without aliasing. `motion` sets how it moves:
    'exact' applies the transform, 'none' ignores it and 'reversed' applies its inverse."""

    def __init__(self, resolution, max_freq, num_waves, motion="exact"):
        super().__init__()
        rng = np.random.default_rng(5)
        angles = rng.uniform(0, 2 * np.pi, num_waves)
        radii = np.sqrt(rng.uniform(0, 1, num_waves)) * max_freq * resolution
        freqs = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
        self.register_buffer("freqs", torch.from_numpy(freqs))  # Cycles per image width.
        self.input = WaveInput()
        self.resolution, self.num_waves, self.motion = resolution, num_waves, motion
        self.calls = CallLog()

    def forward(self, ws, noise_mode="random", force_fp32=False):
        self.calls.append((noise_mode, force_fp32, self.input.transform.shape))
        n, k = ws.shape[0], self.num_waves
        amplitudes = ws[:, 0, : 3 * k].double().reshape(n, k, 3) * (0.5 / math.sqrt(k))
        phases = ws[:, 0, 3 * k :].double()
        transform = self.input.transform.double().expand(n, 3, 3)
        if self.motion == "none":
            transform = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
        elif self.motion == "reversed":
            transform = torch.linalg.inv(transform)
        coords = (torch.arange(self.resolution, dtype=torch.float64) + 0.5) / self.resolution - 0.5
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        points = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [H, W, 3]
        q = torch.einsum("nij,hwj->nhwi", transform, points)[..., :2]
        waves = torch.cos(2 * np.pi * (q @ self.freqs.T + phases[:, None, None, :]))
        return torch.einsum("nhwk,nkc->nchw", waves, amplitudes).float()


class WaveGenerator(torch.nn.Module):
    def __init__(self, resolution=32, max_freq=0.3, num_waves=12, motion="exact"):
        super().__init__()
        self.z_dim = self.w_dim = 4 * num_waves
        self.c_dim, self.img_resolution, self.img_channels = 0, resolution, 3
        self.mapping = WaveMapping()
        self.synthesis = WaveSynthesis(resolution, max_freq, num_waves, motion)


@pytest.fixture
def metric_options(tmp_path):
    """MetricOptions(G, **extra) for generators that need no real images."""
    detector = tmp_path / "unused-detector.pt"  # The metric loads no feature network.
    detector.write_bytes(b"")

    def make(G, **extra):
        kwargs = dict(dataset_kwargs=dict(class_name="unused"), device="cpu", batch_size=4)
        kwargs.update(extra)
        return metric_utils.MetricOptions(G=G, detector_path=str(detector), **kwargs)

    return make


@pytest.mark.parametrize("kind, threshold", [("eqt_frac", 45), ("eqr", 50)])
def test_equivariant_standin_scores_high(metric_options, kind, threshold):
    # Measured on 16 samples at 32x32 with frequencies up to 0.3 cycles per pixel: 49.1 dB for
    # eqt_frac and 54.0 dB for eqr. Both fall to about 12 dB when the content does not move.
    psnr, info = eq.compute_equivariance(metric_options(WaveGenerator()), 8, kind)
    assert info == dict(num_gen=8)
    assert threshold < psnr < 200


def test_equivariant_standin_integer_shift_exact(metric_options):
    G = WaveGenerator()
    psnr, _ = eq.compute_equivariance(metric_options(G), 6, "eqt_int")
    assert psnr == float("inf")
    # Every call ran in const noise mode and float32, and the buffer is [3, 3] again.
    assert {call[:2] for call in G.synthesis.calls} == {("const", True)}
    assert G.synthesis.input.transform.shape == (3, 3)


@pytest.mark.parametrize("motion", ["none", "reversed"])
@pytest.mark.parametrize("kind", eq.KINDS)
def test_non_equivariant_standins_score_low(metric_options, kind, motion):
    psnr, _ = eq.compute_equivariance(metric_options(WaveGenerator(motion=motion)), 6, kind)
    assert psnr < 20


def test_batch_size_does_not_change_value(metric_options):
    # The stand-in computes each sample on its own, so the values match exactly.
    values = [
        eq.compute_equivariance(metric_options(WaveGenerator(), batch_size=b), 5, kind)[0]
        for kind in ["eqt_frac", "eqr"]
        for b in [1, 3]
    ]
    assert values[0] == values[1]
    assert values[2] == values[3]


def test_draw_motion_ranges_and_seeds():
    res = 32
    motions = [eq.draw_motion(0, i, "eqt_int", 0.125, 1.0, res) for i in range(50)]
    offsets = np.stack([m[:2, 2] for m in motions])
    assert np.abs(offsets).max() <= 0.125
    np.testing.assert_array_equal(offsets * res, np.round(offsets * res))
    assert len({tuple(o) for o in offsets}) > 10
    frac = eq.draw_motion(0, 3, "eqt_frac", 0.125, 1.0, res)
    assert not np.allclose(frac[:2, 2] * res, np.round(frac[:2, 2] * res))
    np.testing.assert_array_equal(frac, eq.draw_motion(0, 3, "eqt_frac", 0.125, 1.0, res))
    assert not np.array_equal(frac, eq.draw_motion(1, 3, "eqt_frac", 0.125, 1.0, res))
    angles = [eq.draw_motion(0, i, "eqr", 0.125, 0.25, res) for i in range(50)]
    angles = np.array([math.atan2(m[1, 0], m[0, 0]) for m in angles])
    assert np.abs(angles).max() <= np.pi / 4
    assert np.abs(angles).max() > np.pi / 8


# ----------------------------------------------------------------------------
# Real networks and errors.


def test_tiny_stylegan3_networks(metric_options):
    # Measured on 4 samples: -T gave 69 (eqt_int) and 29 (eqr), -R 100 and 83 dB. Random
    # networks of this size are far from trained ones, so only the ordering is checked.
    G_t, G_r = tiny_G(seed=0), tiny_G(seed=0, radial=True)
    eqr_t, _ = eq.compute_equivariance(metric_options(G_t), 2, "eqr")
    eqr_r, _ = eq.compute_equivariance(metric_options(G_r), 2, "eqr")
    eqt_t, _ = eq.compute_equivariance(metric_options(G_t), 2, "eqt_int")
    for value in [eqr_t, eqr_r, eqt_t]:
        assert math.isfinite(value)
    assert eqr_r > eqr_t + 20
    assert eqt_t > eqr_t + 20
    assert G_t.synthesis.input.transform.shape == (3, 3)


def test_tiny_stylegan3_batch_size(metric_options):
    # The network's float32 output itself differs by up to 3e-7 between batch sizes (grouped
    # convolutions), which moves a 74 dB PSNR by about 1e-6 relative.
    G = tiny_G(seed=0)
    values = [
        eq.compute_equivariance(metric_options(G, batch_size=b), 3, "eqt_frac")[0] for b in [1, 3]
    ]
    assert values[0] == pytest.approx(values[1], rel=1e-5)


def test_stylegan2_generator_rejected(metric_options):
    G = networks_stylegan2.Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, channel_base=64
    )
    with pytest.raises(ValueError, match="eq metrics need a StyleGAN3 generator"):
        eq.compute_equivariance(metric_options(G), 2, "eqt_int")


def test_invalid_arguments_rejected(metric_options):
    opts = metric_options(WaveGenerator())
    with pytest.raises(ValueError, match="Unknown equivariance kind 'eqx'"):
        eq.compute_equivariance(opts, 2, "eqx")
    with pytest.raises(ValueError, match="num_samples=0"):
        eq.compute_equivariance(opts, 0, "eqr")
    with pytest.raises(ValueError, match="translate_max=0.5"):
        eq.compute_equivariance(opts, 2, "eqt_frac", translate_max=0.5)
    with pytest.raises(ValueError, match="rotate_max=2"):
        eq.compute_equivariance(opts, 2, "eqr", rotate_max=2)
    with pytest.raises(ValueError, match="need a generator"):
        eq.compute_equivariance(metric_options(None), 2, "eqr")


def test_transform_restored_after_error():
    G = WaveGenerator()
    saved = G.synthesis.input.transform

    def fail(*args, **kwargs):
        raise RuntimeError("synthesis failed")

    G.synthesis.forward = fail
    with pytest.raises(RuntimeError, match="synthesis failed"):
        eq.synthesize(G, torch.zeros([2, 1, 48]), torch.eye(3).expand(2, 3, 3))
    assert G.synthesis.input.transform is saved


# ----------------------------------------------------------------------------
# Two processes.


def two_process_worker(rank, init_file, detector_path, out_dir):
    """Compute EQ-R as rank `rank` of 2 and save the value."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo's connections on the loopback interface
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        opts = metric_utils.MetricOptions(
            G=WaveGenerator(),
            dataset_kwargs=dict(class_name="unused"),
            device="cpu",
            batch_size=2,
            detector_path=detector_path,
            num_gpus=2,
            rank=rank,
        )
        psnr, _ = eq.compute_equivariance(opts, 5, "eqr")
        np.save(os.path.join(out_dir, f"psnr{rank}.npy"), np.array(psnr))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path, metric_options):
    expected, _ = eq.compute_equivariance(metric_options(WaveGenerator()), 5, "eqr")
    detector = tmp_path / "unused-detector.pt"
    args = (str(tmp_path / "init"), str(detector), str(tmp_path))
    torch.multiprocessing.spawn(two_process_worker, args=args, nprocs=2)
    assert float(np.load(tmp_path / "psnr0.npy")) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(float(np.load(tmp_path / "psnr1.npy")))
