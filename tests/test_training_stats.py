"""torch_utils.training_stats: moments of reported values, Collector intervals and the
all-reduce across processes."""

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing

from torch_utils import training_stats

# The reporter keeps module-level state, so every test uses its own name prefix and a
# Collector regex restricted to it.


def test_report_mean_std_match_numpy():
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(5), rng.standard_normal([2, 3]), np.array(4.5)]
    collector = training_stats.Collector(regex="Moments/.*")
    for v in values:
        training_stats.report("Moments/x", torch.as_tensor(v, dtype=torch.float32))
    collector.update()
    flat = np.concatenate([np.ravel(v).astype(np.float32) for v in values]).astype(np.float64)
    assert collector.num("Moments/x") == flat.size
    assert collector.mean("Moments/x") == pytest.approx(flat.mean(), rel=1e-12)
    assert collector.std("Moments/x") == pytest.approx(flat.std(), rel=1e-9)
    assert collector["Moments/x"] == collector.mean("Moments/x")


def test_report_returns_value_and_accepts_numbers():
    t = torch.ones([2])
    assert training_stats.report("Values/t", t) is t
    assert training_stats.report("Values/n", 3) == 3
    collector = training_stats.Collector(regex="Values/.*")
    collector.update()
    assert collector.num("Values/t") == 2
    assert collector.mean("Values/n") == 3.0
    assert collector.std("Values/n") == 0.0


def test_collector_resets_between_updates():
    collector = training_stats.Collector(regex="Reset/.*", keep_previous=False)
    training_stats.report("Reset/a", torch.tensor([1.0, 3.0]))
    collector.update()
    assert collector.num("Reset/a") == 2
    assert collector.mean("Reset/a") == 2.0

    training_stats.report("Reset/a", torch.tensor([10.0]))
    collector.update()
    assert collector.num("Reset/a") == 1
    assert collector.mean("Reset/a") == 10.0

    collector.update()
    assert collector.num("Reset/a") == 0
    assert np.isnan(collector.mean("Reset/a"))
    assert np.isnan(collector.std("Reset/a"))


def test_collector_keep_previous_holds_last_interval():
    collector = training_stats.Collector(regex="Keep/.*", keep_previous=True)
    training_stats.report("Keep/a", torch.tensor([2.0, 4.0]))
    collector.update()
    collector.update()
    assert collector.num("Keep/a") == 2
    assert collector.mean("Keep/a") == 3.0


def test_collectors_are_independent():
    first = training_stats.Collector(regex="Indep/.*")
    second = training_stats.Collector(regex="Indep/.*")
    training_stats.report("Indep/a", 1.0)
    first.update()
    training_stats.report("Indep/a", 5.0)
    first.update()
    second.update()
    assert first.mean("Indep/a") == 5.0
    assert second.num("Indep/a") == 2
    assert second.mean("Indep/a") == 3.0


def test_collector_regex_and_as_dict():
    collector = training_stats.Collector(regex="Filter/Loss/.*")
    training_stats.report("Filter/Loss/G", torch.tensor([1.0, 2.0]))
    training_stats.report("Filter/Timing/tick", 5.0)
    collector.update()
    assert collector.names() == ["Filter/Loss/G"]
    stats = collector.as_dict()
    assert list(stats) == ["Filter/Loss/G"]
    assert stats["Filter/Loss/G"].num == 2
    assert stats["Filter/Loss/G"].mean == 1.5
    assert stats["Filter/Loss/G"].std == 0.5


def test_report_empty_value_registers_name():
    collector = training_stats.Collector(regex="Empty/.*")
    training_stats.report("Empty/a", [])
    collector.update()
    assert collector.names() == ["Empty/a"]
    assert collector.num("Empty/a") == 0


def test_report0_records_on_rank_zero():
    collector = training_stats.Collector(regex="Rank0/.*")
    training_stats.report0("Rank0/a", torch.tensor([7.0]))
    collector.update()
    assert collector.mean("Rank0/a") == 7.0


def test_report_rejects_empty_name():
    with pytest.raises(ValueError, match="invalid statistic name ''"):
        training_stats.report("", 1.0)


# ----------------------------------------------------------------------------
# Two processes on the gloo backend, rendezvous through a file and traffic on loopback.


def _all_reduce_worker(rank, store_path, result_path):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.distributed.init_process_group(
        backend="gloo", init_method=f"file://{store_path}", rank=rank, world_size=2
    )
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device("cpu"))
    collector = training_stats.Collector(regex="Dist/.*")
    training_stats.report("Dist/x", torch.tensor([1.0, 2.0]) + 10 * rank)
    training_stats.report0("Dist/rank0", torch.tensor([float(rank + 1)]))
    collector.update()
    result = [collector.num("Dist/x"), collector.mean("Dist/x"), collector.std("Dist/x")]
    result += [collector.num("Dist/rank0"), collector.mean("Dist/rank0")]
    np.save(f"{result_path}{rank}.npy", np.array(result))
    torch.distributed.destroy_process_group()


def test_collector_all_reduce_two_processes(tmp_path):
    result_path = str(tmp_path / "result")
    torch.multiprocessing.spawn(
        _all_reduce_worker, args=(str(tmp_path / "store"), result_path), nprocs=2
    )
    expected_x = np.array([1.0, 2.0, 11.0, 12.0])
    for rank in range(2):
        num, mean, std, num0, mean0 = np.load(f"{result_path}{rank}.npy")
        assert num == 4
        assert mean == pytest.approx(expected_x.mean())
        assert std == pytest.approx(expected_x.std())
        # report0 counts only rank 0's value, on every rank.
        assert num0 == 1
        assert mean0 == 1.0
