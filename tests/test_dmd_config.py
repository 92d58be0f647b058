"""Tests of the DMD options: defaults, dict round trip and validation messages."""

import json

import pytest

from dmd_patch.config import DMDConfig, block_output_resolutions


def test_config_defaults():
    config = DMDConfig()
    assert config.interval_kimg == 4
    assert config.detect == "prev"
    assert config.ema_beta == 0.9
    assert config.tol == 0
    assert config.warmup_kimg == 0
    assert config.speed == "global"
    assert config.policy == "toggle"
    assert config.layers is None
    assert config.ratio == 0.25
    assert config.rescale is True
    assert config.resample == "interval"
    assert config.seed == 0


def test_config_json_round_trip():
    config = DMDConfig(interval_kimg=2.5, detect="ema", layers=[8, 4], ratio=0.5, seed=7)
    text = json.dumps(config.to_dict())
    restored = DMDConfig.from_dict(json.loads(text))
    assert restored == config


def test_config_from_empty_dict():
    assert DMDConfig.from_dict(None) == DMDConfig()
    assert DMDConfig.from_dict({}) == DMDConfig()


def test_config_unknown_option():
    with pytest.raises(ValueError, match="ratoi"):
        DMDConfig.from_dict({"ratoi": 0.3})


@pytest.mark.parametrize(
    "img_resolution, expected", [(16, [8]), (32, [8]), (64, [8]), (128, [16]), (256, [32])]
)
def test_default_layers(img_resolution, expected):
    assert DMDConfig().resolve_layers(img_resolution) == expected


def test_block_output_resolutions():
    assert block_output_resolutions(32) == [16, 8, 4]
    assert block_output_resolutions(8) == [4]
    with pytest.raises(ValueError, match="48"):
        block_output_resolutions(48)


@pytest.mark.parametrize(
    "options, flag",
    [
        ({"ratio": 1.0}, "--dmd-ratio"),
        ({"ratio": -0.1}, "--dmd-ratio"),
        ({"interval_kimg": 0}, "--dmd-interval"),
        ({"interval_kimg": 0.0001}, "--dmd-interval"),
        ({"detect": "mean"}, "--dmd-detect"),
        ({"ema_beta": 1.5}, "--dmd-ema-beta"),
        ({"tol": 1.5}, "--dmd-tol"),
        ({"tol": -0.5}, "--dmd-tol"),
        ({"warmup_kimg": -1}, "--dmd-warmup"),
        ({"speed": "layer"}, "--dmd-speed"),
        ({"policy": "flip"}, "--dmd-policy"),
        ({"resample": "step"}, "--dmd-resample"),
        ({"rescale": 2}, "--dmd-rescale"),
        ({"layers": [32]}, "--dmd-layers"),
        ({"layers": [2]}, "--dmd-layers"),
        ({"layers": [6]}, "--dmd-layers"),
        ({"layers": []}, "--dmd-layers"),
        ({"seed": -1}, "--seed"),
        ({"ratio": float("nan")}, "--dmd-ratio"),
    ],
)
def test_validate_names_flag(options, flag):
    config = DMDConfig.from_dict(options)
    with pytest.raises(ValueError, match=flag):
        config.validate(32)


def test_validate_lists_legal_layers():
    with pytest.raises(ValueError, match=r"\[16, 8, 4\]"):
        DMDConfig(layers=[32]).validate(32)


def test_validate_accepts_legal_options():
    DMDConfig().validate(16)
    DMDConfig(rescale=0).validate(16)
    DMDConfig(rescale=1).validate(16)
    DMDConfig(layers=[16, 8, 4], ratio=0.0, policy="never", detect="ema").validate(32)


def test_default_layer_invalid_for_tiny_image():
    # An 8x8 image has only the 4x4 block output, so the default layer 8 cannot be masked.
    with pytest.raises(ValueError, match="--dmd-layers"):
        DMDConfig().validate(8)


def test_validate_takes_discriminator_layers():
    # A BigGAN discriminator at 32x32 has block outputs 16 and 8 only.
    DMDConfig(layers=[16, 8]).validate(32, [16, 8])
    DMDConfig().validate(32, [16, 8])
    with pytest.raises(ValueError, match=r"--dmd-layers.*\[16, 8\] \(invalid entry 4\)"):
        DMDConfig(layers=[8, 4]).validate(32, [16, 8])
