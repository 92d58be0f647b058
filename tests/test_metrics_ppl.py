"""Perceptual path length, checked against numpy references written here.

The references cover slerp, the crop, the percentile filter and the whole metric on a generator
whose synthesis is linear in w, measured by a stand-in LPIPS network that is a fixed linear map
of the pixels. Real StyleGAN networks check the variants, the noise of each pair, and that
batch size and process count do not change the distances."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from test_metrics import write_npz_dataset

from metrics import metric_utils
from metrics import perceptual_path_length as ppl
from training import networks_biggan, networks_stylegan2, networks_stylegan3

# The stand-in VGG16 is built with torch.jit.script, which PyTorch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

VARIANTS = {  # name: (space, sampling, crop)
    "ppl_zfull": ("z", "full", True),
    "ppl_wfull": ("w", "full", True),
    "ppl_zend": ("z", "end", True),
    "ppl_wend": ("w", "end", True),
    "ppl2_wend": ("w", "end", False),
}

# ----------------------------------------------------------------------------
# Independent references.


def reference_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b on unit vectors."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    omega = np.arccos(np.clip(a @ b, -1, 1))
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def lpips_weights(num: int) -> np.ndarray:
    """The stand-in LPIPS network multiplies flattened pixel k by (k % 5 + 1) / 5."""
    return (np.arange(num) % 5 + 1) / 5


def reference_lpips_input(img: np.ndarray, crop: bool) -> np.ndarray:
    """Images [N, C, R, R] in [-1, 1] to LPIPS input by hand: rows 3R/8..7R/8 and columns
    2R/8..6R/8, block means over R // 256 pixels when R > 256, pixels (x + 1) * 127.5,
    grayscale repeated."""
    res = img.shape[2]
    if crop:
        img = img[:, :, 3 * res // 8 : 7 * res // 8, 2 * res // 8 : 6 * res // 8]
    factor = res // 256
    if factor > 1:
        n, c, h, w = img.shape
        img = img.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    img = (img + 1) * 127.5
    return np.repeat(img, 3, axis=1) if img.shape[1] == 1 else img


def reference_lpips_distance(img_a: np.ndarray, img_b: np.ndarray, crop: bool) -> np.ndarray:
    """Squared distance [N] of the stand-in LPIPS vectors of two image sets."""
    diff = (reference_lpips_input(img_b, crop) - reference_lpips_input(img_a, crop)).reshape(
        len(img_a), -1
    )
    return ((diff * lpips_weights(diff.shape[1])) ** 2).sum(axis=1)


def reference_filtered_mean(distances: np.ndarray) -> float:
    """For 100 values or fewer, numpy's 1st percentile (lower) is the minimum and its 99th
    (higher) the maximum. The filter keeps values equal to the bounds, so it keeps them all."""
    assert len(distances) <= 100
    return float(distances.mean())


def reference_samples(num: int, z_dim: int, seed: int, sampling: str, labels=None):
    """The documented draws of each sample: z0, z1, t (full only), a label index (labeled data
    only), from numpy.random.default_rng([seed, index])."""
    z0, z1, t, c = [], [], [], []
    for index in range(num):
        rng = np.random.default_rng([seed, index])
        z0.append(rng.standard_normal(z_dim).astype(np.float32))
        z1.append(rng.standard_normal(z_dim).astype(np.float32))
        t.append(np.float32(rng.random()) if sampling == "full" else np.float32(0))
        if labels is not None:
            c.append(np.eye(labels.max() + 1)[labels[rng.integers(len(labels))]])
    c = np.stack(c) if labels is not None else np.zeros([num, 0])
    return np.stack(z0), np.stack(z1), np.array(t, dtype=np.float64), c


# ----------------------------------------------------------------------------
# Stand-ins.


class WeightedPixelsVGG(torch.nn.Module):
    """VGG16 call signature. The LPIPS vector is the flattened image times fixed weights."""

    def forward(
        self,
        img: torch.Tensor,
        resize_images: bool = True,
        return_features: bool = False,
        return_lpips: bool = False,
    ) -> torch.Tensor:
        assert img.shape[1] == 3
        assert not resize_images
        assert return_lpips
        x = img.flatten(1)
        weights = (torch.arange(x.shape[1], device=x.device) % 5 + 1).to(x.dtype) / 5
        return x * weights


@pytest.fixture
def vgg16_path(tmp_path):
    path = str(tmp_path / "weighted-pixels-vgg16.pt")
    torch.jit.script(WeightedPixelsVGG()).save(path)
    return path


class LinearMapping(torch.nn.Module):
    """w = tanh([z / rms(z), c] @ matrix), broadcast to num_ws copies."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws):
        super().__init__()
        self.num_ws = num_ws
        matrix = np.random.default_rng(3).standard_normal([z_dim + c_dim, w_dim]) / 2
        self.register_buffer("matrix", torch.tensor(matrix, dtype=torch.float32))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        assert truncation_psi == 1
        assert not update_emas
        x = z / z.square().mean(dim=1, keepdim=True).sqrt()
        w = torch.tanh(torch.cat([x, c], dim=1) @ self.matrix)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def reference(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
        x = z / np.sqrt((z.astype(np.float64) ** 2).mean(axis=1, keepdims=True))
        return np.tanh(np.concatenate([x, c], axis=1) @ self.matrix.double().numpy())


class NoisyLayer(torch.nn.Module):
    def __init__(self, res):
        super().__init__()
        self.register_buffer("noise_const", torch.randn([res, res]))


class LinearSynthesis(torch.nn.Module):
    """img = basis . mean(ws) + 0.5 * noise_const: linear in w, plus noise that cancels only
    when both images of a pair get the same noise."""

    def __init__(self, w_dim, res, channels):
        super().__init__()
        basis = np.random.default_rng(4).standard_normal([w_dim, channels, res, res]) * 0.3
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.float32))
        self.layer = NoisyLayer(res)

    def forward(self, ws, noise_mode="random", force_fp32=False):
        assert noise_mode == "const"
        assert force_fp32
        img = torch.einsum("nw,wchv->nchv", ws.mean(dim=1), self.basis)
        return img + 0.5 * self.layer.noise_const

    def reference(self, w: np.ndarray) -> np.ndarray:
        return np.einsum("nw,wchv->nchv", w, self.basis.double().numpy())


class LinearGenerator(torch.nn.Module):
    def __init__(self, res=32, channels=3, c_dim=0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = 4, c_dim, 3
        self.img_resolution, self.img_channels = res, channels
        self.mapping = LinearMapping(self.z_dim, c_dim, self.w_dim, num_ws=2)
        self.synthesis = LinearSynthesis(self.w_dim, res, channels)


def reference_linear_distances(G, num, epsilon, space, sampling, crop, labels=None, seed=0):
    """Distances of LinearGenerator in float64 from the documented latents. The noise is the
    same for both images of a pair, so it cancels."""
    z0, z1, t, c = reference_samples(num, G.z_dim, seed, sampling, labels)
    if space == "w":
        # Linear in w, so the difference is epsilon (w1 - w0) for every t.
        w_diff = G.mapping.reference(z1, c) - G.mapping.reference(z0, c)
        img_diff = G.synthesis.reference(w_diff)
        return reference_lpips_distance(np.zeros_like(img_diff), img_diff, crop)
    ends = []
    for shift in (0, epsilon):
        z = np.stack([reference_slerp(a, b, s + shift) for a, b, s in zip(z0, z1, t)])
        ends.append(G.synthesis.reference(G.mapping.reference(z, c)))
    return reference_lpips_distance(ends[0], ends[1], crop) / epsilon**2


def make_opts(tmp_path, G, vgg16_path, labels=None, **kwargs):
    images = np.zeros([4 if labels is None else len(labels), 3, 8, 8], dtype=np.uint8)
    dataset_kwargs = write_npz_dataset(tmp_path / "real.npz", images, labels)
    return metric_utils.MetricOptions(
        G=G, dataset_kwargs=dataset_kwargs, device="cpu", vgg16_path=vgg16_path, **kwargs
    )


def tiny_stylegan2(res=16, c_dim=0, **kwargs):
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(
        z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=16, **kwargs,
    )  # fmt: skip
    # Fresh noise strengths are 0, so give them the nonzero values of a trained generator.
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.5)
    return G


# ----------------------------------------------------------------------------
# Pure helpers.


def test_slerp_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal([6, 5]) * 3
    b = rng.standard_normal([6, 5])
    t = np.array([0, 1, 0.25, 0.5, -0.2, 1.3])
    out = ppl.slerp(torch.tensor(a), torch.tensor(b), torch.tensor(t)).numpy()
    for row in range(6):
        np.testing.assert_allclose(out[row], reference_slerp(a[row], b[row], t[row]), atol=1e-12)


def test_slerp_stays_on_unit_sphere():
    rng = np.random.default_rng(1)
    a = rng.standard_normal([200, 16]).astype(np.float32)
    b = rng.standard_normal([200, 16]).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    t = torch.from_numpy(rng.uniform(-0.5, 1.5, 200).astype(np.float32))
    out = ppl.slerp(torch.from_numpy(a), torch.from_numpy(b), t).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    ends = ppl.slerp(torch.from_numpy(a[:2]), torch.from_numpy(b[:2]), torch.tensor([0.0, 1.0]))
    np.testing.assert_allclose(ends[0].numpy(), a[0], atol=1e-6)
    np.testing.assert_allclose(ends[1].numpy(), b[1], atol=1e-6)


def test_slerp_of_equal_directions_is_finite():
    a = torch.tensor([[3.0, 4.0]])
    out = ppl.slerp(a, 2 * a, torch.tensor([0.7]))
    np.testing.assert_allclose(out.numpy(), [[0.6, 0.8]], atol=1e-6)


def test_lerp_broadcasts_t_over_ws():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal([2, 3, 4, 5])
    t = np.array([0.0, 0.5, 2.0])
    out = ppl.lerp(torch.tensor(a), torch.tensor(b), torch.tensor(t)).numpy()
    np.testing.assert_allclose(out, a + t[:, None, None] * (b - a), atol=1e-12)


@pytest.mark.parametrize("res, rows, cols", [(8, (3, 7), (2, 6)), (16, (6, 14), (4, 12))])
def test_crop_face_rows_and_columns(res, rows, cols):
    img = torch.arange(2 * res * res, dtype=torch.float32).reshape(1, 2, res, res)
    out = ppl.crop_face(img)
    assert out.shape == (1, 2, res // 2, res // 2)
    np.testing.assert_array_equal(out.numpy(), img.numpy()[:, :, slice(*rows), slice(*cols)])


def test_crop_face_rejects_small_or_non_square():
    with pytest.raises(ValueError, match="at least 8x8"):
        ppl.crop_face(torch.zeros([1, 3, 4, 4]))
    with pytest.raises(ValueError, match="square"):
        ppl.crop_face(torch.zeros([1, 3, 16, 8]))


def test_filtered_mean_keeps_values_at_the_bounds():
    # Up to 100 values, the bounds are the minimum and the maximum, and both are kept.
    assert ppl.filtered_mean(np.array([9, 1, 2, 9, 3, 1])) == pytest.approx(25 / 6)
    # 200 values: the bounds are the second smallest and the second largest value.
    rng = np.random.default_rng(4)
    values = rng.permutation(np.concatenate([[-100], np.arange(1, 199), [1000]]))
    assert ppl.filtered_mean(values) == pytest.approx(99.5)
    tied = rng.permutation(np.concatenate([[0, 0], np.arange(2, 198), [300, 300]]))
    assert ppl.filtered_mean(tied) == pytest.approx(tied.mean())


def test_filtered_mean_of_1000_squares_by_hand():
    # The 1st percentile (lower) is rank floor(0.01 * 999) = 9, and the 99th (higher) is rank
    # ceil(0.99 * 999) = 990.
    # The mean of k^2 for k = 9..990 uses the sum of squares n (n + 1) (2 n + 1) / 6.
    def sum_squares(n):
        return n * (n + 1) * (2 * n + 1) / 6

    expected = (sum_squares(990) - sum_squares(8)) / 982
    values = np.random.default_rng(3).permutation(np.arange(1000) ** 2)
    assert ppl.filtered_mean(values) == pytest.approx(expected, rel=1e-12)


def test_filtered_mean_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN or infinite"):
        ppl.filtered_mean(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="1-D"):
        ppl.filtered_mean(np.zeros([0]))


# ----------------------------------------------------------------------------
# The metric on the linear generator.


@pytest.mark.parametrize("space", ["w", "z"])
@pytest.mark.parametrize("sampling", ["full", "end"])
@pytest.mark.parametrize("crop", [True, False])
def test_linear_generator_matches_reference(tmp_path, vgg16_path, space, sampling, crop):
    G = LinearGenerator()
    opts = make_opts(tmp_path, G, vgg16_path, seed=7)
    epsilon = 1e-2
    expected = reference_linear_distances(G, 12, epsilon, space, sampling, crop, seed=7)
    distances = ppl.compute_path_distances(opts, 12, epsilon, space, sampling, crop, 5)
    np.testing.assert_allclose(distances, expected, rtol=1e-4)
    value, info = ppl.compute_ppl(opts, 12, epsilon, space, sampling, crop, batch_size=5)
    assert value == pytest.approx(reference_filtered_mean(expected), rel=1e-4)
    assert info == dict(num_gen=12)


def test_w_space_linear_result_is_independent_of_epsilon(tmp_path, vgg16_path):
    G = LinearGenerator()
    opts = make_opts(tmp_path, G, vgg16_path)
    expected = reference_filtered_mean(reference_linear_distances(G, 10, 1, "w", "full", True))
    for epsilon, rtol in [(1e-4, 1e-2), (0.1, 1e-5), (3.0, 1e-5)]:
        value, _ = ppl.compute_ppl(opts, 10, epsilon, "w", "full", True, batch_size=4)
        assert value == pytest.approx(expected, rel=rtol), epsilon


def test_large_grayscale_images_are_pooled(tmp_path, vgg16_path):
    # 512x512, cropped to 256x256, then averaged over 2x2 blocks: 128x128, repeated to RGB.
    G = LinearGenerator(res=512, channels=1)
    opts = make_opts(tmp_path, G, vgg16_path)
    expected = reference_linear_distances(G, 3, 0.1, "w", "end", True)
    distances = ppl.compute_path_distances(opts, 3, 0.1, "w", "end", True, batch_size=2)
    np.testing.assert_allclose(distances, expected, rtol=1e-4)


def test_conditional_generator_gets_dataset_labels(tmp_path, vgg16_path):
    labels = np.array([0, 2, 1, 1, 0, 2])
    G = LinearGenerator(c_dim=3)
    opts = make_opts(tmp_path, G, vgg16_path, labels=labels)
    expected = reference_linear_distances(G, 8, 1, "w", "end", False, labels=labels)
    distances = ppl.compute_path_distances(opts, 8, 0.1, "w", "end", False, batch_size=3)
    np.testing.assert_allclose(distances, expected, rtol=1e-4)


def test_conditional_generator_needs_labels(tmp_path, vgg16_path):
    opts = make_opts(tmp_path, LinearGenerator(c_dim=3), vgg16_path)
    with pytest.raises(ValueError, match="c_dim=3"):
        ppl.compute_ppl(opts, 4, 1e-4, "w", "end", True)


# ----------------------------------------------------------------------------
# Real networks.


def test_stylegan2_variants_give_positive_values(tmp_path, vgg16_path):
    opts = make_opts(tmp_path, tiny_stylegan2(), vgg16_path)
    for name, (space, sampling, crop) in VARIANTS.items():
        value, info = ppl.compute_ppl(opts, 6, 1e-4, space, sampling, crop, batch_size=3)
        assert np.isfinite(value), name
        assert value > 0, name
        assert info == dict(num_gen=6), name


def test_stylegan3_without_noise_buffers(tmp_path, vgg16_path):
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
        channel_max=16, mapping_kwargs=dict(num_layers=2),
    )  # fmt: skip
    assert metric_utils.find_noise_buffers(G) == []
    value, _ = ppl.compute_ppl(make_opts(tmp_path, G, vgg16_path), 3, 1e-4, "w", "end", True)
    assert np.isfinite(value)
    assert value > 0


def test_non_stylegan_generator_is_rejected(tmp_path, vgg16_path):
    G = networks_biggan.Generator(
        z_dim=32, c_dim=0, w_dim=0, img_resolution=32, img_channels=3, ch=4
    )
    opts = make_opts(tmp_path, G, vgg16_path)
    with pytest.raises(ValueError, match="has no mapping, synthesis"):
        ppl.compute_ppl(opts, 4, 1e-4, "z", "full", True)


def test_bad_arguments_are_rejected(tmp_path, vgg16_path):
    opts = make_opts(tmp_path, LinearGenerator(), vgg16_path)
    cases = [
        (dict(num_samples=0), "num_samples=0"),
        (dict(epsilon=0.0), "epsilon=0.0"),
        (dict(space="x"), "space 'x'"),
        (dict(sampling="mid"), "sampling 'mid'"),
        (dict(batch_size=0), "batch_size=0"),
    ]
    for change, message in cases:
        args = dict(num_samples=4, epsilon=1e-4, space="w", sampling="end", crop=True)
        args.update(change)
        with pytest.raises(ValueError, match=message):
            ppl.compute_ppl(opts, **args)


@pytest.mark.parametrize("fused_modconv", [True, False])
def test_stylegan2_each_pair_gets_its_own_noise(tmp_path, vgg16_path, fused_modconv):
    """A batch of pairs with per-pair noise [2N, 1, H, W] gives the distances of running each
    pair alone with its noise in the [H, W] buffers. The noise is drawn as documented, with
    torch.randn of the total buffer size from a CPU generator seeded with the sample's last
    draw, split in named_buffers() order. Both modulated convolution paths add the noise."""
    G = tiny_stylegan2(fused_modconv_default=fused_modconv)
    opts = make_opts(tmp_path, G, vgg16_path)
    batched = ppl.compute_path_distances(opts, 3, 1e-2, "z", "full", True, batch_size=3)

    vgg = opts.load_vgg16()
    G = G.eval()
    names = [n for n, _ in G.named_buffers() if n.endswith(".noise_const")]
    for index in range(3):
        rng = np.random.default_rng([0, index])
        z0, z1 = rng.standard_normal([2, 8]).astype(np.float32)
        t = np.float32(rng.random())
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        noise = torch.randn([sum(G.get_buffer(n).numel() for n in names)], generator=generator)
        for name, part in zip(names, noise.split([G.get_buffer(n).numel() for n in names])):
            G.get_buffer(name).copy_(part.reshape(G.get_buffer(name).shape))
        z = ppl.slerp(
            torch.from_numpy(np.stack([z0, z0])),
            torch.from_numpy(np.stack([z1, z1])),
            torch.tensor([t, t + 1e-2]),
        )
        with torch.no_grad():
            img = G.synthesis(G.mapping(z, None), noise_mode="const", force_fp32=True)
        img = (img[:, :, 6:14, 4:12] + 1) * 127.5
        lpips = vgg.vgg16_lpips(img).double()
        expected = (lpips[0] - lpips[1]).square().sum().item() / 1e-4
        assert batched[index] == pytest.approx(expected, rel=1e-4), index


def test_stylegan2_batch_size_does_not_change_distances(tmp_path, vgg16_path):
    # Other batch sizes change float32 rounding. At epsilon 1e-2 it moves a distance by about
    # 1e-5, and at epsilon 1e-4 by up to 1.5e-3.
    G = tiny_stylegan2(c_dim=2)
    labels = np.array([0, 1, 1, 0, 1])
    reference = None
    for batch_size, opts_batch_size in [(1, 64), (4, 64), (5, 2)]:
        opts = make_opts(tmp_path, G, vgg16_path, labels=labels, batch_size=opts_batch_size)
        distances = ppl.compute_path_distances(opts, 7, 1e-2, "w", "full", True, batch_size)
        assert distances.shape == (7,)
        if reference is None:
            reference = distances
        np.testing.assert_allclose(distances, reference, rtol=1e-4)


# ----------------------------------------------------------------------------
# Two processes.


def two_process_worker(rank, init_file, dataset_kwargs, vgg16_path, out_dir):
    """Compute the distances and PPL of 7 samples as rank `rank` of 2 and save them."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo's connections on the loopback interface
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        opts = metric_utils.MetricOptions(
            G=tiny_stylegan2(), dataset_kwargs=dataset_kwargs, device="cpu",
            vgg16_path=vgg16_path, num_gpus=2, rank=rank,
        )  # fmt: skip
        distances = ppl.compute_path_distances(opts, 7, 1e-2, "z", "full", True, batch_size=2)
        value, _ = ppl.compute_ppl(opts, 7, 1e-2, "z", "full", True, batch_size=2)
        np.save(os.path.join(out_dir, f"distances{rank}.npy"), distances)
        np.save(os.path.join(out_dir, f"value{rank}.npy"), np.array(value))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path, vgg16_path):
    opts = make_opts(tmp_path, tiny_stylegan2(), vgg16_path)
    distances = ppl.compute_path_distances(opts, 7, 1e-2, "z", "full", True, batch_size=3)
    value, _ = ppl.compute_ppl(opts, 7, 1e-2, "z", "full", True, batch_size=3)

    args = (str(tmp_path / "init"), dict(opts.dataset_kwargs), vgg16_path, str(tmp_path))
    torch.multiprocessing.spawn(two_process_worker, args=args, nprocs=2)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"distances{rank}.npy"), distances, rtol=1e-4)
    assert float(np.load(tmp_path / "value0.npy")) == pytest.approx(value, rel=1e-4)
    assert np.isnan(np.load(tmp_path / "value1.npy"))
