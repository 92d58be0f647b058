"""train.py start-up checks: every invalid option combination fails before training, naming
the flag; a dry run prints the options and creates nothing."""

import json
import os
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import train


def make_zip(path, num_images=8, resolution=16, channels=1, labels=False):
    """Write a tiny dataset zip of random images, optionally with dataset.json labels."""
    rnd = np.random.RandomState(0)
    with zipfile.ZipFile(path, "w") as zf:
        names = []
        for i in range(num_images):
            shape = [resolution, resolution] if channels == 1 else [resolution, resolution, 3]
            pixels = rnd.randint(0, 256, size=shape, dtype=np.uint8)
            name = f"img{i:04d}.png"
            with zf.open(name, "w") as f:
                PIL.Image.fromarray(pixels).save(f, format="PNG")
            names.append(name)
        if labels:
            import json

            zf.writestr(
                "dataset.json", json.dumps({"labels": [[n, i % 3] for i, n in enumerate(names)]})
            )
    return str(path)


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("data") / "tiny-16x16.zip")


def invoke(args):
    return CliRunner().invoke(train.main, args, catch_exceptions=False)


def base_args(outdir, data):
    return [
        f"--outdir={outdir}",
        "--cfg=stylegan2",
        f"--data={data}",
        "--gpus=1",
        "--batch=8",
        "--gamma=1",
        "--metrics=none",
        "--device=cpu",
        "--cbase=256",
        "--cmax=16",
    ]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--batch=6", "--gpus=4"], "--batch=6 must be a multiple of --gpus=4"),
        (["--batch-gpu=3"], "--batch=8 must be a multiple of --gpus times --batch-gpu"),
        (["--batch=8", "--mbstd-group=3"], "must be a multiple of --mbstd-group=3"),
        (["--metrics=fid_nonsense"], "unknown metric 'fid_nonsense'"),
        (["--cond=1"], "--cond=1 requires labels"),
        (["--resume=/nonexistent/snap.pkl"], "--resume=/nonexistent/snap.pkl: file not found"),
        (["--dmd=1", "--dmd-layers=7"], "--dmd-layers"),
        (["--dmd=1", "--dmd-layers=a,b"], "--dmd-layers"),
        (["--dmd=1", "--dmd-interval=0.004"], "--dmd-interval=0.004 kimg is shorter than one"),
        (["--target=nan"], "--target=nan is not a number in [0, 1]"),
        (["--aug=fixed", "--p=nan"], "--p=nan is not a number in [0, 1]"),
    ],
)
def test_cli_rejects_invalid_options(tmp_path, data_zip, extra, expected):
    result = invoke(base_args(tmp_path / "runs", data_zip) + extra)
    assert result.exit_code != 0
    assert expected in result.output
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize(
    "extra", [["--dmd-ratio=1.0"], ["--dmd-policy=sometimes"], ["--dmd-interval=0"]]
)
def test_cli_rejects_out_of_range_dmd_values(tmp_path, data_zip, extra):
    result = invoke(base_args(tmp_path / "runs", data_zip) + extra)
    assert result.exit_code == 2
    assert extra[0].split("=")[0] in result.output


def test_cli_missing_data_names_path(tmp_path):
    result = invoke(base_args(tmp_path / "runs", tmp_path / "missing.zip"))
    assert result.exit_code != 0
    assert "missing.zip" in result.output


def test_cli_dry_run_prints_and_creates_nothing(tmp_path, data_zip):
    result = invoke(base_args(tmp_path / "runs", data_zip) + ["--dmd=1", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Dry run" in result.output
    assert "dmd_patch.networks.DMDDiscriminator" in result.output
    assert "-dmd-toggle-r0.25-int4" in result.output
    assert not os.path.exists(tmp_path / "runs")


def test_cli_dry_run_baseline_directory_name(tmp_path, data_zip):
    result = invoke(base_args(tmp_path / "runs", data_zip) + ["--dry-run", "--desc=mytest"])
    assert result.exit_code == 0, result.output
    assert "00000-stylegan2-tiny-16x16-gpus1-batch8-gamma1-nodmd-mytest" in result.output
    assert "training.networks_stylegan2.Discriminator" in result.output


def test_cli_default_dmd_layer_and_options(tmp_path, data_zip):
    args = base_args(tmp_path / "runs", data_zip)
    args += ["--dmd=1", "--dmd-ratio=0.5", "--dmd-policy=pulse", "--dmd-interval=2", "--dry-run"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert '"ratio": 0.5' in result.output
    assert '"policy": "pulse"' in result.output
    assert "-dmd-pulse-r0.5-int2" in result.output


def test_cli_missing_detector_fails_before_training(tmp_path, data_zip):
    args = base_args(tmp_path / "runs", data_zip)
    args = [a for a in args if not a.startswith("--metrics")]
    args += ["--metrics=fid100_full", f"--detector={tmp_path / 'no-such-inception.pt'}"]
    result = invoke(args)
    assert result.exit_code != 0
    assert "no-such-inception.pt" in result.output
    assert not os.path.exists(tmp_path / "runs")


def test_cli_missing_vgg16_fails_before_training(tmp_path, data_zip, monkeypatch):
    monkeypatch.delenv("DMD_VGG16_PATH", raising=False)
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "empty-cache"))
    args = [a for a in base_args(tmp_path / "runs", data_zip) if not a.startswith("--metrics")]
    result = invoke(args + ["--metrics=pr1k3"])
    assert result.exit_code != 0
    assert "vgg16.pt" in result.output
    assert "--vgg16" in result.output
    assert not os.path.exists(tmp_path / "runs")


def dry_run_options(tmp_path, data_zip, *extra):
    """Run train.py --dry-run and return the printed training options as a dict."""
    args = base_args(tmp_path / "runs", data_zip)
    if "--cfg=biggan" in extra:  # Drop the StyleGAN-only options of base_args.
        args = [a for a in args if not a.startswith(("--gamma", "--cbase", "--cmax"))]
    result = invoke(args + [*extra, "--dry-run"])
    assert result.exit_code == 0, result.output
    text = result.output.split("Training options:")[1].split("Output directory:")[0]
    return json.loads(text), result.output


def test_cli_stylegan3_presets(tmp_path, data_zip):
    c, _ = dry_run_options(tmp_path, data_zip, "--cfg=stylegan3-t", "--batch=16")
    assert c["G_kwargs"]["class_name"] == "training.networks_stylegan3.Generator"
    assert c["G_kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    assert (c["G_kwargs"]["channel_base"], c["G_kwargs"]["channel_max"]) == (256, 16)
    assert c["G_kwargs"]["magnitude_ema_beta"] == 0.5 ** (16 / 20000)
    assert "conv_kernel" not in c["G_kwargs"]
    assert "use_radial_filters" not in c["G_kwargs"]
    assert c["G_opt_kwargs"]["lr"] == 0.0025
    assert c["D_opt_kwargs"]["lr"] == 0.002
    assert c["G_reg_interval"] is None
    assert c["D_reg_interval"] == 16
    loss = c["loss_kwargs"]
    assert loss.get("pl_weight", 0) == 0
    assert loss.get("style_mixing_prob", 0) == 0
    assert loss.get("blur_init_sigma", 0) == 0
    assert c["D_kwargs"]["class_name"] == "training.networks_stylegan2.Discriminator"


def test_cli_stylegan3_r_presets(tmp_path, data_zip):
    c, _ = dry_run_options(tmp_path, data_zip, "--cfg=stylegan3-r", "--batch=16")
    G = c["G_kwargs"]
    assert (G["channel_base"], G["channel_max"]) == (512, 32)  # doubled for G only
    assert (c["D_kwargs"]["channel_base"], c["D_kwargs"]["channel_max"]) == (256, 16)
    assert G["conv_kernel"] == 1
    assert G["use_radial_filters"] is True
    assert c["loss_kwargs"]["blur_init_sigma"] == 10
    assert c["loss_kwargs"]["blur_fade_kimg"] == 16 * 200 / 32


def test_cli_stylegan2_presets_unchanged(tmp_path, data_zip):
    c, _ = dry_run_options(tmp_path, data_zip)
    assert c["G_kwargs"]["class_name"] == "training.networks_stylegan2.Generator"
    assert c["G_kwargs"]["mapping_kwargs"] == {"num_layers": 8, "w_avg_beta": 0.995}
    assert c["G_opt_kwargs"]["lr"] == 0.002
    assert c["G_reg_interval"] == 4
    assert c["loss_kwargs"]["pl_weight"] == 2
    assert c["loss_kwargs"]["style_mixing_prob"] == 0.9


def test_cli_explicit_glr_and_map_depth_win(tmp_path, data_zip):
    c, _ = dry_run_options(tmp_path, data_zip, "--cfg=stylegan3-t", "--glr=0.001", "--map-depth=4")
    assert c["G_opt_kwargs"]["lr"] == 0.001
    assert c["G_kwargs"]["mapping_kwargs"]["num_layers"] == 4


def test_cli_ada_is_the_default_with_bgc(tmp_path, data_zip):
    c, output = dry_run_options(tmp_path, data_zip)
    bgc = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"]
    bgc += ["brightness", "contrast", "lumaflip", "hue", "saturation"]
    assert c["augment_kwargs"] == dict(
        {k: 1 for k in bgc}, class_name="training.augment.AugmentPipe"
    )
    assert c["ada_target"] == 0.6
    assert "augment_p" not in c
    assert "Augmentation:        adaptive p, target 0.6" in output


def test_cli_fixed_and_no_augmentation(tmp_path, data_zip):
    c, output = dry_run_options(tmp_path, data_zip, "--aug=fixed", "--p=0.3", "--augpipe=blit")
    assert c["augment_p"] == 0.3
    assert "ada_target" not in c
    assert c["augment_kwargs"] == {
        "class_name": "training.augment.AugmentPipe",
        "xflip": 1,
        "rotate90": 1,
        "xint": 1,
    }
    assert "fixed p = 0.3" in output
    assert "-blit-" in output
    c, output = dry_run_options(tmp_path, data_zip, "--aug=noaug", "--target=0.8")
    assert "augment_kwargs" not in c
    assert "ada_target" not in c
    assert "Augmentation:        off" in output


def test_cli_rejects_unknown_augpipe(tmp_path, data_zip):
    result = invoke(base_args(tmp_path / "runs", data_zip) + ["--augpipe=bgcx"])
    assert result.exit_code == 2
    assert "--augpipe" in result.output
    assert "bgcfnc" in result.output


# ----------------------------------------------------------------------------
# --cfg=biggan.


def test_cli_biggan_recipe(tmp_path, data_zip):
    c, output = dry_run_options(tmp_path, data_zip, "--cfg=biggan", "--batch=10")
    # 16x16 data: up-blocks to 8 and 16, so z has 2 + 1 chunks of 32 numbers.
    assert c["G_kwargs"] == {
        "class_name": "training.networks_biggan.Generator",
        "z_dim": 96,
        "w_dim": 0,
        "ch": 64,
        "attn_res": 0,
    }
    assert c["D_kwargs"] == {
        "class_name": "training.networks_biggan.Discriminator",
        "ch": 64,
        "attn_res": 0,
    }
    assert c["loss_kwargs"] == {"class_name": "training.loss.BigGANLoss"}
    for key in ("G_opt_kwargs", "D_opt_kwargs"):
        assert c[key]["lr"] == 2e-4
        assert c[key]["betas"] == [0.0, 0.999]
    assert c["G_reg_interval"] is None
    assert c["D_reg_interval"] is None
    assert c["num_D_steps"] == 4
    # Decay 0.9999 per G step of 4 minibatches of 10 images, after 1000 G steps (40 kimg).
    per_image = 0.5 ** (1 / (c["ema_kimg"] * 1000))
    assert per_image ** (4 * 10) == pytest.approx(0.9999, abs=1e-10)
    assert c["ema_start_kimg"] == 40
    assert c["ema_rampup"] is None
    assert c["ema_average_buffers"] is True
    assert "augment_kwargs" not in c  # no augmentation unless --aug is given
    assert "00000-biggan-tiny-16x16-gpus1-batch10-nodmd" in output


def test_cli_biggan_with_dmd_and_ada(tmp_path, data_zip):
    args = ["--cfg=biggan", "--dmd=1", "--aug=ada", "--ch=8", "--attn-res=8", "--dlr=1e-4"]
    c, _ = dry_run_options(tmp_path, data_zip, *args)
    assert c["D_kwargs"]["class_name"] == "dmd_patch.networks.DMDBigGANDiscriminator"
    assert c["D_kwargs"]["ch"] == 8
    assert c["D_kwargs"]["attn_res"] == 8
    assert c["D_opt_kwargs"]["lr"] == 1e-4
    assert c["ada_target"] == 0.6


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--cfg=biggan", "--gamma=1"], "--gamma does not apply to --cfg=biggan"),
        (["--cfg=biggan", "--map-depth=2"], "--map-depth does not apply"),
        (["--cfg=biggan", "--cbase=64", "--cmax=8"], "--cbase, --cmax do not apply"),
        (["--cfg=stylegan2", "--ch=32"], "--ch does not apply to --cfg=stylegan2"),
        (["--cfg=stylegan3-t", "--attn-res=16"], "--attn-res does not apply"),
        (["--cfg=biggan", "--attn-res=16"], "--attn-res=16 is not a block resolution"),
        (["--cfg=biggan", "--attn-res=5"], "use 0 (none) or one of [8]"),
        (["--cfg=stylegan2", "--gamma=1", "--metrics=eqt50k_int"], "need a StyleGAN3 generator"),
        (["--cfg=biggan", "--metrics=ppl2_wend"], "needs a StyleGAN generator"),
    ],
)
def test_cli_rejects_options_of_other_family(tmp_path, data_zip, extra, expected):
    args = [
        a
        for a in base_args(tmp_path / "runs", data_zip)
        if not a.startswith(("--gamma", "--cbase", "--cmax"))
    ]
    result = invoke(args + extra)
    assert result.exit_code != 0
    assert expected in result.output
    assert not os.path.exists(tmp_path / "runs")


def test_cli_stylegan_requires_gamma(tmp_path, data_zip):
    args = [a for a in base_args(tmp_path / "runs", data_zip) if not a.startswith("--gamma")]
    result = invoke(args)
    assert result.exit_code != 0
    assert "Missing option '--gamma'" in result.output


def test_cli_speed_switches(tmp_path, data_zip):
    c, _ = dry_run_options(tmp_path, data_zip)
    assert (c["allow_tf32"], c["torch_compile"], c["cudnn_benchmark"]) == (False, False, True)
    c, _ = dry_run_options(tmp_path, data_zip, "--allow-tf32=1", "--compile=1", "--nobench=1")
    assert (c["allow_tf32"], c["torch_compile"], c["cudnn_benchmark"]) == (True, True, False)
