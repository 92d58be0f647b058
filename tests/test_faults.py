"""Runs that survive faults: stop signals, exact resume, the NaN policy, a full disk, finding
the snapshot to resume from, and bad snapshot files given to train.py, gen_images.py and
calc_metrics.py."""

from __future__ import annotations

import errno
import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
import gen_images
import train
from tests.test_train_e2e import TINY_OPTIONS
from torch_utils import misc, training_stats
from training import faults, training_loop
from training import loss as loss_lib
from training import snapshot as snapshot_lib
from training.networks_stylegan2 import Discriminator, Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(img_resolution=16, img_channels=1, channel_base=128, channel_max=16)


def tiny_networks(seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, mapping_kwargs=dict(num_layers=2), **TINY)
    D = Discriminator(c_dim=0, **TINY)
    return G, D


def write_snapshot(path, seed=0, **extra):
    G, D = tiny_networks(seed)
    snapshot_lib.save_network_snapshot(str(path), {"G": G, "D": D, "G_ema": G}, **extra)
    return str(path)


# ----------------------------------------------------------------------------
# Signals, agreement between ranks, gradients.


def test_stop_signal_records_first_and_exits_on_second(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(faults.time, "monotonic", lambda: clock[0])
    stop = faults.StopSignal()
    assert stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        assert stop.name == "SIGTERM"
        clock[0] += 0.5  # a repeat of the same event (SLURM plus the launcher's forward)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        clock[0] += 5.0
        with pytest.raises(SystemExit) as info:
            os.kill(os.getpid(), signal.SIGINT)
        assert info.value.code == 128 + signal.SIGINT
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGTERM) is not stop._handle


def test_any_rank_single_process():
    cpu = torch.device("cpu")
    assert faults.any_rank(True, 1, cpu) is True
    assert faults.any_rank(False, 1, cpu) is False


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_gradients_are_finite_detects(bad):
    grads = [torch.zeros(3), torch.ones(2, 2)]
    assert faults.gradients_are_finite(grads)
    grads[1][1, 0] = bad
    assert not faults.gradients_are_finite(grads)
    assert faults.gradients_are_finite([])


class NaNAtStepLoss:
    """Adds sum(params) to one module's gradient, times NaN for `phase` at `nan_nimg`."""

    def __init__(self, modules, phase, nan_nimg):
        self.modules, self.phase, self.nan_nimg = modules, phase, nan_nimg

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        scale = float("nan") if (phase, cur_nimg) == (self.phase, self.nan_nimg) else 1.0
        module = self.modules[phase[0]]
        (sum(p.sum() for p in module.parameters()) * gain * scale).backward()


def sgd_phases(G, D):
    opt = dict(class_name="torch.optim.SGD", lr=0.1)
    return training_loop.setup_phases(G, D, opt, opt, None, None, torch.device("cpu"))


def run_nan_steps(nan_policy, num_steps=3):
    G, D = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    for module in (G, D):
        torch.nn.init.zeros_(module.bias)
    phases = sgd_phases(G, D)
    loss = NaNAtStepLoss({"G": G, "D": D}, phase="Dboth", nan_nimg=4)
    dummy = [torch.zeros(1)]
    batch = (dummy, dummy, [dummy] * len(phases), [dummy] * len(phases))
    state = dnnlib.EasyDict(skipped_steps=0, tick_skipped_steps=0)
    for step in range(num_steps):
        state.batch_idx, state.cur_nimg = step, step * 4
        training_loop.run_step(phases, loss, batch, state, 1, nan_policy=nan_policy)
    return G, D, state


def test_nan_policy_skip_skips_only_that_step(capsys):
    G, D, state = run_nan_steps("skip")
    assert state.skipped_steps == 1
    assert state.tick_skipped_steps == 1
    # SGD with lr 0.1 on d(sum of params)/dp = 1 from a zero bias: D steps at nimg 0 and 8
    # only, G at all three.
    assert D.bias.item() == pytest.approx(-0.2)
    assert G.bias.item() == pytest.approx(-0.3)
    assert "phase Dboth at kimg 0.004" in capsys.readouterr().out


def test_nan_policy_stop_raises_with_phase_and_kimg():
    with pytest.raises(faults.TrainingStopped) as info:
        run_nan_steps("stop")
    assert "phase Dboth at kimg 0.004" in str(info.value)
    assert "--nan-policy=stop" in str(info.value)


class SaturatedLoss(loss_lib.Loss):
    """Loss that is +Inf at one step while its gradient stays finite (zero), as when D's
    outputs saturate. The loss check must still catch it."""

    def __init__(self, G, D, inf_nimg):
        super().__init__(device=torch.device("cpu"), G=G, D=D)
        self.inf_nimg = inf_nimg

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        module = self.G if phase.startswith("G") else self.D
        params = sum(p.sum() for p in module.parameters())
        if phase.startswith("D") and cur_nimg == self.inf_nimg:
            value = torch.full([1], float("inf")) + params * 0  # d/dp = 0, finite
        else:
            value = params.reshape(1)
        self.backward(value, gain)


def test_nan_policy_catches_infinite_loss_with_finite_gradients(capsys):
    G, D = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    for module in (G, D):
        torch.nn.init.zeros_(module.bias)
    phases = sgd_phases(G, D)
    loss = SaturatedLoss(G, D, inf_nimg=4)
    dummy = [torch.zeros(1)]
    batch = (dummy, dummy, [dummy] * len(phases), [dummy] * len(phases))
    state = dnnlib.EasyDict(skipped_steps=0, tick_skipped_steps=0)
    for step in range(3):
        state.batch_idx, state.cur_nimg = step, step * 4
        training_loop.run_step(phases, loss, batch, state, 1, nan_policy="skip")
    assert state.skipped_steps == 1
    assert D.bias.item() == pytest.approx(-0.2)  # the step at nimg 4 was skipped
    assert "phase Dboth at kimg 0.004" in capsys.readouterr().out


# ----------------------------------------------------------------------------
# The state a resumed run needs.


def test_ada_signs_split_by_snapshot_give_same_mean():
    signs = [1, 1, -1, 1, 0, 1, -1, 1, 1]  # mean 4/9, not exact in binary
    accumulator = training_loop.AdaSignAccumulator()
    training_stats.report("Loss/signs/real", torch.tensor(signs[:4], dtype=torch.float32))
    accumulator.update()
    saved = accumulator.state_dict()
    assert saved == {"count": 4, "total": 2.0}

    resumed = training_loop.AdaSignAccumulator()  # drops nothing pending: all was gathered
    resumed.load_state_dict(saved)
    training_stats.report("Loss/signs/real", torch.tensor(signs[4:], dtype=torch.float32))
    assert resumed.take_mean() == 4 / 9
    assert resumed.take_mean() is None


def test_random_states_round_trip():
    rnd = np.random.RandomState(5)
    rnd.randn()  # Leaves a cached Gaussian in the state.
    torch.manual_seed(3)
    torch.randn(7)
    saved = faults.capture_random_state(rnd, torch.device("cpu"))
    expected = (torch.randn(5), rnd.randn(3), rnd.randint(100, size=4))

    other = np.random.RandomState(99)
    torch.manual_seed(99)
    assert faults.restore_random_states([saved], other, torch.device("cpu"), 0, 1, "snap.pkl")
    assert torch.equal(torch.randn(5), expected[0])
    np.testing.assert_array_equal(other.randn(3), expected[1])
    np.testing.assert_array_equal(other.randint(100, size=4), expected[2])


def test_random_states_of_other_process_count_ignored(capsys):
    rnd = np.random.RandomState(1)
    saved = faults.capture_random_state(rnd, torch.device("cpu"))
    restored = faults.restore_random_states([saved, saved], rnd, torch.device("cpu"), 0, 1, "s")
    assert not restored
    assert "of 2 processes and this run has 1" in capsys.readouterr().out


@pytest.mark.parametrize("num_replicas", [1, 3])
def test_sampler_start_continues_stream(num_replicas):
    dataset = list(range(10))
    for rank in range(num_replicas):
        full = misc.InfiniteSampler(dataset, rank=rank, num_replicas=num_replicas, seed=4)
        expected = list(itertools.islice(iter(full), 40))
        # 12 global positions consumed: this rank's first 12 / num_replicas indices are gone.
        resumed = misc.InfiniteSampler(
            dataset, rank=rank, num_replicas=num_replicas, seed=4, start=12
        )
        skipped = 12 // num_replicas
        assert list(itertools.islice(iter(resumed), 40 - skipped)) == expected[skipped:]


def test_sampler_rejects_negative_start():
    with pytest.raises(ValueError, match="start=-1"):
        misc.InfiniteSampler(list(range(4)), start=-1)


# ----------------------------------------------------------------------------
# Writing snapshots on a full disk.


def fail_second_save(monkeypatch, partial=b"PK\x03\x04partial"):
    """Make the second torch.save in training.snapshot write a few bytes, then fail."""
    calls = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(partial)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(snapshot_lib.torch, "save", save)


def test_snapshot_disk_full_keeps_previous(tmp_path, monkeypatch):
    fail_second_save(monkeypatch)
    path = write_snapshot(tmp_path / "network-snapshot-000000.pkl", progress={"cur_nimg": 8})
    before = open(path, "rb").read()
    with pytest.raises(snapshot_lib.SnapshotWriteError) as info:
        write_snapshot(path, seed=1, progress={"cur_nimg": 16})
    message = str(info.value)
    assert path in message
    assert "No space left on device" in message
    assert "GiB free in" in message
    assert "Free disk space" in message
    assert os.listdir(tmp_path) == ["network-snapshot-000000.pkl"]  # Temporary file removed.
    assert open(path, "rb").read() == before


# ----------------------------------------------------------------------------
# Finding the snapshot to resume from.


def test_resume_latest_picks_newest_valid(tmp_path, capsys):
    old_run = tmp_path / "00000-old"
    new_run = tmp_path / "00001-new"
    empty_run = tmp_path / "00002-crashed-at-start"
    for folder in (old_run, new_run, empty_run):
        folder.mkdir()
    write_snapshot(old_run / "network-snapshot-000008.pkl")
    good = write_snapshot(new_run / "network-snapshot-000004.pkl")
    truncated = new_run / "network-snapshot-000012.pkl"
    data = open(good, "rb").read()
    truncated.write_bytes(data[: len(data) // 3])
    (new_run / "network-snapshot-000016.pkl.abc.tmp").write_bytes(b"partial")

    assert snapshot_lib.find_resume_snapshot("latest", str(tmp_path)) == good
    assert f"Skipping {truncated}" in capsys.readouterr().out
    assert snapshot_lib.find_resume_snapshot(str(new_run), str(tmp_path)) == good
    assert snapshot_lib.find_resume_snapshot(str(old_run), "unused").endswith("000008.pkl")


def test_resume_skips_non_finite_snapshot(tmp_path, capsys):
    run = tmp_path / "00000-run"
    run.mkdir()
    good = write_snapshot(run / "network-snapshot-000001.pkl")
    G, D = tiny_networks()
    state = {k: v.clone() for k, v in D.state_dict().items()}
    state["b4.out.bias"].fill_(float("nan"))
    data = snapshot_lib.read_snapshot(good)
    data["D"]["state_dict"] = state
    torch.save(data, str(run / "network-snapshot-000002.pkl"))
    assert snapshot_lib.find_resume_snapshot(str(run), str(tmp_path)) == good
    assert "non-finite values in b4.out.bias" in capsys.readouterr().out


def test_resume_errors_name_folder(tmp_path):
    (tmp_path / "00000-run").mkdir()
    with pytest.raises(snapshot_lib.SnapshotError) as info:
        snapshot_lib.find_resume_snapshot("latest", str(tmp_path))
    assert f"no run directory under {tmp_path} contains a valid" in str(info.value)
    with pytest.raises(snapshot_lib.SnapshotError) as info:
        snapshot_lib.find_resume_snapshot(str(tmp_path / "00000-run"), str(tmp_path))
    assert "00000-run: the folder contains no valid" in str(info.value)
    missing = tmp_path / "missing"
    with pytest.raises(snapshot_lib.SnapshotError) as info:
        snapshot_lib.find_resume_snapshot("latest", str(missing))
    assert f"{missing} does not exist" in str(info.value)


# ----------------------------------------------------------------------------
# Bad snapshot files given to each tool.

# A pickle as NVIDIA's StyleGAN2-ADA/StyleGAN3 code writes them: a dict whose networks are
# rebuilt by torch_utils.persistence. Written opcode by opcode, since that module is not ours.
NVIDIA_PICKLE = (
    b"\x80\x02}q\x00X\x05\x00\x00\x00G_emaq\x01"
    b"ctorch_utils.persistence\n_reconstruct_persistent_obj\nq\x02s."
)


def make_bad_file(kind, path):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        write_snapshot(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "html":
        path.write_bytes(b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n")
    elif kind == "random":
        noise = np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8)
        path.write_bytes(b"\x00" + noise.tobytes())
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    elif kind == "nvidia":
        path.write_bytes(NVIDIA_PICKLE)
    elif kind == "torch":
        torch.save({"weights": torch.zeros(3)}, str(path))
    return str(path)


BAD_FILES = {
    "empty": "is empty",
    "truncated": "truncated copy",
    "html": "HTML or XML page",
    "random": "no recognizable format",
    "zip": "not a torch.save archive",
    "pickle": "is a Python pickle",
    "nvidia": "not an NVIDIA network object",
    "torch": "not a dmd-gan-snapshot network snapshot",
}


def test_nvidia_pickle_is_a_valid_pickle():
    with pytest.raises(ModuleNotFoundError, match="torch_utils.persistence"):
        pickle.loads(NVIDIA_PICKLE)  # Parses up to the global, which does not exist here.


@pytest.fixture(scope="module")
def detector_path(tmp_path_factory):
    class MeanDetector(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    path = str(tmp_path_factory.mktemp("detector") / "mean.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(MeanDetector()).save(path)
    return path


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_train_resume(kind, tmp_path, small_data):
    bad = make_bad_file(kind, tmp_path / "network-snapshot-000000.pkl")
    outdir = tmp_path / "runs"
    args = [
        f"--outdir={outdir}", "--cfg=stylegan2", f"--data={small_data}", "--gpus=1", "--batch=8",
        "--gamma=0.1", "--metrics=none", "--device=cpu", f"--resume={bad}",
    ]  # fmt: skip
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 1, result.output
    assert f"--resume: {bad}" in result.output
    assert BAD_FILES[kind] in result.output
    assert not outdir.exists()


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_gen_images(kind, tmp_path):
    bad = make_bad_file(kind, tmp_path / "net.pkl")
    args = [f"--network={bad}", "--seeds=0", f"--outdir={tmp_path / 'out'}", "--device=cpu"]
    result = CliRunner().invoke(gen_images.main, args)
    assert result.exit_code == 1, result.output
    assert bad in result.output
    assert BAD_FILES[kind] in result.output


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_calc_metrics(kind, tmp_path, detector_path):
    bad = make_bad_file(kind, tmp_path / "net.pkl")
    args = ["--network", bad, "--metrics=fid100_full", "--detector", detector_path]
    result = CliRunner().invoke(calc_metrics.main, args)
    assert result.exit_code == 2, result.output
    assert "--network" in result.output
    assert BAD_FILES[kind] in " ".join(result.output.split())  # Click wraps long messages.


# ----------------------------------------------------------------------------
# train.py end to end: signals, exact resume, NaN policy, a full disk.

TRAIN_ARGS = ["--gpus=1", *TINY_OPTIONS, "--metrics=none"]

# Runs train.py with one patch, chosen by FAULT: a NaN gain for phase FAULT_PHASE at cur_nimg
# FAULT_NIMG (the loss and its gradients become NaN), or a full disk at the second snapshot.
FAULT_WRAPPER = """
import errno, os, sys
sys.path.insert(0, os.getcwd())
import torch
from training import loss as loss_lib

fault = os.environ["FAULT"]
if fault == "nan":
    nan_phase, nan_nimg = os.environ["FAULT_PHASE"], int(os.environ["FAULT_NIMG"])
    original = loss_lib.StyleGAN2Loss.accumulate_gradients

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if (phase, cur_nimg) == (nan_phase, nan_nimg):
            gain = float("nan")
        return original(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg)

    loss_lib.StyleGAN2Loss.accumulate_gradients = accumulate_gradients
elif fault == "disk-full":
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    torch.save = save
import train
train.main(prog_name="train.py")
"""


def train_command(outdir, data, *extra, fault=None):
    launcher = ["-c", FAULT_WRAPPER] if fault else [os.path.join(ROOT, "train.py")]
    return [sys.executable, *launcher, f"--outdir={outdir}", f"--data={data}", *TRAIN_ARGS, *extra]


def run_env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def run_train(outdir, data, *extra, fault=None, env=None):
    command = train_command(outdir, data, *extra, fault=fault)
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env or run_env(), timeout=600
    )


def stop_after_first_tick(outdir, data, signum, *extra):
    """Start train.py, send `signum` once the first tick line appears; return (rc, output)."""
    command = train_command(outdir, data, *extra)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=run_env(),
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("tick 0 "):
            proc.send_signal(signum)
            break
    rest, _ = proc.communicate(timeout=600)
    return proc.returncode, "".join(lines) + rest


def run_dirs(outdir):
    return sorted(os.path.join(outdir, name) for name in os.listdir(outdir))


def snapshot_in(run_dir):
    return os.path.join(run_dir, "network-snapshot-000000.pkl")


def assert_same(a, b, path):
    """Assert equality of nested snapshot data, tensors bit for bit."""
    if torch.is_tensor(a):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: lengths differ"
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{index}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


RESUME_ARGS = ["--dmd=1", "--dmd-interval=0.016", "--aug=ada", "--target=0"]


@pytest.mark.slow
def test_sigterm_stop_then_resume_matches_straight_run(tmp_path, small_data):
    # 18 minibatches of 8: lazy G (every 4) and D (every 16) regularization, ADA steps every 4,
    # DMD boundaries every 2, and the stop falls at whatever step SIGTERM reaches.
    rc, output = stop_after_first_tick(tmp_path / "b", small_data, signal.SIGTERM, "--kimg=100",
                                       *RESUME_ARGS)  # fmt: skip
    assert rc == 0, output[-3000:]
    (stopped_dir,) = run_dirs(tmp_path / "b")
    assert "Received SIGTERM: writing a snapshot and stopping" in output
    assert f"The final snapshot is {snapshot_in(stopped_dir)}" in output
    assert f"--resume={stopped_dir}" in output
    stopped = snapshot_lib.read_snapshot(snapshot_in(stopped_dir))
    assert 8 <= stopped["progress"]["cur_nimg"] < 144, "the stop must fall before kimg 0.144"

    result = run_train(tmp_path / "b", small_data, "--kimg=0.144", "--resume=latest", *RESUME_ARGS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"--resume=latest: continuing from {snapshot_in(stopped_dir)}" in result.stdout
    result = run_train(tmp_path / "a", small_data, "--kimg=0.144", *RESUME_ARGS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    (straight_dir,) = run_dirs(tmp_path / "a")
    straight = snapshot_lib.read_snapshot(snapshot_in(straight_dir))
    resumed = snapshot_lib.read_snapshot(snapshot_in(run_dirs(tmp_path / "b")[1]))
    assert straight["progress"]["cur_nimg"] == resumed["progress"]["cur_nimg"] == 144
    for key in ("G", "D", "G_ema", "augment_pipe", "optimizers", "loss_state", "random_states"):
        assert_same(straight[key], resumed[key], key)
    assert float(straight["augment_pipe"]["state_dict"]["p"]) > 0, "ADA never moved p"
    assert straight["D"]["state_dict"]["_extra_state"]["masker"]["toggles"] >= 1


@pytest.mark.slow
def test_sigint_writes_snapshot_and_exits_zero(tmp_path, small_data):
    rc, output = stop_after_first_tick(tmp_path, small_data, signal.SIGINT, "--kimg=100")
    assert rc == 0, output[-3000:]
    assert "Stopped by SIGINT at kimg" in output
    assert "Traceback" not in output
    (run_dir,) = run_dirs(tmp_path)
    data = snapshot_lib.check_resumable(snapshot_in(run_dir))
    assert 8 <= data["progress"]["cur_nimg"] < 100_000
    log = open(os.path.join(run_dir, "log.txt"), encoding="utf-8").read()
    assert "Stopped by SIGINT" in log


@pytest.mark.slow
def test_nan_policy_skip_counts_and_continues(tmp_path, small_data):
    env = run_env(FAULT="nan", FAULT_PHASE="Dmain", FAULT_NIMG="16")
    result = run_train(tmp_path, small_data, "--kimg=0.064", fault="nan", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "phase Dmain at kimg 0.016; skipped its optimizer step" in result.stdout
    assert "skipped 1" in result.stdout  # The tick line.
    (run_dir,) = run_dirs(tmp_path)
    with open(os.path.join(run_dir, "stats.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    skips = [r["Progress/skipped_steps"]["mean"] for r in records if "Progress/skipped_steps" in r]
    assert skips == [1]
    data = snapshot_lib.check_resumable(snapshot_in(run_dir))
    assert data["progress"]["skipped_steps"] == 1
    # 8 minibatches: D steps on every Dmain (8) and, for parameters that the R1 penalty
    # reaches, on Dreg at batch 0 (9 in all), each less the skipped one.
    steps = {float(s["step"]) for s in data["optimizers"]["D"]["state"].values()}
    assert steps == {7.0, 8.0}


@pytest.mark.slow
def test_nan_policy_stop_exits_without_snapshot(tmp_path, small_data):
    env = run_env(FAULT="nan", FAULT_PHASE="Gmain", FAULT_NIMG="0")
    result = run_train(tmp_path, small_data, "--kimg=0.064", "--nan-policy=stop", fault="nan",
                       env=env)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Error: Non-finite loss or gradients in phase Gmain at kimg 0.000" in output
    assert "--nan-policy=stop" in output
    assert "Traceback" not in output
    (run_dir,) = run_dirs(tmp_path)
    assert not [name for name in os.listdir(run_dir) if name.startswith("network-snapshot")]
    log = open(os.path.join(run_dir, "log.txt"), encoding="utf-8").read()
    assert "phase Gmain at kimg 0.000" in log


@pytest.mark.slow
def test_disk_full_stops_and_keeps_snapshot(tmp_path, small_data):
    env = run_env(FAULT="disk-full")
    result = run_train(tmp_path, small_data, "--kimg=0.064", "--snap=1", fault="disk-full",
                       env=env)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    assert f"Could not write {snapshot_in(run_dir)}: No space left on device" in output
    assert "GiB free in" in output
    assert "Training stopped at kimg 0.040" in output
    assert "Traceback" not in output
    assert not [name for name in os.listdir(run_dir) if name.endswith(".tmp")]
    data = snapshot_lib.check_resumable(snapshot_in(run_dir))
    assert data["progress"]["cur_nimg"] == 8  # The snapshot of tick 0, untouched.


@pytest.mark.slow
def test_sigterm_to_two_process_launcher_then_resume(tmp_path, small_data):
    # SIGTERM goes to the --gpus=2 launcher, which forwards it to both ranks; they agree on a
    # step, write one snapshot and exit 0. Resuming with two processes matches a straight run.
    extra = ["--gpus=2", "--dmd=1", "--dmd-interval=0.016"]
    rc, output = stop_after_first_tick(tmp_path / "b", small_data, signal.SIGTERM, "--kimg=100",
                                       *extra)  # fmt: skip
    assert rc == 0, output[-3000:]
    assert "Received SIGTERM: writing a snapshot and stopping" in output
    assert "Traceback" not in output
    (stopped_dir,) = run_dirs(tmp_path / "b")
    stopped = snapshot_lib.check_resumable(snapshot_in(stopped_dir))
    assert len(stopped["random_states"]) == 2
    assert 8 <= stopped["progress"]["cur_nimg"] < 64, "the stop must fall before kimg 0.064"

    result = run_train(tmp_path / "b", small_data, "--kimg=0.064", "--resume=latest", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = run_train(tmp_path / "a", small_data, "--kimg=0.064", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    straight = snapshot_lib.read_snapshot(snapshot_in(run_dirs(tmp_path / "a")[0]))
    resumed = snapshot_lib.read_snapshot(snapshot_in(run_dirs(tmp_path / "b")[1]))
    # Running averages (w_avg, pl_mean) are averaged over the ranks at every tick and at the
    # stop. Averaging is linear, so only rounding differs when the stop falls inside a tick.
    averaged = {"G/state_dict/mapping.w_avg", "G_ema/state_dict/mapping.w_avg", "pl_mean"}
    for key in ("G", "D", "G_ema", "optimizers", "loss_state"):
        assert_close_except(straight[key], resumed[key], key, averaged)


def assert_close_except(a, b, path, averaged):
    """assert_same, except that tensors whose path ends in one of `averaged` may differ by
    float32 rounding."""
    if torch.is_tensor(a) and any(path.endswith(name) for name in averaged):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=f"{path} differs")
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            assert_close_except(a[key], b[key], f"{path}/{key}", averaged)
    else:
        assert_same(a, b, path)
