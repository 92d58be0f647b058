"""The generic GAN training loop: phases, lazy regularization, G_ema, ticks, snapshots and
metrics. It imports no network code: G, D, the loss and plug-in hooks are all built from
`class_name` keyword dicts, so DMD enters only through its discriminator class and hook."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
import traceback
from typing import Any, Callable

import numpy as np
import psutil
import torch
from PIL import Image

import dnnlib
from torch_utils import compiling, misc, training_stats
from training import faults
from training import snapshot as snapshot_lib

# ----------------------------------------------------------------------------
# Image grids.


def setup_snapshot_image_grid(training_set, random_seed: int = 0, max_size: int = 32):
    """Pick grid images: rows of one class each when labeled, else a random sample.

    Returns (grid_size (gw, gh), images uint8 [N, C, H, W], labels [N, c_dim]).
    """
    rnd = np.random.RandomState(random_seed)
    gw = int(np.clip(7680 // training_set.image_shape[2], 7, max_size))
    gh = int(np.clip(4320 // training_set.image_shape[1], 4, max_size))

    if not training_set.has_labels:
        all_indices = list(range(len(training_set)))
        rnd.shuffle(all_indices)
        grid_indices = [all_indices[i % len(all_indices)] for i in range(gw * gh)]
    else:
        # One row per label value, cycling through that label's images.
        label_groups: dict[tuple, list[int]] = {}
        for idx in range(len(training_set)):
            key = tuple(training_set.get_details(idx).raw_label.flat[::-1])
            label_groups.setdefault(key, []).append(idx)
        label_order = sorted(label_groups.keys())
        for key in label_order:
            rnd.shuffle(label_groups[key])
        grid_indices = []
        for y in range(gh):
            indices = label_groups[label_order[y % len(label_order)]]
            grid_indices += [indices[x % len(indices)] for x in range(gw)]

    images, labels = zip(*[training_set[i] for i in grid_indices])
    return (gw, gh), np.stack(images), np.stack(labels)


def save_image_grid(
    img: np.ndarray, path: str, drange: tuple[float, float], grid_size: tuple[int, int]
):
    """Tile images [N, C, H, W] into a gw x gh PNG, mapping `drange` to 0..255, atomically."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = (img - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)

    gw, gh = grid_size
    _N, C, H, W = img.shape
    img = img.reshape([gh, gw, C, H, W]).transpose(0, 3, 1, 4, 2).reshape([gh * H, gw * W, C])
    if C not in (1, 3):
        raise ValueError(f"Cannot save {C}-channel images as PNG; expected 1 or 3 channels")
    pil = Image.fromarray(img[:, :, 0], "L") if C == 1 else Image.fromarray(img, "RGB")
    with dnnlib.util.atomic_write(path) as f:
        pil.save(f, format="PNG")


def generate_grid_images(G_ema, grid_z, grid_c) -> np.ndarray:
    """Run G_ema on the fixed grid latents (noise 'const') and return float images [N, C, H, W]."""
    with torch.no_grad():
        images = [G_ema(z=z, c=c, noise_mode="const").cpu() for z, c in zip(grid_z, grid_c)]
    return torch.cat(images).numpy()


# ----------------------------------------------------------------------------
# Set-up helpers.


def load_training_set(
    training_set_kwargs, data_loader_kwargs, rank, num_gpus, rank_batch, random_seed, start=0
):
    """Open the data and return it with an endless iterator over this rank's real images,
    `rank_batch` (= batch_size / num_gpus) per minibatch.

    Rank r's images are positions [r * rank_batch, (r + 1) * rank_batch) of each global
    minibatch of one seeded stream, so the images of a global minibatch do not depend on
    the number of ranks. `start` is the data position of a resumed run: the number of stream
    positions that all ranks together consumed before the snapshot.
    """
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    sampler = misc.InfiniteSampler(
        dataset=training_set,
        rank=rank,
        num_replicas=num_gpus,
        seed=random_seed,
        chunk_size=rank_batch,
        start=start,
    )
    loader = torch.utils.data.DataLoader(
        dataset=training_set, sampler=sampler, batch_size=rank_batch, **data_loader_kwargs
    )
    return training_set, iter(loader)


def construct_networks(training_set, G_kwargs, D_kwargs, device):
    common = dict(
        c_dim=training_set.label_dim,
        img_resolution=training_set.resolution,
        img_channels=training_set.num_channels,
    )
    G = (
        dnnlib.util.construct_class_by_name(**G_kwargs, **common)
        .train()
        .requires_grad_(False)
        .to(device)
    )
    D = (
        dnnlib.util.construct_class_by_name(**D_kwargs, **common)
        .train()
        .requires_grad_(False)
        .to(device)
    )
    G_ema = copy.deepcopy(G).eval()
    return G, D, G_ema


def resume_networks(resume_pkl, data, G, D, G_ema):
    """Copy weights (and plug-in state) from the snapshot `data` read from `resume_pkl` into
    the freshly built networks.

    Raises SnapshotError listing every mismatched tensor when the architectures differ.
    """
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema)]:
        if data.get(name) is None:
            raise snapshot_lib.SnapshotError(
                f"{resume_pkl} contains no {name} network; pick a snapshot written by train.py"
            )
        snapshot_lib.load_state_checked(module, data[name]["state_dict"], source=resume_pkl)
    return data


def setup_phases(
    G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, device, num_D_steps=1
):
    """Build the phase list with lazy regularization (Karras et al. 2020, appendix B).

    A network regularized every k minibatches gets its main and regularization phases
    separately, and its optimizer's learning rate and betas are scaled by k / (k + 1) so the
    effective step size matches regularizing every minibatch. With num_D_steps > 1, the G
    phases run only on every num_D_steps-th minibatch (BigGAN's several D steps per G step),
    and G's regularization interval counts G steps.
    """
    if not (isinstance(num_D_steps, int) and num_D_steps >= 1):
        raise ValueError(f"num_D_steps must be an integer >= 1, got {num_D_steps!r}")
    phases = []
    for name, module, opt_kwargs, reg_interval, every in [
        ("G", G, G_opt_kwargs, G_reg_interval, num_D_steps),
        ("D", D, D_opt_kwargs, D_reg_interval, 1),
    ]:
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "both", module=module, opt=opt, interval=1)]
            phases[-1].every = every
        else:
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [float(beta) ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + "main", module=module, opt=opt, interval=1)]
            phases += [
                dnnlib.EasyDict(name=name + "reg", module=module, opt=opt, interval=reg_interval)
            ]
            phases[-2].every = phases[-1].every = every
    for phase in phases:
        phase.start_event = None
        phase.end_event = None
        if device.type == "cuda":
            phase.start_event = torch.cuda.Event(enable_timing=True)
            phase.end_event = torch.cuda.Event(enable_timing=True)
    return phases


def optimizer_states(phases) -> dict:
    return {phase.name[0]: phase.opt.state_dict() for phase in phases}


def restore_optimizer_states(phases, states: dict, source: str) -> None:
    for phase in phases:
        key = phase.name[0]
        if key not in states:
            raise snapshot_lib.SnapshotError(f"{source} contains no optimizer state for {key}")
        phase.opt.load_state_dict(states[key])


# ----------------------------------------------------------------------------
# One training step.


def step_seed(random_seed: int, batch_idx: int, *keys: int) -> int:
    """Return a seed in [0, 2^63) for minibatch `batch_idx` and the stream named by `keys`.

    It depends on nothing else, so every rank derives the same seed for the same minibatch.
    """
    sequence = np.random.SeedSequence([random_seed, batch_idx, *keys])
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


# Keys of the random streams derived from step_seed().
LATENT_STREAM, LABEL_STREAM, ROUND_STREAM = 0, 1, 2


def draw_step_latents(
    training_set, num_phases, batch_size, z_dim, random_seed, batch_idx, rank, num_gpus
):
    """Draw this rank's z [num_phases, batch_size / num_gpus, z_dim] and labels
    [num_phases, batch_size / num_gpus, c_dim] on the CPU.

    Every rank draws the whole global minibatch from generators seeded with (random_seed,
    batch_idx) and keeps its own slice, so the sample at global position j of a minibatch
    gets the same z and label for any number of ranks.
    """
    rank_batch = batch_size // num_gpus
    own = slice(rank * rank_batch, (rank + 1) * rank_batch)
    generator = torch.Generator().manual_seed(step_seed(random_seed, batch_idx, LATENT_STREAM))
    z = torch.randn([num_phases, batch_size, z_dim], generator=generator)[:, own]
    rng = np.random.default_rng(step_seed(random_seed, batch_idx, LABEL_STREAM))
    label_idx = rng.integers(len(training_set), size=[num_phases, batch_size])[:, own]
    labels = [training_set.get_label(int(i)) for i in label_idx.flat]
    c = torch.from_numpy(np.stack(labels).reshape([num_phases, rank_batch, *labels[0].shape]))
    return z.contiguous(), c


def fetch_minibatch(
    training_set_iterator, training_set, num_phases, batch_size, batch_gpu, G, device,
    random_seed, batch_idx, rank=0, num_gpus=1,
):  # fmt: skip
    """Fetch this rank's real images and draw its per-phase latents and labels, all split
    into rounds of batch_gpu: real_img [batch_gpu, C, H, W] chunks shared by all phases, and
    per phase its own z and c chunks."""
    real_img, real_c = next(training_set_iterator)
    real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
    real_c = real_c.to(device).split(batch_gpu)

    z, c = draw_step_latents(
        training_set, num_phases, batch_size, G.z_dim, random_seed, batch_idx, rank, num_gpus
    )
    all_gen_z = [phase_z.to(device).split(batch_gpu) for phase_z in z]
    all_gen_c = [phase_c.to(device).split(batch_gpu) for phase_c in c]
    return real_img, real_c, all_gen_z, all_gen_c


def seed_round_rngs(seed: int, device: torch.device) -> None:
    """Seed torch's global generators of the CPU and of `device`, which the loss, G's noise
    inputs, style mixing and the augmentation pipe draw from."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        torch.cuda.default_generators[index].manual_seed(seed)


def run_phase(phase, loss, batch, num_gpus, cur_nimg, round_seeds=None) -> bool:
    """Accumulate gradients of one phase over its rounds, average them over the rounds and
    the ranks, then take one optimizer step.

    round_seeds: one seed per round for torch's global generators, or None to leave them.
    Returns False, without taking the step, when a gradient or a loss (the loss's loss_check)
    contains NaN or Inf. The check runs after the all-reduce, which also carries loss_check,
    so one rank's NaN reaches every rank and all ranks decide alike.
    """
    real_img, real_c, phase_gen_z, phase_gen_c = batch
    if phase.start_event is not None:
        phase.start_event.record(torch.cuda.current_stream(real_img[0].device))

    phase.opt.zero_grad(set_to_none=True)
    if hasattr(loss, "reset_loss_check"):
        loss.reset_loss_check()
    phase.module.requires_grad_(True)
    num_rounds = 0
    compiled = getattr(loss, "compiled", None)
    with compiled.active() if compiled is not None else contextlib.nullcontext():
        for r_img, r_c, g_z, g_c in zip(real_img, real_c, phase_gen_z, phase_gen_c):
            if round_seeds is not None:
                seed_round_rngs(round_seeds[num_rounds], r_img.device)
            num_rounds += 1
            loss.accumulate_gradients(
                phase=phase.name,
                real_img=r_img,
                real_c=r_c,
                gen_z=g_z,
                gen_c=g_c,
                gain=phase.interval,
                cur_nimg=cur_nimg,
            )
    phase.module.requires_grad_(False)

    with torch.autograd.profiler.record_function(phase.name + "_opt"):
        params = [p for p in phase.module.parameters() if p.grad is not None]
        checks = (
            [loss.loss_check] if isinstance(getattr(loss, "loss_check", None), torch.Tensor) else []
        )
        # Each round's loss is a mean over its images, so dividing the summed gradients by
        # the number of rounds on all ranks gives the mean over the global minibatch.
        num_means = max(num_rounds, 1) * num_gpus
        if num_gpus > 1 and params:
            # One all-reduce of the flattened gradients and loss checks; the loss calls
            # submodules such as G.mapping directly, which DistributedDataParallel's forward
            # wrapper would not see.
            tensors = [p.grad.flatten() for p in params] + [c.flatten() for c in checks]
            flat = torch.cat(tensors)
            with misc.collective_phase(phase.name, cur_nimg / 1000):
                torch.distributed.all_reduce(flat)
            flat /= num_means
            parts = flat.split([t.numel() for t in tensors])
            for p, grad in zip(params, parts):
                p.grad.copy_(grad.reshape(p.shape))
            checks = list(parts[len(params) :])
        elif num_means > 1:
            for p in params:
                p.grad /= num_means
        finite = faults.gradients_are_finite([p.grad for p in params] + checks)
        if finite:
            phase.opt.step()

    if phase.end_event is not None:
        phase.end_event.record(torch.cuda.current_stream(real_img[0].device))
    return finite


def update_G_ema(
    G, G_ema, cur_nimg, batch_size, ema_kimg, ema_rampup, ema_start_kimg=0, average_buffers=False
):
    """Exponential moving average of G's weights with a half-life of ema_kimg thousand images.

    With a ramp-up, the half-life is at most cur_nimg * ema_rampup, so early averages do not
    drag in the random initialization. Before ema_start_kimg, G_ema is a plain copy of G (the
    BigGAN recipe's delayed start). Buffers are copied from G, or with average_buffers their
    floating-point ones are averaged like the weights (BigGAN's batch-norm statistics, which
    must describe the averaged network's activations).
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    if cur_nimg < ema_start_kimg * 1000:
        ema_beta = 0.0
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            if average_buffers and b.is_floating_point():
                b_ema.copy_(b.lerp(b_ema, ema_beta))
            else:
                b_ema.copy_(b)
    return ema_beta


# ----------------------------------------------------------------------------
# Tick maintenance: status line, image grids, snapshots, metrics, statistics.


class TickReporter:
    """Status line per tick, plus stats.jsonl and TensorBoard for every reported figure."""

    def __init__(self, run_dir: str, rank: int):
        self.run_dir = run_dir
        self.rank = rank
        # keep_previous=False: a figure appears only in ticks that reported it, so interval
        # events (DMD detections, lazy regularization terms) are never repeated.
        self.collector = training_stats.Collector(regex=".*", keep_previous=False)
        self.stats_jsonl = None
        self.stats_tfevents = None
        if rank == 0 and run_dir:
            self.stats_jsonl = open(os.path.join(run_dir, "stats.jsonl"), "a", encoding="utf-8")
            try:
                from torch.utils import tensorboard

                self.stats_tfevents = tensorboard.SummaryWriter(run_dir)
            except ImportError:
                print(
                    "TensorBoard not installed; skipping tfevents output (pip install tensorboard)"
                )

    def status_line(self, fields: list[tuple[str, str, str, Any]]) -> str:
        """Report each (label, slash name, format, value) and join the labels for printing."""
        parts = []
        for label, name, fmt, value in fields:
            text = dnnlib.util.format_time(value) if fmt == "time" else fmt.format(value)
            parts.append(f"{label} {text}")
            training_stats.report0(name, value)
        return " ".join(parts)

    def write(self, cur_nimg: int, timestamp: float) -> None:
        self.collector.update()
        # Only figures reported during this tick; the others would be NaN, which is not JSON.
        stats = {name: value for name, value in self.collector.as_dict().items() if value.num > 0}
        if self.stats_jsonl is not None:
            record = dict(stats, timestamp=timestamp)
            self.stats_jsonl.write(json.dumps(record) + "\n")
            self.stats_jsonl.flush()
        if self.stats_tfevents is not None:
            global_step = int(cur_nimg / 1e3)
            walltime = timestamp
            for name, value in stats.items():
                self.stats_tfevents.add_scalar(
                    name, value.mean, global_step=global_step, walltime=walltime
                )
            self.stats_tfevents.flush()

    def close(self) -> None:
        if self.stats_jsonl is not None:
            self.stats_jsonl.close()
        if self.stats_tfevents is not None:
            self.stats_tfevents.close()


def tick_fields(
    cur_tick, cur_nimg, start_time, tick_start_time, tick_start_nimg, maintenance_time, device
):
    tick_end_time = time.time()
    sec_per_tick = tick_end_time - tick_start_time
    sec_per_kimg = sec_per_tick / max(cur_nimg - tick_start_nimg, 1) * 1e3
    fields = [
        ("tick", "Progress/tick", "{:<5d}", cur_tick),
        ("kimg", "Progress/kimg", "{:<8.1f}", cur_nimg / 1e3),
        ("time", "Timing/total_sec", "time", tick_end_time - start_time),
        ("sec/tick", "Timing/sec_per_tick", "{:<7.1f}", sec_per_tick),
        ("sec/kimg", "Timing/sec_per_kimg", "{:<7.2f}", sec_per_kimg),
        ("maintenance", "Timing/maintenance_sec", "{:<6.1f}", maintenance_time),
        (
            "cpumem",
            "Resources/cpu_mem_gb",
            "{:<6.2f}",
            psutil.Process(os.getpid()).memory_info().rss / 2**30,
        ),
    ]
    if device.type == "cuda":
        fields += [
            (
                "gpumem",
                "Resources/peak_gpu_mem_gb",
                "{:<6.2f}",
                torch.cuda.max_memory_allocated(device) / 2**30,
            ),
            (
                "reserved",
                "Resources/peak_gpu_mem_reserved_gb",
                "{:<6.2f}",
                torch.cuda.max_memory_reserved(device) / 2**30,
            ),
        ]
        torch.cuda.reset_peak_memory_stats()
    return fields, tick_end_time


def evaluate_metrics(ctx: dnnlib.EasyDict, snapshot_pkl: str, kimg: float) -> None:
    """Compute every requested metric of G_ema and append it, with the training progress in
    kimg, to metric-<name>.jsonl.

    A metric that fails is reported with its error and traceback, and training goes on: the
    snapshot is already written, and a lost metric can be computed later with calc_metrics.py.
    In a multi-process run a RuntimeError ends training with a CollectiveError instead. The
    metrics gather features from every rank, so after a failure on one rank the ranks no
    longer reach the same collectives.
    """
    from metrics import metric_main  # Imported lazily: only runs that compute metrics need it.

    for metric in ctx.metrics:
        try:
            # Metrics must not move the training's random streams: their DataLoader draws a
            # seed from torch's global generator, and only when real statistics are not cached.
            with (
                torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []),
                misc.collective_phase("metrics", kimg),
            ):
                result_dict = metric_main.calc_metric(
                    metric=metric, G=ctx.G_ema, dataset_kwargs=ctx.training_set_kwargs,
                    num_gpus=ctx.num_gpus, rank=ctx.rank, device=ctx.device, **ctx.metric_kwargs,
                )  # fmt: skip
        except misc.CollectiveError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of a metric must not end training
            if ctx.rank == 0:
                report_metric_failure(ctx, metric, snapshot_pkl, kimg, err)
            continue
        result_dict.kimg = kimg
        if ctx.rank == 0:
            metric_main.report_metric(result_dict, run_dir=ctx.run_dir, snapshot_pkl=snapshot_pkl)
        for name, value in result_dict.results.items():
            training_stats.report0("Metrics/" + name, value)


def report_metric_failure(
    ctx: dnnlib.EasyDict, metric: str, snapshot_pkl: str, kimg: float, err: Exception
) -> None:
    """Print why a metric failed, with the traceback the first time this metric fails, and the
    calc_metrics.py command that computes it later with the same feature networks."""
    failed = ctx.setdefault("failed_metrics", set())
    details = "" if metric in failed else "\n" + traceback.format_exc()
    failed.add(metric)
    command = f"python calc_metrics.py --network={snapshot_pkl} --metrics={metric}"
    for option, key in [("--detector", "detector_path"), ("--vgg16", "vgg16_path")]:
        if ctx.metric_kwargs.get(key):
            command += f" {option}={ctx.metric_kwargs[key]}"
    print(
        f"Metric {metric} failed at kimg {kimg:g} for {os.path.basename(snapshot_pkl)}: "
        f"{type(err).__name__}: {err}{details}\nTraining continues; compute it later with: "
        f"{command}",
        flush=True,
    )


# ----------------------------------------------------------------------------
# The loop.


def training_loop(
    run_dir: str = ".",  # Output directory.
    training_set_kwargs: dict | None = None,  # Training set: class_name, path, ...
    data_loader_kwargs: dict | None = None,  # Options for torch.utils.data.DataLoader.
    G_kwargs: dict | None = None,  # Generator: class_name and constructor options.
    D_kwargs: dict | None = None,  # Discriminator: class_name and constructor options.
    G_opt_kwargs: dict | None = None,  # Generator optimizer: class_name, lr, betas, ...
    D_opt_kwargs: dict | None = None,  # Discriminator optimizer: class_name, lr, betas, ...
    loss_kwargs: dict | None = None,  # Loss: class_name and options.
    augment_kwargs: dict | None = None,  # Augmentation pipe: class_name and options; None = off.
    hook_kwargs: list | None = None,  # Plug-ins, each a dict with class_name; see below.
    metrics: list | None = None,  # Metric names evaluated at every network snapshot.
    metric_kwargs: dict | None = None,  # Extra calc_metric options (detector path, ...).
    random_seed: int = 0,  # Global random seed.
    num_gpus: int = 1,  # Number of processes taking part in training.
    rank: int = 0,  # Rank of this process, 0 .. num_gpus - 1.
    device: str | torch.device = "cuda",  # Device of this process.
    batch_size: int = 4,  # Total minibatch size over all processes.
    batch_gpu: int = 4,  # Samples per forward pass on one process; gradients accumulate.
    ema_kimg: float = 10,  # Half-life of G_ema in thousands of images.
    ema_rampup: float | None = 0.05,  # Ramp-up of the half-life; None = no ramp-up.
    ema_start_kimg: float = 0,  # G_ema copies G until this many kimg, then averages.
    ema_average_buffers: bool = False,  # Average G's float buffers too, instead of copying.
    num_D_steps: int = 1,  # Minibatches per G step; D trains on every one.
    augment_p: float = 0,  # Initial augmentation probability.
    ada_target: float | None = None,  # ADA target for the mean sign of D(real); None = fixed p.
    ada_interval: int = 4,  # Minibatches between ADA adjustments of p.
    ada_kimg: float = 500,  # ADA speed: p can move from 0 to 1 within this many kimg.
    G_reg_interval: int | None = None,  # Minibatches between G regularizations; None = fused.
    D_reg_interval: int | None = 16,  # Minibatches between D regularizations; None = fused.
    total_kimg: float = 25000,  # Length of training in thousands of real images shown.
    kimg_per_tick: float = 4,  # Progress is reported every this many thousand images.
    image_snapshot_ticks: int | None = 50,  # Ticks between image grids; None or 0 = never.
    network_snapshot_ticks: int | None = 50,  # Ticks between snapshots; None or 0 = never.
    resume_pkl: str | None = None,  # Snapshot to resume from; None = start fresh.
    cudnn_benchmark: bool = True,  # Let cuDNN pick the fastest convolution algorithms.
    allow_tf32: bool = False,  # Let CUDA matmuls and convolutions use TF32 (Ampere and newer).
    torch_compile: bool = False,  # torch.compile the forwards the loss calls, except in R1/PL.
    abort_fn: Callable[[], bool] | None = None,  # Polled every tick; True stops training.
    progress_fn: Callable[[int, int], None] | None = None,  # Called with (cur_nimg, total_nimg).
    nan_policy: str = "skip",  # Non-finite gradients: 'skip' the phase's step, or 'stop'.
    handle_signals: bool = True,  # Stop cleanly on SIGINT/SIGTERM (main thread only).
):
    """Train G and D until total_kimg thousand real images have been shown.

    Each hook is constructed with G, D, G_ema and batch_size plus its own options, and the loop
    calls hook.on_step_begin(cur_nimg) before every minibatch, hook.on_step_end(cur_nimg) after
    it and hook.status_fields() for the tick line.

    With augment_kwargs, every input image of D goes through the augmentation pipe with
    probability p, which starts at augment_p (or at the resumed snapshot's p) and, when
    ada_target is set, is adjusted every ada_interval minibatches toward the point where the
    mean sign of D's outputs on real images equals ada_target (Karras et al., "Training
    Generative Adversarial Networks with Limited Data", NeurIPS 2020).
    """
    training_set_kwargs = dict(training_set_kwargs or {})
    data_loader_kwargs = dict(data_loader_kwargs or {})
    G_kwargs = dict(G_kwargs or {})
    D_kwargs = dict(D_kwargs or {})
    G_opt_kwargs = dict(G_opt_kwargs or {})
    D_opt_kwargs = dict(D_opt_kwargs or {})
    loss_kwargs = dict(loss_kwargs or {})
    hook_kwargs = list(hook_kwargs or [])
    metrics = list(metrics or [])
    metric_kwargs = dict(metric_kwargs or {})
    start_time = time.time()
    device = torch.device(device)
    # The same seed on every rank: the initial networks and all later draws do not depend on
    # the number of ranks (the minibatch draws reseed from step_seed()).
    torch.manual_seed(random_seed)
    configure_cuda_backends(device, cudnn_benchmark, allow_tf32)
    training_stats.init_multiprocessing(rank=rank, sync_device=device if num_gpus > 1 else None)

    if nan_policy not in faults.NAN_POLICIES:
        raise ValueError(
            f"Invalid nan_policy {nan_policy!r}; expected one of {faults.NAN_POLICIES}"
        )
    resume_data = None
    if resume_pkl is not None:
        if rank == 0:
            print(f'Resuming from "{resume_pkl}"')
        resume_data = snapshot_lib.read_snapshot(resume_pkl)

    if rank == 0:
        print("Loading training set...")
    data_position = int(((resume_data or {}).get("progress") or {}).get("data_position", 0))
    training_set, training_set_iterator = load_training_set(
        training_set_kwargs, data_loader_kwargs, rank, num_gpus, batch_size // num_gpus,
        random_seed, start=data_position,
    )  # fmt: skip
    if rank == 0:
        print(
            f"Num images: {len(training_set)}  Image shape: {training_set.image_shape}  "
            f"Label shape: {training_set.label_shape}\n"
        )

    if rank == 0:
        print("Constructing networks...")
    G, D, G_ema = construct_networks(training_set, G_kwargs, D_kwargs, device)
    if resume_data is not None:
        resume_networks(resume_pkl, resume_data, G, D, G_ema)
    if rank == 0:
        print_network_summaries(G, D, batch_gpu, device)

    augment_pipe, ada_stats = setup_augmentation(
        augment_kwargs, augment_p, ada_target, resume_data, resume_pkl, device, rank
    )
    start_nimg = int(((resume_data or {}).get("progress") or {}).get("cur_nimg", 0))
    broadcast_networks(G, D, G_ema, num_gpus, kimg=start_nimg / 1000)
    loss = dnnlib.util.construct_class_by_name(
        device=device, G=G, D=D, augment_pipe=augment_pipe, **loss_kwargs
    )
    if torch_compile:
        compiling.check_compiler(device)
        loss.use_compiled_forwards()
    hooks = [
        dnnlib.util.construct_class_by_name(**kw, G=G, D=D, G_ema=G_ema, batch_size=batch_size)
        for kw in hook_kwargs
    ]
    phases = setup_phases(
        G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, device, num_D_steps
    )

    cur_nimg, cur_tick, batch_idx = 0, 0, 0
    if resume_data is not None:
        cur_nimg, cur_tick, batch_idx = restore_progress(
            resume_data, phases, loss, resume_pkl, rank
        )
        if ada_stats is not None and resume_data.get("ada_signs"):
            ada_stats.load_state_dict(resume_data["ada_signs"])

    grid = None
    if rank == 0:
        grid = export_initial_grids(
            run_dir,
            training_set,
            G_ema,
            batch_gpu,
            random_seed,
            device,
            write_reals=resume_data is None,
        )

    if rank == 0:
        print(f"Training for {total_kimg} kimg...\n")
    ctx = dnnlib.EasyDict(
        G=G, D=D, G_ema=G_ema, phases=phases, loss=loss, hooks=hooks, grid=grid,
        augment_pipe=augment_pipe,
        reporter=TickReporter(run_dir, rank), run_dir=run_dir,
        training_set_kwargs=training_set_kwargs, metrics=metrics, metric_kwargs=metric_kwargs,
        num_gpus=num_gpus, rank=rank, device=device, abort_fn=abort_fn,
        image_snapshot_ticks=image_snapshot_ticks, network_snapshot_ticks=network_snapshot_ticks,
        rnd=None, random_seed=random_seed, ada_stats=ada_stats, batch_gpu=batch_gpu,
        batch_size=batch_size,
        nan_policy=nan_policy,
        ema=dnnlib.EasyDict(
            kimg=ema_kimg, rampup=ema_rampup, start_kimg=ema_start_kimg,
            average_buffers=ema_average_buffers,
        ),
        ada=dnnlib.EasyDict(target=ada_target, interval=ada_interval, kimg=ada_kimg),
    )  # fmt: skip
    state = dnnlib.EasyDict(
        cur_nimg=cur_nimg, cur_tick=cur_tick, batch_idx=batch_idx, start_time=start_time,
        tick_start_nimg=cur_nimg, tick_start_time=time.time(), maintenance_time=0.0,
        skipped_steps=0, tick_skipped_steps=0, stop_signal=None, last_snapshot=None,
    )  # fmt: skip
    if resume_data is not None:
        state.skipped_steps = int((resume_data.get("progress") or {}).get("skipped_steps", 0))
        # Last, because building the networks and the grids above draws random numbers.
        faults.restore_random_states(
            resume_data.get("random_states"), None, device, rank, num_gpus, resume_pkl
        )
    state.maintenance_time = state.tick_start_time - start_time
    total_nimg = int(total_kimg * 1000)
    if progress_fn is not None:
        progress_fn(state.cur_nimg, total_nimg)

    stop_signal = faults.StopSignal()
    if handle_signals:
        stop_signal.install()
    try:
        run_training_steps(
            ctx, state, training_set_iterator, training_set, batch_size, total_nimg,
            kimg_per_tick, stop_signal, progress_fn,
        )  # fmt: skip
    finally:
        stop_signal.restore()
        ctx.reporter.close()
    if rank == 0 and state.stop_signal is not None:
        print_stop_message(state, ctx.run_dir)
    if rank == 0:
        print("\nExiting...")


def configure_cuda_backends(device: torch.device, cudnn_benchmark: bool, allow_tf32: bool) -> None:
    """Set cuDNN's algorithm search and TF32 for a CUDA device. Nothing changes on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = cudnn_benchmark
    # TF32 rounds the inputs of float32 matmuls and convolutions to 10 mantissa bits. Off by
    # default, so that float32 layers (all of them with --fp32) compute in float32.
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32


def run_training_steps(
    ctx, state, training_set_iterator, training_set, batch_size, total_nimg, kimg_per_tick,
    stop_signal, progress_fn,
):  # fmt: skip
    """Train until total_nimg images, a stop signal on any rank or abort_fn, ending every tick."""
    G, G_ema, phases, hooks = ctx.G, ctx.G_ema, ctx.phases, ctx.hooks
    done = False
    while not done:
        batch = fetch_minibatch(
            training_set_iterator, training_set, len(phases), batch_size, ctx.batch_gpu, G,
            ctx.device, ctx.random_seed, state.batch_idx, ctx.rank, ctx.num_gpus,
        )  # fmt: skip
        for hook in hooks:
            hook.on_step_begin(state.cur_nimg)
        run_step(
            phases, ctx.loss, batch, state, ctx.num_gpus, ctx.random_seed, ctx.rank,
            ctx.nan_policy,
        )  # fmt: skip
        state.cur_nimg += batch_size
        state.batch_idx += 1
        update_G_ema(
            G, G_ema, state.cur_nimg, batch_size, ctx.ema.kimg, ctx.ema.rampup,
            ctx.ema.start_kimg, ctx.ema.average_buffers,
        )  # fmt: skip
        if ctx.ada_stats is not None and state.batch_idx % ctx.ada.interval == 0:
            # Every rank takes the same step: the collector sums the signs over all ranks.
            with misc.collective_phase("ada", state.cur_nimg / 1000):
                adjust_augment_p(
                    ctx.augment_pipe, ctx.ada_stats, ctx.ada.target, batch_size,
                    ctx.ada.interval, ctx.ada.kimg,
                )  # fmt: skip
        for hook in hooks:
            hook.on_step_end(state.cur_nimg)

        # Perform maintenance tasks once per tick, or at once when a rank received a signal.
        done = state.cur_nimg >= total_nimg
        if not done and check_stop_signal(ctx, state, stop_signal):
            done = True
        tick_end_nimg = state.tick_start_nimg + kimg_per_tick * 1000
        if not done and state.cur_tick != 0 and state.cur_nimg < tick_end_nimg:
            continue
        done = end_tick(ctx, state, done)
        if progress_fn is not None:
            progress_fn(state.cur_nimg, total_nimg)


def check_stop_signal(ctx, state, stop_signal: faults.StopSignal) -> bool:
    """Return True on every rank when any rank received SIGINT or SIGTERM; one all-reduce."""
    with misc.collective_phase("stop", state.cur_nimg / 1000):
        stop = faults.any_rank(stop_signal.signum is not None, ctx.num_gpus, ctx.device)
    if not stop:
        return False
    state.stop_signal = stop_signal.name or "a signal on another rank"
    if ctx.rank == 0:
        print(
            f"\nReceived {state.stop_signal}: writing a snapshot and stopping (a second signal "
            f"more than {faults.StopSignal.REPEAT_WINDOW_S:g} s later exits at once)",
            flush=True,
        )
    return True


def print_stop_message(state: dnnlib.EasyDict, run_dir: str) -> None:
    """Say where the final snapshot of a run stopped by a signal is and how to continue."""
    print(
        f"Stopped by {state.stop_signal} at kimg {state.cur_nimg / 1e3:.3f}. The final snapshot "
        f"is {state.last_snapshot}. To continue, run train.py with the same options plus "
        f"--resume={run_dir} (or --resume=latest with the same --outdir)."
    )


def print_network_summaries(G, D, batch_gpu, device):
    """Print G's and D's layer tables from one forward pass on zeros, then put back every
    buffer that pass changed (batch-norm statistics, spectral-norm vectors, w_avg)."""
    saved = [(t, t.detach().clone()) for module in (G, D) for t in module.buffers()]
    z = torch.zeros([batch_gpu, G.z_dim], device=device)
    c = torch.zeros([batch_gpu, G.c_dim], device=device)
    img = misc.print_module_summary(G, [z, c])
    misc.print_module_summary(D, [img, c])
    with torch.no_grad():
        for tensor, value in saved:
            tensor.copy_(value)


def setup_augmentation(
    augment_kwargs, augment_p, ada_target, resume_data, resume_pkl, device, rank
):
    """Build the augmentation pipe and, for ADA, the collector of D's signs on real images.

    Returns (None, None) without augment_kwargs. With ADA, a resumed snapshot's pipe state
    (its p) replaces augment_p.
    """
    if not augment_kwargs:
        return None, None
    pipe = dnnlib.util.construct_class_by_name(**augment_kwargs)
    pipe = pipe.train().requires_grad_(False).to(device)
    pipe.p.copy_(torch.as_tensor(float(augment_p)))
    # ADA continues from the resumed p; a fixed p is the one asked for, whatever was saved.
    saved = (resume_data or {}).get("augment_pipe")
    if saved is not None and ada_target is not None:
        snapshot_lib.load_state_checked(pipe, saved["state_dict"], source=resume_pkl)
        if rank == 0:
            print(f"Augmentation probability restored from the snapshot: p = {float(pipe.p):.6g}")
    ada_stats = ada_sign_collector() if ada_target is not None else None
    return pipe, ada_stats


class AdaSignAccumulator:
    """Count and sum of sign(D(real)) since the last ADA step, kept across a snapshot.

    Signs are -1, 0 or 1, so the sums are whole numbers, and signs gathered before a snapshot
    plus those gathered after the resume give exactly the mean of one uninterrupted run.
    Construction drops what was reported earlier. Every rank must call update(), take_mean()
    and the constructor at the same points, because they all-reduce.
    """

    NAME = "Loss/signs/real"

    def __init__(self):
        self.collector = training_stats.Collector(regex=self.NAME, keep_previous=False)
        self.collector.update()
        self.count = 0
        self.total = 0.0

    def update(self) -> None:
        """Add the signs reported since the previous update."""
        self.collector.update()
        num = self.collector.num(self.NAME)
        if num:
            total = num * self.collector.mean(self.NAME)
            self.count += num
            self.total += round(total) if np.isfinite(total) else float("nan")

    def take_mean(self) -> float | None:
        """Return the mean sign since the last call (None without signs) and start a new count."""
        self.update()
        if self.count == 0:
            return None
        mean = self.total / self.count
        self.count, self.total = 0, 0.0
        return mean

    def state_dict(self) -> dict:
        return {"count": self.count, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.total = float(state["total"])


def ada_sign_collector() -> AdaSignAccumulator:
    """Return the accumulator of sign(D(real)) between ADA steps, starting empty."""
    return AdaSignAccumulator()


def adjust_augment_p(augment_pipe, ada_stats, ada_target, batch_size, ada_interval, ada_kimg):
    """Take one ADA step: move p by batch_size * ada_interval / (ada_kimg * 1000) toward
    making the mean sign of D(real) since the last step equal ada_target.

    Skipped when no D phase ran since the last step, and when a sign was NaN (D returned NaN
    on a real image), which would otherwise make p NaN.
    """
    from training.augment import ada_adjust

    mean = ada_stats.take_mean()
    if mean is None:
        return
    if not np.isfinite(mean):
        print("ADA step skipped: D returned NaN on real images since the last step")
        return
    new_p = ada_adjust(float(augment_pipe.p), mean, ada_target, batch_size, ada_interval, ada_kimg)
    augment_pipe.p.copy_(torch.as_tensor(new_p))


def broadcast_networks(G, D, G_ema, num_gpus, kimg=0.0):
    """Give every rank rank 0's initial weights and buffers."""
    if num_gpus > 1:
        with misc.collective_phase("broadcast", kimg):
            for module in [G, D, G_ema]:
                for tensor in misc.params_and_buffers(module):
                    torch.distributed.broadcast(tensor, src=0)


def average_buffers(modules, loss, num_gpus, kimg):
    """Replace the floating-point buffers of `modules` and the loss's pl_mean by their mean
    over the ranks.

    Running averages such as w_avg, magnitude_ema and batch-norm statistics move with each
    rank's own images. They are linear in those images, so averaging them once per tick
    gives the values of averaging after every minibatch. The mean is taken in float64, where
    a sum of N equal float32 values divided by N is exact, so buffers that are already equal
    on all ranks (filters, noise_const, spectral-norm vectors) do not change.
    """
    if num_gpus <= 1:
        return
    tensors = [b for module in modules for b in module.buffers() if b.is_floating_point()]
    if isinstance(getattr(loss, "pl_mean", None), torch.Tensor):
        tensors.append(loss.pl_mean)
    if not tensors:
        return
    flat = torch.cat([t.detach().flatten().to(torch.float64) for t in tensors])
    with misc.collective_phase("buffers", kimg):
        torch.distributed.all_reduce(flat)
    flat /= num_gpus
    with torch.no_grad():
        for t, values in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(values.reshape(t.shape))


def run_step(phases, loss, batch, state, num_gpus, random_seed=None, rank=0, nan_policy="skip"):
    """Run every phase due at state.batch_idx on one minibatch, applying `nan_policy` to
    phases whose gradients are not finite.

    With random_seed, torch's global generators are seeded before each round from
    (random_seed, batch_idx, phase, global round index). So the loss's own randomness of a
    round (G's noise inputs, style mixing, path-length noise, augmentation) does not depend
    on the number of ranks either.
    """
    real_img, real_c, all_gen_z, all_gen_c = batch
    num_rounds = len(real_img)
    for phase_idx, (phase, phase_gen_z, phase_gen_c) in enumerate(
        zip(phases, all_gen_z, all_gen_c)
    ):
        if state.batch_idx % (phase.interval * phase.get("every", 1)) != 0:
            continue
        round_seeds = None
        if random_seed is not None:
            round_seeds = [
                step_seed(random_seed, state.batch_idx, ROUND_STREAM, phase_idx, global_round)
                for global_round in range(rank * num_rounds, (rank + 1) * num_rounds)
            ]
        phase_batch = (real_img, real_c, phase_gen_z, phase_gen_c)
        finite = run_phase(phase, loss, phase_batch, num_gpus, state.cur_nimg, round_seeds)
        if not finite:
            faults.handle_non_finite(phase.name, state.cur_nimg, nan_policy, state, rank)


def restore_progress(resume_data, phases, loss, resume_pkl, rank):
    """Restore optimizer states and the loss state; return (cur_nimg, cur_tick, batch_idx)."""
    progress = resume_data.get("progress") or {}
    if resume_data.get("optimizers"):
        restore_optimizer_states(phases, resume_data["optimizers"], resume_pkl)
    loss_state = resume_data.get("loss_state") or {}
    if "pl_mean" in loss_state and hasattr(loss, "pl_mean"):
        loss.pl_mean.copy_(loss_state["pl_mean"])
    cur_nimg = int(progress.get("cur_nimg", 0))
    cur_tick = int(progress.get("cur_tick", 0))
    batch_idx = int(progress.get("batch_idx", 0))
    if rank == 0:
        print(
            f"Resumed at kimg {cur_nimg / 1e3:.1f}, tick {cur_tick}, optimizer state "
            f"{'restored' if resume_data.get('optimizers') else 'not in the snapshot (fresh)'}"
        )
    return cur_nimg, cur_tick, batch_idx


def export_initial_grids(run_dir, training_set, G_ema, batch_gpu, random_seed, device, write_reals):
    """Write reals.png and fakes_init.png; return the fixed latents used for every fakes grid."""
    print("Exporting sample images...")
    grid_size, images, labels = setup_snapshot_image_grid(
        training_set=training_set, random_seed=random_seed
    )
    if write_reals:
        save_image_grid(
            images, os.path.join(run_dir, "reals.png"), drange=(0, 255), grid_size=grid_size
        )
    generator = torch.Generator(device="cpu").manual_seed(random_seed)
    grid_z = (
        torch.randn([labels.shape[0], G_ema.z_dim], generator=generator).to(device).split(batch_gpu)
    )
    grid_c = torch.from_numpy(labels).to(device).split(batch_gpu)
    images = generate_grid_images(G_ema, grid_z, grid_c)
    if write_reals:
        save_image_grid(
            images, os.path.join(run_dir, "fakes_init.png"), drange=(-1, 1), grid_size=grid_size
        )
    return dnnlib.EasyDict(size=grid_size, z=grid_z, c=grid_c)


def end_tick(ctx: dnnlib.EasyDict, state: dnnlib.EasyDict, done: bool) -> bool:
    """Print the status line, write grids, snapshots and metrics; return True to stop."""
    average_buffers([ctx.G, ctx.D, ctx.G_ema], ctx.loss, ctx.num_gpus, state.cur_nimg / 1000)
    fields, tick_end_time = tick_fields(
        state.cur_tick, state.cur_nimg, state.start_time, state.tick_start_time,
        state.tick_start_nimg, state.maintenance_time, ctx.device,
    )  # fmt: skip
    if ctx.augment_pipe is not None:
        fields.append(("augment", "Progress/augment", "{:<5.3f}", float(ctx.augment_pipe.p)))
    if state.tick_skipped_steps:
        fields.append(("skipped", "Progress/skipped_steps", "{:<4d}", state.tick_skipped_steps))
    line = ctx.reporter.status_line(fields)
    extra = " ".join(hook.status_fields() for hook in ctx.hooks)
    if ctx.rank == 0:
        print(line + (" " + extra if extra else ""))

    if not done and ctx.abort_fn is not None and ctx.abort_fn():
        done = True
        if ctx.rank == 0:
            print("\nAborting...")

    image_ticks = ctx.image_snapshot_ticks
    if ctx.rank == 0 and image_ticks and (done or state.cur_tick % image_ticks == 0):
        images = generate_grid_images(ctx.G_ema, ctx.grid.z, ctx.grid.c)
        path = os.path.join(ctx.run_dir, f"fakes{state.cur_nimg // 1000:06d}.png")
        save_image_grid(images, path, drange=(-1, 1), grid_size=ctx.grid.size)

    # A run stopped by a signal always writes a snapshot, and leaves the metrics for later.
    stopping = state.stop_signal is not None
    network_ticks = ctx.network_snapshot_ticks
    if stopping or (network_ticks and (done or state.cur_tick % network_ticks == 0)):
        snapshot_pkl = write_network_snapshot(ctx, state)
        if ctx.metrics and not stopping:
            if ctx.rank == 0:
                print("Evaluating metrics...")
            evaluate_metrics(ctx, snapshot_pkl, kimg=state.cur_nimg / 1000)

    # Collect statistics and start the next tick.
    timestamp = time.time()
    with misc.collective_phase("stats", state.cur_nimg / 1000):
        ctx.reporter.write(state.cur_nimg, timestamp)
    state.cur_tick += 1
    state.tick_skipped_steps = 0
    state.tick_start_nimg = state.cur_nimg
    state.tick_start_time = time.time()
    state.maintenance_time = state.tick_start_time - tick_end_time
    return done


def write_network_snapshot(ctx: dnnlib.EasyDict, state: dnnlib.EasyDict) -> str:
    """Gather every rank's resume state and write network-snapshot-NNNNNN.pkl on rank 0.

    All ranks must call it. Returns the path. Raises TrainingStopped on every rank when rank 0
    could not write the file (disk full, non-finite weights).
    """
    name = f"network-snapshot-{state.cur_nimg // 1000:06d}.pkl"
    snapshot_pkl = os.path.join(ctx.run_dir, name)
    kimg = state.cur_nimg / 1000
    with misc.collective_phase("snapshot", kimg):
        random_states = faults.gather_random_states(ctx.rnd, ctx.device, ctx.num_gpus)
        if ctx.ada_stats is not None:
            ctx.ada_stats.update()  # Signs since the last ADA step go into the snapshot.
    error = None
    if ctx.rank == 0:
        try:
            save_network_snapshot(ctx, state, snapshot_pkl, random_states)
        except (snapshot_lib.SnapshotError, snapshot_lib.SnapshotWriteError) as err:
            error = str(err).rstrip(".") + "."
    with misc.collective_phase("snapshot", kimg):
        failed = faults.any_rank(error is not None, ctx.num_gpus, ctx.device)
    if failed:
        raise faults.TrainingStopped(
            f"{error or 'Rank 0 could not write ' + snapshot_pkl + '; see its log.'} "
            f"Training stopped at kimg {state.cur_nimg / 1e3:.3f}."
        )
    state.last_snapshot = snapshot_pkl
    return snapshot_pkl


def data_position(batch_idx: int, batch_size: int) -> int:
    """Return the sampler positions that all ranks consumed in `batch_idx` steps: together they
    take one global minibatch of batch_size images per step."""
    return batch_idx * batch_size


def save_network_snapshot(
    ctx: dnnlib.EasyDict, state: dnnlib.EasyDict, snapshot_pkl: str, random_states: list
) -> None:
    """Write G, D, G_ema, optimizer states, progress, options and everything a resumed run
    needs to continue exactly (random-generator states, data position, pending ADA signs)."""
    options = None
    options_path = os.path.join(ctx.run_dir, "training_options.json")
    if os.path.isfile(options_path):
        with open(options_path, encoding="utf-8") as f:
            options = json.load(f)
    loss_state = {}
    if hasattr(ctx.loss, "pl_mean"):
        loss_state["pl_mean"] = ctx.loss.pl_mean.detach().cpu()
    progress = {
        "cur_nimg": state.cur_nimg,
        "cur_tick": state.cur_tick + 1,
        "batch_idx": state.batch_idx,
        "data_position": data_position(state.batch_idx, ctx.batch_size),
        "skipped_steps": state.skipped_steps,
    }
    snapshot_lib.save_network_snapshot(
        snapshot_pkl,
        {"G": ctx.G, "D": ctx.D, "G_ema": ctx.G_ema, "augment_pipe": ctx.augment_pipe},
        optimizers=optimizer_states(ctx.phases),
        progress=progress,
        loss_state=loss_state,
        training_set_kwargs=dict(ctx.training_set_kwargs),
        training_options=options,
        random_states=random_states,
        ada_signs=ctx.ada_stats.state_dict() if ctx.ada_stats is not None else None,
    )
    print(f"Saved {os.path.basename(snapshot_pkl)}")
