"""Tests of the StyleGAN3 generator: parameter counts of NVIDIA's networks, the layer schedule
and filters against numpy and scipy, the Fourier-feature input and modulated convolution
against direct formulas, translation and rotation equivariance, EMAs, truncation and
gradients."""

import json
import math

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from training import networks_stylegan3 as net

# Trainable parameter and buffer counts of NVIDIA's StyleGAN3 generators (NVlabs/stylegan3,
# networks_stylegan3.py) with the kwargs its train.py passes: z_dim = w_dim = 512, conv_clamp
# 256, 2 mapping layers, c_dim 0, 3 image channels.
# Columns: res, extra synthesis kwargs, G params, G buffers.
NVIDIA_COUNTS = [
    (32, dict(channel_base=16384, channel_max=512), 37_768_199, 2_420),
    (
        32,
        dict(channel_base=32768, channel_max=1024, conv_kernel=1, use_radial_filters=True),
        24_153_095,
        5_540,
    ),
    (256, dict(channel_base=32768, channel_max=512), 28_472_133, 2_456),
]

# Layer names of NVIDIA's res-32 StyleGAN3 generators, read from network pickles that their
# code wrote: -T with channel_base 1024, channel_max 64, and -R with twice both.
NVIDIA_NAMES_T32 = [
    *[f"L{i}_36_64" for i in range(5)],
    *[f"L{i}_52_64" for i in range(5, 9)],
    "L9_52_54",
    "L10_52_45",
    "L11_52_38",
    "L12_52_32",
    "L13_32_32",
    "L14_32_3",
]
NVIDIA_NAMES_R32 = [
    *[f"L{i}_36_128" for i in range(5)],
    *[f"L{i}_52_128" for i in range(5, 9)],
    "L9_52_108",
    "L10_52_91",
    "L11_52_76",
    "L12_52_64",
    "L13_32_64",
    "L14_32_3",
]

W_DIM = 32


def tiny_G(res=32, radial=False, seed=0, **kwargs):
    """A small random generator; -R doubles the channels, as NVIDIA's train.py does."""
    torch.manual_seed(seed)
    config = dict(channel_base=1024, channel_max=32)
    if radial:
        config = dict(channel_base=2048, channel_max=64, conv_kernel=1, use_radial_filters=True)
    config.update(kwargs)
    return net.Generator(
        z_dim=W_DIM, c_dim=0, w_dim=W_DIM, img_resolution=res, img_channels=3, **config
    )


def layers(G):
    return [getattr(G.synthesis, name) for name in G.synthesis.layer_names]


def random_z(batch, seed=0):
    return torch.randn([batch, W_DIM], generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------
# Structure.


@pytest.mark.parametrize("res, kwargs, params, buffers", NVIDIA_COUNTS)
def test_parameter_counts_match_nvidia(res, kwargs, params, buffers):
    G = net.Generator(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=res,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        conv_clamp=256,
        **kwargs,
    )
    assert sum(p.numel() for p in G.parameters() if p.requires_grad) == params
    assert sum(b.numel() for b in G.buffers()) == buffers
    assert G.num_ws == 16


@pytest.mark.parametrize("radial, names", [(False, NVIDIA_NAMES_T32), (True, NVIDIA_NAMES_R32)])
def test_layer_names_match_nvidia(radial, names):
    G = tiny_G(
        radial=radial, channel_base=2048 if radial else 1024, channel_max=128 if radial else 64
    )
    assert G.synthesis.layer_names == names


def reference_schedule(res, img_channels, channel_base, channel_max):
    """Per-layer (cutoff, stopband, rate, half_width, size, channels) with the default
    14 layers, 2 critical, first cutoff 2, first stopband 2**2.1, last stopband rel 2**0.3
    and margin 10, computed one layer at a time."""
    rows = []
    for i in range(15):
        t = min(i / 12, 1.0)
        cutoff = 2 * (res / 2 / 2) ** t
        stopband = 2**2.1 * (res / 2 * 2**0.3 / 2**2.1) ** t
        rate = 2 ** math.ceil(math.log2(min(2 * stopband, res)))
        half_width = max(stopband, rate / 2) - cutoff
        size = res if i >= 13 else rate + 20
        channels = img_channels if i == 14 else round(min(channel_base / 2 / cutoff, channel_max))
        rows.append((cutoff, stopband, rate, half_width, size, channels))
    return rows


@pytest.mark.parametrize("res, cbase, cmax", [(32, 1024, 64), (256, 32768, 512)])
def test_schedule_matches_reference(res, cbase, cmax):
    synthesis = net.SynthesisNetwork(
        w_dim=8, img_resolution=res, img_channels=3, channel_base=cbase, channel_max=cmax
    )
    rows = reference_schedule(res, 3, cbase, cmax)
    schedule = synthesis.schedule
    expected = np.array(rows)
    np.testing.assert_allclose(schedule["cutoffs"], expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(schedule["stopbands"], expected[:, 1], rtol=1e-12)
    np.testing.assert_array_equal(schedule["sampling_rates"], expected[:, 2])
    np.testing.assert_allclose(schedule["half_widths"], expected[:, 3], rtol=1e-12)
    np.testing.assert_array_equal(schedule["sizes"], expected[:, 4])
    np.testing.assert_array_equal(schedule["channels"], expected[:, 5])

    # Layer i reads schedule entry i - 1 and writes entry i. The input uses entry 0.
    assert synthesis.input.size == rows[0][4]
    assert synthesis.input.sampling_rate == rows[0][2]
    assert synthesis.input.bandwidth == pytest.approx(rows[0][0])
    for idx, name in enumerate(synthesis.layer_names):
        layer = getattr(synthesis, name)
        prev = rows[max(idx - 1, 0)]
        assert name == f"L{idx}_{rows[idx][4]}_{rows[idx][5]}"
        assert (layer.in_size, layer.in_channels) == (prev[4], prev[5])
        assert (layer.in_sampling_rate, layer.out_sampling_rate) == (prev[2], rows[idx][2])
        assert layer.in_cutoff == pytest.approx(prev[0])
        assert layer.out_cutoff == pytest.approx(rows[idx][0])
        assert layer.is_critically_sampled == (idx >= 12)
        assert layer.is_torgb == (idx == 14)


def test_schedule_hand_values_res32():
    # The first layer has cutoff 2 and the last three 16 = 32 / 2. Stopbands go from 2**2.1
    # to 16 * 2**0.3 = 19.70. Rates double from 16 to 32 once 2 * stopband passes 16.
    schedule = net.SynthesisNetwork(w_dim=8, img_resolution=32, img_channels=3).schedule
    assert schedule["cutoffs"][0] == 2
    assert schedule["cutoffs"][12:] == pytest.approx([16, 16, 16])
    assert schedule["stopbands"][12:] == pytest.approx([19.6983, 19.6983, 19.6983], abs=1e-4)
    assert list(schedule["sampling_rates"]) == [16] * 5 + [32] * 10
    assert list(schedule["sizes"]) == [36] * 5 + [52] * 8 + [32, 32]
    assert schedule["half_widths"][0] == pytest.approx(8 - 2)


# ----------------------------------------------------------------------------
# Filters.


def test_translation_filters_match_firwin():
    G = tiny_G()
    rows = reference_schedule(32, 3, 1024, 32)
    for idx, layer in enumerate(layers(G)):
        prev = rows[max(idx - 1, 0)]
        is_torgb = idx == 14
        tmp_rate = max(prev[2], rows[idx][2]) * (1 if is_torgb else 2)
        up = tmp_rate // prev[2]
        down = tmp_rate // rows[idx][2]
        assert (layer.up_factor, layer.down_factor) == (up, down)
        if is_torgb:
            assert layer.up_filter is None
            assert layer.down_filter is None
            continue
        up_taps = scipy.signal.firwin(6 * up, prev[0], width=2 * prev[3], fs=tmp_rate)
        down_taps = scipy.signal.firwin(6 * down, rows[idx][0], width=2 * rows[idx][3], fs=tmp_rate)
        np.testing.assert_allclose(layer.up_filter.numpy(), up_taps, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(layer.down_filter.numpy(), down_taps, rtol=1e-6, atol=1e-7)


def test_design_lowpass_filter_one_tap():
    assert net.design_lowpass_filter(1, cutoff=2, width=4, fs=16) is None
    with pytest.raises(ValueError, match="numtaps=0"):
        net.design_lowpass_filter(0, cutoff=2, width=4, fs=16)


def test_radial_filters_symmetric_unit_sum():
    # The jinc is radially symmetric, but the Kaiser window is the outer product of two 1D
    # windows. So the taps have the square's 8 symmetries, and dividing out the window
    # leaves a function of the radius alone.
    G = tiny_G(radial=True)
    radial_layers = [layer for layer in layers(G)[:-1] if not layer.is_critically_sampled]
    assert len(radial_layers) == 12
    for layer in radial_layers:
        taps = layer.down_filter.double().numpy()
        n = 6 * layer.down_factor
        assert taps.shape == (n, n)
        assert taps.sum() == pytest.approx(1, abs=1e-6)
        np.testing.assert_allclose(taps, taps.T, atol=1e-9)
        np.testing.assert_allclose(taps, taps[::-1], atol=1e-9)

        width = 2 * layer.out_half_width / (layer.tmp_sampling_rate / 2)
        beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(n, width))
        window = np.kaiser(n, beta)
        jinc = taps / np.outer(window, window)
        coords = np.arange(n) - (n - 1) / 2
        radius_sq = np.add.outer(coords**2, coords**2)
        for value in np.unique(radius_sq):
            group = jinc[radius_sq == value]
            assert np.ptp(group) < 1e-6 * np.abs(jinc).max(), (layer.out_cutoff, value)

    # Critically sampled layers keep separable 1D filters.
    for layer in layers(G)[12:14]:
        assert layer.down_filter.ndim == 1


def test_radial_filter_frequency_response():
    # Measured on this design: passband >= 0.82 below cutoff / 2, stopband <= 0.054, and the
    # response varies by <= 0.085 around the circle of radius cutoff.
    taps = net.design_lowpass_filter(12, cutoff=4, width=8, fs=32, radial=True).double().numpy()
    size = 256
    response = np.abs(np.fft.fft2(taps, s=(size, size)))
    freq = np.fft.fftfreq(size, d=1 / 32)
    radius = np.hypot(*np.meshgrid(freq, freq, indexing="ij"))
    assert response[radius <= 2].min() > 0.75
    assert response[radius >= 8].max() < 0.1
    ring = response[np.abs(radius - 4) < 32 / size]
    assert ring.max() - ring.min() < 0.15


# ----------------------------------------------------------------------------
# Building blocks against direct formulas.


def fourier_features_reference(module, transform, rotation_translation):
    """float64 numpy: sum_k W[c, k] / sqrt(C) * a_k sin(2 pi (f_k . q + phase_k)) with
    q = R (T p - t), where T is `transform`, (cos, sin, tx, ty) = rotation_translation and
    a_k fades frequencies of |f_k A| above the bandwidth."""
    freqs = module.freqs.double().numpy()
    phases = module.phases.double().numpy()
    weight = module.weight.detach().double().numpy()
    c, s, tx, ty = rotation_translation
    rotation = np.array([[c, -s], [s, c]])
    coords = (np.arange(module.size) + 0.5 - module.size / 2) / module.sampling_rate
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    points = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ transform.T  # [H, W, 3]
    q = (points[..., :2] - [tx, ty]) @ rotation.T
    linear = rotation @ transform[:2, :2]
    fade_band = module.sampling_rate / 2 - module.bandwidth
    amplitudes = np.clip(
        1 - (np.linalg.norm(freqs @ linear, axis=1) - module.bandwidth) / fade_band, 0, 1
    )
    waves = np.sin(2 * np.pi * (q @ freqs.T + phases)) * amplitudes  # [H, W, C]
    return (waves @ weight.T / np.sqrt(module.channels)).transpose(2, 0, 1)


@pytest.mark.parametrize(
    "transform",
    [
        np.eye(3),
        np.array([[1, 0, -1 / 16], [0, 1, 0.3], [0, 0, 1]]),  # Translation.
        np.array([[0.6, -0.8, 0], [0.8, 0.6, 0], [0, 0, 1]]),  # Rotation.
        np.diag([3.0, 3.0, 1.0]),  # Scaling pushes frequencies into the fade band.
    ],
)
def test_synthesis_input_matches_formula(transform):
    torch.manual_seed(1)
    module = net.SynthesisInput(w_dim=4, channels=6, size=20, sampling_rate=16, bandwidth=2)
    module.transform.copy_(torch.as_tensor(transform, dtype=torch.float32))
    w = torch.zeros([2, 4])
    with torch.no_grad():
        module.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        out = module(w)
        # A learned rotation by 30 degrees and translation, stored at twice unit scale.
        angle = math.radians(30)
        learned = (math.cos(angle), math.sin(angle), 0.05, -0.02)
        module.affine.bias.copy_(2 * torch.tensor(learned, dtype=torch.float32))
        out_learned = module(w)
    assert out.shape == (2, 6, 20, 20)
    expected = fourier_features_reference(module, transform, (1, 0, 0, 0))
    np.testing.assert_allclose(out[1].numpy(), expected, atol=1e-5)
    expected = fourier_features_reference(module, transform, learned)
    np.testing.assert_allclose(out_learned[0].numpy(), expected, atol=1e-5)


def test_synthesis_input_frequencies_in_disc():
    torch.manual_seed(2)
    module = net.SynthesisInput(w_dim=4, channels=4000, size=4, sampling_rate=16, bandwidth=3)
    radius = module.freqs.norm(dim=1)
    assert radius.max() <= 3
    # Uniform over the disc: P(|f| <= r) = (r / 3)^2, so a quarter lies within radius 1.5.
    assert (radius <= 1.5).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert module.phases.min() >= -0.5
    assert module.phases.max() < 0.5
    assert torch.equal(module.transform, torch.eye(3))
    assert torch.equal(module.affine.weight, torch.zeros([4, 4]))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("demodulate, kernel", [(True, 3), (False, 1), (True, 1)])
def test_modulated_conv2d_matches_per_sample_reference(demodulate, kernel, fused):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([3, 5, 7, 7], generator=gen)
    weight = torch.randn([4, 5, kernel, kernel], generator=gen)
    styles = torch.randn([3, 5], generator=gen)
    gain = torch.tensor(0.7)
    out = net.modulated_conv2d(
        x, weight, styles, demodulate=demodulate, padding=kernel - 1, input_gain=gain, fused=fused
    )
    assert out.shape == (3, 4, 7 + kernel - 1, 7 + kernel - 1)
    for n in range(3):
        w = weight.double() * styles[n].double().reshape(1, -1, 1, 1)
        if demodulate:
            w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).sqrt()
        expected = F.conv2d(x[n : n + 1].double() * 0.7, w, padding=kernel - 1)
        np.testing.assert_allclose(out[n].numpy(), expected[0].numpy(), rtol=1e-4, atol=1e-5)


def test_unfused_modulated_conv2d_gradients_match_fused():
    gen = torch.Generator().manual_seed(5)
    inputs = [
        torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
        for shape in ([2, 4, 6, 6], [3, 4, 3, 3], [2, 4], [2, 4])
    ]
    grads = []
    for fused in (True, False):
        x, weight, styles, gain = inputs
        out = net.modulated_conv2d(x, weight, styles, padding=2, input_gain=gain, fused=fused)
        grads.append(torch.autograd.grad((out * out.detach()).sum(), inputs))
    for fused_grad, unfused_grad in zip(*grads):
        np.testing.assert_allclose(unfused_grad.numpy(), fused_grad.numpy(), rtol=1e-10)


def test_torgb_layer_matches_formula():
    # ToRGB: 1x1 conv with weight W * style / sqrt(in_channels), no demodulation, input
    # divided by sqrt(magnitude_ema), plus bias, clamped to +-conv_clamp, no nonlinearity.
    G = tiny_G(res=16, conv_clamp=0.5)
    torgb = layers(G)[-1]
    assert torgb.is_torgb
    gen = torch.Generator().manual_seed(4)
    x = torch.randn([2, torgb.in_channels, 16, 16], generator=gen)
    w = torch.randn([2, W_DIM], generator=gen)
    with torch.no_grad():
        torgb.bias.normal_(generator=gen)
        torgb.magnitude_ema.fill_(2.5)
        out = torgb(x, w)
        styles = torgb.affine(w).double()
    weight = torgb.weight.detach().double()[:, :, 0, 0]  # [O, I]
    scaled = x.double() / math.sqrt(2.5) * styles.reshape(2, -1, 1, 1)
    expected = torch.einsum("oi,nihw->nohw", weight, scaled) / math.sqrt(torgb.in_channels)
    expected = (expected + torgb.bias.detach().double().reshape(1, -1, 1, 1)).clamp(-0.5, 0.5)
    assert (expected.abs() == 0.5).any()  # The clamp is exercised.
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)


def test_magnitude_ema_scales_layer_input():
    # With magnitude_ema m, a layer scales its input by 1 / sqrt(m).
    G = tiny_G(res=16)
    layer = layers(G)[6]
    gen = torch.Generator().manual_seed(5)
    x = torch.randn([2, layer.in_channels, layer.in_size, layer.in_size], generator=gen)
    w = torch.randn([2, W_DIM], generator=gen)
    with torch.no_grad():
        plain = layer(x / 3, w)
        layer.magnitude_ema.fill_(9)
        scaled = layer(x, w)
    torch.testing.assert_close(scaled, plain, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(scaled, layer(x / 3, w).detach())


def test_output_scale():
    G = tiny_G(res=16).eval()
    ws = G.mapping(random_z(2), None).detach()
    with torch.no_grad():
        img = G.synthesis(ws)
        G.synthesis.output_scale = 1
        unscaled = G.synthesis(ws)
    torch.testing.assert_close(unscaled * 0.25, img)


# ----------------------------------------------------------------------------
# Whole generator.


@pytest.mark.parametrize("radial", [False, True])
def test_generator_shapes_finite_deterministic(radial):
    G = tiny_G(res=16, radial=radial).eval()
    z = random_z(3)
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
        again = G(z=z, c=None, noise_mode="random", force_fp32=True)
    assert img.shape == (3, 3, 16, 16)
    assert img.dtype == torch.float32
    assert torch.isfinite(img).all()
    assert torch.equal(img, again)
    assert img.std() > 0


def test_generator_conditional_mapping():
    torch.manual_seed(0)
    G = net.Generator(
        z_dim=8,
        c_dim=5,
        w_dim=16,
        img_resolution=16,
        img_channels=1,
        channel_base=512,
        channel_max=16,
    )
    assert G.mapping.embed.weight.shape == (16, 5)
    assert G.mapping.fc0.weight.shape == (16, 8 + 16)
    assert G.mapping.num_layers == 2
    c = F.one_hot(torch.tensor([0, 3]), 5).float()
    with torch.no_grad():
        img = G(torch.randn([2, 8]), c)
    assert img.shape == (2, 1, 16, 16)


def test_generator_rejects_bad_arguments():
    G = tiny_G(res=16)
    with pytest.raises(ValueError, match="noise_mode"):
        G(random_z(1), None, noise_mode="loud")
    with pytest.raises(ValueError, match="num_layers=2"):
        net.SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, num_layers=2)
    with pytest.raises(ValueError, match="img_resolution"):
        net.SynthesisNetwork(w_dim=8, img_resolution=24, img_channels=3)


def test_generator_rebuilds_from_init_kwargs():
    G = tiny_G(res=16, radial=True, magnitude_ema_beta=0.99)
    kwargs = json.loads(json.dumps(G.init_kwargs))
    clone = net.Generator(**kwargs)
    clone.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(random_z(2), None), G(random_z(2), None))
    assert kwargs["use_radial_filters"] is True
    assert kwargs["magnitude_ema_beta"] == 0.99


def test_magnitude_ema_needs_update_emas():
    G = tiny_G(res=16, magnitude_ema_beta=0.9)
    layer = layers(G)[3]
    inputs = []
    layer.register_forward_hook(lambda module, args, output: inputs.append(args[0].detach()))
    with torch.no_grad():
        G(random_z(2), None)
        G(random_z(2), None, update_emas=False)
    for each in layers(G):
        assert each.magnitude_ema.item() == 1
    assert torch.equal(G.mapping.w_avg, torch.zeros([W_DIM]))

    inputs.clear()
    with torch.no_grad():
        G(random_z(2), None, update_emas=True)
    mean_square = inputs[0].double().square().mean().item()
    assert layer.magnitude_ema.item() == pytest.approx(0.9 + 0.1 * mean_square, rel=1e-5)
    assert all(each.magnitude_ema.item() != 1 for each in layers(G))
    assert G.mapping.w_avg.abs().sum() > 0


def test_truncation_toward_w_avg():
    G = tiny_G(res=16)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn([W_DIM]))
        ws = G.mapping(random_z(2), None, truncation_psi=0)
        partial = G.mapping(random_z(2), None, truncation_psi=0, truncation_cutoff=3)
    assert ws.shape == (2, 16, W_DIM)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand(2, 16, W_DIM))
    torch.testing.assert_close(partial[:, :3], G.mapping.w_avg.expand(2, 3, W_DIM))
    assert not torch.allclose(partial[:, 3:], G.mapping.w_avg.expand(2, 13, W_DIM))


@pytest.mark.parametrize("radial", [False, True])
def test_gradients_reach_every_parameter(radial):
    G = tiny_G(res=16, radial=radial)
    G(random_z(2), None).sum().backward()
    for name, param in G.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------
# Equivariance. The transform maps output coordinates to input coordinates, and the image
# spans [-0.5, 0.5], so moving the content by d output pixels takes
# transform = inverse(translate(d / res)). Errors are RMS over the center 16x16 of a 32x32
# image, relative to the RMS of the reference there.


def render(G, ws, motion):
    G.synthesis.input.transform.copy_(torch.as_tensor(np.linalg.inv(motion), dtype=torch.float32))
    with torch.no_grad():
        return G.synthesis(ws).double()


def translation(dx, dy):
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


def rotation(degrees):
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def relative_error(img, ref, crop=8):
    img = img[..., crop:-crop, crop:-crop]
    ref = ref[..., crop:-crop, crop:-crop]
    return ((img - ref).square().mean().sqrt() / ref.square().mean().sqrt()).item()


def fourier_shift(img, dx, dy):
    """Shift a periodic band-limited image by (dx, dy) pixels (x = width) via the DFT."""
    fy = torch.fft.fftfreq(img.shape[-2], dtype=torch.float64).reshape(-1, 1)
    fx = torch.fft.fftfreq(img.shape[-1], dtype=torch.float64)
    phase = torch.exp(-2j * np.pi * (fx * dx + fy * dy))
    return torch.fft.ifft2(torch.fft.fft2(img) * phase).real


def bicubic_rotate(img, degrees):
    """Rotate images about their center by `degrees` (x toward y) with bicubic sampling."""
    a = math.radians(degrees)
    inverse = torch.tensor([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0]])
    theta = inverse.to(img.dtype).unsqueeze(0).repeat(img.shape[0], 1, 1)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode="bicubic", align_corners=False)


@pytest.fixture(scope="module")
def translation_net():
    """A random -T network whose learned transform differs per sample, with its ws and its
    untransformed output."""
    G = tiny_G(seed=0).eval()
    with torch.no_grad():
        G.synthesis.input.affine.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        ws = G.mapping(random_z(2), None)
    return G, ws, render(G, ws, np.eye(3))


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, 1), (-2, 0)])
def test_translation_integer_shift(translation_net, dx, dy):
    # Measured on networks like this one (seeds 0-2, batch 4): at most 1.2e-3. Shifting the
    # reference the wrong way gives 0.15.
    G, ws, base = translation_net
    out = render(G, ws, translation(dx / 32, dy / 32))
    ref = torch.roll(base, shifts=(dy, dx), dims=(2, 3))
    assert relative_error(out, ref) < 0.01


def test_translation_subpixel_shift(translation_net):
    # Measured on networks like this one (seeds 0-2, batch 4): at most 7.3e-3 for a half-pixel
    # shift. The unshifted reference gives 0.040 and the opposite shift 0.079.
    G, ws, base = translation_net
    out = render(G, ws, translation(0.5 / 32, 0))
    assert relative_error(out, fourier_shift(base, 0.5, 0)) < 0.02
    assert relative_error(out, base) > 0.02


@pytest.fixture(scope="module")
def rotation_net():
    G = tiny_G(seed=0, radial=True).eval()
    with torch.no_grad():
        G.synthesis.input.affine.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        ws = G.mapping(random_z(2), None)
    return G, ws, render(G, ws, np.eye(3))


def test_rotation_quarter_turn(rotation_net):
    # A quarter turn maps the sample grid onto itself, so -R is exact up to rounding:
    # measured at most 5e-7 (seeds 0-2, batch 4). Rotating x toward y (y points down the
    # rows) is torch.rot90 with k=-1 on dims (H, W).
    G, ws, base = rotation_net
    out = render(G, ws, rotation(90))
    assert relative_error(out, torch.rot90(base, k=-1, dims=(2, 3))) < 1e-4
    assert relative_error(out, torch.rot90(base, k=1, dims=(2, 3))) > 0.1


def test_rotation_small_angle(rotation_net):
    # Against a bicubic rotation of the reference, measured at most 2.2e-3 at 10 degrees
    # (seeds 0-2, batch 4), where a -T network of the same size gives 0.05-0.08.
    G, ws, base = rotation_net
    out = render(G, ws, rotation(10))
    assert relative_error(out, bicubic_rotate(base, 10)) < 0.01
