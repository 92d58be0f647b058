"""Multi-process training on the CPU with gloo: the same minibatches for any process count,
identical weights and DMD state on every rank, a 2-process run matching a 1-process run,
torchrun launch, the --gpus checks, and collective errors naming rank, phase and kimg."""

import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dnnlib
import tests.test_train_e2e as e2e
import train
from torch_utils import misc
from training import snapshot as snapshot_lib
from training import training_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = os.path.join(ROOT, "tests", "run_helpers.py")
TINY_OPTIONS = [
    *e2e.TINY_OPTIONS,
    "--kimg=0.064",
    "--metrics=none",
    "--dmd=1",
    "--dmd-interval=0.016",
]


def run_with_dump(tmp_path, data, name, *extra):
    """Run train.py through run_helpers.py; return (run_dir, {rank: state})."""
    dump_dir = tmp_path / f"{name}-dump"
    outdir = tmp_path / f"{name}-runs"
    dump_dir.mkdir()
    args = [sys.executable, HELPER, str(dump_dir), f"--outdir={outdir}", f"--data={data}"]
    args += TINY_OPTIONS + list(extra)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = [os.path.join(outdir, n) for n in os.listdir(outdir)]
    states = {}
    for file_name in sorted(os.listdir(dump_dir)):
        rank = int(file_name[len("rank") : -len(".pt")])
        states[rank] = torch.load(dump_dir / file_name, weights_only=False)
    return run_dir, states


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data):
    """A 2-process run (batch_gpu 4 per rank) and a 1-process run with --batch-gpu=4, which
    forms the same rounds of 4 images: same minibatch-std groups, same path-length subsets."""
    tmp_path = tmp_path_factory.mktemp("dist")
    two = run_with_dump(tmp_path, small_data, "two", "--gpus=2")
    one = run_with_dump(tmp_path, small_data, "one", "--gpus=1", "--batch-gpu=4")
    return two, one


def float_tensors(state):
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}


def relative_difference(a, b, names):
    diff = sum(float((a[k].double() - b[k].double()).square().sum()) for k in names)
    norm = sum(float(a[k].double().square().sum()) for k in names)
    return (diff / norm) ** 0.5


# ----------------------------------------------------------------------------
# Units: sampler chunks, latents and seeds do not depend on the process count.


def test_sampler_chunks_follow_global_stream():
    data = list(range(20))
    full = misc.InfiniteSampler(data, seed=3)
    full = [x for x, _ in zip(full, range(48))]
    for rank in range(2):
        shard = misc.InfiniteSampler(data, rank=rank, num_replicas=2, seed=3, chunk_size=4)
        shard = [x for x, _ in zip(shard, range(24))]
        expected = [full[i] for i in range(48) if (i // 4) % 2 == rank]
        assert shard == expected


def test_sampler_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size=0"):
        misc.InfiniteSampler(list(range(4)), chunk_size=0)


class LabeledData:
    def __len__(self):
        return 10

    def get_label(self, idx):
        return np.eye(3, dtype=np.float32)[idx % 3]


def test_step_latents_same_for_any_process_count():
    data = LabeledData()
    z1, c1 = training_loop.draw_step_latents(data, 3, 8, 5, 7, 11, rank=0, num_gpus=1)
    parts = [training_loop.draw_step_latents(data, 3, 8, 5, 7, 11, r, 4) for r in range(4)]
    assert z1.shape == (3, 8, 5)
    assert c1.shape == (3, 8, 3)
    assert torch.equal(torch.cat([z for z, _ in parts], dim=1), z1)
    assert torch.equal(torch.cat([c for _, c in parts], dim=1), c1)


def test_step_latents_change_with_step_and_seed():
    data = LabeledData()
    z, _ = training_loop.draw_step_latents(data, 1, 4, 5, 7, 11, 0, 1)
    next_step, _ = training_loop.draw_step_latents(data, 1, 4, 5, 7, 12, 0, 1)
    other_seed, _ = training_loop.draw_step_latents(data, 1, 4, 5, 8, 11, 0, 1)
    assert not torch.equal(z, next_step)
    assert not torch.equal(z, other_seed)


def test_step_latents_without_labels():
    class Unlabeled(LabeledData):
        def get_label(self, idx):
            return np.zeros([0], dtype=np.float32)

    _z, c = training_loop.draw_step_latents(Unlabeled(), 2, 4, 5, 0, 0, 1, 2)
    assert c.shape == (2, 2, 0)


# ----------------------------------------------------------------------------
# Gradients average over rounds and ranks.


class SquareLoss:
    """Loss (w * x)^2 / 2 per image, mean over the round: gradient mean(w * x^2)."""

    def __init__(self, module):
        self.module = module

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        (self.module.weight * real_img).square().mul(0.5).mean().mul(gain).backward()


def test_gradient_is_mean_over_rounds():
    module = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(2.0)
    opt = torch.optim.SGD(module.parameters(), lr=1.0)
    phase = dnnlib.EasyDict(name="Dmain", module=module, opt=opt, interval=1)
    phase.start_event = phase.end_event = None
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    rounds = list(x.split(2))
    batch = (rounds, rounds, rounds, rounds)
    training_loop.run_phase(phase, SquareLoss(module), batch, num_gpus=1, cur_nimg=0)
    # Mean over all four images: 2 * (1 + 4 + 9 + 16) / 4 = 15, so SGD moves w to 2 - 15.
    assert float(module.weight) == pytest.approx(2.0 - 15.0)


# ----------------------------------------------------------------------------
# Collective errors name the rank, the phase and the kimg.


def test_collective_error_names_rank_phase_kimg(monkeypatch):
    def failing_all_reduce(tensor, *args, **kwargs):
        raise RuntimeError("Timed out waiting 2000ms for recv operation to complete")

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", failing_all_reduce)
    module = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(module.parameters(), lr=1.0)
    phase = dnnlib.EasyDict(name="Dreg", module=module, opt=opt, interval=16)
    phase.start_event = phase.end_event = None
    x = [torch.ones(2)]
    with pytest.raises(misc.CollectiveError) as info:
        training_loop.run_phase(phase, SquareLoss(module), (x, x, x, x), 2, cur_nimg=1536)
    message = str(info.value)
    assert "Rank 1 of 2" in message
    assert "phase Dreg" in message
    assert "kimg 1.536" in message
    assert "Timed out waiting" in message
    assert (info.value.rank, info.value.phase, info.value.kimg) == (1, "Dreg", 1.536)


def test_non_runtime_errors_pass_unchanged(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    with pytest.raises(ValueError, match="not a collective"):
        with misc.collective_phase("stats", 0.0):
            raise ValueError("not a collective")


def skip_collective_fn(rank, init_dir, result_path):
    """Rank 0 waits in an all-reduce that rank 1 never joins; rank 0 records the error."""
    os.environ["OMP_NUM_THREADS"] = "1"
    misc.init_process(rank, 2, "cpu", init_dir, timeout_min=2 / 60)
    try:
        if rank == 0:
            try:
                with misc.collective_phase("stats", 0.096):
                    torch.distributed.all_reduce(torch.ones(3))
            except misc.CollectiveError as err:
                with open(result_path, "w", encoding="utf-8") as f:
                    f.write(str(err))
        else:
            time.sleep(4)
    finally:
        torch.distributed.destroy_process_group()


def test_gloo_timeout_names_rank_phase_kimg(tmp_path):
    result_path = str(tmp_path / "error.txt")
    with tempfile.TemporaryDirectory() as init_dir:
        torch.multiprocessing.spawn(
            skip_collective_fn, args=(init_dir, result_path), nprocs=2, join=True
        )
    message = open(result_path, encoding="utf-8").read()
    assert "Rank 0 of 2" in message
    assert "phase stats at kimg 0.096" in message
    assert "--dist-timeout=0.0333333 min" in message


# ----------------------------------------------------------------------------
# --gpus checks and torchrun's environment.


def cli_args(outdir, data, *extra):
    args = [f"--outdir={outdir}", f"--data={data}", "--dry-run"]
    return args + [a for a in TINY_OPTIONS if a != "--metrics=none"] + ["--metrics=none", *extra]


def test_gpus_disagreeing_with_world_size(tmp_path, small_data, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    result = CliRunner().invoke(train.main, cli_args(tmp_path, small_data, "--gpus=4"))
    assert result.exit_code != 0
    assert "--gpus=4 disagrees with torchrun's WORLD_SIZE=2" in result.output


def test_gpus_taken_from_world_size(tmp_path, small_data, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(train.main, cli_args(tmp_path, small_data))
    assert result.exit_code == 0, result.output
    assert "gpus2-batch8" in result.output
    assert '"num_gpus": 2' in result.output


def test_gpus_required_without_torchrun(tmp_path, small_data, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(train.main, cli_args(tmp_path, small_data))
    assert result.exit_code != 0
    assert "Missing option '--gpus'" in result.output


def test_invalid_torchrun_rank(tmp_path, small_data, monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(train.main, cli_args(tmp_path, small_data))
    assert result.exit_code != 0
    assert "RANK=2 and WORLD_SIZE=2 are inconsistent" in result.output


def test_cpu_accepts_several_processes(tmp_path, small_data, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(train.main, cli_args(tmp_path, small_data, "--gpus=2"))
    assert result.exit_code == 0, result.output
    assert "Number of GPUs:      2" in result.output


# ----------------------------------------------------------------------------
# Real 2-process runs.


@pytest.mark.slow
def test_ranks_have_identical_weights(runs):
    (_run_dir, states), _one = runs
    assert sorted(states) == [0, 1]
    for net in ("G", "D", "G_ema"):
        params = [k for k in float_tensors(states[0][net]) if not k.endswith("w_avg")]
        for name in params:
            assert torch.equal(states[0][net][name], states[1][net][name]), f"{net}.{name}"


@pytest.mark.slow
def test_ranks_have_identical_dmd_state(runs):
    (_run_dir, states), _one = runs
    dmd = [states[rank]["D"]["_extra_state"] for rank in (0, 1)]
    masker = [s["masker"] for s in dmd]
    detector = [s["detector"] for s in dmd]
    # Something was decided: the masks went on at least once.
    assert masker[0]["toggles"] >= 1
    assert len(detector[0]["speeds"]) >= 2
    assert masker[0]["masked"] == masker[1]["masked"]
    assert masker[0]["toggles"] == masker[1]["toggles"]
    assert sorted(masker[0]["patterns"]) == sorted(masker[1]["patterns"])
    for res, keep in masker[0]["patterns"].items():
        assert torch.equal(keep, masker[1]["patterns"][res])
    assert torch.equal(masker[0]["generator_state"], masker[1]["generator_state"])
    assert detector[0]["speeds"] == detector[1]["speeds"]
    assert dmd[0]["interval_index"] == dmd[1]["interval_index"]


@pytest.mark.slow
def test_running_averages_averaged_over_ranks(runs):
    (run_dir, states), _one = runs
    # The dumps are taken after the last step. The tick that follows averages w_avg over the
    # ranks (in float64) before rank 0 writes the final snapshot.
    snapshot = snapshot_lib.read_snapshot(os.path.join(run_dir, "network-snapshot-000000.pkl"))
    saved = snapshot["G"]["state_dict"]["mapping.w_avg"]
    per_rank = [states[rank]["G"]["mapping.w_avg"].double() for rank in (0, 1)]
    assert not torch.equal(per_rank[0], per_rank[1])
    assert torch.equal(saved, ((per_rank[0] + per_rank[1]) / 2).float())


@pytest.mark.slow
def test_two_processes_match_one_process(runs):
    (_run_dir, two), (_one_dir, one) = runs
    # Measured relative L2 differences after 8 steps: 1.9e-6 for G, 2.7e-4 for D (2-core
    # CPU, torch 2.13, OMP_NUM_THREADS=1), so the bound leaves a factor of 7. The rounds are
    # identical, but the gradients differ in the last bits because one process adds each
    # round's backward() into .grad while two sum whole-round gradients in the all-reduce.
    # Adam (beta1 = 0) turns such differences into up to 2 * lr where a gradient is close
    # to zero, and the path-length mean moves once per round in one process but from the
    # same start on both ranks.
    for net in ("G", "D"):
        names = [k for k in float_tensors(two[0][net]) if not k.endswith("w_avg")]
        difference = relative_difference(one[0][net], two[0][net], names)
        assert difference < 2e-3, f"{net}: relative difference {difference:.2e}"


@pytest.mark.slow
def test_two_process_run_directory(runs):
    (run_dir, _states), _one = runs
    outdir = os.path.dirname(run_dir)
    assert os.listdir(outdir) == [os.path.basename(run_dir)]
    assert "gpus2-batch8" in os.path.basename(run_dir)
    log = open(os.path.join(run_dir, "log.txt"), encoding="utf-8").read()
    # Only rank 0 writes the log, so each line of the run appears once.
    assert log.count("Training for 0.064 kimg") == 1
    assert "DMD: retarded at kimg" in log


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path, small_data):
    outdir = tmp_path / "runs"
    args = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        "--master-addr=127.0.0.1", f"--master-port={free_loopback_port()}",
        os.path.join(ROOT, "train.py"), f"--outdir={outdir}", f"--data={small_data}",
        *TINY_OPTIONS, "--kimg=0.032",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (name,) = os.listdir(outdir)
    assert "gpus2-batch8" in name
    files = os.listdir(outdir / name)
    assert "network-snapshot-000000.pkl" in files
    assert "training_options.json" in files
    assert result.stdout.count("Creating output directory") == 1


def test_timeout_option_reaches_process_group(monkeypatch, tmp_path):
    calls = {}

    def fake_init(**kwargs):
        calls.update(kwargs)

    monkeypatch.setattr(torch.distributed, "init_process_group", fake_init)
    device = misc.init_process(1, 2, "cpu", str(tmp_path), timeout_min=7)
    assert device == torch.device("cpu")
    assert calls["timeout"] == datetime.timedelta(minutes=7)
    assert calls["backend"] == "gloo"
    assert calls["rank"] == 1
    assert calls["init_method"].startswith("file://")
