"""Tests of the StyleGAN2 generator and discriminator: parameter counts of NVIDIA's networks,
the modulated convolution against a per-sample float64 reference, mapping-network
arithmetic, noise modes, the discriminator's block hook and double backward."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training import networks_stylegan2 as net

# Trainable parameter and buffer counts of NVIDIA's StyleGAN2 networks (NVlabs/stylegan3,
# networks_stylegan2.py) with the kwargs its train.py passes: z_dim = w_dim = 512,
# conv_clamp 256, 4 fp16 resolutions, minibatch-std group 4.
# Columns: res, channels, cbase, cmax, map depth, c_dim, G params, D params, G buffers,
# D buffers.
NVIDIA_COUNTS = [
    (32, 3, 16384, 512, 2, 0, 19_947_539, 21_507_073, 3_392, 224),
    (32, 3, 16384, 512, 2, 10, 20_215_315, 23_876_096, 3_392, 224),
    (64, 3, 32768, 512, 8, 0, 27_032_600, 26_488_833, 11_632, 288),
    (256, 3, 32768, 512, 8, 0, 30_034_338, 28_864_129, 175_568, 416),
    (32, 1, 2048, 128, 2, 0, 2_033_099, 1_153_345, 3_392, 224),
]


def build_nvidia_config(res, channels, cbase, cmax, map_depth, c_dim):
    common = dict(c_dim=c_dim, img_resolution=res, img_channels=channels)
    G = net.Generator(
        z_dim=512,
        w_dim=512,
        mapping_kwargs=dict(num_layers=map_depth),
        channel_base=cbase,
        channel_max=cmax,
        num_fp16_res=4,
        conv_clamp=256,
        fused_modconv_default="inference_only",
        **common,
    )
    D = net.Discriminator(
        channel_base=cbase,
        channel_max=cmax,
        num_fp16_res=4,
        conv_clamp=256,
        epilogue_kwargs=dict(mbstd_group_size=4),
        **common,
    )
    return G, D


def count_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_buffers(module):
    return sum(b.numel() for b in module.buffers())


def tiny_G(c_dim=0, img_channels=3, res=16, w_avg_beta=0.998, **kwargs):
    torch.manual_seed(0)
    return net.Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=res,
        img_channels=img_channels,
        mapping_kwargs=dict(num_layers=2, w_avg_beta=w_avg_beta),
        channel_base=512,
        channel_max=32,
        **kwargs,
    )


def tiny_D(c_dim=0, img_channels=3, res=16, cls=net.Discriminator, **kwargs):
    torch.manual_seed(1)
    return cls(
        c_dim=c_dim,
        img_resolution=res,
        img_channels=img_channels,
        channel_base=512,
        channel_max=32,
        **kwargs,
    )


def one_hot(labels, c_dim):
    return F.one_hot(torch.as_tensor(labels), c_dim).to(torch.float32)


# ----------------------------------------------------------------------------
# Parity of the structure with NVIDIA's networks.


@pytest.mark.parametrize("row", NVIDIA_COUNTS, ids=lambda r: f"res{r[0]}-ch{r[1]}-c{r[5]}")
def test_param_counts_match_nvidia(row):
    res, channels, cbase, cmax, map_depth, c_dim, g_params, d_params, _, _ = row
    G, D = build_nvidia_config(res, channels, cbase, cmax, map_depth, c_dim)
    assert count_params(G) == g_params
    assert count_params(D) == d_params


@pytest.mark.parametrize("row", NVIDIA_COUNTS, ids=lambda r: f"res{r[0]}-ch{r[1]}-c{r[5]}")
def test_buffer_counts_match_nvidia(row):
    res, channels, cbase, cmax, map_depth, c_dim, _, _, g_buffers, d_buffers = row
    G, D = build_nvidia_config(res, channels, cbase, cmax, map_depth, c_dim)
    assert count_buffers(G) == g_buffers
    assert count_buffers(D) == d_buffers


def test_state_dict_names_match_nvidia():
    G = tiny_G(c_dim=4, res=32)
    D = tiny_D(c_dim=4, res=32)
    g_names = set(G.state_dict())
    d_names = set(D.state_dict())
    expected_g = [
        "mapping.fc0.weight",
        "mapping.fc1.bias",
        "mapping.embed.weight",
        "mapping.w_avg",
        "synthesis.b4.const",
        "synthesis.b4.conv1.affine.weight",
        "synthesis.b4.torgb.weight",
        "synthesis.b8.resample_filter",
        "synthesis.b8.conv0.affine.weight",
        "synthesis.b8.conv0.affine.bias",
        "synthesis.b8.conv0.noise_strength",
        "synthesis.b8.conv0.noise_const",
        "synthesis.b8.conv0.resample_filter",
        "synthesis.b32.torgb.affine.bias",
    ]
    expected_d = [
        "b32.fromrgb.weight",
        "b32.skip.weight",
        "b32.conv0.bias",
        "b32.conv1.resample_filter",
        "b16.resample_filter",
        "b4.conv.weight",
        "b4.fc.weight",
        "b4.out.weight",
        "mapping.embed.weight",
        "mapping.fc7.weight",
    ]
    for name in expected_g:
        assert name in g_names, name
    for name in expected_d:
        assert name in d_names, name
    assert "b16.fromrgb.weight" not in d_names
    assert "b32.skip.bias" not in d_names
    assert isinstance(D.b4.mbstd, net.MinibatchStdLayer)


# ----------------------------------------------------------------------------
# Modulated convolution against a per-sample float64 reference.


def upsample_filter_reference(x, taps=(1, 3, 3, 1)):
    """Insert zeros to double H and W, pad by (3, 2) and apply the 2D FIR filter with total
    gain 4, which keeps the mean of the signal: [N, C, H, W] -> [N, C, 2H + 2, 2W + 2]."""
    n, c, h, w = x.shape
    up = torch.zeros([n, c, 2 * h, 2 * w], dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, [3, 2, 3, 2])
    t = torch.tensor(taps, dtype=x.dtype)
    f = torch.outer(t, t) / t.sum() ** 2 * 4
    f = f.flip([0, 1]).expand(c, 1, *f.shape)  # conv2d correlates; the filter convolves.
    return F.conv2d(up, f, groups=c)


def modulated_conv2d_reference(x, weight, styles, up, demodulate, noise=None):
    """Convolve sample by sample in float64 with its own modulated (and demodulated)
    3x3 kernel. The upsampling case zero-inserts, filters, then applies a true
    convolution, as the transposed convolution of StyleGAN2 does."""
    x, weight, styles = x.double(), weight.double(), styles.double()
    out = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)  # [O, I, k, k]
        if demodulate:
            w = w / torch.sqrt((w**2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xn = x[n : n + 1]
        if up == 1:
            y = F.conv2d(xn, w, padding=w.shape[-1] // 2)
        else:
            y = F.conv2d(upsample_filter_reference(xn), w.flip([2, 3]))
        out.append(y)
    y = torch.cat(out)
    if noise is not None:
        y = y + noise.double()
    return y


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
def test_modulated_conv2d_matches_loop(fused, up, demodulate):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([3, 5, 6, 6], generator=gen)
    weight = torch.randn([4, 5, 3, 3], generator=gen)
    styles = torch.randn([3, 5], generator=gen) + 1
    out_res = 6 * up
    noise = torch.randn([3, 1, out_res, out_res], generator=gen)
    f = net.upfirdn2d.setup_filter([1, 3, 3, 1])
    y = net.modulated_conv2d(
        x,
        weight,
        styles,
        noise=noise,
        up=up,
        padding=1,
        resample_filter=f,
        demodulate=demodulate,
        flip_weight=(up == 1),
        fused_modconv=fused,
    )
    ref = modulated_conv2d_reference(x, weight, styles, up, demodulate, noise)
    assert y.dtype == torch.float32
    assert y.shape == (3, 4, out_res, out_res)
    assert torch.allclose(y.double(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_modulated_conv2d_float16_large_styles(fused):
    # Unscaled, weight * style products of about 1e6 would overflow float16 (max 65504).
    gen = torch.Generator().manual_seed(20)
    x = torch.randn([2, 5, 6, 6], generator=gen)
    weight = torch.randn([4, 5, 3, 3], generator=gen) * 1000
    styles = torch.randn([2, 5], generator=gen) * 1000
    f = net.upfirdn2d.setup_filter([1, 3, 3, 1])
    kwargs = dict(up=2, padding=1, resample_filter=f, flip_weight=False, fused_modconv=fused)
    y = net.modulated_conv2d(x.half(), weight, styles, **kwargs)
    ref = modulated_conv2d_reference(x, weight, styles, up=2, demodulate=True)
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all()
    assert torch.allclose(y.double(), ref, atol=1e-2, rtol=1e-2)


def test_demodulated_kernel_has_unit_norm():
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn([2, 3, 1, 1], generator=gen)
    styles = torch.randn([1, 3], generator=gen) * 10
    # A 1x1 convolution of a one-hot pixel picks out one column of the kernel.
    x = torch.zeros([1, 3, 1, 1])
    y = []
    for i in range(3):
        x.zero_()
        x[0, i] = 1
        y.append(net.modulated_conv2d(x, weight, styles).reshape(2))
    kernel = torch.stack(y, dim=1)  # [O, I]
    assert torch.allclose(kernel.norm(dim=1), torch.ones(2), atol=1e-5)


# ----------------------------------------------------------------------------
# Layers and mapping network.


def test_fully_connected_equalized_lr():
    torch.manual_seed(5)
    layer = net.FullyConnectedLayer(8, 3, lr_multiplier=0.01, bias_init=2)
    x = torch.randn([4, 8])
    w = layer.weight.detach().double() * 0.01 / np.sqrt(8)
    b = layer.bias.detach().double() * 0.01
    expected = x.double() @ w.T + b
    assert torch.allclose(layer(x).double(), expected, atol=1e-6)
    assert torch.allclose(layer.bias.detach(), torch.full([3], 2.0))


def test_mapping_ignores_latent_scale():
    G = tiny_G()
    z = torch.randn([3, 16], generator=torch.Generator().manual_seed(6))
    ws = G.mapping(z, None)
    assert ws.shape == (3, G.num_ws, 16)
    assert torch.allclose(G.mapping(z * 7.5, None), ws, atol=1e-5)
    assert torch.equal(ws[:, 0], ws[:, -1])


def test_truncation_moves_toward_w_avg():
    G = tiny_G()
    G.mapping.w_avg.copy_(torch.linspace(-1, 1, 16))
    z = torch.randn([2, 16], generator=torch.Generator().manual_seed(7))
    ws = G.mapping(z, None)
    w_avg = G.mapping.w_avg

    ws_trunc = G.mapping(z, None, truncation_psi=0.7)
    assert torch.allclose(ws_trunc, w_avg + 0.7 * (ws - w_avg), atol=1e-6)

    ws_cut = G.mapping(z, None, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(ws_cut[:, :2], w_avg.expand(2, 2, 16), atol=1e-6)
    assert torch.equal(ws_cut[:, 2:], ws[:, 2:])


def test_update_emas_follows_beta():
    G = tiny_G(w_avg_beta=0.9)
    old = torch.arange(16, dtype=torch.float32) / 16
    G.mapping.w_avg.copy_(old)
    z = torch.randn([4, 16], generator=torch.Generator().manual_seed(8))
    w = G.mapping(z, None)[:, 0]
    G.mapping(z, None, update_emas=True)
    expected = 0.9 * old + 0.1 * w.mean(dim=0)
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-6)

    before = G.mapping.w_avg.clone()
    G.mapping(z, None)
    assert torch.equal(G.mapping.w_avg, before)


def test_mapping_w_avg_beta_from_kwargs():
    G = net.Generator(
        z_dim=4,
        c_dim=0,
        w_dim=4,
        img_resolution=4,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1, w_avg_beta=0.995),
        channel_base=64,
        channel_max=4,
    )
    assert G.mapping.w_avg_beta == 0.995
    assert net.MappingNetwork(4, 0, 4, num_ws=1).w_avg_beta == 0.998


def test_truncation_without_w_avg_raises():
    mapping = net.MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, w_avg_beta=None)
    assert not hasattr(mapping, "w_avg")
    with pytest.raises(ValueError, match="truncation_psi"):
        mapping(None, one_hot([0, 1], 3), truncation_psi=0.5)


def test_minibatch_std_matches_numpy():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn([4, 6, 3, 3], generator=gen)
    layer = net.MinibatchStdLayer(group_size=2, num_channels=2)
    y = layer(x)
    assert y.shape == (4, 8, 3, 3)
    assert torch.equal(y[:, :6], x)

    # Sample n belongs to group n % 2; statistic f averages channels 3f .. 3f + 2.
    xs = x.double().numpy()
    for n in range(4):
        members = xs[[n % 2, n % 2 + 2]]
        std = np.sqrt(members.var(axis=0) + 1e-8)  # [6, 3, 3]
        for f in range(2):
            expected = std[3 * f : 3 * f + 3].mean()
            assert np.allclose(y[n, 6 + f].numpy(), expected, atol=1e-6)


def test_minibatch_std_rejects_uneven_batch():
    with pytest.raises(ValueError, match="group size"):
        net.MinibatchStdLayer(group_size=4)(torch.zeros([6, 2, 4, 4]))


# ----------------------------------------------------------------------------
# Generator and discriminator end to end.


@pytest.mark.parametrize("c_dim", [0, 5])
@pytest.mark.parametrize("img_channels", [1, 3])
@pytest.mark.parametrize("res", [16, 32])
def test_output_shapes(c_dim, img_channels, res):
    G = tiny_G(c_dim=c_dim, img_channels=img_channels, res=res)
    D = tiny_D(c_dim=c_dim, img_channels=img_channels, res=res)
    z = torch.randn([4, 16], generator=torch.Generator().manual_seed(10))
    c = one_hot([0, 1, 2, 3], c_dim) if c_dim else torch.zeros([4, 0])
    ws = G.mapping(z, c)
    assert ws.shape == (4, G.num_ws, 16)
    assert G.num_ws == 2 * int(np.log2(res)) - 2
    img = G(z, c)
    assert img.shape == (4, img_channels, res, res)
    assert img.dtype == torch.float32
    logits = D(img, c)
    assert logits.shape == (4, 1)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_other_architectures_run(architecture):
    G = tiny_G(architecture=architecture)
    D = tiny_D(architecture=architecture)
    z = torch.randn([4, 16], generator=torch.Generator().manual_seed(21))
    img = G(z, torch.zeros([4, 0]))
    assert img.shape == (4, 3, 16, 16)
    assert D(img, torch.zeros([4, 0])).shape == (4, 1)
    has_skip = architecture == "resnet"
    assert hasattr(G.synthesis.b16, "skip") == has_skip
    assert hasattr(D.b16, "skip") == has_skip
    assert hasattr(D.b8, "fromrgb") == (architecture == "skip")


def test_conditional_outputs_depend_on_label():
    G = tiny_G(c_dim=3)
    D = tiny_D(c_dim=3)
    z = torch.randn([2, 16], generator=torch.Generator().manual_seed(11)).repeat(2, 1)
    c = one_hot([0, 0, 1, 1], 3)
    img = G(z, c, noise_mode="const")
    assert not torch.allclose(img[:2], img[2:])
    logits = D(img[:2].repeat(2, 1, 1, 1), c)
    assert not torch.allclose(logits[:2], logits[2:])


def test_noise_modes():
    G = tiny_G()
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.5)
    z = torch.randn([2, 16], generator=torch.Generator().manual_seed(12))
    c = torch.zeros([2, 0])
    const_a = G(z, c, noise_mode="const")
    const_b = G(z, c, noise_mode="const")
    none_a = G(z, c, noise_mode="none")
    none_b = G(z, c, noise_mode="none")
    random_a = G(z, c, noise_mode="random")
    random_b = G(z, c, noise_mode="random")
    assert torch.equal(const_a, const_b)
    assert torch.equal(none_a, none_b)
    assert not torch.allclose(const_a, none_a)
    assert not torch.allclose(random_a, random_b)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, c, noise_mode="fixed")


def test_fused_and_unfused_generator_agree():
    G = tiny_G(fused_modconv_default="inference_only")
    z = torch.randn([3, 16], generator=torch.Generator().manual_seed(13))
    c = torch.zeros([3, 0])
    fused = G(z, c, noise_mode="const", fused_modconv=True)
    unfused = G(z, c, noise_mode="const", fused_modconv=False)
    assert torch.allclose(fused, unfused, atol=1e-5)
    G.train()
    assert torch.allclose(G(z, c, noise_mode="const"), fused, atol=1e-5)


def test_fp32_on_cpu_despite_fp16_res():
    G = tiny_G(num_fp16_res=4)
    D = tiny_D(num_fp16_res=4)
    dtypes = []

    def record(module, inputs, output):
        dtypes.append(output[0].dtype)

    blocks = [m for m in list(G.modules()) + list(D.modules()) if hasattr(m, "use_fp16")]
    assert any(block.use_fp16 for block in blocks)
    for block in blocks:
        block.register_forward_hook(record)
    z = torch.randn([4, 16], generator=torch.Generator().manual_seed(14))
    img = G(z, torch.zeros([4, 0]))
    logits = D(img, torch.zeros([4, 0]))
    assert len(dtypes) == len(blocks)
    assert all(dtype == torch.float32 for dtype in dtypes)
    assert logits.dtype == torch.float32


class RecordingDiscriminator(net.Discriminator):
    """Discriminator that records the block_output calls and negates the features."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def block_output(self, out_res, x):
        self.calls.append((out_res, tuple(x.shape)))
        return -x


def test_block_output_hook_calls():
    D = tiny_D(res=32, cls=RecordingDiscriminator)
    img = torch.randn([4, 3, 32, 32], generator=torch.Generator().manual_seed(15))
    logits = D(img, torch.zeros([4, 0]))
    channels = {res: min(512 // res, 32) for res in (16, 8, 4)}
    expected = [(res, (4, channels[res], res, res)) for res in (16, 8, 4)]
    assert D.calls == expected

    # The hook's return value feeds the next block, so negating it changes the logits.
    plain = tiny_D(res=32)
    plain.load_state_dict(D.state_dict())
    assert not torch.allclose(plain(img, torch.zeros([4, 0])), logits)


def test_r1_double_backward():
    D = tiny_D(c_dim=2)
    img = torch.randn([4, 3, 16, 16], generator=torch.Generator().manual_seed(16))
    img.requires_grad_(True)
    logits = D(img, one_hot([0, 1, 0, 1], 2))
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    penalty = grad.square().sum(dim=[1, 2, 3]).mean()
    penalty.backward()

    # Only the last bias cannot change the gradient with respect to the image.
    no_grad = [name for name, p in D.named_parameters() if p.grad is None]
    assert no_grad == ["b4.out.bias"]
    for name, p in D.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    assert D.b16.conv0.weight.grad.abs().sum() > 0
    assert D.mapping.embed.weight.grad.abs().sum() > 0


def test_modulated_conv2d_gradgradcheck_float64():
    gen = torch.Generator().manual_seed(17)
    x = torch.randn([2, 3, 4, 4], generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn([2, 3, 3, 3], generator=gen, dtype=torch.float64, requires_grad=True)
    styles = torch.randn([2, 3], generator=gen, dtype=torch.float64, requires_grad=True)
    f = net.upfirdn2d.setup_filter([1, 3, 3, 1])
    for fused in (True, False):

        def conv(x, weight, styles, fused=fused):
            return net.modulated_conv2d(
                x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False,
                fused_modconv=fused,
            )  # fmt: skip

        assert torch.autograd.gradcheck(conv, (x, weight, styles), fast_mode=True)
        assert torch.autograd.gradgradcheck(conv, (x, weight, styles), fast_mode=True)


def test_downsampling_layer_gradgradcheck_float64():
    torch.manual_seed(18)
    layer = net.Conv2dLayer(2, 3, kernel_size=3, activation="lrelu", down=2, conv_clamp=256)
    x = torch.randn([2, 2, 8, 8], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(layer, (x,), fast_mode=True)


def test_discriminator_gradient_matches_finite_difference():
    # The blocks always compute in float32 on CPU, so the whole network is checked with a
    # central difference along one direction instead of a float64 gradcheck.
    D = tiny_D(c_dim=2, res=8, epilogue_kwargs=dict(mbstd_group_size=2))
    gen = torch.Generator().manual_seed(19)
    img = torch.randn([2, 3, 8, 8], generator=gen, requires_grad=True)
    direction = torch.randn([2, 3, 8, 8], generator=gen)
    c = one_hot([0, 1], 2)
    (grad,) = torch.autograd.grad(D(img, c).sum(), img)
    # A small step keeps leaky-ReLU kinks out of the interval; 3e-4 is still far above the
    # float32 rounding of the logits.
    h = 3e-4
    with torch.no_grad():
        plus = D(img + h * direction, c).double().sum()
        minus = D(img - h * direction, c).double().sum()
    numeric = (plus - minus) / (2 * h)
    analytic = (grad.double() * direction.double()).sum()
    assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 1e-3


# ----------------------------------------------------------------------------
# Construction from recorded kwargs.


def test_init_kwargs_rebuild_same_structure():
    G = tiny_G(c_dim=3, conv_clamp=256, fused_modconv_default="inference_only")
    D = tiny_D(c_dim=3, epilogue_kwargs=dict(mbstd_group_size=2))
    for module, cls in [(G, net.Generator), (D, net.Discriminator)]:
        kwargs = json.loads(json.dumps(module.init_kwargs))
        rebuilt = cls(**kwargs)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in module.state_dict().items()
        }
    assert G.init_kwargs.mapping_kwargs == dict(num_layers=2, w_avg_beta=0.998)
    assert D.init_kwargs.epilogue_kwargs == dict(mbstd_group_size=2)


def test_init_kwargs_are_copies():
    mapping_kwargs = dict(num_layers=2)
    G = net.Generator(
        z_dim=4,
        c_dim=0,
        w_dim=4,
        img_resolution=4,
        img_channels=1,
        mapping_kwargs=mapping_kwargs,
        channel_base=64,
        channel_max=4,
    )
    mapping_kwargs["num_layers"] = 5
    assert G.init_kwargs.mapping_kwargs["num_layers"] == 2


def test_non_json_kwargs_raise():
    with pytest.raises(TypeError, match="channel_base"):
        net.Discriminator(c_dim=0, img_resolution=8, img_channels=1, channel_base=object())


def test_invalid_resolution_raises():
    with pytest.raises(ValueError, match="img_resolution 24"):
        net.Discriminator(c_dim=0, img_resolution=24, img_channels=3)
    with pytest.raises(ValueError, match="img_resolution 2"):
        net.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=2, img_channels=3)
