"""Tests of the DMD feature masks and the policies that switch them."""

import io

import pytest
import torch

from dmd_patch.masker import FeatureMasker


def masker_on(**kwargs):
    masker = FeatureMasker(**{"layers": [8], **kwargs})
    masker.step(retarded=True, nimg=0)
    return masker


@pytest.mark.parametrize(
    "res, ratio, zeros",
    [
        (8, 0.25, 16),
        (4, 0.25, 4),
        (4, 0.1, 2),  # 1.6 -> 2
        (8, 0.3, 19),  # 19.2 -> 19
        (4, 0.15625, 3),  # 2.5 -> 3: halves round up
        (16, 0.0, 0),
        (4, 0.99, 15),  # 15.84 -> 16, capped so one position survives
    ],
)
def test_exact_zero_count(res, ratio, zeros):
    masker = masker_on(layers=[res], ratio=ratio)
    out = masker.apply(res, torch.ones(1, 1, res, res))
    assert int((out == 0).sum()) == zeros


@pytest.mark.parametrize("rescale, kept", [(True, 4.0 / 3.0), (False, 1.0)])
def test_kept_values_scaled(rescale, kept):
    masker = masker_on(ratio=0.25, rescale=rescale)
    out = masker.apply(8, torch.ones(1, 1, 8, 8, dtype=torch.float64))
    values = out[out != 0]
    assert values.numel() == 48
    assert torch.allclose(values, torch.full_like(values, kept), rtol=1e-7, atol=0)


def test_same_mask_for_all_images_and_channels():
    masker = masker_on(seed=5)
    x = torch.randn(3, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    zero = masker.apply(8, x) == 0
    for n in range(3):
        for c in range(5):
            assert torch.equal(zero[n, c], zero[0, 0])
    # The same mask again on a second forward (e.g. real images after generated ones).
    again = masker.apply(8, torch.randn(2, 5, 8, 8)) == 0
    assert torch.equal(again[1, 4], zero[0, 0])


def test_identity_when_off():
    masker = FeatureMasker(layers=[8])
    x = torch.randn(2, 3, 8, 8)
    assert masker.apply(8, x) is x


def test_unlisted_layer_untouched():
    masker = masker_on(layers=[8])
    x = torch.randn(2, 3, 16, 16)
    assert masker.apply(16, x) is x


def test_wrong_shape_raises():
    masker = masker_on(layers=[8])
    with pytest.raises(ValueError, match=r"\[N, C, 8, 8\].*\[2, 3, 8, 4\]"):
        masker.apply(8, torch.zeros(2, 3, 8, 4))
    off = FeatureMasker(layers=[8])
    with pytest.raises(ValueError, match="resolution 8"):
        off.apply(8, torch.zeros(2, 3, 4, 4))


def test_mask_follows_dtype():
    masker = masker_on()
    for dtype in (torch.float16, torch.float32, torch.float64):
        out = masker.apply(8, torch.ones(1, 2, 8, 8, dtype=dtype))
        assert out.dtype == dtype


def test_gradient_flows_through_mask():
    masker = masker_on()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    (masker.apply(8, x) ** 2).sum().backward()
    keep = masker.patterns[8].to(torch.float64) * (4.0 / 3.0)
    expected = 2 * x.detach() * keep**2
    assert torch.allclose(x.grad, expected)


DETECTIONS = [False, True, False, False, True, True, False, True]


@pytest.mark.parametrize(
    "policy, states, toggles",
    [
        ("toggle", [0, 1, 1, 1, 0, 1, 1, 0], 4),
        ("pulse", [0, 1, 0, 0, 1, 1, 0, 1], 5),
        ("always", [1, 1, 1, 1, 1, 1, 1, 1], 0),
        ("never", [0, 0, 0, 0, 0, 0, 0, 0], 0),
    ],
)
def test_policy_state_sequence(policy, states, toggles):
    masker = FeatureMasker(layers=[8], policy=policy)
    observed = []
    for i, retarded in enumerate(DETECTIONS):
        masker.step(retarded, nimg=(i + 1) * 1000)
        observed.append(int(masker.masked))
    assert observed == states
    assert masker.toggles == toggles


def test_always_masks_from_start():
    masker = FeatureMasker(layers=[8], policy="always")
    out = masker.apply(8, torch.ones(1, 1, 8, 8))
    assert int((out == 0).sum()) == 16


def test_toggle_draws_fresh_pattern():
    masker = FeatureMasker(layers=[16, 8], seed=1)
    masker.step(True, nimg=1000)
    first = {res: keep.clone() for res, keep in masker.patterns.items()}
    masker.step(True, nimg=2000)
    assert masker.patterns == {}
    masker.step(True, nimg=3000)
    for res in (16, 8):
        assert not torch.equal(masker.patterns[res], first[res])


def test_pulse_repeat_detection_redraws():
    masker = FeatureMasker(layers=[8], policy="pulse", seed=2)
    assert masker.step(True, nimg=1000) == "on"
    first = masker.patterns[8].clone()
    assert masker.step(True, nimg=2000) == "redrawn"
    assert not torch.equal(masker.patterns[8], first)
    assert masker.step(False, nimg=3000) == "off"


def test_resample_interval_keeps_pattern():
    masker = masker_on(resample="interval")
    first = masker.patterns[8].clone()
    for nimg in (32, 64, 96):
        assert not masker.begin_batch(nimg)
    assert torch.equal(masker.patterns[8], first)


def test_resample_batch_draws_per_batch():
    masker = FeatureMasker(layers=[8], resample="batch")
    assert not masker.begin_batch(0)  # Off: nothing to draw.
    masker.step(True, nimg=1000)
    first = masker.patterns[8].clone()
    assert not masker.begin_batch(1000)  # Drawn at this nimg already.
    assert masker.begin_batch(1032)
    second = masker.patterns[8].clone()
    assert not torch.equal(second, first)
    assert not masker.begin_batch(1032)  # The same minibatch again draws nothing.
    assert torch.equal(masker.patterns[8], second)


def test_seed_determines_patterns():
    a = masker_on(seed=3).patterns[8]
    b = masker_on(seed=3).patterns[8]
    c = masker_on(seed=4).patterns[8]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_state_round_trip_same_next_pattern():
    masker = masker_on(resample="batch", seed=9)
    masker.begin_batch(32)
    buffer = io.BytesIO()
    torch.save(masker.state_dict(), buffer)
    buffer.seek(0)
    restored = FeatureMasker(layers=[8], resample="batch", seed=123)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.masked
    assert restored.toggles == 1
    assert torch.equal(restored.patterns[8], masker.patterns[8])
    masker.begin_batch(64)
    restored.begin_batch(64)
    assert torch.equal(restored.patterns[8], masker.patterns[8])


def test_load_rejects_other_layers():
    state = masker_on(layers=[8]).state_dict()
    with pytest.raises(ValueError, match="--dmd-layers"):
        FeatureMasker(layers=[16]).load_state_dict(state)
