"""Tests of DMDDiscriminator against the plain Discriminator with the same weights."""

import copy
import io
import json

import numpy as np
import pytest
import torch

from dmd_patch.networks import DMDDiscriminator
from dnnlib.util import construct_class_by_name
from training.networks_stylegan2 import Discriminator

D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=512, channel_max=32)


def make_pair(dmd_kwargs=None, **overrides):
    """Return (base D, DMD D) with identical weights."""
    kwargs = {**D_KWARGS, **overrides}
    torch.manual_seed(0)
    base = Discriminator(**kwargs)
    dmd = DMDDiscriminator(**kwargs, dmd_kwargs=dmd_kwargs)
    missing, unexpected = dmd.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["_extra_state"]
    assert unexpected == []
    return base, dmd


def images(n=4, seed=1):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def no_labels(n=4):
    return torch.zeros(n, 0)


def perturb(D, scale, seed):
    """Move every parameter by scale * standard normal noise, like an optimizer step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in D.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def record_block_outputs(D):
    """Wrap D.block_output to record (out_res, input, output) of every call."""
    calls = []
    original = D.block_output

    def recording(out_res, x):
        out = original(out_res, x)
        calls.append((out_res, x.detach().clone(), out.detach().clone()))
        return out

    D.block_output = recording
    return calls


def test_output_matches_base_when_off():
    base, dmd = make_pair()
    img = images()
    assert not dmd.dmd_masked
    assert torch.equal(dmd(img, no_labels()), base(img, no_labels()))


def test_policy_never_matches_base():
    base, dmd = make_pair({"policy": "never", "interval_kimg": 0.004})
    steps = [(step, 0.1 / step) for step in range(1, 5)]
    run_steps(dmd, steps)
    for step, scale in steps:
        perturb(base, scale, seed=step)
    assert dmd.dmd_detector.num_detections > 0
    assert not dmd.dmd_masked
    img = images()
    assert torch.equal(dmd(img, no_labels()), base(img, no_labels()))


def test_output_differs_when_on():
    base, dmd = make_pair({"policy": "always"})
    img = images()
    assert not torch.allclose(dmd(img, no_labels()), base(img, no_labels()))


def test_mask_shared_by_real_and_fake():
    _, dmd = make_pair({"policy": "always", "layers": [8, 4]})
    calls = record_block_outputs(dmd)
    dmd(images(seed=1), no_labels())  # e.g. generated images
    dmd(images(seed=2), no_labels())  # e.g. real images
    masked = [(res, x, out) for res, x, out in calls if res in (8, 4)]
    assert [res for res, _, _ in masked] == [8, 4, 8, 4]
    for first, second in [(masked[0], masked[2]), (masked[1], masked[3])]:
        zero_first = (first[2] == 0) & (first[1] != 0)
        zero_second = (second[2] == 0) & (second[1] != 0)
        assert torch.equal(zero_first[0, 0], zero_second[3, 5])
        assert torch.equal(zero_first.all(dim=(0, 1)), zero_first.any(dim=(0, 1)))
    unmasked = [out for res, x, out in calls if res == 16]
    assert all(not (out == 0).all(dim=(0, 1)).any() for out in unmasked)


def test_mask_zero_fraction_in_forward():
    _, dmd = make_pair({"policy": "always", "ratio": 0.25})
    calls = record_block_outputs(dmd)
    dmd(images(), no_labels())
    (_, x, out) = next(call for call in calls if call[0] == 8)
    zero = (out == 0).all(dim=(0, 1))
    assert int(zero.sum()) == 16  # 0.25 * 8 * 8
    kept_positions = ~zero
    kept_out = out[:, :, kept_positions]
    kept_in = x[:, :, kept_positions]
    assert torch.allclose(kept_out, kept_in * (4.0 / 3.0), rtol=1e-6, atol=1e-6)


def r1_penalty_and_grads(D, img):
    img = img.detach().requires_grad_(True)
    logits = D(img, no_labels())
    (r1_grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    penalty = r1_grad.square().sum()
    params = list(D.parameters())
    # The output bias does not change the input gradient, so it gets no gradient at all.
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return penalty.detach(), grads


def test_masks_act_on_r1_gradient():
    base, dmd = make_pair({"policy": "always", "ratio": 0.5})
    # Independent reference: the base D with the same mask built here from the pattern.
    keep = dmd.dmd_masker.patterns[8].to(torch.float32) * 2.0
    base.block_output = lambda out_res, x: x * keep if out_res == 8 else x
    img = images()
    penalty, grads = r1_penalty_and_grads(dmd, img)
    ref_penalty, ref_grads = r1_penalty_and_grads(base, img)
    assert torch.allclose(penalty, ref_penalty, rtol=1e-5)
    for grad, ref_grad in zip(grads, ref_grads):
        assert torch.allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
    assert any(grad.abs().sum() > 0 for grad in grads)
    del base.block_output
    unmasked_penalty, _ = r1_penalty_and_grads(base, img)
    assert not torch.allclose(penalty, unmasked_penalty)


def run_steps(D, steps, interval=4):
    """Train-like loop: perturb by a shrinking amount, then handle the boundary."""
    reports = []
    for step, scale in steps:
        D.dmd_begin_batch((step - 1) * interval)
        perturb(D, scale, seed=step)
        reports.append(D.dmd_end_step(step * interval))
    return reports


STEPS_BEFORE = [(1, 0.2), (2, 0.1), (3, 0.15), (4, 0.05)]
STEPS_AFTER = [(5, 0.2), (6, 0.1), (7, 0.12), (8, 0.03), (9, 0.2)]


@pytest.mark.parametrize("detect", ["prev", "ema"])
def test_state_round_trip_resumes(detect):
    options = {"interval_kimg": 0.004, "detect": detect, "ema_beta": 0.5, "seed": 4}
    _, uninterrupted = make_pair(options)
    run_steps(uninterrupted, STEPS_BEFORE)
    buffer = io.BytesIO()
    torch.save(uninterrupted.state_dict(), buffer)
    buffer.seek(0)
    resumed = DMDDiscriminator(**D_KWARGS, dmd_kwargs=options)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.dmd_masked == uninterrupted.dmd_masked
    assert resumed.dmd_detector.speeds == uninterrupted.dmd_detector.speeds

    expected = run_steps(uninterrupted, STEPS_AFTER)
    observed = run_steps(resumed, STEPS_AFTER)
    assert observed == expected
    assert any(report.retarded for report in expected)
    assert torch.equal(resumed(images(), no_labels()), uninterrupted(images(), no_labels()))


def test_state_restores_mask_pattern():
    options = {"policy": "always", "resample": "batch", "seed": 11}
    _, source = make_pair(options)
    source.dmd_begin_batch(32)
    state = source.state_dict()
    target = DMDDiscriminator(**D_KWARGS, dmd_kwargs={**options, "seed": 99})
    target.load_state_dict(state)
    assert torch.equal(target.dmd_masker.patterns[8], source.dmd_masker.patterns[8])
    source.dmd_begin_batch(64)
    target.dmd_begin_batch(64)
    assert torch.equal(target.dmd_masker.patterns[8], source.dmd_masker.patterns[8])


def test_init_kwargs_rebuild():
    _, dmd = make_pair({"ratio": 0.5, "layers": [8]})
    text = json.dumps(dmd.init_kwargs)
    rebuilt = construct_class_by_name(
        class_name="dmd_patch.networks.DMDDiscriminator", **json.loads(text)
    )
    assert rebuilt.init_kwargs.dmd_kwargs["ratio"] == 0.5
    assert rebuilt.dmd_masker.layers == [8]
    assert rebuilt.init_kwargs.channel_max == 32


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="--dmd-layers"):
        DMDDiscriminator(**D_KWARGS, dmd_kwargs={"layers": [16]})
    with pytest.raises(ValueError, match="--dmd-ratio"):
        DMDDiscriminator(**D_KWARGS, dmd_kwargs={"ratio": 1.5})


def test_params_grouped_by_block():
    _, dmd = make_pair()
    assert sorted(dmd.dmd_params_by_block()) == ["b16", "b4", "b8"]
    conditional = DMDDiscriminator(**{**D_KWARGS, "c_dim": 3})
    assert sorted(conditional.dmd_params_by_block()) == ["b16", "b4", "b8", "mapping"]
    total = sum(p.numel() for group in dmd.dmd_params_by_block().values() for p in group)
    assert total == sum(p.numel() for p in dmd.parameters())


def test_params_count_without_requires_grad():
    _, dmd = make_pair({"interval_kimg": 0.004})
    dmd.requires_grad_(False)
    reports = run_steps(dmd, [(1, 0.1), (2, 0.05)])
    assert reports[0].speed > 0


def test_first_boundary_off_grid_stores_only():
    _, dmd = make_pair({"interval_kimg": 0.004})
    dmd.dmd_begin_batch(6)  # Not a boundary: theta_0 waits for kimg 0.008.
    assert not dmd.dmd_detector.has_params
    report = dmd.dmd_end_step(10)
    assert report.speed is None
    assert report.kimg == 0.008
    assert dmd.dmd_detector.has_params


def test_deepcopy_keeps_state():
    _, dmd = make_pair({"policy": "always"})
    clone = copy.deepcopy(dmd)
    assert torch.equal(clone.dmd_masker.patterns[8], dmd.dmd_masker.patterns[8])
    assert torch.equal(clone(images(), no_labels()), dmd(images(), no_labels()))


def test_network_snapshot_carries_state(tmp_path):
    from training.snapshot import load_network_snapshot, save_network_snapshot

    options = {"interval_kimg": 0.004, "seed": 4}
    _, uninterrupted = make_pair(options)
    run_steps(uninterrupted, STEPS_BEFORE)
    path = str(tmp_path / "network-snapshot-000000.pkl")
    save_network_snapshot(path, {"D": uninterrupted})
    resumed = load_network_snapshot(path)["D"].requires_grad_(True).train()
    assert isinstance(resumed, DMDDiscriminator)
    assert resumed.dmd_detector.speeds == uninterrupted.dmd_detector.speeds
    assert resumed.dmd_interval_index == uninterrupted.dmd_interval_index

    expected = run_steps(uninterrupted, STEPS_AFTER)
    observed = run_steps(resumed, STEPS_AFTER)
    assert observed == expected


def test_block_speed_matches_numpy():
    _, dmd = make_pair({"interval_kimg": 0.004, "speed": "block"})
    dmd.dmd_begin_batch(0)
    before = {
        name: param.detach().double().numpy().copy() for name, param in dmd.named_parameters()
    }
    perturb(dmd, 0.1, seed=1)
    report = dmd.dmd_end_step(4)
    ratios = []
    for block in ("b16", "b8", "b4"):
        names = [name for name in before if name.startswith(block + ".")]
        prev = np.concatenate([before[name].ravel() for name in names])
        cur = np.concatenate(
            [dmd.get_parameter(name).detach().double().numpy().ravel() for name in names]
        )
        ratios.append(np.linalg.norm(cur - prev) / (np.linalg.norm(prev) + 1e-8))
    assert report.speed == pytest.approx(np.mean(ratios), rel=1e-5)


def test_frozen_layers_not_compared():
    # Frozen layers keep their weights as buffers, so only trainable tensors are compared.
    frozen = DMDDiscriminator(**D_KWARGS, block_kwargs={"freeze_layers": 4})
    groups = frozen.dmd_params_by_block()
    trainable = sum(p.numel() for group in groups.values() for p in group)
    assert trainable == sum(p.numel() for p in frozen.parameters())
    assert trainable < sum(p.numel() for p in DMDDiscriminator(**D_KWARGS).parameters())


# ----------------------------------------------------------------------------
# DMDBigGANDiscriminator: block outputs 16, 8, 8 and 8 at 32x32.

BIGGAN_KWARGS = dict(c_dim=0, img_resolution=32, img_channels=3, ch=4)


def make_biggan_pair(dmd_kwargs=None):
    """Return (plain BigGAN D, DMD BigGAN D) with identical weights."""
    from dmd_patch.networks import DMDBigGANDiscriminator
    from training.networks_biggan import Discriminator as BigGANDiscriminator

    torch.manual_seed(0)
    base = BigGANDiscriminator(**BIGGAN_KWARGS)
    dmd = DMDBigGANDiscriminator(**BIGGAN_KWARGS, dmd_kwargs=dmd_kwargs)
    missing, unexpected = dmd.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["_extra_state"]
    assert unexpected == []
    return base.eval(), dmd.eval()


def biggan_images(n=2, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_biggan_masks_last_8x8_block_once():
    base, dmd = make_biggan_pair({"policy": "always", "ratio": 0.25, "layers": [8]})
    calls = record_block_outputs(dmd)
    img = biggan_images()
    logits = dmd(img, no_labels(2))
    # One call per resolution: after block 0 (16x16) and after block 3, the last 8x8 block.
    assert [res for res, _, _ in calls] == [16, 8]
    keep = dmd.dmd_masker.patterns[8]
    assert int((~keep).sum()) == 16  # 0.25 * 8 * 8
    _res, x, out = calls[1]
    assert torch.equal((out == 0).all(dim=(0, 1)), ~keep)
    assert torch.allclose(out[:, :, keep], x[:, :, keep] * (4.0 / 3.0), rtol=1e-6, atol=1e-6)
    assert torch.equal(calls[0][1], calls[0][2])  # 16x16 is not listed, so it stays as it is.
    # The kept features reach the head scaled by 4/3 once, not once per 8x8 block: the plain
    # D with that single mask applied by hand gives the same logits.
    scale = keep.to(torch.float32) * (4.0 / 3.0)
    base.block_output = lambda out_res, x: x * scale if out_res == 8 else x
    assert torch.allclose(logits, base(img, no_labels(2)), rtol=1e-5, atol=1e-5)


def test_biggan_masks_only_listed_layer():
    base, dmd = make_biggan_pair({"policy": "always", "ratio": 0.5, "layers": [16]})
    calls = record_block_outputs(dmd)
    img = biggan_images()
    logits = dmd(img, no_labels(2))
    zero = (calls[0][2] == 0).all(dim=(0, 1))
    assert int(zero.sum()) == 128  # 0.5 * 16 * 16
    assert all(torch.equal(x, out) for _res, x, out in calls[1:])
    keep = dmd.dmd_masker.patterns[16].to(torch.float32) * 2.0
    base.block_output = lambda out_res, x: x * keep if out_res == 16 else x
    assert torch.allclose(logits, base(img, no_labels(2)), rtol=1e-5, atol=1e-5)


def test_biggan_output_matches_base_when_off():
    base, dmd = make_biggan_pair()
    img = biggan_images()
    assert dmd.dmd_masker.layers == [8]
    assert torch.equal(dmd(img, no_labels(2)), base(img, no_labels(2)))


def test_biggan_layers_checked_against_its_blocks():
    from dmd_patch.networks import DMDBigGANDiscriminator

    with pytest.raises(ValueError, match=r"--dmd-layers.*\[16, 8\]"):
        DMDBigGANDiscriminator(**BIGGAN_KWARGS, dmd_kwargs={"layers": [4]})


def test_biggan_state_round_trip_resumes():
    from dmd_patch.networks import DMDBigGANDiscriminator

    options = {"interval_kimg": 0.004, "seed": 4, "speed": "block"}
    _, uninterrupted = make_biggan_pair(options)
    run_steps(uninterrupted, STEPS_BEFORE)
    buffer = io.BytesIO()
    torch.save(uninterrupted.state_dict(), buffer)
    buffer.seek(0)
    resumed = DMDBigGANDiscriminator(**BIGGAN_KWARGS, dmd_kwargs=options)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.dmd_detector.speeds == uninterrupted.dmd_detector.speeds
    assert sorted(resumed.dmd_params_by_block()) == [
        "block0",
        "block1",
        "block2",
        "block3",
        "linear",
    ]

    expected = run_steps(uninterrupted, STEPS_AFTER)
    observed = run_steps(resumed, STEPS_AFTER)
    assert observed == expected
    assert any(report.retarded for report in expected)
    img = biggan_images()
    assert torch.equal(resumed.eval()(img, no_labels(2)), uninterrupted.eval()(img, no_labels(2)))


def test_biggan_driven_by_hook(monkeypatch):
    import dmd_patch.hook

    monkeypatch.setattr(dmd_patch.hook.training_stats, "report", lambda name, value: None)
    _, dmd = make_biggan_pair({"interval_kimg": 0.008, "policy": "pulse"})
    hook = dmd_patch.hook.DMDHook(dmd, batch_size=4, verbose=False)
    reports = []
    for step in range(1, 9):
        hook.on_step_begin((step - 1) * 4)
        perturb(dmd, 0.1 / step, seed=step)
        reports.append(hook.on_step_end(step * 4))
    boundaries = [report for report in reports if report is not None]
    assert [report.kimg for report in boundaries] == [0.008, 0.016, 0.024, 0.032]
    assert boundaries[0].speed is not None
    assert any(report.change == "on" for report in boundaries)


def test_biggan_probed_by_diagnostics(monkeypatch):
    import dmd_patch.diagnostics
    from training.networks_biggan import Generator as BigGANGenerator

    monkeypatch.setattr(dmd_patch.diagnostics.training_stats, "report", lambda name, value: None)
    torch.manual_seed(3)
    G = BigGANGenerator(z_dim=32, c_dim=0, w_dim=0, img_resolution=32, img_channels=3, ch=4)
    G.train().requires_grad_(False)
    base, dmd = make_biggan_pair({"policy": "always", "ratio": 0.5})
    options = dict(batch_size=4, interval_kimg=0.004, num_probe=4, seed=5, verbose=False)
    G_state = {name: value.clone() for name, value in G.state_dict().items()}
    masked_hook = dmd_patch.diagnostics.DMDDiagnosticsHook(G, dmd, None, **options)
    plain_hook = dmd_patch.diagnostics.DMDDiagnosticsHook(G, base, None, **options)
    for hook in (masked_hook, plain_hook):
        hook.on_step_begin(0)
    for name, value in G.state_dict().items():
        assert torch.equal(value, G_state[name]), f"G.{name} changed while probing"
    masked_report, plain_report = masked_hook.on_step_end(4), plain_hook.on_step_end(4)
    assert masked_report.speed is None  # DMDHook reports the speed of a DMD run.
    assert masked_report.gen_feat_mean == plain_report.gen_feat_mean
    assert masked_report.gen_feat_var == plain_report.gen_feat_var


def test_biggan_probes_leave_D_state_alone(monkeypatch):
    import dmd_patch.diagnostics
    from training.networks_biggan import Generator as BigGANGenerator

    monkeypatch.setattr(dmd_patch.diagnostics.training_stats, "report", lambda name, value: None)
    torch.manual_seed(4)
    G = BigGANGenerator(z_dim=32, c_dim=0, w_dim=0, img_resolution=32, img_channels=3, ch=4)
    G.train().requires_grad_(False)
    _, dmd = make_biggan_pair({"policy": "always", "ratio": 0.5})
    dmd.train()
    D_state = {
        name: value.clone() for name, value in dmd.state_dict().items() if torch.is_tensor(value)
    }
    options = dict(batch_size=4, interval_kimg=0.004, num_probe=4, seed=5, verbose=False)
    hook = dmd_patch.diagnostics.DMDDiagnosticsHook(G, dmd, None, **options)
    hook.on_step_begin(0)
    hook.on_step_end(4)
    assert dmd.training  # the probes restore training mode
    for name, value in D_state.items():
        # Spectral normalization's u vectors would move in a training-mode forward pass.
        assert torch.equal(dmd.state_dict()[name], value), f"D.{name} changed while probing"
