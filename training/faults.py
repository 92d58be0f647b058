"""Runs that survive faults: stopping on SIGINT/SIGTERM at a step boundary, the policy for
non-finite gradients, and the random-generator states that make a resumed run continue
exactly where it stopped.

Every decision that ends or changes a step is taken identically on all ranks: the stop flag
goes through any_rank(), and gradients are checked after their all-reduce.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import torch

NAN_POLICIES = ("skip", "stop")
MAX_SKIP_MESSAGES = 20  # Skipped steps printed one by one. Later ones are only counted.


class TrainingStopped(RuntimeError):
    """Training cannot go on. The message names the cause and what to do, and every rank
    raises it at the same step, so train.py prints it without a traceback and exits with 1."""


# ----------------------------------------------------------------------------
# Agreement between ranks.


def any_rank(flag: bool, num_gpus: int, device: torch.device) -> bool:
    """Return True on every rank when `flag` is True on at least one rank.

    All ranks must call it at the same point. With one process no collective runs.
    """
    # NOTE: the tests run these multi-process paths (this all-reduce, all_gather_object of the
    # random states) with gloo on CPU processes only; NCCL and the CUDA generator state have
    # not been run.
    if num_gpus <= 1:
        return bool(flag)
    # NCCL reduces only CUDA tensors, and gloo takes CPU tensors.
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)


# ----------------------------------------------------------------------------
# SIGINT and SIGTERM.


class StopSignal:
    """Records SIGINT and SIGTERM so the loop can stop at the next step boundary.

    The first signal only sets `signum`. A second one raises SystemExit(128 + signum) at once,
    which still runs `finally` blocks, so a snapshot being written leaves no temporary file.
    A repeat within REPEAT_WINDOW_S seconds of the first counts as the same request, because
    one event can arrive twice: SLURM signals every process of a job step, and the --gpus
    launcher also forwards SIGTERM to its processes. The handler prints nothing: printing
    inside a signal handler can interrupt a print of the main code and fail with a
    reentrant-call error.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_WINDOW_S = 2.0

    def __init__(self):
        self.signum: int | None = None
        self._first_time = 0.0
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def install(self) -> bool:
        """Install the handlers. Returns False and installs nothing off the main thread, where
        Python does not allow signal handlers."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        """Put back the handlers that were active before install()."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, _frame) -> None:
        now = time.monotonic()
        if self.signum is not None:
            if now - self._first_time < self.REPEAT_WINDOW_S:
                return
            self.restore()
            raise SystemExit(128 + signum)
        self.signum = signum
        self._first_time = now


# ----------------------------------------------------------------------------
# Non-finite gradients.


def gradients_are_finite(grads: list[torch.Tensor]) -> bool:
    """Return True when no gradient contains NaN or Inf, with one device synchronization."""
    if not grads:
        return True
    return bool(torch.stack([g.isfinite().all() for g in grads]).all())


def handle_non_finite(phase_name: str, cur_nimg: int, nan_policy: str, state, rank: int) -> None:
    """Apply --nan-policy to a phase whose loss or gradients were not finite.

    'stop' raises TrainingStopped. 'skip' counts the skipped optimizer step in
    state.skipped_steps (the whole run) and state.tick_skipped_steps (this tick).
    """
    where = f"Non-finite loss or gradients in phase {phase_name} at kimg {cur_nimg / 1e3:.3f}"
    if nan_policy == "stop":
        raise TrainingStopped(
            f"{where}; stopping without writing a snapshot (--nan-policy=stop). Continue from "
            f"the last snapshot with --resume=<run directory>, perhaps with lower learning "
            f"rates, or train with --nan-policy=skip."
        )
    if nan_policy != "skip":
        raise ValueError(f"Invalid nan_policy {nan_policy!r}; expected one of {NAN_POLICIES}")
    state.skipped_steps += 1
    state.tick_skipped_steps += 1
    if rank == 0 and state.skipped_steps <= MAX_SKIP_MESSAGES:
        note = ""
        if state.skipped_steps == MAX_SKIP_MESSAGES:
            note = " Further skips are only counted on the tick lines."
        print(f"{where}; skipped its optimizer step (--nan-policy=skip).{note}", flush=True)


# ----------------------------------------------------------------------------
# Random-generator states.


def capture_random_state(rnd: np.random.RandomState | None, device: torch.device) -> dict:
    """Return this process's torch CPU generator, torch CUDA generator (on a CUDA device) and
    a numpy RandomState (when given) as tensors and numbers, which snapshots can store."""
    state = {"torch_cpu": torch.get_rng_state()}
    if rnd is not None:
        name, keys, pos, has_gauss, cached_gaussian = rnd.get_state()
        state["numpy"] = {
            "bit_generator": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        }
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_random_states(rnd, device: torch.device, num_gpus: int) -> list[dict]:
    """Return every rank's capture_random_state(), in rank order. All ranks must call it."""
    own = capture_random_state(rnd, device)
    if num_gpus <= 1:
        return [own]
    states: list = [None] * num_gpus
    torch.distributed.all_gather_object(states, own)
    return states


def restore_random_state(
    state: dict, rnd: np.random.RandomState | None, device: torch.device
) -> None:
    """Set the generators captured by capture_random_state()."""
    torch.set_rng_state(state["torch_cpu"])
    if rnd is not None and "numpy" in state:
        saved = state["numpy"]
        keys = saved["keys"].numpy().astype(np.uint32)
        rnd.set_state(
            (
                saved["bit_generator"],
                keys,
                saved["pos"],
                saved["has_gauss"],
                saved["cached_gaussian"],
            )
        )
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)


def restore_random_states(
    states: list | None, rnd, device: torch.device, rank: int, num_gpus: int, source: str
) -> bool:
    """Give this rank its generator states from a snapshot and return True when restored.

    Snapshots written with another number of processes keep the fresh seeded states, because
    their ranks drew different streams.
    """
    if not states:
        if rank == 0:
            print(f"{source} has no random-generator states; random streams start from --seed")
        return False
    if len(states) != num_gpus:
        if rank == 0:
            print(
                f"{source} holds random-generator states of {len(states)} processes and this "
                f"run has {num_gpus}; random streams start from --seed"
            )
        return False
    restore_random_state(states[rank], rnd, device)
    return True
