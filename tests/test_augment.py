"""The ADA augmentation pipe and p controller, checked against numpy, scipy and hand-computed
values on small CPU images."""

import json
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.spatial.transform
import scipy.stats
import torch

from training import augment
from training.augment import AUGPIPE_SPECS, AugmentPipe, ada_adjust

GEOMETRIC = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"]
COLOR = ["brightness", "contrast", "lumaflip", "hue", "saturation"]
ALL_TRANSFORMS = GEOMETRIC + COLOR + ["imgfilter", "noise", "cutout"]

# Reference values, typed in from PyWavelets' `pywt.Wavelet(name).dec_lo`.
SYM2 = np.array([-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025])
LUMA = np.array([1.0, 1.0, 1.0]) / np.sqrt(3)


def random_images(n=2, c=3, size=16, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand([n, c, size, size], generator=generator, dtype=dtype) * 2 - 1).to(dtype)


def make_pipe(p=1.0, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe


def normal_quantile(q):
    return float(scipy.stats.norm.ppf(q))


def run_seeded(pipe, images, seed=0, **kwargs):
    """Run the pipe with the global torch generator seeded, restoring its state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return pipe(images, **kwargs)


# ----------------------------------------------------------------------------
# Filter constants.


@pytest.mark.parametrize(
    "taps, moments",
    [(augment.SYM2_DEC_LO, 2), (augment.SYM6_DEC_LO, 6)],
    ids=["sym2", "sym6"],
)
def test_wavelet_taps_are_symlet(taps, moments):
    h = np.asarray(taps, dtype=np.float64)
    assert h.sum() == pytest.approx(np.sqrt(2), abs=1e-12)
    # Orthonormal to its own even shifts.
    for shift in range(2, h.size, 2):
        assert np.dot(h[:-shift], h[shift:]) == pytest.approx(0, abs=1e-12)
    assert np.dot(h, h) == pytest.approx(1, abs=1e-12)
    # The matching high-pass filter has `moments` vanishing moments.
    k = np.arange(h.size, dtype=np.float64)
    for order in range(moments):
        moment = np.sum((-1) ** k * k**order * h)
        assert abs(moment) < 1e-9 * max(1.0, np.sum(k**order * np.abs(h)))


def test_sym2_taps_match_reference():
    np.testing.assert_allclose(augment.SYM2_DEC_LO, SYM2, rtol=0, atol=1e-15)


def reference_half_band_high(taps):
    """(g * reversed g) / 2 with g[k] = (-1)^k h[k]: the top octave's filter."""
    g = np.asarray(taps) * (-1.0) ** np.arange(len(taps))
    return np.convolve(g, g[::-1]) / 2


def test_octave_bank_sums_to_impulse():
    bank = augment.octave_filter_bank()
    assert bank.shape[0] == 4
    assert bank.shape[1] % 2 == 1
    impulse = np.zeros(bank.shape[1])
    impulse[bank.shape[1] // 2] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-15)  # Zero phase.


def test_octave_bank_top_band():
    bank = augment.octave_filter_bank()
    high = reference_half_band_high(SYM2)
    start = (bank.shape[1] - high.size) // 2
    np.testing.assert_allclose(bank[3, start : start + high.size], high, atol=1e-15)


@pytest.mark.parametrize(
    "frequency, band", [(0.0, 0), (0.05, 0), (0.19, 1), (0.375, 2), (0.75, 3), (1.0, 3)]
)
def test_octave_bank_frequency_bands(frequency, band):
    """frequency is in units of pi radians per sample; octave k covers [2^(k-4), 2^(k-3)]."""
    bank = augment.octave_filter_bank()
    n = np.arange(bank.shape[1]) - bank.shape[1] // 2
    response = bank @ np.cos(np.pi * frequency * n)
    assert int(np.argmax(np.abs(response))) == band
    if frequency in (0.0, 1.0):
        expected = np.zeros(4)
        expected[band] = 1
        np.testing.assert_allclose(response, expected, atol=1e-12)


# ----------------------------------------------------------------------------
# Construction, presets and input checks.


def test_presets_cover_upstream_names():
    assert set(AUGPIPE_SPECS) == {
        "blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn",
        "bgcfnc",
    }  # fmt: skip
    assert set(AUGPIPE_SPECS["blit"]) == {"xflip", "rotate90", "xint"}
    assert set(AUGPIPE_SPECS["geom"]) == {"scale", "rotate", "aniso", "xfrac"}
    assert set(AUGPIPE_SPECS["color"]) == set(COLOR)
    assert AUGPIPE_SPECS["filter"] == {"imgfilter": 1}
    assert set(AUGPIPE_SPECS["bgcfnc"]) == set(ALL_TRANSFORMS)
    for name, spec in AUGPIPE_SPECS.items():
        assert all(v == 1 for v in spec.values()), name


def test_presets_nest():
    chain = ["bg", "bgc", "bgcf", "bgcfn", "bgcfnc"]
    for smaller, larger in zip(chain, chain[1:]):
        assert set(AUGPIPE_SPECS[smaller]) < set(AUGPIPE_SPECS[larger])
    assert set(AUGPIPE_SPECS["bg"]) == set(GEOMETRIC)


def test_init_kwargs_rebuild_pipe():
    pipe = AugmentPipe(**AUGPIPE_SPECS["bgc"], xint_max=0.25, imgfilter_bands=[1, 0, 1, 0])
    kwargs = json.loads(json.dumps(pipe.init_kwargs))
    rebuilt = AugmentPipe(**kwargs)
    assert rebuilt.init_kwargs == pipe.init_kwargs
    assert kwargs["xint_max"] == 0.25
    assert kwargs["imgfilter_bands"] == [1, 0, 1, 0]
    assert kwargs["xflip"] == 1
    assert kwargs["cutout"] == 0


def test_p_is_the_only_saved_state():
    pipe = make_pipe(p=0.37, **AUGPIPE_SPECS["bgcfnc"])
    state = pipe.state_dict()
    assert list(state) == ["p"]
    other = AugmentPipe(**pipe.init_kwargs)
    assert float(other.p) == 0
    other.load_state_dict(state)
    assert float(other.p) == pytest.approx(0.37)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(xflip=-1), "xflip"),
        (dict(rotate=float("nan")), "rotate"),
        (dict(scale_std="0.2"), "scale_std"),
        (dict(imgfilter_bands=[1, 1, 1]), "imgfilter_bands"),
        (dict(imgfilter_bands=[1, 1, -1, 1]), "imgfilter_bands"),
        (dict(cutout_size=1.5), "cutout_size"),
    ],
)
def test_invalid_arguments_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentPipe(**kwargs)


def test_color_rejects_two_channels():
    pipe = make_pipe(brightness=1)
    with pytest.raises(ValueError, match="1 or 3 image channels, got 2"):
        pipe(random_images(c=2))


def test_geometric_accepts_two_channels():
    pipe = make_pipe(xfrac=1)
    out = pipe(random_images(c=2), debug_percentile=0.8)
    assert out.shape == (2, 2, 16, 16)


def test_rotate90_rejects_non_square():
    pipe = make_pipe(rotate90=1)
    with pytest.raises(ValueError, match="square images, got 8x16"):
        pipe(torch.zeros([1, 3, 8, 16]))


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_debug_percentile_range(value):
    with pytest.raises(ValueError, match="debug_percentile"):
        make_pipe(xflip=1)(random_images(), debug_percentile=value)


def test_rejects_integer_images():
    with pytest.raises(ValueError, match="float"):
        make_pipe(xflip=1)(torch.zeros([1, 3, 8, 8], dtype=torch.uint8))


# ----------------------------------------------------------------------------
# Identity at p = 0 and each transform alone at p = 1.


@pytest.mark.parametrize("preset", sorted(AUGPIPE_SPECS))
@pytest.mark.parametrize("channels", [1, 3])
def test_p0_is_identity(preset, channels):
    pipe = make_pipe(p=0.0, **AUGPIPE_SPECS[preset])
    images = random_images(n=4, c=channels)
    out = run_seeded(pipe, images)
    assert torch.equal(out, images)


def geometric_bound(images):
    """Largest |output| of the resampling chain: the 2x upsampling filter's larger polyphase
    half and the downsampling filter, each as an L1 norm per axis, times max |input|.
    Bilinear weights are a convex combination and add nothing."""
    h = np.asarray(augment.SYM6_DEC_LO) / np.sum(augment.SYM6_DEC_LO)
    up = max(np.abs(2 * h[0::2]).sum(), np.abs(2 * h[1::2]).sum())
    down = np.abs(h).sum()
    return float((up * down) ** 2 * images.abs().max())


def color_matrix(name, q, channels=3):
    """The 4x4 homogeneous color matrix of one color transform at debug percentile q."""
    z = normal_quantile(q)
    M = np.eye(4)
    if name == "brightness":
        M[:3, 3] = z * 0.2
    elif name == "contrast":
        M[:3, :3] *= 2 ** (z * 0.5)
    elif name == "lumaflip":
        M[:3, :3] -= 2 * np.outer(LUMA, LUMA) * math.floor(q * 2)
    elif name == "hue":
        rotation = scipy.spatial.transform.Rotation.from_rotvec(LUMA * (2 * q - 1) * np.pi)
        M[:3, :3] = rotation.as_matrix()
    elif name == "saturation":
        gray = np.outer(LUMA, LUMA)
        M[:3, :3] = gray + (np.eye(3) - gray) * 2 ** (z * 1.0)
    return M


def color_bound(M, images):
    """max_i sum_j |M_ij| * max|x| + |M_i3|: the largest |output| the matrix allows."""
    limit = float(images.abs().max())
    return float(np.max(np.abs(M[:3, :3]).sum(axis=1) * limit + np.abs(M[:3, 3])))


@pytest.mark.parametrize("name", ALL_TRANSFORMS)
def test_single_transform_changes_images(name):
    images = random_images(n=2, c=3, size=16, seed=1)
    pipe = make_pipe(p=1.0, **{name: 1})
    out = run_seeded(pipe, images, debug_percentile=0.8)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    assert out.device == images.device
    assert torch.isfinite(out).all()
    assert (out - images).abs().max() > 1e-3
    bound = transform_bound(name, images)
    assert out.abs().max() <= bound + 1e-5, f"{name}: max |out| above the bound {bound}"


def transform_bound(name, images):
    limit = float(images.abs().max())
    if name in ("xflip", "rotate90", "xint", "cutout"):
        return limit  # Exact pixel permutations, shifts and masks.
    if name in GEOMETRIC:
        return geometric_bound(images)
    if name in COLOR:
        return color_bound(color_matrix(name, 0.8), images)
    if name == "imgfilter":
        return limit * imgfilter_gain_bound(0.8) ** 2
    sigma = abs(normal_quantile(0.8)) * 0.1
    return limit + 6 * sigma  # noise: a 6-sigma draw in 1536 samples has odds below 1e-6.


def imgfilter_gains(q, bands=(1, 1, 1, 1)):
    """The four band gains at debug percentile q, normalized band by band to keep the power
    10:1:1:1 (lowest octave first)."""
    power = np.array([10, 1, 1, 1]) / 13
    gains = np.ones(4)
    for band, strength in enumerate(bands):
        t = np.ones(4)
        if strength:
            t[band] = 2 ** normal_quantile(q)
        gains *= t / np.sqrt(np.sum(power * t**2))
    return gains


def imgfilter_gain_bound(q):
    """L1 norm of the 1D filter sum_i gain_i * band_i."""
    return float(np.abs(imgfilter_gains(q) @ augment.octave_filter_bank()).sum())


@pytest.mark.parametrize("name", ALL_TRANSFORMS)
def test_single_transform_seeded_at_p1(name):
    """Without debug_percentile, p = 1 draws every transform with probability 1 (the rotation
    halves each with 1 - sqrt(1 - p) = 1) and the result repeats under the same seed."""
    images = random_images(n=4, c=3, size=16, seed=2)
    pipe = make_pipe(p=1.0, **{name: 1})
    first = run_seeded(pipe, images, seed=5)
    second = run_seeded(pipe, images, seed=5)
    assert torch.equal(first, second)
    assert torch.isfinite(first).all()
    assert first.shape == images.shape
    changed = (first - images).flatten(1).abs().amax(dim=1)
    # xflip and lumaflip keep an image with probability 1/2, rotate90 with 1/4.
    assert (changed > 1e-4).any()


def test_debug_percentile_is_deterministic():
    pipe = make_pipe(p=0.0, **AUGPIPE_SPECS["bgcf"], cutout=1)
    images = random_images(n=3)
    first = pipe(images, debug_percentile=0.7)
    second = pipe(images, debug_percentile=0.7)
    assert torch.equal(first, second)
    assert not torch.equal(first, images)


def test_float64_images_keep_dtype():
    pipe = make_pipe(**AUGPIPE_SPECS["bgcfnc"])
    images = random_images(dtype=torch.float64)
    out = run_seeded(pipe, images)
    assert out.dtype == torch.float64


def test_probability_scales_draw_rate():
    """At p = 0.25 about a quarter of the images get a brightness offset."""
    pipe = make_pipe(p=0.25, brightness=1)
    images = torch.zeros([4000, 1, 2, 2])
    out = run_seeded(pipe, images, seed=3)
    rate = float((out.flatten(1).abs().amax(dim=1) > 0).float().mean())
    assert rate == pytest.approx(0.25, abs=0.03)  # 4.4 binomial standard deviations.


# ----------------------------------------------------------------------------
# Color transforms on constant images against numpy matrices.


def constant_rgb(values, size=4):
    return torch.tensor(values, dtype=torch.float64).reshape(1, 3, 1, 1).expand(1, 3, size, size)


def apply_numpy_color(M, rgb):
    return M[:3, :3] @ np.asarray(rgb) + M[:3, 3]


@pytest.mark.parametrize("name", COLOR)
@pytest.mark.parametrize("q", [0.2, 0.9])
def test_color_matches_numpy_matrix(name, q):
    rgb = [0.3, -0.5, 0.8]
    out = make_pipe(**{name: 1})(constant_rgb(rgb), debug_percentile=q)
    expected = apply_numpy_color(color_matrix(name, q), rgb)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), expected, atol=1e-6)


def test_brightness_adds_offset():
    out = make_pipe(brightness=1)(torch.full([2, 1, 4, 4], 0.25), debug_percentile=0.9)
    offset = normal_quantile(0.9) * 0.2
    np.testing.assert_allclose(out.numpy(), 0.25 + offset, atol=1e-6)


def test_contrast_scales_by_factor():
    out = make_pipe(contrast=1)(torch.full([2, 1, 4, 4], -0.4), debug_percentile=0.3)
    factor = 2 ** (normal_quantile(0.3) * 0.5)
    np.testing.assert_allclose(out.numpy(), -0.4 * factor, atol=1e-6)


def test_lumaflip_negates_gray():
    """The luma flip reflects through the plane orthogonal to gray, so gray g maps to -g."""
    out = make_pipe(lumaflip=1)(constant_rgb([0.6, 0.6, 0.6]), debug_percentile=0.9)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [-0.6] * 3, atol=1e-6)
    gray_out = make_pipe(lumaflip=1)(torch.full([1, 1, 2, 2], 0.6), debug_percentile=0.9)
    np.testing.assert_allclose(gray_out.numpy(), -0.6, atol=1e-6)


def test_lumaflip_keeps_chroma():
    rgb = np.array([0.9, -0.2, 0.1])
    out = make_pipe(lumaflip=1)(constant_rgb(rgb), debug_percentile=0.9)[0, :, 0, 0].numpy()
    chroma_in = rgb - LUMA * np.dot(rgb, LUMA)
    chroma_out = out - LUMA * np.dot(out, LUMA)
    np.testing.assert_allclose(chroma_out, chroma_in, atol=1e-6)
    assert np.dot(out, LUMA) == pytest.approx(-np.dot(rgb, LUMA), abs=1e-6)


def test_lumaflip_lower_half_keeps_image():
    images = constant_rgb([0.9, -0.2, 0.1])
    out = make_pipe(lumaflip=1)(images, debug_percentile=0.4)  # floor(0.4 * 2) = 0: no flip.
    np.testing.assert_allclose(out.numpy(), images.numpy(), atol=1e-12)


def test_saturation_zero_gives_gray():
    """debug_percentile=0 is the normal quantile -inf, so the saturation factor 2^-inf is 0."""
    rgb = [0.9, -0.2, 0.1]
    out = make_pipe(saturation=1)(constant_rgb(rgb), debug_percentile=0.0)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [np.mean(rgb)] * 3, atol=1e-6)


@pytest.mark.parametrize("q", [0.1, 0.6, 0.95])
def test_hue_keeps_gray(q):
    out = make_pipe(hue=1)(constant_rgb([-0.3] * 3), debug_percentile=q)
    np.testing.assert_allclose(out.numpy(), -0.3, atol=1e-6)
    gray = torch.full([1, 1, 3, 3], 0.7)
    np.testing.assert_allclose(make_pipe(hue=1)(gray, debug_percentile=q).numpy(), 0.7, atol=1e-6)


@pytest.mark.parametrize("q", [0.1, 0.6, 0.95])
def test_hue_rotates_by_angle(q):
    """Compare with a numpy Rodrigues rotation and measure the angle between the chroma parts."""
    rgb = np.array([0.9, -0.2, 0.1])
    theta = (2 * q - 1) * np.pi
    axis = LUMA
    expected = (
        rgb * np.cos(theta)
        + np.cross(axis, rgb) * np.sin(theta)
        + axis * np.dot(axis, rgb) * (1 - np.cos(theta))
    )
    out = make_pipe(hue=1)(constant_rgb(rgb), debug_percentile=q)[0, :, 0, 0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    chroma_in = rgb - axis * np.dot(rgb, axis)
    chroma_out = out - axis * np.dot(out, axis)
    cosine = np.dot(chroma_in, chroma_out) / np.dot(chroma_in, chroma_in)
    assert np.arccos(np.clip(cosine, -1, 1)) == pytest.approx(abs(theta), abs=1e-5)


def test_gray_color_uses_row_mean():
    """A gray image is RGB with equal channels: out = mean over rows of M @ [g, g, g, 1]."""
    pipe = make_pipe(**AUGPIPE_SPECS["color"])
    gray = torch.full([1, 1, 2, 2], 0.35, dtype=torch.float64)
    rgb = constant_rgb([0.35] * 3, size=2)
    q = 0.85
    out_gray = pipe(gray, debug_percentile=q)
    out_rgb = pipe(rgb, debug_percentile=q)
    np.testing.assert_allclose(out_gray[0, 0].numpy(), out_rgb[0].mean(dim=0).numpy(), atol=1e-6)
    M = np.eye(4)
    for name in COLOR:
        M = color_matrix(name, q) @ M
    expected = np.mean(apply_numpy_color(M, [0.35] * 3))
    np.testing.assert_allclose(out_gray.numpy(), expected, atol=1e-6)


# ----------------------------------------------------------------------------
# Geometric transforms.


def test_xflip_equals_torch_flip():
    images = random_images(n=3)
    out = make_pipe(xflip=1)(images, debug_percentile=0.75)
    torch.testing.assert_close(out, torch.flip(images, dims=[3]), rtol=0, atol=0)
    kept = make_pipe(xflip=1)(images, debug_percentile=0.25)
    torch.testing.assert_close(kept, images, rtol=0, atol=0)


@pytest.mark.parametrize("q, turns", [(0.1, 0), (0.3, 1), (0.6, 2), (0.99, 3), (1.0, 3)])
def test_rotate90_equals_torch_rot90(q, turns):
    """Quarter turns run from +x (right) toward +y (down): clockwise on screen."""
    images = random_images(n=2)
    out = make_pipe(rotate90=1)(images, debug_percentile=q)
    expected = torch.rot90(images, -turns, dims=(2, 3))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_xint_equals_roll_in_interior():
    """At q = 0.9 the shift is round((2 * 0.9 - 1) * 0.125 * 16) = 2 pixels right and down."""
    images = random_images(n=2)
    out = make_pipe(xint=1)(images, debug_percentile=0.9)
    expected = torch.roll(images, shifts=(2, 2), dims=(2, 3))
    torch.testing.assert_close(out[:, :, 2:, 2:], expected[:, :, 2:, 2:], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, :, :2], expected[:, :, :2])  # The border is reflected.


def test_xint_negative_shift():
    """At q = 0.1: round(-0.8 * 0.125 * 16) = -2 pixels."""
    images = random_images(n=2, size=16)
    out = make_pipe(xint=1)(images, debug_percentile=0.1)
    expected = torch.roll(images, shifts=(-2, -2), dims=(2, 3))
    torch.testing.assert_close(out[:, :, :-2, :-2], expected[:, :, :-2, :-2], rtol=0, atol=1e-6)


def source_coordinates(size, G_inv=None):
    """Pixel coordinates (x, y) from the image center, mapped through G_inv when given."""
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - c
    if G_inv is None:
        return x, y
    x_src = G_inv[0, 0] * x + G_inv[0, 1] * y + G_inv[0, 2]
    y_src = G_inv[1, 0] * x + G_inv[1, 1] * y + G_inv[1, 2]
    return x_src, y_src


def blob(size=32, center=(4.0, -2.0), sigma=3.0, G_inv=None):
    """A Gaussian blob at `center` (x, y from the image center) sampled at G_inv @ (x, y, 1),
    as [1, 1, size, size] float64."""
    x, y = source_coordinates(size, G_inv)
    image = np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2 * sigma**2))
    return torch.from_numpy(image).reshape(1, 1, size, size)


def interior_error(out, expected, G_inv, size=32, border=4):
    """Max |out - expected| over output pixels whose source lies at least `border` pixels
    inside the input. Elsewhere the pipe shows mirrored content, which the analytic blob
    does not model."""
    x, y = source_coordinates(size, G_inv)
    limit = (size - 1) / 2 - border
    inside = (np.abs(x) <= limit) & (np.abs(y) <= limit)
    assert inside.sum() > size * size / 4
    return float(np.abs(out[0, 0].numpy() - expected[0, 0].numpy())[inside].max())


def numpy_rotation(theta):
    """Inverse-map matrix of a rotation by theta from +x toward +y."""
    c, s = np.cos(theta), np.sin(theta)
    return np.linalg.inv(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]))


def expected_inverse_matrix(name, q, size=32):
    """G_inv (output -> input pixel coordinates from the center) at debug percentile q."""
    z = normal_quantile(q)
    if name == "scale":
        s = 2 ** (z * 0.2)
        return np.diag([1 / s, 1 / s, 1])
    if name == "rotate":
        return numpy_rotation((2 * q - 1) * np.pi)
    if name == "aniso":
        s = 2 ** (z * 0.2)
        return np.diag([1 / s, s, 1])
    if name == "xfrac":
        t = z * 0.125 * size
        return np.array([[1, 0, -t], [0, 1, -t], [0, 0, 1]])
    raise KeyError(name)


# Bilinear interpolation on the 2x grid errs by up to 2 * (0.5^2 / 8) * max|f''| = 0.0069 on a
# blob of sigma 3 and peak 1. Measured interior errors were 0.0051-0.0064 (torch 2.13, CPU,
# float64) for each transform at both percentiles.
BLOB_TOLERANCE = 1e-2


@pytest.mark.parametrize("name", ["scale", "rotate", "aniso", "xfrac"])
@pytest.mark.parametrize("q", [0.15, 0.8])
def test_geometric_matches_analytic_blob(name, q):
    images = blob()
    out = make_pipe(**{name: 1})(images, debug_percentile=q)
    G_inv = expected_inverse_matrix(name, q)
    error = interior_error(out, blob(G_inv=G_inv), G_inv)
    assert error < BLOB_TOLERANCE, f"{name} at q={q}: max error {error:.2e}"


def test_rotate_quarter_turn_matches_rot90():
    """rotate at q = 0.75 turns by pi / 2, which on a smooth image is close to torch.rot90."""
    images = blob(center=(5.0, 2.0))
    out = make_pipe(rotate=1)(images, debug_percentile=0.75)
    expected = torch.rot90(images, -1, dims=(2, 3))
    assert float((out - expected).abs().max()) < BLOB_TOLERANCE


def test_identity_matrix_reproduces_image():
    """The sym6 up/down pair is perfect reconstruction, so G_inv = I returns the input. The
    published taps are orthonormal to about 1e-12, which bounds the float64 error."""
    images = random_images(n=2, dtype=torch.float64)
    out = augment.apply_geometric(images, torch.eye(3, dtype=torch.float64).repeat(2, 1, 1))
    torch.testing.assert_close(out, images, rtol=0, atol=1e-10)


def affine(theta=0.0, scale=(1.0, 1.0), shift=(0.0, 0.0)):
    c, s = np.cos(theta), np.sin(theta)
    A = np.array([[c, -s, shift[0]], [s, c, shift[1]], [0, 0, 1]])
    return A @ np.diag([scale[0], scale[1], 1])


# Two resamplings against one: each pass adds its own interpolation error (see BLOB_TOLERANCE).
# Measured at 0.0077 on the blob below and 0.0052 for rotate + xfrac (torch 2.13, CPU, float64).
COMPOSITION_TOLERANCE = 1.5e-2


def test_composition_matches_composed_matrix():
    """Resampling by A and then by B equals one resampling by A @ B, the composed inverse map."""
    images = blob(center=(3.0, -4.0), sigma=2.5)
    A = affine(theta=0.4, scale=(1.2, 0.9), shift=(1.5, -0.5))
    B = affine(theta=-1.1, scale=(0.8, 1.1), shift=(-2.0, 0.75))
    as_tensor = lambda M: torch.from_numpy(M).reshape(1, 3, 3)  # noqa: E731
    twice = augment.apply_geometric(augment.apply_geometric(images, as_tensor(A)), as_tensor(B))
    once = augment.apply_geometric(images, as_tensor(A @ B))
    assert float((twice - once).abs().max()) < COMPOSITION_TOLERANCE
    analytic = blob(center=(3.0, -4.0), sigma=2.5, G_inv=A @ B)
    assert interior_error(once, analytic, A @ B) < BLOB_TOLERANCE


def test_pipeline_composes_in_order():
    """rotate then xfrac in one pipe equals the rotate pipe followed by the xfrac pipe."""
    images = blob(center=(4.0, 1.0))
    q = 0.7
    both = make_pipe(rotate=1, xfrac=1)(images, debug_percentile=q)
    sequential = make_pipe(xfrac=1)(
        make_pipe(rotate=1)(images, debug_percentile=q), debug_percentile=q
    )
    assert float((both - sequential).abs().max()) < COMPOSITION_TOLERANCE
    reversed_order = make_pipe(rotate=1)(
        make_pipe(xfrac=1)(images, debug_percentile=q), debug_percentile=q
    )
    assert float((both - reversed_order).abs().max()) > 0.1


# ----------------------------------------------------------------------------
# Filter, noise and cutout.


def test_imgfilter_constant_image_gain():
    """Only the lowest band passes a constant, so the output is the input times its gain."""
    images = torch.full([1, 1, 16, 16], 0.5, dtype=torch.float64)
    out = make_pipe(imgfilter=1)(images, debug_percentile=0.8)
    # The 1D filter runs along x and then y, so the lowest band's gain applies twice.
    np.testing.assert_allclose(out.numpy(), 0.5 * imgfilter_gains(0.8)[0] ** 2, atol=1e-6)


def test_imgfilter_top_band_matches_scipy():
    """With only the top band drawn, the 1D filter is t0 * (impulse - hi) + t3 * hi, applied
    along x and then y with mirror padding."""
    images = random_images(n=1, c=1, size=16, dtype=torch.float64)
    q = 0.9
    out = make_pipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])(images, debug_percentile=q)
    gains = imgfilter_gains(q, bands=(0, 0, 0, 1))
    hi = reference_half_band_high(SYM2)
    impulse = np.zeros_like(hi)
    impulse[hi.size // 2] = 1
    taps = gains[0] * (impulse - hi) + gains[3] * hi
    expected = scipy.ndimage.correlate1d(images[0, 0].numpy(), taps, axis=1, mode="mirror")
    expected = scipy.ndimage.correlate1d(expected, taps, axis=0, mode="mirror")
    np.testing.assert_allclose(out[0, 0].numpy(), expected, atol=1e-6)


def test_noise_standard_deviation():
    images = torch.zeros([1, 1, 128, 128])
    out = run_seeded(make_pipe(noise=1), images, seed=4, debug_percentile=0.9)
    sigma = normal_quantile(0.9) * 0.1
    assert float(out.std()) == pytest.approx(sigma, rel=0.03)  # 16384 samples: 0.6% std error.
    assert float(out.mean()) == pytest.approx(0, abs=4 * sigma / 128)


def test_cutout_zeroes_center_square():
    images = random_images(n=2, c=3, size=16) + 2  # No zeros of its own.
    out = make_pipe(cutout=1)(images, debug_percentile=0.5)
    mask = np.ones([16, 16])
    mask[4:12, 4:12] = 0  # Pixel centers within 0.25 of the image center on both axes.
    np.testing.assert_array_equal(out.numpy(), images.numpy() * mask)


# ----------------------------------------------------------------------------
# The bilinear sampler and second derivatives.


def test_bilinear_sample_matches_scipy():
    generator = torch.Generator().manual_seed(7)
    images = torch.randn([2, 3, 6, 7], generator=generator, dtype=torch.float64)
    x = torch.rand([2, 5, 4], generator=generator, dtype=torch.float64) * 9 - 1.5
    y = torch.rand([2, 5, 4], generator=generator, dtype=torch.float64) * 8 - 1.5
    x[0, 0, 0], y[0, 0, 0] = 2.0, 3.0  # An exact pixel center.
    out = augment.bilinear_sample(images, x, y)
    for n in range(2):
        for c in range(3):
            expected = scipy.ndimage.map_coordinates(
                images[n, c].numpy(), [y[n].numpy(), x[n].numpy()], order=1, mode="grid-constant"
            )
            np.testing.assert_allclose(out[n, c].numpy(), expected, atol=1e-12)
    assert float(out[0, 0, 0, 0]) == float(images[0, 0, 3, 2])


def test_bilinear_sample_gradcheck():
    generator = torch.Generator().manual_seed(8)
    images = torch.randn([1, 2, 4, 5], generator=generator, dtype=torch.float64)
    images.requires_grad_(True)
    x = torch.rand([1, 3, 3], generator=generator, dtype=torch.float64) * 6 - 1
    y = torch.rand([1, 3, 3], generator=generator, dtype=torch.float64) * 5 - 1
    fn = lambda img: augment.bilinear_sample(img, x, y)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (images,))
    assert torch.autograd.gradgradcheck(fn, (images,))


@pytest.mark.parametrize("preset", ["bgc", "bgcfnc"])
def test_pipeline_gradcheck(preset):
    pipe = make_pipe(**AUGPIPE_SPECS[preset])
    images = random_images(n=2, c=3, size=8, dtype=torch.float64).requires_grad_(True)
    fn = lambda img: run_seeded(pipe, img, seed=11)  # noqa: E731
    # fast_mode checks random projections of the Jacobian; the full check takes 30 s here.
    assert torch.autograd.gradcheck(fn, (images,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (images,), fast_mode=True)


def test_r1_penalty_reaches_d_weights():
    """R1: grad of D(aug(x)) with respect to x, with create_graph, then backward of its
    squared norm gives finite, nonzero gradients to D's weights."""
    generator = torch.Generator().manual_seed(12)
    D = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Softplus(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 16 * 16, 1),
    )
    with torch.no_grad():
        for param in D.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    pipe = make_pipe(**AUGPIPE_SPECS["bgcfnc"])
    real = random_images(n=4, c=3, size=16).requires_grad_(True)
    logits = D(run_seeded(pipe, real, seed=13))
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    grad.square().sum().backward()
    # The last bias shifts D's output but not its gradient, so R1 does not reach it.
    assert D[3].bias.grad is None
    for name, param in [
        ("conv.weight", D[0].weight),
        ("conv.bias", D[0].bias),
        ("fc.weight", D[3].weight),
    ]:
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().max() > 0, name


# ----------------------------------------------------------------------------
# ADA controller.


def test_ada_step_size_by_hand():
    # 32 * 4 / (500 * 1000) = 0.000256.
    assert ada_adjust(0.1, 0.9, 0.6, 32, 4, 500) == pytest.approx(0.100256, abs=1e-12)
    assert ada_adjust(0.1, 0.1, 0.6, 32, 4, 500) == pytest.approx(0.099744, abs=1e-12)
    # 64 * 8 / (100 * 1000) = 0.00512.
    assert ada_adjust(0.5, 0.7, 0.6, 64, 8, 100) == pytest.approx(0.50512, abs=1e-12)


def test_ada_rises_when_d_overfits():
    p = 0.0
    history = []
    for _ in range(10):
        p = ada_adjust(p, 0.9, target=0.6, batch_size=32, interval=4, ada_kimg=500)
        history.append(p)
    assert history == sorted(history)
    assert p == pytest.approx(10 * 0.000256, abs=1e-12)


def test_ada_falls_to_zero_not_below():
    p = 0.001
    for _ in range(10):
        p = ada_adjust(p, 0.1, target=0.6, batch_size=32, interval=4, ada_kimg=500)
    assert p == 0.0
    assert ada_adjust(0.0005, 0.1, 0.6, 32, 4, 500) == pytest.approx(0.000244, abs=1e-12)


def test_ada_holds_at_target():
    assert ada_adjust(0.3, 0.6, 0.6, 32, 4, 500) == 0.3


def test_ada_defaults():
    assert ada_adjust(0.0, 1.0, batch_size=10) == pytest.approx(10 * 4 / 500_000, abs=1e-15)
    assert ada_adjust(0.01, 0.59, batch_size=10) < 0.01  # Default target 0.6.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(real_sign_mean=float("nan")), "real_sign_mean"),
        (dict(real_sign_mean=1.5), "real_sign_mean"),
        (dict(real_sign_mean=-1.01), "real_sign_mean"),
        (dict(batch_size=0), "batch_size"),
        (dict(interval=-4), "interval"),
        (dict(ada_kimg=0), "ada_kimg"),
        (dict(ada_kimg=float("inf")), "ada_kimg"),
        (dict(p=-0.1), "p must be"),
        (dict(p=float("nan")), "p must be"),
        (dict(target=float("nan")), "target"),
    ],
)
def test_ada_rejects_invalid_input(kwargs, match):
    args = dict(p=0.1, real_sign_mean=0.5, target=0.6, batch_size=32, interval=4, ada_kimg=500)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ada_adjust(**args)
