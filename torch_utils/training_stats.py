"""Named training statistics, accumulated cheaply during training and gathered on demand.

Any code may call report('Loss/D/real', tensor). Each call adds the count, sum and sum of
squares of the reported elements, in float64, to a per-name, per-device accumulator without
synchronizing with the GPU. A Collector later sums the accumulators across devices and,
after init_multiprocessing(), across processes, and turns them into num/mean/std since its
previous update.

Every process must report the same names, and in a multi-process job call
Collector.update() at the same points, because the all-reduce pairs names by position.
report0() keeps names in step on ranks other than 0 by reporting no elements there.
"""

import math
import re

import torch

from dnnlib import EasyDict

_num_moments = 3  # count, sum, sum of squares
_reduce_dtype = torch.float64

_rank = 0  # Rank of this process, set by init_multiprocessing().
_sync_device = None  # Device for the all-reduce; None means no all-reduce.
_counters: dict[str, dict[torch.device, torch.Tensor]] = {}  # name -> device -> delta [3]
_cumulative: dict[str, torch.Tensor] = {}  # name -> all-time moments [3] on the CPU


def init_multiprocessing(rank: int, sync_device: torch.device | None) -> None:
    """Set this process's rank and the device used for the all-reduce across processes.

    rank:        index of this process; report0() only records on rank 0.
    sync_device: device whose tensors torch.distributed can reduce (a CUDA device for the
                 NCCL backend, the CPU for gloo). None disables the all-reduce, which suits
                 single-process runs.
    Call it once per process, before the first Collector.update().
    """
    global _rank, _sync_device
    _rank = rank
    _sync_device = sync_device


def report(name: str, value) -> object:
    """Add the elements of `value` (a number, array or tensor of any shape) to the statistic
    `name`, a slash-separated path such as 'Loss/D/real'. An empty value still registers
    the name. Returns `value` unchanged, so calls can wrap expressions."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"training_stats.report: invalid statistic name {name!r}")
    if name not in _counters:
        _counters[name] = {}

    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    device = moments.device
    counter = _counters[name].get(device)
    if counter is None:
        counter = torch.zeros([_num_moments], dtype=_reduce_dtype, device=device)
        _counters[name][device] = counter
    counter.add_(moments)
    return value


def report0(name: str, value) -> object:
    """Like report(), but records the elements only on rank 0. Other ranks register the
    name with no elements, so the names stay the same on every rank."""
    report(name, value if _rank == 0 else [])
    return value


def _sync(names: list[str]) -> list[tuple[str, torch.Tensor]]:
    """Move the pending counts of `names` into the all-time totals, summed over devices and,
    when init_multiprocessing() set a sync device, over processes. Returns (name, totals)."""
    if not names:
        return []
    device = _sync_device if _sync_device is not None else torch.device("cpu")

    # Gather this process's pending moments: [len(names), 3].
    deltas = []
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_reduce_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device))
            counter.zero_()
        deltas.append(delta)
    deltas = torch.stack(deltas)

    if _sync_device is not None and torch.distributed.is_initialized():
        torch.distributed.all_reduce(deltas)

    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_reduce_dtype)
        _cumulative[name].add_(deltas[idx])
    return [(name, _cumulative[name]) for name in names]


class Collector:
    """Gathers the statistics whose names match a regular expression and computes
    num/mean/std of what was reported between the last two calls to update(). The first
    update() covers everything reported since the process started."""

    def __init__(
        self,
        regex: str = ".*",  # Names to collect, matched in full with re.fullmatch.
        keep_previous: bool = True,  # True keeps the last values of names with no new reports.
    ):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._last_totals: dict[str, torch.Tensor] = {}  # name -> all-time moments seen
        self._moments: dict[str, torch.Tensor] = {}  # name -> moments of the last interval

    def names(self) -> list[str]:
        """Return the reported names that match the regex, in first-report order."""
        return [name for name in _counters if self._regex.fullmatch(name)]

    def update(self) -> None:
        """Gather every matching statistic reported since the previous update(). In a
        multi-process job every rank must call this at the same point."""
        if not self._keep_previous:
            self._moments.clear()
        for name, totals in _sync(self.names()):
            last = self._last_totals.get(name)
            delta = totals.clone() if last is None else totals - last
            self._last_totals[name] = totals.clone()
            if delta[0] != 0:
                self._moments[name] = delta

    def _get_moments(self, name: str) -> torch.Tensor:
        return self._moments.get(name, torch.zeros([_num_moments], dtype=_reduce_dtype))

    def num(self, name: str) -> int:
        """Return the number of elements reported under `name` in the last interval."""
        return int(self._get_moments(name)[0])

    def mean(self, name: str) -> float:
        """Return the mean of `name` over the last interval, or NaN when num is 0."""
        count, total, _ = self._get_moments(name).tolist()
        return total / count if count else float("nan")

    def std(self, name: str) -> float:
        """Return the population standard deviation of `name` over the last interval, or NaN
        when num is 0."""
        count, total, total_sq = self._get_moments(name).tolist()
        if not count:
            return float("nan")
        mean = total / count
        return math.sqrt(max(total_sq / count - mean * mean, 0.0))

    def as_dict(self) -> dict[str, EasyDict]:
        """Return {name: EasyDict(num, mean, std)} for the matching names."""
        stats = {}
        for name in self.names():
            stats[name] = EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name: str) -> float:
        """Return mean(name)."""
        return self.mean(name)
