"""Tests of DMDHook: interval boundaries, idempotence, reported stats and log lines."""

import pytest
import torch

import dmd_patch.hook
from dmd_patch.hook import DMDHook
from dmd_patch.networks import DMDDiscriminator
from torch_utils import training_stats
from training.networks_stylegan2 import Discriminator

D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=512, channel_max=32)


def make_dmd(**dmd_kwargs):
    torch.manual_seed(0)
    return DMDDiscriminator(**D_KWARGS, dmd_kwargs=dmd_kwargs)


def perturb(D, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in D.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


@pytest.fixture
def reported(monkeypatch):
    """Capture training_stats.report calls made by the hook as (name, value) pairs."""
    calls = []
    monkeypatch.setattr(
        dmd_patch.hook.training_stats, "report", lambda name, value: calls.append((name, value))
    )
    return calls


class Wrapper(torch.nn.Module):
    """Stand-in for DistributedDataParallel: exposes the wrapped network as `.module`."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_boundaries_with_uneven_batch(reported):
    # Interval 100 images, batch 48: boundaries 100, 200, 300, 400 are crossed by the steps
    # ending at 144, 240, 336 and 432.
    hook = DMDHook(make_dmd(interval_kimg=0.1), batch_size=48)
    handled = []
    for cur_nimg in range(0, 480, 48):
        hook.on_step_begin(cur_nimg)
        if hook.on_step_end(cur_nimg + 48) is not None:
            handled.append(cur_nimg + 48)
    assert handled == [144, 240, 336, 432]


def test_boundary_kimg_values(reported):
    hook = DMDHook(make_dmd(interval_kimg=0.1), batch_size=48)
    hook.on_step_begin(0)
    kimgs = []
    for cur_nimg in range(48, 480, 48):
        report = hook.on_step_end(cur_nimg)
        if report is not None:
            kimgs.append(report.kimg)
        hook.on_step_begin(cur_nimg)
    assert kimgs == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_repeated_call_is_noop(reported):
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(D, batch_size=4)
    hook.on_step_begin(0)
    perturb(D, 0.1, seed=1)
    first = hook.on_step_end(4)
    count = len(reported)
    second = hook.on_step_end(4)
    assert first is not None
    assert second is None
    assert len(reported) == count
    assert len(D.dmd_detector.speeds) == 1


def test_stats_reported(reported):
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(D, batch_size=4)
    hook.on_step_begin(0)
    for step, scale in [(1, 0.2), (2, 0.05)]:
        perturb(D, scale, seed=step)
        hook.on_step_end(step * 4)
        hook.on_step_begin(step * 4)
    names = [name for name, _ in reported]
    assert names == ["DMD/speed", "DMD/retarded", "DMD/masked", "DMD/toggles"] * 2
    values = dict(reported[4:])
    assert values["DMD/speed"] == pytest.approx(D.dmd_detector.speeds[-1])
    assert values["DMD/retarded"] == 1.0
    assert values["DMD/masked"] == 1.0
    assert values["DMD/toggles"] == 1.0


def test_first_boundary_reports_no_speed(reported):
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(D, batch_size=4)
    hook.on_step_begin(2)  # Off the interval grid: the boundary at 4 only stores theta.
    assert hook.on_step_end(4).speed is None
    perturb(D, 0.1, seed=1)
    assert hook.on_step_end(8).speed is not None
    names = [name for name, _ in reported]
    assert names == ["DMD/speed", "DMD/retarded", "DMD/masked", "DMD/toggles"] * 2
    assert reported[0][1] == []
    assert reported[4][1] > 0


def test_stats_reach_collector():
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(D, batch_size=4)
    collector = training_stats.Collector(regex="DMD/.*")
    collector.update()  # Start from a clean interval.
    hook.on_step_begin(0)
    for step, scale in [(1, 0.2), (2, 0.05)]:
        perturb(D, scale, seed=step)
        hook.on_step_end(step * 4)
    collector.update()
    speeds = D.dmd_detector.speeds
    assert collector.num("DMD/speed") == 2
    assert collector.mean("DMD/speed") == pytest.approx(sum(speeds) / 2)
    assert collector.num("DMD/retarded") == 2
    assert collector.mean("DMD/retarded") == pytest.approx(0.5)
    assert collector.mean("DMD/masked") == pytest.approx(0.5)
    assert collector.mean("DMD/toggles") == pytest.approx(0.5)


def test_detection_prints_line(reported, capsys):
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(D, batch_size=4)
    hook.on_step_begin(0)
    for step, scale in [(1, 0.2), (2, 0.05)]:
        perturb(D, scale, seed=step)
        hook.on_step_end(step * 4)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("DMD: retarded at kimg 0.008 (speed ")
    assert lines[0].endswith("-> masks on")


def test_quiet_on_other_ranks(reported, capsys):
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(D, batch_size=4, rank=1)
    hook.on_step_begin(0)
    for step, scale in [(1, 0.2), (2, 0.05)]:
        perturb(D, scale, seed=step)
        hook.on_step_end(step * 4)
    assert D.dmd_masked
    assert capsys.readouterr().out == ""


def test_status_fields(reported):
    D = make_dmd(interval_kimg=0.004)
    hook = DMDHook(Wrapper(D), batch_size=4)
    assert hook.status_fields() == "dmd masked 0 toggles 0 speed -"
    hook.on_step_begin(0)
    for step, scale in [(1, 0.2), (2, 0.05)]:
        perturb(D, scale, seed=step)
        hook.on_step_end(step * 4)
    speed = D.dmd_detector.speeds[-1]
    assert hook.status_fields() == f"dmd masked 1 toggles 1 speed {speed:.2e}"


def test_wrapped_module_reached(reported):
    D = make_dmd(interval_kimg=0.004, policy="always", resample="batch")
    hook = DMDHook(Wrapper(D), batch_size=4)
    hook.on_step_begin(0)
    first = D.dmd_masker.patterns[8].clone()
    hook.on_step_begin(4)
    assert not torch.equal(D.dmd_masker.patterns[8], first)


def test_batch_longer_than_interval_raises():
    with pytest.raises(ValueError, match=r"--dmd-interval=0\.004.*--batch=8.*0\.008 kimg"):
        DMDHook(make_dmd(interval_kimg=0.004), batch_size=8)


def test_plain_discriminator_rejected():
    with pytest.raises(TypeError, match="DMDDiscriminator"):
        DMDHook(Discriminator(**D_KWARGS), batch_size=4)
