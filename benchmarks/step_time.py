"""Time one training step per phase, as train.py builds it, on synthetic real images.

For each configuration the script builds G, D, G_ema, the loss, the optimizers and the phases
with train.py's recipe functions (and with --dmd=1 the DMD discriminator and its hook), feeds
random uint8 images as the real data, runs warm-up steps, then times every phase, the G_ema
update, the DMD hook and the whole step over --repeats steps. Every timed step runs every
phase, and the amortized time per minibatch weights each phase by how often training runs it
(lazy regularization: Greg every 4 minibatches, Dreg every 16). It prints one JSON line per
configuration and writes no files.

--dmd-overhead alternates a baseline setup and a DMD setup with the same weights in one
process, with masks always on and detection at every minibatch, and prints the ratio of
their amortized step times.

Examples, on the CPU:

    python benchmarks/step_time.py --configs=sg2-cifar --batch=8 --repeats=3 --warmup=1
    python benchmarks/step_time.py --configs=small --dmd-overhead --repeats=10 --warmup=2
"""

import concurrent.futures
import datetime
import functools
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time

import click
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dnnlib  # noqa: E402
import train  # noqa: E402
from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import upfirdn2d  # noqa: E402
from training import training_loop  # noqa: E402

DEFAULT_DMD_INTERVAL_KIMG = 4.0  # train.py's default --dmd-interval.

# Named configurations: --cfg, image resolution, --cbase, --cmax, --map-depth (None = the
# configuration's default). sg2-cifar, sg2-64 and sg3t-32 have reference step times of
# NVIDIA's code in docs/benchmarks.md.
PRESETS = {
    "tiny": ("stylegan2", 32, 256, 32, 2),  # the size of the test suite's training runs
    "small": ("stylegan2", 32, 2048, 128, 2),  # the CPU demo
    "sg2-cifar": ("stylegan2", 32, 16384, 512, 2),  # 19.9M G / 21.5M D parameters
    "sg2-64": ("stylegan2", 64, 32768, 512, 8),  # 27.0M G / 26.5M D parameters
    "sg3t-32": ("stylegan3-t", 32, 16384, 512, 2),  # 37.8M G / 21.5M D parameters
    "sg3r-32": ("stylegan3-r", 32, 16384, 512, 2),  # 24.2M G / 21.5M D parameters
    "sg3t-tiny": ("stylegan3-t", 32, 1024, 32, 2),
    "biggan-32": ("biggan", 32, None, None, None),  # --ch=64
}

# ----------------------------------------------------------------------------
# Building a training setup without a dataset.


class SyntheticImages:
    """Unlabeled random uint8 images [C, res, res], drawn from a seeded generator: the
    dataset attributes and the endless iterator that the training loop's helpers read."""

    def __init__(self, resolution: int, channels: int, batch_size: int, seed: int):
        self.resolution = resolution
        self.num_channels = channels
        self.label_dim = 0
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 50_000  # A CIFAR-sized set; only label draws read it.

    def get_label(self, _idx: int) -> np.ndarray:
        return np.zeros([0], dtype=np.float32)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        shape = [self.batch_size, self.num_channels, self.resolution, self.resolution]
        img = torch.randint(0, 256, shape, dtype=torch.uint8, generator=self.generator)
        return img, torch.zeros([self.batch_size, 0])


def train_options(spec: dict) -> dnnlib.EasyDict:
    """Return train.py's options for one configuration: its click defaults, then `spec`."""
    defaults = train.main.make_context("train.py", [], resilient_parsing=True).params
    opts = dnnlib.EasyDict(defaults)
    opts.update(cfg=spec["cfg"], batch=spec["batch"], batch_gpu=spec["batch_gpu"])
    opts.update(fp32=spec["fp32"], dmd=bool(spec["dmd"]), gpus=1, device=spec["device"])
    for name in ("cbase", "cmax", "map_depth"):
        if spec[name] is not None:
            opts[name] = spec[name]
    opts.gamma = spec["gamma"]
    if opts.gamma is None:  # StyleGAN2-ADA's heuristic, as the reference timings used.
        opts.gamma = 0.0002 * spec["res"] ** 2 / spec["batch"]
    if spec["dmd_forced"]:
        # Masks always on, a new pattern every minibatch, detection at every minibatch.
        opts.update(dmd_policy="always", dmd_resample="batch", dmd_interval=spec["batch"] / 1000)
    return opts


def build_recipe(spec: dict) -> dnnlib.EasyDict:
    """Return the training_loop() keyword arguments that train.py builds for `spec`, without
    augmentation and without the diagnostics hook."""
    opts = train_options(spec)
    c = dnnlib.EasyDict(training_set_kwargs=dnnlib.EasyDict(resolution=spec["res"]))
    c.batch_size, c.batch_gpu = opts.batch, opts.batch_gpu
    if opts.cfg == "biggan":
        train.add_biggan_recipe(c, opts)
    else:
        train.add_stylegan_recipe(c, opts)
    c.hook_kwargs = []
    dmd_kwargs = train.dmd_kwargs_from_options(opts, spec["res"])
    if dmd_kwargs is not None:
        c.D_kwargs.class_name = train.DMD_DISCRIMINATORS[c.D_kwargs.class_name]
        c.D_kwargs.dmd_kwargs = dmd_kwargs
        c.hook_kwargs.append(dnnlib.EasyDict(class_name="dmd_patch.hook.DMDHook", verbose=False))
    return c


def build_setup(spec: dict, seed: int = 0) -> dnnlib.EasyDict:
    """Build networks, loss, hooks and phases exactly as training_loop() does."""
    c = build_recipe(spec)
    device = torch.device(spec["device"])
    torch.manual_seed(seed)
    data = SyntheticImages(spec["res"], spec["channels"], spec["batch"], seed)
    G, D, G_ema = training_loop.construct_networks(data, c.G_kwargs, c.D_kwargs, device)
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, **c.loss_kwargs)
    hooks = [
        dnnlib.util.construct_class_by_name(**kw, G=G, D=D, G_ema=G_ema, batch_size=c.batch_size)
        for kw in c.hook_kwargs
    ]
    phases = training_loop.setup_phases(
        G, D, c.G_opt_kwargs, c.D_opt_kwargs, c.G_reg_interval, c.D_reg_interval, device,
        c.get("num_D_steps", 1),
    )  # fmt: skip
    setup = dnnlib.EasyDict(c=c, spec=spec, device=device, data=data, G=G, D=D, G_ema=G_ema)
    setup.update(loss=loss, hooks=hooks, phases=phases, cur_nimg=0, batch_idx=0)
    return setup


# ----------------------------------------------------------------------------
# Timing one step.


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Return the seconds that fn() took, with the device synchronized on both sides."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def run_step(setup: dnnlib.EasyDict) -> dict[str, float]:
    """Run one minibatch with every phase, whatever its interval, and return seconds per part:
    data, each phase, G_ema, the hooks' step cost, and the whole step as 'iteration'."""
    s, dev = setup, setup.device
    times = {}
    start = time.perf_counter()
    batch = []
    times["data"] = timed(lambda: batch.extend(fetch(s)), dev)
    times["hooks"] = timed(lambda: [h.on_step_begin(s.cur_nimg) for h in s.hooks], dev)
    for phase, gen_z, gen_c in zip(s.phases, batch[2], batch[3]):
        phase_batch = (batch[0], batch[1], gen_z, gen_c)
        times[phase.name] = timed(
            functools.partial(training_loop.run_phase, phase, s.loss, phase_batch, 1, s.cur_nimg),
            dev,
        )
    s.cur_nimg += s.c.batch_size
    s.batch_idx += 1
    times["G_ema"] = timed(lambda: update_ema(s), dev)
    times["hooks"] += timed(lambda: [h.on_step_end(s.cur_nimg) for h in s.hooks], dev)
    synchronize(dev)
    times["iteration"] = time.perf_counter() - start
    return times


def fetch(setup: dnnlib.EasyDict):
    s = setup
    return training_loop.fetch_minibatch(
        s.data, s.data, len(s.phases), s.c.batch_size, s.c.batch_gpu, s.G, s.device,
        0, s.batch_idx,
    )  # fmt: skip


def update_ema(setup: dnnlib.EasyDict) -> None:
    c = setup.c
    training_loop.update_G_ema(
        setup.G, setup.G_ema, setup.cur_nimg, c.batch_size, c.ema_kimg, c.ema_rampup,
        c.get("ema_start_kimg", 0), c.get("ema_average_buffers", False),
    )  # fmt: skip


def amortized(setup: dnnlib.EasyDict, times: dict[str, float]) -> float:
    """Return the seconds per minibatch of training: each phase's time divided by the number
    of minibatches between its runs, plus data, G_ema and hooks."""
    total = times["data"] + times["G_ema"] + times["hooks"]
    for phase in setup.phases:
        if not is_noop(setup, phase.name):
            total += times[phase.name] / (phase.interval * phase.get("every", 1))
    return total


def is_noop(setup: dnnlib.EasyDict, phase_name: str) -> bool:
    """Return whether the loss skips this phase (Greg without path-length regularization)."""
    return phase_name == "Greg" and getattr(setup.loss, "pl_weight", 1) == 0


# ----------------------------------------------------------------------------
# Statistics and the JSON record.


def spread(values: list[float]) -> dict[str, float]:
    """Return the median, min, max and interquartile range of `values`."""
    q1, _q2, q3 = np.percentile(values, [25, 50, 75]) if len(values) > 1 else [values[0]] * 3
    return dict(
        median=statistics.median(values), min=min(values), max=max(values), iqr=float(q3 - q1)
    )


def machine_record(spec: dict) -> dict:
    """Return the date, software, device, threads and load average of this run."""
    device = torch.device(spec["device"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        torch=torch.__version__,
        device=name,
        threads=torch.get_num_threads(),
        cpus=os.cpu_count(),
        loadavg=[round(x, 2) for x in os.getloadavg()],
    )


def peak_memory(device: torch.device) -> dict[str, float]:
    """Return this process's peak RSS and, on CUDA, the peak allocated memory, in GB (1e9)."""
    record = dict(peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3))
    if device.type == "cuda":
        record["cuda_peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    return record


def describe_spec(spec: dict, setup: dnnlib.EasyDict) -> dict:
    """Return the configuration part of the JSON record."""
    keys = ["name", "cfg", "res", "cbase", "cmax", "map_depth", "batch", "batch_gpu", "dmd"]
    record = {key: spec[key] for key in keys}
    record.update(ops=custom_ops.get_policy(), fir=upfirdn2d.default_impl)
    record.update(compile=spec["compile"], fp32=spec["fp32"], allow_tf32=spec["allow_tf32"])
    record.update(cudnn_benchmark=not spec["nobench"])
    record["gamma"] = setup.c.loss_kwargs.get("r1_gamma")
    record["params"] = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in [("G", setup.G), ("D", setup.D)]
    }
    return record


# ----------------------------------------------------------------------------
# One configuration.


def prepare(spec: dict) -> None:
    """Apply the process-wide settings of `spec`: threads, the upfirdn2d path, cuDNN and TF32
    on CUDA, and the --ops policy. With CUDA kernels wanted, build or load them here, so that
    neither the warm-up nor the timed steps include the build."""
    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    upfirdn2d.default_impl = spec["fir"]
    device = torch.device(spec["device"])
    training_loop.configure_cuda_backends(device, not spec["nobench"], spec["allow_tf32"])
    custom_ops.apply_ops_option(spec["ops"])
    custom_ops.build_kernels_rank0_first(device)


def warm_up(setups: list, warmup: int) -> list[float]:
    """Run `warmup` untimed steps on each setup and return each step's seconds."""
    seconds = []
    for _ in range(warmup):
        for setup in setups:
            seconds.append(run_step(setup)["iteration"])
    return seconds


def time_config(spec: dict) -> dict:
    """Build one configuration, warm it up, time --repeats steps and return the JSON record."""
    prepare(spec)
    record = machine_record(spec)
    setup = build_setup(spec)
    if spec["compile"]:
        setup.loss.use_compiled_forwards()  # As train.py --compile=1.
    record.update(describe_spec(spec, setup))
    record["warmup_s"] = [round(t, 4) for t in warm_up([setup], spec["warmup"])]
    steps = [run_step(setup) for _ in range(spec["repeats"])]
    parts = {name: spread([step[name] for step in steps]) for name in steps[0]}
    intervals = {p.name: p.interval * p.get("every", 1) for p in setup.phases}
    for name, part in parts.items():
        part["every"] = intervals.get(name, 1)
        if is_noop(setup, name):
            part["every"] = None
    record["parts"] = rounded(parts)
    per_minibatch = statistics.median([amortized(setup, step) for step in steps])
    record.update(summary(per_minibatch, spec["batch"]))
    fastest = {name: part["min"] for name, part in parts.items()}
    record["amortized_from_minimums_s"] = round(amortized(setup, fastest), 4)
    if spec["compile"] and record["warmup_s"]:
        record["compile_s"] = round(record["warmup_s"][0] - parts["iteration"]["median"], 3)
    record["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    record.update(peak_memory(setup.device))
    return record


def summary(per_minibatch: float, batch: int) -> dict:
    return dict(
        amortized_s_per_minibatch=round(per_minibatch, 4),
        s_per_kimg=round(per_minibatch * 1000 / batch, 2),
        images_per_s=round(batch / per_minibatch, 3),
    )


def rounded(parts: dict) -> dict:
    return {
        name: {k: (round(v, 5) if isinstance(v, float) else v) for k, v in part.items()}
        for name, part in parts.items()
    }


# ----------------------------------------------------------------------------
# DMD overhead.


def time_dmd_overhead(spec: dict) -> dict:
    """Alternate steps of a baseline setup and of a DMD setup (masks on, detection every
    minibatch) with the same initial weights, and return the ratio DMD / baseline of their
    amortized step times, per pair of steps, with its spread."""
    prepare(spec)
    record = machine_record(spec)
    off = build_setup(dict(spec, dmd=0, dmd_forced=False))
    on = build_setup(dict(spec, dmd=1, dmd_forced=True))
    on.D.load_state_dict(off.D.state_dict(), strict=False)  # The DMD state is extra state.
    if spec["compile"]:
        off.loss.use_compiled_forwards()
        on.loss.use_compiled_forwards()
    record.update(describe_spec(spec, on), mode="dmd-overhead", dmd="off and on")
    warm_up([off, on], spec["warmup"])
    steps = {"off": [], "on": []}
    for index in range(spec["repeats"]):
        # Swap the order every pair, so a drift of the machine's speed hits both sides alike.
        order = [("off", off), ("on", on)] if index % 2 == 0 else [("on", on), ("off", off)]
        for label, setup in order:
            steps[label].append(run_step(setup))
    record.update(overhead_summary(off, on, steps))
    record["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    record.update(peak_memory(on.device))
    return record


def overhead_summary(off: dnnlib.EasyDict, on: dnnlib.EasyDict, steps: dict) -> dict:
    """Return the DMD / baseline ratios of the amortized step times and each side's parts.

    `projected_ratio` replaces the detection at every minibatch by one detection per
    train.py's default --dmd-interval (4 kimg). Both use each part's minimum over the steps.
    """
    times = {"off": [amortized(off, t) for t in steps["off"]]}
    times["on"] = [amortized(on, t) for t in steps["on"]]
    ratios = [t_on / t_off for t_on, t_off in zip(times["on"], times["off"])]
    # Minimum of each part over the steps, then amortized: the least disturbed estimate.
    fastest = {label: {name: min(t[name] for t in steps[label]) for name in steps[label][0]}
               for label in steps}  # fmt: skip
    best_off, best_on = amortized(off, fastest["off"]), amortized(on, fastest["on"])
    detections_per_minibatch = on.c.batch_size / (DEFAULT_DMD_INTERVAL_KIMG * 1000)
    projected = best_on - fastest["on"]["hooks"] * (1 - detections_per_minibatch)
    parts = {
        label: rounded({name: spread([t[name] for t in steps[label]]) for name in steps[label][0]})
        for label in steps
    }
    return dict(
        ratio=rounded({"r": spread(ratios)})["r"],
        ratio_of_medians=round(statistics.median(times["on"]) / statistics.median(times["off"]), 4),
        ratio_of_part_minimums=round(best_on / best_off, 4),
        projected_ratio=round(projected / best_off, 4),
        amortized_s=rounded({label: spread(values) for label, values in times.items()}),
        parts=parts,
    )


# ----------------------------------------------------------------------------
# Command line.


def config_specs(names: list[str], options: dict) -> list[dict]:
    """Return one spec per preset name, or one spec from --cfg/--res/... without names."""
    if not names:
        keys = ("cfg", "res", "cbase", "cmax", "map_depth")
        return [dict(options, name="custom", **{key: options[key] for key in keys})]
    specs = []
    for name in names:
        if name not in PRESETS:
            raise click.BadParameter(
                f"unknown configuration {name!r}; valid names are {', '.join(PRESETS)}",
                param_hint="--configs",
            )
        cfg, res, cbase, cmax, map_depth = PRESETS[name]
        specs.append(
            dict(options, name=name, cfg=cfg, res=res, cbase=cbase, cmax=cmax, map_depth=map_depth)
        )
    return specs


def check_spec(spec: dict) -> None:
    """Reject values that cannot build a setup, naming the option."""
    res = spec["res"]
    if res < 8 or res & (res - 1):
        raise click.BadParameter(f"{res} is not a power of two >= 8", param_hint="--res")
    if spec["batch"] % spec["batch_gpu"]:
        raise click.BadParameter(
            f"--batch={spec['batch']} is not a multiple of --batch-gpu={spec['batch_gpu']}; "
            f"use a divisor of --batch",
            param_hint="--batch-gpu",
        )
    if spec["cfg"] != "biggan" and spec["batch_gpu"] % 4:
        raise click.BadParameter(
            f"{spec['batch_gpu']} is not a multiple of the minibatch-std group size 4; use a "
            f"multiple of 4",
            param_hint="--batch-gpu",
        )
    stylegan_only = [
        name for name in ("cbase", "cmax", "map_depth", "gamma") if spec[name] is not None
    ]
    if spec["cfg"] == "biggan" and stylegan_only:
        flags = ", ".join("--" + name.replace("_", "-") for name in stylegan_only)
        raise click.BadParameter(
            f"{flags}: StyleGAN options that BigGAN has no use for; remove them", param_hint="--cfg"
        )
    if spec["device"] == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine", param_hint="--device")


def run_isolated(fn, spec: dict) -> dict:
    """Run fn(spec) in a fresh process, so the peak RSS belongs to this configuration alone."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, spec).result()


# fmt: off
@click.command()
@click.option("--configs",       help="Comma-separated preset names (overrides --cfg, --res, --cbase, --cmax, --map-depth)", metavar="LIST", type=train.parse_comma_list, default="")
@click.option("--cfg",           help="Base configuration, as in train.py",  type=click.Choice(["stylegan2", "stylegan3-t", "stylegan3-r", "biggan"]), default="stylegan2", show_default=True)
@click.option("--res",           help="Image resolution in pixels",          metavar="INT", type=click.IntRange(min=8), default=32, show_default=True)
@click.option("--channels",      help="Image channels",                      type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--cbase",         help="Channel base  [default: train.py's]", metavar="INT", type=click.IntRange(min=1))
@click.option("--cmax",          help="Maximum channels  [default: train.py's]", metavar="INT", type=click.IntRange(min=1))
@click.option("--map-depth",     help="Mapping network depth  [default: train.py's]", metavar="INT", type=click.IntRange(min=1))
@click.option("--gamma",         help="R1 weight  [default: 0.0002 * res^2 / batch]", metavar="FLOAT", type=click.FloatRange(min=0))
@click.option("--batch",         help="Minibatch size in images",            metavar="INT", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--batch-gpu",     help="Images per forward pass  [default: batch]", metavar="INT", type=click.IntRange(min=1))
@click.option("--fp32",          help="Disable mixed precision (CPU always runs fp32)", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--dmd",           help="Use the DMD discriminator and hook, with train.py's DMD defaults", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--dmd-overhead",  help="Alternate baseline and DMD steps (masks on, detection every minibatch) and print the ratio", is_flag=True)
@click.option("--ops",           help="CUDA kernels, as train.py --ops  [default: $DMD_OPS, else auto]", type=click.Choice(list(custom_ops.POLICIES)))
@click.option("--fir",           help="upfirdn2d path (upfirdn2d.default_impl)", type=click.Choice(["auto", "ref", "matmul"]), default="auto", show_default=True)
@click.option("--allow-tf32",    help="Allow TF32 on CUDA, as train.py --allow-tf32", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--nobench",       help="Disable cuDNN benchmarking, as train.py --nobench", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--compile",       help="torch.compile the forwards of G and D as train.py --compile=1 does (not in R1 or path length)", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--warmup",        help="Untimed steps before timing",         metavar="INT", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--repeats",       help="Timed steps (pairs with --dmd-overhead)", metavar="INT", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--device",        help="Device to time on",                   type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads",       help="torch CPU threads; 0 = torch's default", metavar="INT", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--isolate",       help="Run each configuration in a fresh process (per-configuration peak RSS)", metavar="BOOL", type=bool, default=True, show_default=True)
# fmt: on
def main(configs, channels, batch_gpu, dmd_overhead, isolate, **options):
    """Time each training phase of one or more configurations and print one JSON line each.

    \b
    Presets for --configs:
      tiny, small, sg2-cifar, sg2-64, sg3t-32, sg3r-32, sg3t-tiny, biggan-32
    """
    options.update(channels=int(channels), batch_gpu=batch_gpu or options["batch"])
    options.update(dmd_forced=False)
    fn = time_dmd_overhead if dmd_overhead else time_config
    specs = config_specs(configs, options)
    for spec in specs:
        check_spec(spec)
    for spec in specs:
        record = run_isolated(fn, spec) if isolate else fn(spec)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
