"""Training-loop arithmetic checked against hand-computed values."""

import numpy as np
import pytest
import torch

import dnnlib
from training import training_loop


def test_lazy_regularization_scales_lr_and_betas():
    G = torch.nn.Linear(2, 2)
    D = torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name="torch.optim.Adam", lr=0.002, betas=[0.0, 0.99], eps=1e-8)
    phases = training_loop.setup_phases(G, D, opt_kwargs, opt_kwargs, 4, 16, torch.device("cpu"))
    assert [p.name for p in phases] == ["Gmain", "Greg", "Dmain", "Dreg"]
    assert [p.interval for p in phases] == [1, 4, 1, 16]
    g_group = phases[0].opt.param_groups[0]
    d_group = phases[2].opt.param_groups[0]
    assert g_group["lr"] == pytest.approx(0.002 * 4 / 5)
    assert g_group["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert d_group["lr"] == pytest.approx(0.002 * 16 / 17)
    assert d_group["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert d_group["betas"][0] == 0.0


def test_no_lazy_regularization_fuses_phases():
    G = torch.nn.Linear(2, 2)
    D = torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name="torch.optim.Adam", lr=0.002, betas=[0.0, 0.99], eps=1e-8)
    phases = training_loop.setup_phases(
        G, D, opt_kwargs, opt_kwargs, None, None, torch.device("cpu")
    )
    assert [p.name for p in phases] == ["Gboth", "Dboth"]
    assert phases[0].opt.param_groups[0]["lr"] == 0.002


def test_G_ema_half_life_and_rampup():
    G = torch.nn.Linear(1, 1, bias=False)
    G_ema = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(0.0)
    # Half-life 10 kimg, batch 32, ramp-up 0.05 at cur_nimg 100k: ema_nimg = min(10k, 5k) = 5k.
    beta = training_loop.update_G_ema(
        G, G_ema, cur_nimg=100_000, batch_size=32, ema_kimg=10, ema_rampup=0.05
    )
    assert beta == pytest.approx(0.5 ** (32 / 5000))
    assert float(G_ema.weight.detach()) == pytest.approx(1 - beta, rel=1e-5)  # float32 weights
    beta = training_loop.update_G_ema(
        G, G_ema, cur_nimg=10**7, batch_size=32, ema_kimg=10, ema_rampup=None
    )
    assert beta == pytest.approx(0.5 ** (32 / 10000))


def test_image_grid_layout(tmp_path):
    import PIL.Image

    images = np.zeros([6, 1, 2, 3], dtype=np.float32)
    for i in range(6):
        images[i] = i
    path = tmp_path / "grid.png"
    training_loop.save_image_grid(images, str(path), drange=(0, 5), grid_size=(3, 2))
    grid = np.array(PIL.Image.open(path))
    assert grid.shape == (4, 9)
    assert grid[0, 0] == 0
    assert grid[0, 3] == 51  # Image 1 at column 1: 1 * 255 / 5.
    assert grid[2, 0] == 153  # Image 3 starts row 1: 3 * 255 / 5.
    assert grid[3, 8] == 255


# ----------------------------------------------------------------------------
# ADA: p follows the sign of D's outputs on real images.


class PipeWithP(torch.nn.Module):
    def __init__(self, p=0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))


def run_ada_steps(pipe, signs_per_step, batch_size=8, interval=4, ada_kimg=0.5, target=0.6):
    from torch_utils import training_stats

    stats = training_loop.ada_sign_collector()
    stats.update()  # Start from a clean interval whatever earlier tests reported.
    history = []
    for signs in signs_per_step:
        training_stats.report("Loss/signs/real", torch.tensor(signs, dtype=torch.float32))
        training_loop.adjust_augment_p(pipe, stats, target, batch_size, interval, ada_kimg)
        history.append(float(pipe.p))
    return history


def test_ada_p_rises_then_falls_to_zero():
    pipe = PipeWithP(0.0)
    step = 8 * 4 / (0.5 * 1000)  # batch * interval / (ada_kimg * 1000) = 0.064
    # Mean sign 0.8 > target 0.6: D is confident on reals, so p must rise by `step` each time.
    rising = run_ada_steps(pipe, [[1] * 9 + [-1]] * 5)
    np.testing.assert_allclose(rising, [step * k for k in range(1, 6)], rtol=1e-5)
    # Mean sign 0 < 0.6: p falls by the same step and stops at 0.
    falling = run_ada_steps(pipe, [[1, -1, 1, -1]] * 8)
    expected = [max(step * 5 - step * k, 0) for k in range(1, 9)]
    np.testing.assert_allclose(falling, expected, atol=1e-6)
    assert falling[-1] == 0


def test_ada_step_skipped_when_no_signs_were_reported():

    pipe = PipeWithP(0.25)
    stats = training_loop.ada_sign_collector()
    stats.update()
    training_loop.adjust_augment_p(pipe, stats, 0.6, 8, 4, 500)
    assert float(pipe.p) == 0.25


# ----------------------------------------------------------------------------
# Several D steps per G step, and a delayed G_ema start (the BigGAN recipe).


class RecordingLoss:
    def __init__(self):
        self.calls = []

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        self.calls.append((phase, gain))


def phases_run_per_minibatch(phases, num_minibatches):
    loss = RecordingLoss()
    runs = []
    dummy = [torch.zeros(1)]
    batch = (dummy, dummy, [dummy] * len(phases), [dummy] * len(phases))
    for batch_idx in range(num_minibatches):
        loss.calls.clear()
        state = dnnlib.EasyDict(batch_idx=batch_idx, cur_nimg=batch_idx * 4)
        training_loop.run_step(phases, loss, batch, state, num_gpus=1)
        runs.append([name for name, _gain in loss.calls])
    return runs


def test_four_D_steps_per_G_step():
    G = torch.nn.Linear(2, 2)
    D = torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name="torch.optim.Adam", lr=2e-4, betas=[0.0, 0.999], eps=1e-8)
    phases = training_loop.setup_phases(
        G, D, opt_kwargs, opt_kwargs, None, None, torch.device("cpu"), num_D_steps=4
    )
    runs = phases_run_per_minibatch(phases, 8)
    assert runs == [["Gboth", "Dboth"], ["Dboth"], ["Dboth"], ["Dboth"]] * 2


def test_G_regularization_interval_counts_G_steps():
    G = torch.nn.Linear(2, 2)
    D = torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name="torch.optim.Adam", lr=2e-4, betas=[0.0, 0.99], eps=1e-8)
    phases = training_loop.setup_phases(
        G, D, opt_kwargs, opt_kwargs, 2, None, torch.device("cpu"), num_D_steps=3
    )
    runs = phases_run_per_minibatch(phases, 7)
    g_runs = [[name for name in run if name.startswith("G")] for run in runs]
    # G steps at minibatches 0, 3 and 6; its regularization every second G step (0 and 6).
    assert g_runs == [["Gmain", "Greg"], [], [], ["Gmain"], [], [], ["Gmain", "Greg"]]


def test_num_D_steps_must_be_positive_int():
    G = torch.nn.Linear(2, 2)
    opt_kwargs = dict(class_name="torch.optim.Adam", lr=2e-4, betas=[0.0, 0.99], eps=1e-8)
    with pytest.raises(ValueError, match="num_D_steps"):
        training_loop.setup_phases(G, G, opt_kwargs, opt_kwargs, None, None, "cpu", num_D_steps=0)


def test_G_ema_copies_G_before_start():
    G = torch.nn.Linear(1, 1, bias=False)
    G_ema = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(0.0)
    # Before the start: a plain copy, whatever the half-life.
    beta = training_loop.update_G_ema(G, G_ema, 199_950, 50, 1386.2, None, ema_start_kimg=200)
    assert beta == 0
    assert float(G_ema.weight.detach()) == 1.0
    # After it: the per-minibatch decay of a 1386.2-kimg half-life at batch 50, which is
    # 0.9999 per G step of 4 minibatches: 0.5 ** (200 / 1386200) = 0.99990000...
    with torch.no_grad():
        G.weight.fill_(3.0)
    beta = training_loop.update_G_ema(G, G_ema, 200_000, 50, 1386.2, None, ema_start_kimg=200)
    assert beta**4 == pytest.approx(0.9999, abs=1e-8)
    assert float(G_ema.weight.detach()) == pytest.approx(3.0 - 2.0 * beta, rel=1e-6)


def test_G_ema_averages_float_buffers_on_request():
    G = torch.nn.BatchNorm1d(1)
    G_ema = torch.nn.BatchNorm1d(1)
    with torch.no_grad():
        G.running_mean.fill_(4.0)
        G_ema.running_mean.fill_(0.0)
    G.num_batches_tracked.fill_(7)
    beta = training_loop.update_G_ema(G, G_ema, 10_000, 10, 1.0, None, average_buffers=True)
    assert float(G_ema.running_mean) == pytest.approx(4.0 * (1 - beta), rel=1e-4)  # float32
    assert int(G_ema.num_batches_tracked) == 7  # integer buffers are copied
    training_loop.update_G_ema(G, G_ema, 10_000, 10, 1.0, None)
    assert float(G_ema.running_mean) == 4.0  # the default copies


def test_resume_restores_p_for_ada_only():
    kwargs = dict(class_name="training.augment.AugmentPipe", xflip=1)
    saved = {"augment_pipe": {"state_dict": {"p": torch.tensor(0.5)}}}
    pipe, stats = training_loop.setup_augmentation(kwargs, 0.2, 0.6, saved, "snap.pkl", "cpu", 1)
    assert float(pipe.p) == 0.5  # ADA continues from the saved p
    assert stats is not None
    pipe, stats = training_loop.setup_augmentation(kwargs, 0.2, None, saved, "snap.pkl", "cpu", 1)
    assert float(pipe.p) == pytest.approx(0.2)  # a fixed p is the one asked for
    assert stats is None
