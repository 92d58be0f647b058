"""StyleGAN2Loss against hand-computed values on networks with closed-form gradients."""

import numpy as np
import torch

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
    # The kernel 2^-(x/sigma)^2 is a Gaussian of standard deviation sigma / sqrt(2 ln 2);
    # cutting it at 3 sigma (3.5 of its standard deviations) trims about 0.2% of that.
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
    assert seen[0][0, 0, 4, 4] < 1 and seen[0][0, 0, 4, 5] > 0  # the pipe saw the blurred image
    np.testing.assert_allclose(float(seen[0].sum()), 1.0, rtol=1e-6)
