"""torch_utils.misc: constants, shape checks, the infinite sampler, parameter copying and the
module summary."""

import itertools
import os
import warnings

import numpy as np
import pytest
import torch

from torch_utils import misc


def _take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


# ----------------------------------------------------------------------------
# constant() and assert_shape()


def test_constant_values_and_cache():
    a = misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float64)
    assert a.tolist() == [[1.0, 2.0]] * 3
    assert a.dtype == torch.float64
    assert misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float64) is a
    assert misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float32) is not a
    assert misc.constant([1.0, 3.0], shape=[3, 2], dtype=torch.float64) is not a


def test_constant_defaults():
    c = misc.constant(0.5)
    assert c.shape == torch.Size([])
    assert c.dtype == torch.get_default_dtype()
    assert c.device == torch.device("cpu")


def test_assert_shape_accepts_matching_and_wildcards():
    x = torch.zeros([2, 3, 4])
    misc.assert_shape(x, [2, 3, 4])
    misc.assert_shape(x, [None, 3, None])


def test_assert_shape_rejects_wrong_size():
    with pytest.raises(AssertionError, match="dimension 1: got 3, expected 5"):
        misc.assert_shape(torch.zeros([2, 3]), [None, 5])


def test_assert_shape_rejects_wrong_ndim():
    with pytest.raises(AssertionError, match="got 2 .*expected 3"):
        misc.assert_shape(torch.zeros([2, 3]), [2, 3, 1])


def test_suppress_tracer_warnings_hides_only_tracer_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with misc.suppress_tracer_warnings():
            warnings.warn("traced", torch.jit.TracerWarning, stacklevel=1)
            warnings.warn("other", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["other"]


def test_profiled_function_keeps_name_and_result():
    def add_one(x):
        return x + 1

    wrapped = misc.profiled_function(add_one)
    assert wrapped.__name__ == "add_one"
    assert wrapped(2) == 3


# ----------------------------------------------------------------------------
# InfiniteSampler


def test_sampler_is_deterministic_per_seed():
    data = list(range(20))
    first = _take(misc.InfiniteSampler(data, seed=7), 100)
    again = _take(misc.InfiniteSampler(data, seed=7), 100)
    other = _take(misc.InfiniteSampler(data, seed=8), 100)
    assert first == again
    assert first != other


def test_sampler_each_pass_is_permutation():
    data = list(range(13))
    stream = _take(misc.InfiniteSampler(data, seed=3, window_size=0.5), 13 * 6)
    passes = [stream[i : i + 13] for i in range(0, len(stream), 13)]
    for p in passes:
        assert sorted(p) == data
    # The window swaps give later passes a different order.
    assert passes[1] != passes[0]
    assert passes[0] != data


def test_sampler_without_shuffle_is_sequential():
    stream = _take(misc.InfiniteSampler(list(range(4)), shuffle=False), 10)
    assert stream == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_sampler_shards_are_disjoint():
    data = list(range(24))
    replicas = 3
    full = _take(misc.InfiniteSampler(data, seed=5), 24 * 2)
    shards = [
        _take(misc.InfiniteSampler(data, rank=r, num_replicas=replicas, seed=5), 16)
        for r in range(replicas)
    ]
    # Rank r gets every replicas-th element of the single-process stream, starting at r.
    for r in range(replicas):
        assert shards[r] == full[r::replicas]
    # Within one pass over the data the ranks never share an index.
    first_pass = [set(shard[:8]) for shard in shards]
    for a, b in itertools.combinations(first_pass, 2):
        assert not a & b
    assert set().union(*first_pass) == set(data)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rank=2, num_replicas=2), "rank=2 must be in"),
        (dict(num_replicas=0), "num_replicas=0"),
        (dict(window_size=1.5), "window_size=1.5"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        misc.InfiniteSampler(list(range(4)), **kwargs)


def test_sampler_rejects_empty_dataset():
    with pytest.raises(ValueError, match="empty"):
        misc.InfiniteSampler([])


# ----------------------------------------------------------------------------
# Parameters and buffers.


class _Net(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.fc = torch.nn.Linear(3, width)
        self.out = torch.nn.Linear(width, 2)
        self.register_buffer("scale", torch.full([width], 2.0))

    def forward(self, x):
        return self.out(self.fc(x) * self.scale)


def test_params_and_buffers_lists_everything():
    net = _Net()
    names = [name for name, _ in misc.named_params_and_buffers(net)]
    assert names == ["fc.weight", "fc.bias", "out.weight", "out.bias", "scale"]
    assert len(misc.params_and_buffers(net)) == 5


def test_copy_params_and_buffers_copies_values():
    torch.manual_seed(0)
    src, dst = _Net(), _Net()
    with torch.no_grad():
        src.scale.fill_(3.0)
    dst.fc.weight.requires_grad_(False)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    for (name, a), (_, b) in zip(
        misc.named_params_and_buffers(src), misc.named_params_and_buffers(dst)
    ):
        assert torch.equal(a, b), name
    assert not dst.fc.weight.requires_grad
    assert dst.out.weight.requires_grad


def test_copy_params_and_buffers_missing_names():
    src = torch.nn.Module()
    src.fc = torch.nn.Linear(3, 4)
    dst = _Net()
    before = dst.out.weight.clone()
    misc.copy_params_and_buffers(src, dst)
    assert torch.equal(dst.fc.weight, src.fc.weight)
    assert torch.equal(dst.out.weight, before)
    with pytest.raises(KeyError, match="'out.weight'"):
        misc.copy_params_and_buffers(src, dst, require_all=True)


def test_copy_params_and_buffers_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"'fc.weight' has shape \[5, 3\]"):
        misc.copy_params_and_buffers(_Net(width=5), _Net(width=4))


def test_ddp_sync_plain_module_runs_block():
    ran = []
    with misc.ddp_sync(_Net(), sync=False):
        ran.append(True)
    assert ran == [True]


def test_check_ddp_consistency_without_distributed_is_noop():
    misc.check_ddp_consistency(_Net())


def _ddp_consistency_worker(rank, store_path, result_path):
    # Two gloo processes, rendezvous through a file and traffic on loopback only.
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.distributed.init_process_group(
        backend="gloo", init_method=f"file://{store_path}", rank=rank, world_size=2
    )
    torch.manual_seed(0)
    net = _Net()
    misc.check_ddp_consistency(net)  # Same seed, so the same weights on both ranks.
    with torch.no_grad():
        net.fc.bias[0] = float(rank)
        net.scale[0] = float(rank)
    misc.check_ddp_consistency(net, ignore_regex=r"_Net\.(scale|fc\.bias)")
    try:
        misc.check_ddp_consistency(net)
        message = ""
    except AssertionError as error:
        message = str(error)
    with open(f"{result_path}{rank}.txt", "w") as file:
        file.write(message)
    torch.distributed.destroy_process_group()


def test_check_ddp_consistency_two_processes(tmp_path):
    result_path = str(tmp_path / "result")
    torch.multiprocessing.spawn(
        _ddp_consistency_worker, args=(str(tmp_path / "store"), result_path), nprocs=2
    )
    with open(f"{result_path}0.txt") as file:
        assert file.read() == ""
    with open(f"{result_path}1.txt") as file:
        assert (
            file.read() == "Tensors differ between rank 0 and this rank: _Net.fc.bias, _Net.scale"
        )


# ----------------------------------------------------------------------------
# print_module_summary()


def test_print_module_summary_counts(capsys):
    net = _Net()
    x = torch.zeros([5, 3])
    y = misc.print_module_summary(net, [x])
    torch.testing.assert_close(y, net(x))
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.strip()}
    assert rows["fc"][1:4] == ["16", "-", "[5,"]
    assert rows["out"][1] == "10"
    assert rows["<top-level>"][1:3] == ["-", "4"]
    assert rows["Total"][1:3] == ["26", "4"]
    assert "float32" in rows["out"]


def test_print_module_summary_max_nesting(capsys):
    net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()))
    misc.print_module_summary(net, [torch.zeros([1, 2])], max_nesting=1)
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.strip()}
    assert "0.0" not in rows
    # The nested Linear's 2 * 3 + 3 parameters are counted at the deepest listed level.
    assert rows["0"][1] == "9"
    assert rows["Total"][1] == "9"


def test_print_module_summary_rejects_bare_tensor():
    with pytest.raises(TypeError, match="tuple or list"):
        misc.print_module_summary(_Net(), torch.zeros([1, 3]))


def test_sampler_with_numpy_dataset():
    data = np.zeros([6, 2])
    assert sorted(_take(misc.InfiniteSampler(data, seed=1), 6)) == list(range(6))
