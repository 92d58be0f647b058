"""The benchmark scripts run and print well-formed records. Their figures are not checked:
speed belongs in docs/benchmarks.md, never in a timed test."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name, *args):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", name), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_step_time_prints_one_record_per_configuration():
    out = run_script(
        "step_time.py", "--configs=tiny", "--repeats=1", "--warmup=0", "--isolate=0",
        "--threads=1", "--ops=ref", "--fir=matmul",
    )  # fmt: skip
    (record,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert (record["name"], record["ops"], record["fir"]) == ("tiny", "ref", "matmul")
    assert (record["allow_tf32"], record["cudnn_benchmark"]) == (False, True)
    assert set(record["parts"]) >= {"Gmain", "Greg", "Dmain", "Dreg", "G_ema", "iteration"}
    assert record["parts"]["Greg"]["every"] == 4
    assert record["parts"]["Dreg"]["every"] == 16
    assert record["amortized_s_per_minibatch"] > 0
    assert record["peak_rss_gb"] > 0


def test_step_time_dmd_overhead_record():
    out = run_script(
        "step_time.py", "--configs=tiny", "--dmd-overhead", "--repeats=2", "--warmup=0",
        "--isolate=0", "--threads=1",
    )  # fmt: skip
    (record,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert record["mode"] == "dmd-overhead"
    assert record["ratio"]["min"] <= record["ratio"]["median"]
    assert record["ratio"]["median"] <= record["ratio"]["max"]
    assert record["parts"]["on"]["hooks"]["median"] > 0


@pytest.mark.parametrize("tables", ["modconv", "memory-format"])
def test_layers_prints_every_row(tables):
    out = run_script("layers.py", "--repeats=1", "--batch=1", "--threads=1", f"--tables={tables}")
    rows = [line for line in out.splitlines() if line.startswith("SG2")]
    assert len(rows) == (6 if tables == "modconv" else 4)


def test_step_time_rejects_cuda_without_a_device():
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "step_time.py"), "--device=cuda"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode == 0:
        pytest.skip("this machine has CUDA")
    assert "CUDA" in result.stderr


def test_step_time_dmd_overhead_compiles_both_sides(monkeypatch):
    # In-process, with aot_eager in place of Inductor so that compiling takes seconds.
    from click.testing import CliRunner

    from torch_utils import compiling

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import step_time

    monkeypatch.setattr(compiling, "COMPILE_KWARGS", dict(backend="aot_eager", dynamic=False))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    args = ["--configs=tiny", "--dmd-overhead", "--compile=1", "--repeats=1", "--warmup=0",
            "--isolate=0"]  # fmt: skip
    result = CliRunner().invoke(step_time.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # G.mapping, G.synthesis and D of each side, for update_emas on and off.
    assert counters["stats"]["unique_graphs"] >= 8
    torch._dynamo.reset()
