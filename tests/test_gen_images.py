"""gen_images.py: --translate and --rotate move a StyleGAN3 generator's content as torch.roll
and torch.rot90 do, and a StyleGAN2 network refuses them with a message."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
from training import snapshot as snapshot_lib
from training.networks_stylegan2 import Discriminator
from training.networks_stylegan2 import Generator as Generator2
from training.networks_stylegan3 import Generator as Generator3

RES = 16


def write_snapshot(path, G):
    D = Discriminator(c_dim=0, img_resolution=RES, img_channels=1, channel_base=64, channel_max=8)
    snapshot_lib.save_network_snapshot(str(path), {"G": G, "D": D, "G_ema": G})
    return str(path)


@pytest.fixture(scope="module")
def sg3r_pkl(tmp_path_factory):
    # -R is equivariant to rotations and translations. output_scale 5 spreads the outputs over
    # many 8-bit levels, so the PNG comparisons below can tell a right shift from a wrong one.
    torch.manual_seed(0)
    G = Generator3(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=RES, img_channels=1, channel_base=256,
        channel_max=16, conv_kernel=1, use_radial_filters=True, output_scale=5,
    )  # fmt: skip
    return write_snapshot(tmp_path_factory.mktemp("sg3") / "network-snapshot-000000.pkl", G)


def generate(pkl, outdir, *extra):
    args = [f"--network={pkl}", "--seeds=3", f"--outdir={outdir}", "--device=cpu", *extra]
    result = CliRunner().invoke(gen_images.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return np.asarray(PIL.Image.open(os.path.join(outdir, "seed0003.png"))).astype(np.int64)


def test_translate_moves_content_right_and_down(sg3r_pkl, tmp_path):
    base = generate(sg3r_pkl, tmp_path / "base")
    assert base.max() - base.min() > 60  # enough contrast for the checks to mean something
    moved = generate(sg3r_pkl, tmp_path / "moved", "--translate=0.25,0.125")
    # 0.25 and 0.125 image widths are 4 and 2 pixels; compare away from the borders.
    expected = np.roll(base, shift=(2, 4), axis=(0, 1))
    inner = (slice(5, 11), slice(6, 12))
    assert np.abs(moved[inner] - expected[inner]).max() <= 2
    wrong = np.roll(base, shift=(-2, -4), axis=(0, 1))
    assert np.abs(moved[inner] - wrong[inner]).max() > 10


def test_rotate_turns_content_counterclockwise(sg3r_pkl, tmp_path):
    base = generate(sg3r_pkl, tmp_path / "base")
    turned = generate(sg3r_pkl, tmp_path / "turned", "--rotate=90")
    inner = (slice(4, 12), slice(4, 12))
    counterclockwise = np.rot90(base, k=1)  # numpy's k=1 turns the displayed image left
    assert np.abs(turned[inner] - counterclockwise[inner]).max() <= 2
    assert np.abs(turned[inner] - np.rot90(base, k=-1)[inner]).max() > 10


def test_make_transform_is_rotation_then_translation():
    m = gen_images.make_transform((0.5, -0.25), 30)
    angle = np.deg2rad(30)
    np.testing.assert_allclose(m[:2, :2] @ m[:2, :2].T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(m[:2, 2], [0.5, -0.25])
    np.testing.assert_allclose(m[0, :2], [np.cos(angle), np.sin(angle)])


def test_stylegan2_network_rejects_translate(tmp_path):
    G = Generator2(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=1, channel_base=64,
        channel_max=8, mapping_kwargs=dict(num_layers=1),
    )  # fmt: skip
    pkl = write_snapshot(tmp_path / "sg2.pkl", G)
    args = [f"--network={pkl}", "--seeds=0", f"--outdir={tmp_path / 'out'}", "--rotate=10"]
    result = CliRunner().invoke(gen_images.main, args)
    assert result.exit_code != 0
    assert "--translate and --rotate need a StyleGAN3 network" in result.output
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("value", ["1", "1,2,3", "a,b", "nan,0"])
def test_translate_parse_errors(sg3r_pkl, tmp_path, value):
    args = [f"--network={sg3r_pkl}", "--seeds=0", f"--outdir={tmp_path}", f"--translate={value}"]
    result = CliRunner().invoke(gen_images.main, args)
    assert result.exit_code == 2
    assert "--translate" in result.output


def test_biggan_network_rejects_trunc_and_translate(tmp_path):
    from training.networks_biggan import Discriminator as BigGANDiscriminator
    from training.networks_biggan import Generator as BigGANGenerator

    G = BigGANGenerator(z_dim=96, c_dim=0, w_dim=0, img_resolution=RES, img_channels=1, ch=2)
    D = BigGANDiscriminator(c_dim=0, img_resolution=RES, img_channels=1, ch=2)
    pkl = str(tmp_path / "biggan.pkl")
    snapshot_lib.save_network_snapshot(pkl, {"G": G, "D": D, "G_ema": G})
    base = [f"--network={pkl}", "--seeds=0", f"--outdir={tmp_path / 'out'}", "--device=cpu"]
    result = CliRunner().invoke(gen_images.main, [*base, "--trunc=0.7"])
    assert result.exit_code == 1
    assert "Invalid truncation_psi 0.7 for a BigGAN generator" in result.output
    result = CliRunner().invoke(gen_images.main, [*base, "--translate=0.1,0"])
    assert result.exit_code == 1
    assert "--translate and --rotate need a StyleGAN3 network" in result.output
    result = CliRunner().invoke(gen_images.main, base)
    assert result.exit_code == 0, result.output
    assert os.path.isfile(tmp_path / "out" / "seed0000.png")
