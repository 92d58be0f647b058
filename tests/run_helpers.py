"""Run train.py with a test-only hook that saves every rank's final state.

Usage: python tests/run_helpers.py DUMP_DIR TRAIN_OPTIONS...

Each rank writes DUMP_DIR/rank<r>.pt with the state_dicts of G, D and G_ema (D's includes
the DMD state) after its last training step, so tests can compare the ranks of one run and
runs with different process counts.
"""

import os
import sys

import torch

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
for path in (ROOT, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)


class StateDumpHook:
    """Training-loop hook that saves G, D and G_ema when cur_nimg reaches dump_nimg."""

    def __init__(self, G, D, G_ema, batch_size, dump_dir: str, dump_nimg: int):
        del batch_size
        self.modules = {"G": G, "D": D, "G_ema": G_ema}
        self.dump_dir = dump_dir
        self.dump_nimg = dump_nimg
        self.rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    def on_step_begin(self, cur_nimg: int) -> None:
        pass

    def on_step_end(self, cur_nimg: int) -> None:
        if cur_nimg != self.dump_nimg:
            return
        state = {name: module.state_dict() for name, module in self.modules.items()}
        torch.save(state, os.path.join(self.dump_dir, f"rank{self.rank}.pt"))

    def status_fields(self) -> str:
        return ""


def main(dump_dir: str, train_args: list[str]) -> None:
    import train

    build_config = train.build_config

    def build_config_with_dump(opts):
        c, desc = build_config(opts)
        dump_nimg = int(round(opts.kimg * 1000))
        c.hook_kwargs.append(
            dict(class_name="run_helpers.StateDumpHook", dump_dir=dump_dir, dump_nimg=dump_nimg)
        )
        return c, desc

    train.build_config = build_config_with_dump
    train.main(train_args)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
