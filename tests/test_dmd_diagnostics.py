"""Tests of DMDDiagnosticsHook: feature_cos, generated-feature drift and baseline speed against
numpy on features captured independently, masks off while probing, no effect on training
state or torch's global random stream, option checks, and the train.py option."""

import numpy as np
import pytest
import torch

import dmd_patch.diagnostics
from dmd_patch.diagnostics import DMDDiagnosticsHook
from dmd_patch.networks import DMDDiscriminator
from tests.test_train_cli import base_args, data_zip, invoke  # noqa: F401 (data_zip: fixture)
from training.networks_stylegan2 import Discriminator, Generator

RES = 16  # Default probed layer: max(8, 16 // 8) = 8, the output of block b16.
G_KWARGS = dict(
    z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=1,
    channel_base=256, channel_max=16, mapping_kwargs=dict(num_layers=1),
)  # fmt: skip
D_KWARGS = dict(c_dim=0, img_resolution=RES, img_channels=1, channel_base=256, channel_max=16)
NUM_PROBE = 6  # Not a multiple of the probe chunk or of the minibatch-std group.


def make_G(**overrides):
    torch.manual_seed(1)
    return Generator(**{**G_KWARGS, **overrides}).train().requires_grad_(False)


def make_D(cls=Discriminator, **kwargs):
    torch.manual_seed(2)
    return cls(**{**D_KWARGS, **kwargs}).train().requires_grad_(False)


def make_hook(G, D, **kwargs):
    options = dict(batch_size=4, interval_kimg=0.004, num_probe=NUM_PROBE, seed=5, verbose=False)
    return DMDDiagnosticsHook(G, D, None, **{**options, **kwargs})


def perturb(module, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def reference_latents(seed, num=NUM_PROBE, z_dim=8):
    """The latents a hook seeded with `seed` must use: the first draws of its own generator."""
    return torch.randn([num, z_dim], generator=torch.Generator().manual_seed(seed))


def block_features(D, block_name, img):
    """Return the first output of D.<block_name> for img as numpy [N, F].

    The blocks run one by one up to that block, without D.forward, block_output or the
    epilogue, so this reference shares no code path with the hook's capture.
    """
    x = None
    with torch.no_grad():
        for res in D.block_resolutions:
            x, img = getattr(D, f"b{res}")(x, img)
            if f"b{res}" == block_name:
                return x.reshape(x.shape[0], -1).double().numpy()
    raise AssertionError(f"D has no block {block_name}")


def numpy_mean_cosine(a, b):
    dot = (a * b).sum(axis=1)
    return float(np.mean(dot / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def generate(G, z):
    with torch.no_grad():
        return G(z, torch.zeros([z.shape[0], 0]), noise_mode="const")


@pytest.fixture
def reported(monkeypatch):
    """Capture training_stats.report calls made by the hook as (name, value) pairs."""
    calls = []
    monkeypatch.setattr(
        dmd_patch.diagnostics.training_stats,
        "report",
        lambda name, value: calls.append((name, value)),
    )
    return calls


def test_probe_images_use_own_seeded_latents(reported):
    G, D = make_G(), make_D()
    hook = make_hook(G, D)
    hook.on_step_begin(0)
    expected = generate(G, reference_latents(5))
    assert torch.allclose(hook.probe_img, expected, atol=1e-6)


def test_feature_cos_matches_numpy(reported):
    G, D = make_G(), make_D()
    hook = make_hook(G, D)
    probe = generate(G, reference_latents(5))
    before = block_features(D, "b16", probe)
    hook.on_step_begin(0)
    perturb(D, 0.05, seed=3)
    perturb(G, 0.05, seed=4)  # A changed G must not change the probe images.
    after = block_features(D, "b16", probe)
    report = hook.on_step_end(4)
    expected = numpy_mean_cosine(before, after)
    assert report.feature_cos == pytest.approx(expected, rel=1e-5)
    assert expected < 0.9999  # The perturbation moved the features, so the check can fail.
    assert ("DMD/feature_cos", report.feature_cos) in reported


def test_drift_matches_numpy_for_current_G(reported):
    G, D = make_G(), make_D()
    hook = make_hook(G, D)
    hook.on_step_begin(0)
    perturb(G, 0.05, seed=4)
    perturb(D, 0.05, seed=3)
    features = block_features(D, "b16", generate(G, reference_latents(5)))
    report = hook.on_step_end(4)
    assert report.gen_feat_mean == pytest.approx(features.mean(), rel=1e-5, abs=1e-7)
    assert report.gen_feat_var == pytest.approx(features.var(axis=0).mean(), rel=1e-5)
    assert ("DMD/gen_feat_mean", report.gen_feat_mean) in reported
    assert ("DMD/gen_feat_var", report.gen_feat_var) in reported


def test_baseline_speed_matches_numpy(reported):
    G, D = make_G(), make_D()
    hook = make_hook(G, D)
    hook.on_step_begin(0)
    theta_0 = np.concatenate([p.detach().double().numpy().ravel() for p in D.parameters()])
    perturb(D, 0.01, seed=7)
    theta_1 = np.concatenate([p.detach().double().numpy().ravel() for p in D.parameters()])
    report = hook.on_step_end(4)
    expected = np.linalg.norm(theta_1 - theta_0) / (np.linalg.norm(theta_0) + 1e-8)
    assert report.speed == pytest.approx(expected, rel=1e-5)
    assert ("DMD/speed", report.speed) in reported


def test_dmd_run_reports_no_speed(reported):
    hook = make_hook(make_G(), make_D(DMDDiscriminator))
    hook.on_step_begin(0)
    report = hook.on_step_end(4)
    assert report.speed is None
    assert "DMD/speed" not in [name for name, _value in reported]


def test_masks_off_while_probing(reported):
    # Masks at 8x8 would change the probed 4x4 features if they stayed on while probing.
    G, plain = make_G(), make_D()
    dmd_kwargs = dict(policy="always", ratio=0.5, layers=[8, 4])
    masked = make_D(DMDDiscriminator, dmd_kwargs=dmd_kwargs)
    masked.load_state_dict(plain.state_dict(), strict=False)
    plain_hook, masked_hook = make_hook(G, plain, layers=[4]), make_hook(G, masked, layers=[4])
    for hook in (plain_hook, masked_hook):
        hook.on_step_begin(0)
    assert torch.equal(plain_hook.prev_features, masked_hook.prev_features)
    plain_report, masked_report = plain_hook.on_step_end(4), masked_hook.on_step_end(4)
    assert masked_report.gen_feat_mean == plain_report.gen_feat_mean
    assert masked_report.gen_feat_var == plain_report.gen_feat_var
    assert masked.dmd_masked  # The mask state is restored after probing.

    # With masks on, D's output differs from the plain D's, so the comparison can fail.
    img = plain_hook.probe_img[:4]  # A multiple of the minibatch-std group size.
    with torch.no_grad():
        assert not torch.equal(masked(img, torch.zeros([4, 0])), plain(img, torch.zeros([4, 0])))


def test_global_rng_untouched(reported):
    G, D = make_G(), make_D()
    hook = make_hook(G, D)
    state = torch.get_rng_state()
    hook.on_step_begin(0)
    hook.on_step_end(4)
    hook.on_step_end(8)
    assert torch.equal(torch.get_rng_state(), state)


def test_training_state_untouched(reported):
    G, D = make_G(), make_D()
    D.b16.requires_grad_(True)
    G.eval()
    G_state = {k: v.clone() for k, v in G.state_dict().items()}
    D_state = {k: v.clone() for k, v in D.state_dict().items()}
    hook = make_hook(G, D)
    hook.on_step_begin(0)
    hook.on_step_end(4)
    for name, value in G.state_dict().items():
        assert torch.equal(value, G_state[name]), f"G.{name} changed (w_avg updated?)"
    for name, value in D.state_dict().items():
        assert torch.equal(value, D_state[name]), f"D.{name} changed"
    assert all(p.grad is None for p in [*G.parameters(), *D.parameters()])
    assert [p.requires_grad for p in D.b16.parameters()] == [True] * len(list(D.b16.parameters()))
    assert not any(p.requires_grad for p in D.b8.parameters())
    assert not G.training
    assert D.training
    assert "block_output" not in vars(D)


def test_no_feature_cos_without_previous_features(reported):
    # A resume in mid-interval: the first boundary only stores the probe features.
    hook = make_hook(make_G(), make_D())
    hook.on_step_begin(2)
    first = hook.on_step_end(6)
    second = hook.on_step_end(10)
    assert first.feature_cos is None
    assert first.speed is None
    assert ("DMD/feature_cos", []) in reported
    assert second.feature_cos == pytest.approx(1.0)  # D did not change.
    assert second.speed == pytest.approx(0.0)


def test_boundaries_with_uneven_batch(reported):
    # Interval 100 images, batch 48: boundaries 100 .. 400 are crossed at 144, 240, 336, 432.
    hook = make_hook(make_G(), make_D(), interval_kimg=0.1, batch_size=48)
    handled = []
    for cur_nimg in range(0, 480, 48):
        hook.on_step_begin(cur_nimg)
        if hook.on_step_end(cur_nimg + 48) is not None:
            handled.append(cur_nimg + 48)
    assert handled == [144, 240, 336, 432]
    assert hook.on_step_end(432) is None


def test_first_listed_layer_is_probed(reported):
    G, D = make_G(), make_D()
    hook = make_hook(G, D, layers=[4, 8])
    hook.on_step_begin(0)
    expected = block_features(D, "b8", generate(G, reference_latents(5)))
    assert hook.layer == 4
    assert np.allclose(hook.prev_features.double().numpy(), expected, rtol=1e-6, atol=1e-7)


def test_conditional_labels_are_one_hot(reported):
    G = make_G(c_dim=3)
    D = make_D(c_dim=3)
    hook = make_hook(G, D)
    hook.on_step_begin(0)
    assert hook.c.shape == (NUM_PROBE, 3)
    assert torch.equal(hook.c.sum(dim=1), torch.ones(NUM_PROBE))
    assert hook.on_step_end(4).gen_feat_var > 0


def test_status_fields(reported):
    baseline = make_hook(make_G(), make_D())
    dmd = make_hook(make_G(), make_D(DMDDiscriminator))
    assert baseline.status_fields() == "cos - speed -"
    assert dmd.status_fields() == "cos -"
    for hook in (baseline, dmd):
        hook.on_step_begin(0)
        hook.on_step_end(4)
    assert baseline.status_fields() == "cos 1.000 speed 0.00e+00"
    assert dmd.status_fields() == "cos 1.000"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(layers=[7]), ValueError, r"--dmd-layers.*\[8, 4\].*invalid entry 7"),
        (dict(layers=[]), ValueError, r"--dmd-layers"),
        (dict(interval_kimg=0.004, batch_size=8), ValueError, r"--dmd-interval=0\.004.*--batch=8"),
        (dict(interval_kimg=0), ValueError, r"--dmd-interval=0"),
        (dict(num_probe=1), ValueError, r"num_probe=1"),
    ],
)
def test_invalid_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_hook(make_G(), make_D(), **kwargs)


def test_rejects_discriminator_without_block_output():
    with pytest.raises(TypeError, match="block_output"):
        make_hook(make_G(), torch.nn.Linear(2, 2))


def test_cli_adds_hook_for_baseline(tmp_path, data_zip):  # noqa: F811
    result = invoke(base_args(tmp_path / "runs", data_zip) + ["--dry-run", "--dmd-layers=4"])
    assert result.exit_code == 0, result.output
    assert "dmd_patch.diagnostics.DMDDiagnosticsHook" in result.output
    assert '"layers": [\n        4\n      ]' in result.output


def test_cli_diagnostics_off_adds_no_hook(tmp_path, data_zip):  # noqa: F811
    args = base_args(tmp_path / "runs", data_zip) + ["--dry-run", "--dmd-diagnostics=0"]
    result = invoke(args + ["--dmd-layers=7", "--dmd-interval=0.004"])
    assert result.exit_code == 0, result.output
    assert "DMDDiagnosticsHook" not in result.output


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--dmd-layers=7"], "Invalid DMD option --dmd-layers=[7]"),
        (["--dmd-layers=x"], "--dmd-layers"),
        (["--dmd-interval=0.004"], "--dmd-interval=0.004 kimg is shorter than one minibatch"),
    ],
)
def test_cli_checks_baseline_options(tmp_path, data_zip, extra, expected):  # noqa: F811
    result = invoke(base_args(tmp_path / "runs", data_zip) + extra)
    assert result.exit_code != 0
    assert expected in result.output
