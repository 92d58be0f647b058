"""Tests of the BigGAN networks: spectral norm against numpy's SVD, conditional batch norm and
self-attention against numpy, the projection head, parameter counts derived by hand, running
statistics, keyword checks and snapshots."""

import copy

import numpy as np
import pytest
import torch

from training.networks_biggan import (
    BN_EPS,
    BN_MOMENTUM,
    ConditionalBatchNorm,
    Discriminator,
    DiscriminatorBlock,
    Generator,
    GeneratorBlock,
    SelfAttention,
    SNConv2d,
    SNLinear,
)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def one_hot(classes, c_dim):
    return torch.nn.functional.one_hot(torch.as_tensor(classes), c_dim).float()


def make_G(c_dim=10, ch=4, **kwargs):
    torch.manual_seed(0)
    return Generator(
        z_dim=32, c_dim=c_dim, w_dim=0, img_resolution=32, img_channels=3, ch=ch, **kwargs
    )


def make_D(c_dim=10, ch=4, **kwargs):
    torch.manual_seed(1)
    return Discriminator(c_dim=c_dim, img_resolution=32, img_channels=3, ch=ch, **kwargs)


def numpy_power_step(weight, u):
    """One power iteration from u on weight [out, ...] read as a matrix; returns W / sigma."""
    matrix = weight.reshape(weight.shape[0], -1)
    v = matrix.T @ u
    v = v / np.linalg.norm(v)
    u_new = matrix @ v
    u_new = u_new / np.linalg.norm(u_new)
    return weight / (u_new @ matrix @ v)


def numpy_weight(layer):
    """The weight that the layer's next forward uses, computed in float64 numpy."""
    weight = layer.weight.detach().double().numpy()
    return numpy_power_step(weight, layer.u.double().numpy())


def rank_one(shape, seed):
    """A rank-1 weight a b^T, whose largest singular value |a| |b| one power step finds."""
    generator = seeded(seed)
    a = torch.randn(shape[0], generator=generator)
    b = torch.randn(int(np.prod(shape[1:])), generator=generator)
    return torch.outer(a, b).reshape(shape), float(a.norm() * b.norm())


# ----------------------------------------------------------------------------
# Spectral normalization.


@pytest.mark.parametrize("layer_fn", [lambda: SNConv2d(5, 7, 3), lambda: SNLinear(12, 4)])
def test_spectral_norm_converges_to_unit_sigma(layer_fn):
    torch.manual_seed(0)
    layer = layer_fn().train()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=seeded(3)) * 3)
    sigma = np.linalg.svd(layer.weight.detach().double().flatten(1).numpy())[1][0]
    assert sigma > 2  # The raw weight is far from normalized, so the check can fail.
    x = torch.randn([2, 5, 6, 6] if isinstance(layer, SNConv2d) else [2, 12])
    for _ in range(30):
        layer(x)
    normalized = layer.eval().normalized_weight().detach().double().flatten(1).numpy()
    assert np.linalg.svd(normalized)[1][0] == pytest.approx(1, abs=1e-4)


def test_spectral_norm_stores_u_only_when_training():
    torch.manual_seed(0)
    layer = SNLinear(6, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randn([5, 6], generator=seeded(4)))
    x = torch.randn([3, 6])
    u_before = layer.u.clone()
    layer.eval()(x)
    assert torch.equal(layer.u, u_before)
    layer.train()(x, update=False)
    assert torch.equal(layer.u, u_before)
    layer(x)
    assert not torch.equal(layer.u, u_before)


def numpy_conv(layer, x):
    """Apply an SNConv2d with 'same' padding to float64 x [N, I, H, W] in numpy."""
    weight = numpy_weight(layer)
    pad = weight.shape[2] // 2
    padded = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, weight.shape[2:], axis=(2, 3))
    out = np.einsum("nihwkl,oikl->nohw", windows, weight)
    if layer.bias is not None:
        out += layer.bias.detach().double().numpy()[None, :, None, None]
    return out


def randomize(module, seed):
    """Give every parameter seeded normal values, so no layer starts orthogonal or zero."""
    generator = seeded(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def test_spectral_norm_forward_matches_numpy():
    torch.manual_seed(0)
    layer = SNConv2d(3, 4, 3).eval()
    randomize(layer, 5)
    x = torch.randn([2, 3, 5, 5], generator=seeded(7))
    expected = numpy_conv(layer, x.double().numpy())
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_orthogonal_initialization():
    torch.manual_seed(0)
    layer = SNConv2d(8, 16, 3)
    matrix = layer.weight.detach().double().flatten(1).numpy()  # [16, 72]: rows orthonormal.
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(16), atol=1e-5)
    assert not layer.bias.detach().any()


def test_repeated_forward_keeps_graphs_valid():
    # Each training forward stores a new u, and graphs built before must still differentiate,
    # including a gradient penalty through torch.autograd.grad with create_graph.
    D = make_D(c_dim=0).train()
    img = torch.randn([2, 3, 32, 32], generator=seeded(8), requires_grad=True)
    first = D(img, torch.zeros([2, 0]))
    (grad,) = torch.autograd.grad(first.sum(), img, create_graph=True)
    second = D(torch.randn([2, 3, 32, 32], generator=seeded(9)), torch.zeros([2, 0]))
    (grad.square().sum() + second.sum()).backward()
    assert D.linear.weight.grad is not None


# ----------------------------------------------------------------------------
# Conditional batch norm.


def make_cbn(zero=False):
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm(num_channels=3, cond_dim=4).train()
    if zero:
        with torch.no_grad():
            cbn.gain.weight.zero_()
            cbn.bias.weight.zero_()
    return cbn


def numpy_batch_norm(x, mean, var):
    return (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + BN_EPS)


def test_cbn_zeroed_layers_match_batch_norm():
    cbn = make_cbn(zero=True)
    x = torch.randn([5, 3, 4, 4], generator=seeded(1)) * 2 + 1
    cond = torch.randn([5, 4], generator=seeded(2))
    x64 = x.double().numpy()
    mean = x64.mean(axis=(0, 2, 3))
    expected = numpy_batch_norm(x64, mean, x64.var(axis=(0, 2, 3)))
    np.testing.assert_allclose(cbn(x, cond).detach().numpy(), expected, rtol=1e-4, atol=1e-5)

    # The running averages take BN_MOMENTUM of the batch, with the unbiased variance.
    unbiased = x64.var(axis=(0, 2, 3), ddof=1)
    running_mean = BN_MOMENTUM * mean
    running_var = (1 - BN_MOMENTUM) + BN_MOMENTUM * unbiased
    np.testing.assert_allclose(cbn.running_mean.numpy(), running_mean, rtol=1e-5)
    np.testing.assert_allclose(cbn.running_var.numpy(), running_var, rtol=1e-5)

    # Eval mode normalizes with the running averages.
    expected = numpy_batch_norm(x64, running_mean, running_var)
    np.testing.assert_allclose(cbn.eval()(x, cond).detach().numpy(), expected, rtol=1e-4)


def test_cbn_gain_and_bias_match_numpy():
    cbn = make_cbn()
    gain_weight, gain_sigma = rank_one([3, 4], seed=3)
    bias_weight, bias_sigma = rank_one([3, 4], seed=4)
    with torch.no_grad():
        cbn.gain.weight.copy_(gain_weight)
        cbn.bias.weight.copy_(bias_weight)
    x = torch.randn([5, 3, 4, 4], generator=seeded(1))
    cond = torch.randn([5, 4], generator=seeded(2))
    x64, cond64 = x.double().numpy(), cond.double().numpy()
    normalized = numpy_batch_norm(x64, x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3)))
    gain = 1 + cond64 @ (gain_weight.double().numpy() / gain_sigma).T
    bias = cond64 @ (bias_weight.double().numpy() / bias_sigma).T
    expected = normalized * gain[:, :, None, None] + bias[:, :, None, None]
    np.testing.assert_allclose(cbn(x, cond).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_cbn_without_update_keeps_running_stats():
    cbn = make_cbn()
    x = torch.randn([5, 3, 4, 4], generator=seeded(1)) + 3
    cbn(x, torch.randn([5, 4]), update=False)
    assert not cbn.running_mean.any()
    assert torch.equal(cbn.running_var, torch.ones(3))


def test_classes_change_generator_output():
    G = make_G().train()
    z = torch.randn([1, 32], generator=seeded(1)).repeat(4, 1)
    img = G(z, one_hot([0, 0, 1, 2], 10))
    assert torch.equal(img[0], img[1])
    assert (img[0] - img[2]).abs().max() > 1e-3
    assert (img[2] - img[3]).abs().max() > 1e-3


# ----------------------------------------------------------------------------
# Blocks against numpy compositions.


def relu(x):
    return np.maximum(x, 0)


def avg_pool(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).mean(axis=(3, 5))


def upsample(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


@pytest.mark.parametrize("first, down, in_channels", [(True, True, 3), (False, True, 8),
                                                      (False, False, 8)])  # fmt: skip
def test_discriminator_block_matches_numpy(first, down, in_channels):
    torch.manual_seed(0)
    block = DiscriminatorBlock(in_channels, 8, down=down, first=first).eval()
    randomize(block, 1)
    x = torch.randn([2, in_channels, 8, 8], generator=seeded(2))
    x64 = x.double().numpy()
    y = numpy_conv(block.conv1, relu(numpy_conv(block.conv0, x64 if first else relu(x64))))
    if first:
        skip = numpy_conv(block.skip, avg_pool(x64))  # The first block pools, then convolves.
    elif down:
        skip = avg_pool(numpy_conv(block.skip, x64))
    else:
        assert block.skip is None
        skip = x64
    expected = (avg_pool(y) if down else y) + skip
    np.testing.assert_allclose(block(x).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_generator_block_matches_numpy():
    torch.manual_seed(0)
    block = GeneratorBlock(4, 6, cond_dim=3).train()
    randomize(block, 1)
    with torch.no_grad():
        for bn in (block.bn0, block.bn1):
            bn.gain.weight.zero_()  # Plain batch norm, because the CBN test covers gain and bias.
            bn.bias.weight.zero_()
    x = torch.randn([3, 4, 4, 4], generator=seeded(2))
    x64 = x.double().numpy()

    def normalize(h):
        return numpy_batch_norm(h, h.mean(axis=(0, 2, 3)), h.var(axis=(0, 2, 3)))

    y = numpy_conv(block.conv0, upsample(relu(normalize(x64))))
    y = numpy_conv(block.conv1, relu(normalize(y)))
    expected = y + numpy_conv(block.skip, upsample(x64))
    out = block(x, torch.randn([3, 3], generator=seeded(3)))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------
# Shapes, parameter counts and running statistics.


def test_output_shapes():
    G, D = make_G(attn_res=16), make_D(attn_res=16)
    z = torch.randn([3, 32], generator=seeded(1))
    img = G(z, one_hot([1, 2, 3], 10))
    assert img.shape == (3, 3, 32, 32)
    assert img.abs().max() <= 1
    assert D(img, one_hot([1, 2, 3], 10)).shape == (3, 1)


def count_generator(c_dim, attn):
    """Trainable parameters of G at ch=64 (C = 256 channels), z_dim=128, 32x32 RGB."""
    C, chunk, embed = 256, 128 // 4, 128
    cond = chunk + (embed if c_dim else 0)  # 160 conditional, 32 unconditional.
    total = c_dim * embed  # Shared embedding, no bias: 10 * 128 = 1280.
    total += chunk * C * 4 * 4 + C * 4 * 4  # First linear 32 -> 4096: 131072 + 4096.
    cbn = 2 * cond * C  # Gain and bias linears, no biases: 81920 or 16384.
    conv3 = C * C * 9 + C  # 3x3 conv 256 -> 256: 589824 + 256.
    skip = C * C + C  # 1x1 conv 256 -> 256: 65536 + 256.
    total += 3 * (2 * cbn + 2 * conv3 + skip)  # Three up-blocks: 8, 16 and 32.
    total += 2 * C  # Output batch norm gain and bias.
    total += C * 3 * 9 + 3  # Output 3x3 conv 256 -> 3: 6912 + 3.
    if attn:
        total += attention_params(C)
    return total


def count_discriminator(c_dim, attn):
    """Trainable parameters of D at ch=64 (C = 256 channels), 32x32 RGB."""
    C = 256
    conv3 = C * C * 9 + C  # 3x3 conv 256 -> 256: 590080.
    skip = C * C + C  # 1x1 conv 256 -> 256: 65792.
    total = (3 * C * 9 + C) + conv3 + (3 * C + C)  # First block 32 -> 16, 1x1 skip from RGB.
    total += 2 * conv3 + skip  # Block 16 -> 8, 1x1 skip because it downsamples.
    total += 2 * (2 * conv3)  # Two blocks at 8x8 with identity skips.
    total += C + 1  # Linear head 256 -> 1.
    total += c_dim * C  # Projection embedding, no bias: 2560.
    if attn:
        total += attention_params(C)
    return total


def attention_params(C):
    # theta, phi: C -> C/8; g: C -> C/2; out: C/2 -> C; all 1x1 without bias; gamma.
    return 2 * C * (C // 8) + C * (C // 2) + (C // 2) * C + 1  # 81921 at C = 256.


@pytest.mark.parametrize("c_dim", [10, 0])
@pytest.mark.parametrize("attn_res", [0, 16])
def test_parameter_counts(c_dim, attn_res):
    expected_G = count_generator(c_dim, attn_res)
    expected_D = count_discriminator(c_dim, attn_res)
    table = {(10, 0): 4373251, (0, 0): 3978755, (10, 16): 4455172, (0, 16): 4060676}
    assert expected_G == table[(c_dim, attn_res)]
    torch.manual_seed(0)
    G = Generator(z_dim=128, c_dim=c_dim, w_dim=0, img_resolution=32, img_channels=3, ch=64,
                  attn_res=attn_res)  # fmt: skip
    D = Discriminator(c_dim=c_dim, img_resolution=32, img_channels=3, ch=64, attn_res=attn_res)
    assert sum(p.numel() for p in G.parameters()) == expected_G
    assert sum(p.numel() for p in D.parameters()) == expected_D


def test_eval_mode_uses_running_stats():
    G = make_G()
    z = torch.randn([4, 32], generator=seeded(1))
    c = one_hot([0, 1, 2, 3], 10)
    G.train()
    assert not torch.allclose(G(z[:2], c[:2])[0], G(z, c)[0], atol=1e-4)
    G.eval()
    assert torch.allclose(G(z[:2], c[:2])[0], G(z, c)[0], atol=1e-5)


def test_update_emas_false_keeps_state():
    G = make_G().train()
    z = torch.randn([4, 32], generator=seeded(1))
    state = {name: value.clone() for name, value in G.state_dict().items()}
    G(z, one_hot([0, 1, 2, 3], 10), update_emas=False)
    for name, value in G.state_dict().items():
        assert torch.equal(value, state[name]), f"G.{name} changed"
    G(z, one_hot([0, 1, 2, 3], 10))
    assert not torch.equal(G.b8.bn0.running_mean, state["b8.bn0.running_mean"])
    assert not torch.equal(G.b8.conv0.u, state["b8.conv0.u"])


def test_stylegan_keywords_accepted():
    G = make_G(c_dim=0).eval()
    z = torch.randn([2, 32], generator=seeded(1))
    c = torch.zeros([2, 0])
    img = G(z=z, c=c, noise_mode="const", truncation_psi=1, truncation_cutoff=None)
    assert torch.equal(img, G(z, c))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: make_G(conv_clamp=256), TypeError, "conv_clamp"),
        (lambda: make_D(num_fp16_res=4), TypeError, "num_fp16_res"),
        (lambda: make_G(attn_res=4), ValueError, "attn_res"),
        (lambda: make_D(attn_res=32), ValueError, "attn_res"),
        (lambda: Generator(30, 0, 0, 32, 3), ValueError, "z_dim"),
        (lambda: Discriminator(0, 24, 3), ValueError, "img_resolution"),
        (lambda: make_G(c_dim=0)(torch.zeros([1, 32]), torch.zeros([1, 0]), 0.7), ValueError,
         "truncation_psi"),
        (lambda: make_G(c_dim=0)(torch.zeros([1, 32]), torch.zeros([1, 0]), blur=1), TypeError,
         "blur"),
    ],
)  # fmt: skip
def test_invalid_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------
# Projection head and self-attention.


def test_projection_logit_matches_numpy():
    D = make_D(c_dim=3).eval()
    head, _ = rank_one([1, 16], seed=2)  # A row vector: sigma is its norm.
    embed, embed_sigma = rank_one([16, 3], seed=3)
    with torch.no_grad():
        D.linear.weight.copy_(head)
        D.linear.bias.fill_(0.25)
        D.embed.weight.copy_(embed)
    captured = []
    D.block_output = lambda out_res, x: captured.append(x.detach().clone()) or x
    img = torch.randn([4, 3, 32, 32], generator=seeded(4))
    classes = [0, 2, 1, 2]
    logits = D(img, one_hot(classes, 3))

    h = np.maximum(captured[-1].double().numpy(), 0).sum(axis=(2, 3))  # [N, 16]
    head64 = head.double().numpy()[0]
    embed64 = embed.double().numpy() / embed_sigma  # [16, 3]
    expected = h @ (head64 / np.linalg.norm(head64)) + 0.25
    expected += (embed64[:, classes].T * h).sum(axis=1)
    np.testing.assert_allclose(logits.detach().numpy()[:, 0], expected, rtol=1e-4)


def make_attention(gamma):
    torch.manual_seed(0)
    attention = SelfAttention(16).eval()
    with torch.no_grad():
        for index, layer in enumerate([attention.theta, attention.phi, attention.g, attention.out]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=seeded(10 + index)))
        attention.gamma.fill_(gamma)
    return attention


def test_attention_identity_at_zero_gamma():
    attention = make_attention(0.0)
    x = torch.randn([2, 16, 4, 6], generator=seeded(1))
    assert torch.equal(attention(x), x)


def numpy_max_pool(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))


def test_attention_matches_numpy():
    attention = make_attention(0.7)
    x = torch.randn([2, 16, 4, 6], generator=seeded(1))
    x64 = x.double().numpy()
    N, C, H, W = x64.shape

    def conv1x1(layer, inputs):
        return np.einsum("oi,nihw->nohw", numpy_weight(layer)[:, :, 0, 0], inputs)

    theta = conv1x1(attention.theta, x64).reshape(N, C // 8, H * W)
    phi = numpy_max_pool(conv1x1(attention.phi, x64)).reshape(N, C // 8, H * W // 4)
    g = numpy_max_pool(conv1x1(attention.g, x64)).reshape(N, C // 2, H * W // 4)
    scores = np.einsum("nkq,nkp->nqp", theta, phi)  # [N, HW, HW/4]
    weights = np.exp(scores - scores.max(axis=2, keepdims=True))
    weights /= weights.sum(axis=2, keepdims=True)
    attended = np.einsum("ncp,nqp->ncq", g, weights).reshape(N, C // 2, H, W)
    expected = x64 + 0.7 * conv1x1(attention.out, attended)
    np.testing.assert_allclose(attention(x).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------
# Copies and snapshots.


def test_deepcopy_and_state_dict_round_trip():
    G = make_G(attn_res=16).train()
    G(torch.randn([4, 32]), one_hot([0, 1, 2, 3], 10))  # Move u and the running stats.
    clone = copy.deepcopy(G).eval()
    rebuilt = Generator(**G.init_kwargs).eval()
    rebuilt.load_state_dict(G.state_dict())
    G.eval()
    z, c = torch.randn([2, 32], generator=seeded(1)), one_hot([4, 5], 10)
    assert torch.equal(clone(z, c), G(z, c))
    assert torch.equal(rebuilt(z, c), G(z, c))
    assert "b16.conv0.u" in G.state_dict()
    assert "b16.bn0.running_var" in G.state_dict()


def test_snapshot_round_trip(tmp_path):
    from dmd_patch.networks import DMDBigGANDiscriminator
    from training.snapshot import load_network_snapshot, save_network_snapshot

    G = make_G().train()
    G(torch.randn([4, 32]), one_hot([0, 1, 2, 3], 10))
    torch.manual_seed(2)
    D = DMDBigGANDiscriminator(
        c_dim=10, img_resolution=32, img_channels=3, ch=4, dmd_kwargs={"policy": "always"}
    )
    path = str(tmp_path / "network-snapshot-000000.pkl")
    save_network_snapshot(path, {"G": G, "D": D})
    loaded = load_network_snapshot(path)
    assert isinstance(loaded.G, Generator)
    assert isinstance(loaded.D, DMDBigGANDiscriminator)
    for module, original in [(loaded.G, G), (loaded.D, D)]:
        for name, value in original.state_dict().items():
            if torch.is_tensor(value):
                assert torch.equal(module.state_dict()[name], value), name
    assert torch.equal(loaded.D.dmd_masker.patterns[8], D.dmd_masker.patterns[8])
    z, c = torch.randn([2, 32], generator=seeded(1)), one_hot([4, 5], 10)
    img = loaded.G(z, c)
    assert torch.equal(img, G.eval()(z, c))
    assert torch.equal(loaded.D(img, c), D.eval()(img, c))
