"""StyleGAN2Loss against hand-computed values on networks with closed-form gradients."""

import numpy as np
import pytest
import torch

from torch_utils import training_stats
from training.loss import StyleGAN2Loss


class LinearD(torch.nn.Module):
    """D(x) = sum(w * x): its input gradient is w, so R1 = sum(w^2) exactly."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, int(np.prod(shape))).reshape(shape))

    def forward(self, img, c, update_emas=False):
        return (img * self.w).sum(dim=[1, 2, 3]).unsqueeze(1)


class LinearG(torch.nn.Module):
    """mapping(z) = z repeated over num_ws; synthesis(ws) = A applied to the sum over ws."""

    def __init__(self, z_dim=3, num_ws=2, shape=(1, 2, 2)):
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws, self.shape = z_dim, 0, num_ws, shape
        generator = torch.Generator().manual_seed(0)
        self.A = torch.nn.Parameter(torch.randn(int(np.prod(shape)), z_dim, generator=generator))
        self.scale = torch.nn.Parameter(torch.ones([]))  # Makes ws part of the autograd graph.

    def mapping(self, z, c, update_emas=False):
        return (z * self.scale).unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesis(self, ws, update_emas=False):
        return (ws.sum(dim=1) @ self.A.t()).reshape(-1, *self.shape)


def test_r1_gradient_matches_hand_computation():
    shape = (1, 2, 2)
    D = LinearD(shape)
    G = LinearG(shape=shape)
    gamma, gain = 4.0, 16.0
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, r1_gamma=gamma)
    real = torch.randn(3, *shape)
    loss.accumulate_gradients(
        "Dreg", real, torch.zeros(3, 0), torch.randn(3, 3), torch.zeros(3, 0), gain=gain, cur_nimg=0
    )
    # loss = gain * gamma / 2 * sum(w^2)  =>  d/dw = gain * gamma * w
    expected = gain * gamma * D.w.detach().numpy()
    np.testing.assert_allclose(D.w.grad.numpy(), expected, rtol=1e-6)


def test_dmain_gradient_matches_float64_reference():
    shape = (1, 2, 2)
    D = LinearD(shape)
    G = LinearG(shape=shape)
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, r1_gamma=0)
    real = torch.randn(4, *shape)
    z = torch.randn(4, 3)
    loss.accumulate_gradients(
        "Dmain", real, torch.zeros(4, 0), z, torch.zeros(4, 0), gain=1, cur_nimg=0
    )

    # softplus(D(fake)) + softplus(-D(real)), averaged: d/dw = mean(sigmoid(s_f) x_f - sigmoid(-s_r) x_r)
    w = D.w.detach().double().numpy()
    fake = G.synthesis(G.mapping(z, None)).detach().double().numpy()
    x_r = real.double().numpy()
    s_f = (fake * w).sum(axis=(1, 2, 3))
    s_r = (x_r * w).sum(axis=(1, 2, 3))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = (sig(s_f)[:, None, None, None] * fake - sig(-s_r)[:, None, None, None] * x_r).mean(0)
    np.testing.assert_allclose(D.w.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)


def test_path_length_penalty_matches_numpy():
    shape = (1, 2, 2)
    D = LinearD(shape)
    G = LinearG(shape=shape)
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, pl_weight=2.0, pl_batch_shrink=1, pl_decay=0.5)
    torch.manual_seed(5)
    z = torch.randn(2, 3)
    loss.accumulate_gradients(
        "Greg", torch.zeros(2, *shape), torch.zeros(2, 0), z, torch.zeros(2, 0), gain=1, cur_nimg=0
    )

    # Same noise draw as the loss: randn_like(img) / sqrt(H * W) right after the seed.
    torch.manual_seed(5)
    torch.randn(2, 3)
    noise = (torch.randn(2, *shape) / 2.0).double().numpy().reshape(2, -1)
    A = G.A.detach().double().numpy()
    # img = A @ sum_k w_k, so d(img . y)/dw_k = A^T y for every one of the num_ws entries.
    grad_per_w = noise @ A  # [N, z_dim]
    lengths = np.sqrt((grad_per_w**2).sum(axis=1))  # mean over num_ws of identical rows
    expected_mean = 0.0 + 0.5 * (lengths.mean() - 0.0)
    np.testing.assert_allclose(float(loss.pl_mean), expected_mean, rtol=1e-6)


# ----------------------------------------------------------------------------
# StyleGAN3-R's blur of D's inputs.


def test_blur_sigma_fades_linearly_to_zero():
    loss = StyleGAN2Loss(
        torch.device("cpu"), LinearG(), LinearD((1, 2, 2)), blur_init_sigma=10, blur_fade_kimg=2
    )
    assert loss.blur_sigma(0) == 10
    assert loss.blur_sigma(500) == 7.5
    assert loss.blur_sigma(1500) == 2.5
    assert loss.blur_sigma(2000) == 0
    assert loss.blur_sigma(10_000) == 0
    off = StyleGAN2Loss(torch.device("cpu"), LinearG(), LinearD((1, 2, 2)))
    assert off.blur_sigma(0) == 0


def test_blur_images_matches_scipy_separable_convolution():
    from scipy import ndimage

    from training.loss import blur_images

    sigma = 1.7  # floor(3 * 1.7) = 5: an 11-tap kernel
    x = torch.randn(2, 3, 14, 17, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    radius = 5
    taps = 2.0 ** -((np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    expected = x.double().numpy()
    for axis in (2, 3):
        expected = ndimage.convolve1d(expected, taps, axis=axis, mode="constant", cval=0.0)
    np.testing.assert_allclose(blur_images(x, sigma).numpy(), expected, atol=2e-6)


def test_blur_kernel_width_and_small_sigmas():
    from training.loss import blur_kernel

    assert blur_kernel(0) is None
    assert blur_kernel(0.3) is None  # floor(0.9) = 0 taps on each side: no blur
    taps = blur_kernel(10).double().numpy()
    assert taps.shape == (61,)
    x = np.arange(-30, 31)
    std = np.sqrt((taps * x**2).sum())
    # The kernel 2^-(x/sigma)^2 is a Gaussian of standard deviation sigma / sqrt(2 ln 2).
    # Cutting it at 3 sigma (3.5 of its standard deviations) trims about 0.2% of that.
    np.testing.assert_allclose(std, 10 / np.sqrt(2 * np.log(2)), rtol=5e-3)


def test_run_d_blurs_before_augmenting():
    seen = []

    class RecordingPipe(torch.nn.Module):
        def forward(self, img):
            seen.append(img.clone())
            return img

    D = LinearD((1, 8, 8))
    loss = StyleGAN2Loss(
        torch.device("cpu"), LinearG(shape=(1, 8, 8)), D, augment_pipe=RecordingPipe()
    )
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 4, 4] = 1
    loss.run_D(img, torch.zeros(1, 0), blur_sigma=1.0)
    assert len(seen) == 1
    assert seen[0][0, 0, 4, 4] < 1  # the pipe received the blurred image
    assert seen[0][0, 0, 4, 5] > 0
    np.testing.assert_allclose(float(seen[0].sum()), 1.0, rtol=1e-6)


# ----------------------------------------------------------------------------
# BigGAN's hinge loss.


class WholeLinearG(torch.nn.Module):
    """G(z, c) = A z reshaped to an image, called whole like a BigGAN generator."""

    def __init__(self, z_dim=3, shape=(1, 2, 2)):
        super().__init__()
        self.z_dim, self.c_dim, self.shape = z_dim, 0, shape
        generator = torch.Generator().manual_seed(0)
        self.A = torch.nn.Parameter(torch.randn(int(np.prod(shape)), z_dim, generator=generator))

    def forward(self, z, c):
        return (z @ self.A.t()).reshape(-1, *self.shape)


class ScalePipe(torch.nn.Module):
    """Stand-in augmentation pipe that doubles every image, so D receives 2 * img."""

    def forward(self, img):
        return img * 2


def make_hinge_loss(augment_pipe=None):
    from training.loss import BigGANLoss

    G, D = WholeLinearG(), LinearD((1, 2, 2))
    return BigGANLoss(torch.device("cpu"), G, D, augment_pipe=augment_pipe), G, D


def hinge_batch(real_scores, seed=0):
    """Real images whose LinearD scores are exactly `real_scores`, and latents spread wide
    enough that the fake scores fall on both sides of -1."""
    w = torch.linspace(-1, 1, 4).reshape(1, 2, 2).double()
    scores = torch.tensor(real_scores, dtype=torch.float64)
    real = (scores[:, None, None, None] * w / w.square().sum()).float()
    z = 3 * torch.randn(len(real_scores), 3, generator=torch.Generator().manual_seed(seed))
    return real, z


def run_phase(loss, phase, real, z, gain=1.0):
    c = torch.zeros(len(real), 0)
    loss.accumulate_gradients(phase, real, c, z, c, gain=gain, cur_nimg=0)


def hinge_D_grad_reference(G, D, real, z, image_scale=1.0):
    """d/dw of mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))) in float64, with D(x) = w . x
    applied to image_scale * x: a sample contributes only where its hinge is active."""
    w = D.w.detach().double().numpy()
    fake = image_scale * (z.double().numpy() @ G.A.detach().double().numpy().T).reshape(-1, 1, 2, 2)
    x_r = image_scale * real.double().numpy()
    s_f = (fake * w).sum(axis=(1, 2, 3))
    s_r = (x_r * w).sum(axis=(1, 2, 3))
    active_f = (1 + s_f > 0).astype(np.float64)[:, None, None, None]
    active_r = (1 - s_r > 0).astype(np.float64)[:, None, None, None]
    return (active_f * fake).mean(0) - (active_r * x_r).mean(0), s_r, s_f


def test_hinge_dmain_gradient_matches_float64_reference():
    loss, G, D = make_hinge_loss()
    real, z = hinge_batch([-0.5, 0.25, 1.5, 3.0])
    run_phase(loss, "Dmain", real, z)
    expected, s_r, s_f = hinge_D_grad_reference(G, D, real, z)
    # The batch covers both sides of each hinge.
    assert (s_r > 1).any()
    assert (s_r < 1).any()
    assert (s_f < -1).any()
    assert (s_f > -1).any()
    np.testing.assert_allclose(D.w.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)
    assert G.A.grad is None  # D's phase must not reach G's weights.


def test_hinge_dmain_zero_gradient_region():
    loss, G, D = make_hinge_loss()
    real, _z = hinge_batch([1.5, 2.0, 4.0])
    w = D.w.detach()
    with torch.no_grad():
        G.A.copy_(-3 * w.reshape(4, 1) / w.square().sum() * torch.ones(1, 3))
    z = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 1.0], [2.0, 2.0, 0.0]])  # D(G(z)) = -3 sum(z)
    run_phase(loss, "Dmain", real, z)
    np.testing.assert_array_equal(D.w.grad.numpy(), np.zeros((1, 2, 2), np.float32))


def test_hinge_gmain_gradient_matches_float64_reference():
    loss, G, D = make_hinge_loss()
    real, z = hinge_batch([0.0, 0.0, 0.0, 0.0], seed=1)
    run_phase(loss, "Gmain", real, z, gain=3.0)
    # loss = -gain * mean_n(w . A z_n), so d/dA[p, k] = -gain * w[p] * mean_n(z[n, k]).
    w = D.w.detach().double().numpy().reshape(-1)
    expected = -3.0 * np.outer(w, z.double().numpy().mean(0))
    np.testing.assert_allclose(G.A.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)


def test_hinge_gmain_has_no_zero_gradient_region():
    loss, G, D = make_hinge_loss()
    real, _z = hinge_batch([0.0, 0.0])
    z = torch.tensor([[40.0, -30.0, 25.0], [-35.0, 20.0, 50.0]])  # Scores far from +-1.
    run_phase(loss, "Gmain", real, z)
    w = D.w.detach().double().numpy().reshape(-1)
    expected = -np.outer(w, z.double().numpy().mean(0))
    np.testing.assert_allclose(G.A.grad.double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_hinge_augments_every_d_input():
    loss, G, D = make_hinge_loss(augment_pipe=ScalePipe())
    real, z = hinge_batch([-0.5, 0.25, 0.75, 1.5])
    run_phase(loss, "Dmain", real, z)
    expected, s_r, _s_f = hinge_D_grad_reference(G, D, real, z, image_scale=2.0)
    assert (s_r > 1).sum() == 2  # Doubling moved 0.75 past the hinge.
    np.testing.assert_allclose(D.w.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)

    # Gmain passes the fake images through the pipe as well.
    run_phase(loss, "Gmain", real, z)
    w = D.w.detach().double().numpy().reshape(-1)
    expected_G = -2.0 * np.outer(w, z.double().numpy().mean(0))
    np.testing.assert_allclose(G.A.grad.double().numpy(), expected_G, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fused, main", [("Gboth", "Gmain"), ("Dboth", "Dmain")])
def test_hinge_both_phases_equal_main(fused, main):
    grads = []
    for phase in (fused, main):
        loss, G, D = make_hinge_loss()
        real, z = hinge_batch([-0.5, 0.25, 1.5, 3.0])
        run_phase(loss, phase, real, z)
        grads.append([None if p.grad is None else p.grad.clone() for p in (G.A, D.w)])
    for fused_grad, main_grad in zip(*grads):
        assert (fused_grad is None) == (main_grad is None)
        if main_grad is not None:
            assert torch.equal(fused_grad, main_grad)


@pytest.mark.parametrize("phase", ["Greg", "Dreg"])
def test_hinge_reg_phases_do_nothing(phase, monkeypatch):
    reported = []
    monkeypatch.setattr(training_stats, "report", lambda name, value: reported.append(name))
    loss, G, D = make_hinge_loss()
    real, z = hinge_batch([-0.5, 0.25])
    run_phase(loss, phase, real, z)
    assert G.A.grad is None
    assert D.w.grad is None
    assert reported == []


def test_hinge_unknown_phase():
    loss, _G, _D = make_hinge_loss()
    real, z = hinge_batch([0.0])
    with pytest.raises(ValueError, match="Unknown loss phase 'Dr1'"):
        run_phase(loss, "Dr1", real, z)


def test_hinge_reports_stats(monkeypatch):
    reported = {}
    monkeypatch.setattr(
        training_stats,
        "report",
        lambda name, value: reported.setdefault(name, []).append(value.detach()),
    )
    loss, G, D = make_hinge_loss()
    real, z = hinge_batch([-0.5, 0.25, 1.5, 3.0])
    run_phase(loss, "Dmain", real, z)
    _grad, s_r, s_f = hinge_D_grad_reference(G, D, real, z)
    assert sorted(reported) == [
        "Loss/D/loss",
        "Loss/scores/fake",
        "Loss/scores/real",
        "Loss/signs/fake",
        "Loss/signs/real",
    ]
    np.testing.assert_allclose(reported["Loss/scores/real"][0].reshape(-1), s_r, rtol=1e-5)
    np.testing.assert_allclose(reported["Loss/scores/fake"][0].reshape(-1), s_f, rtol=1e-5)
    np.testing.assert_array_equal(reported["Loss/signs/real"][0].reshape(-1), np.sign(s_r))
    d_loss = reported["Loss/D/loss"][0].double().numpy().reshape(-1)
    expected_d_loss = np.maximum(1 - s_r, 0) + np.maximum(1 + s_f, 0)
    np.testing.assert_allclose(d_loss, expected_d_loss, rtol=1e-5, atol=1e-6)

    reported.clear()
    run_phase(loss, "Gmain", real, z)
    assert sorted(reported) == ["Loss/G/loss", "Loss/scores/fake", "Loss/signs/fake"]
    g_loss = reported["Loss/G/loss"][0].double().numpy().reshape(-1)
    np.testing.assert_allclose(g_loss, -s_f, rtol=1e-5, atol=1e-6)


def test_path_length_inner_gradient_computes_no_weight_gradients(monkeypatch):
    # Record the output_mask of every convolution backward that runs inside the loss's
    # torch.autograd.grad call: [input, weight, bias] gradients computed.
    from torch.utils._python_dispatch import TorchDispatchMode

    from training import networks_stylegan2

    masks = []

    class RecordConvBackward(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                masks.append(tuple(bool(m) for m in args[-1]))
            return func(*args, **(kwargs or {}))

    real_grad = torch.autograd.grad

    def recording_grad(*args, **kwargs):
        with RecordConvBackward():
            return real_grad(*args, **kwargs)

    torch.manual_seed(0)
    G = networks_stylegan2.Generator(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=128, channel_max=16,
        fused_modconv_default="inference_only",  # As train.py: training runs unfused.
    )  # fmt: skip
    loss = StyleGAN2Loss(torch.device("cpu"), G, LinearD((3, 16, 16)), r1_gamma=0, pl_weight=2)
    G.requires_grad_(True)
    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    z = torch.randn(4, 16)
    loss.accumulate_gradients("Greg", None, None, z, torch.zeros(4, 0), gain=4, cur_nimg=0)
    assert len(masks) >= 6  # Every SynthesisLayer and ToRGB ran a convolution backward.
    assert all(mask[0] and not mask[1] and not mask[2] for mask in masks), masks
    # The outer backward() still reached the weights.
    weights = [p for name, p in G.synthesis.named_parameters() if name.endswith("weight")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
