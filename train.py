"""Train a GAN, optionally with the dynamically masked discriminator (DMD).

Options and run-directory files follow NVIDIA's StyleGAN2-ADA/StyleGAN3 `train.py`; the
`--dmd*` options switch on and configure the method of Zhang et al., "Dynamically Masked
Discriminator for GANs" (NeurIPS 2023).

Example, the CPU demo on the bundled Fashion-MNIST data:

    python train.py --outdir=training-runs --cfg=stylegan2 --data=data/fashion-mnist-32x32.zip \\
        --gpus=1 --batch=16 --gamma=0.1 --cbase=2048 --cmax=128 --map-depth=2 --dmd=1 --kimg=16
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import re
import shutil
import signal
import tempfile

import click
import numpy as np
import torch
from click.core import ParameterSource

import dnnlib
from torch_utils import compiling, custom_ops, misc
from training import faults, training_loop
from training.augment import AUGPIPE_SPECS
from training.dataset import DatasetError

# ----------------------------------------------------------------------------
# Process launch.


# Entries of the run configuration that only the launcher reads.
LAUNCH_ONLY_KEYS = ("run_dir_name", "device_type", "dist_timeout")


def subprocess_fn(rank: int, c: dnnlib.EasyDict, temp_dir: str) -> None:
    """Set up logging and torch.distributed for one process, then run the training loop."""
    log_path = os.path.join(c.run_dir, "log.txt") if rank == 0 else None
    logger = dnnlib.util.Logger(file_name=log_path, file_mode="a", should_flush=True)
    try:
        if c.device_type == "cpu" and c.num_gpus > 1:
            # Share the cores between the CPU ranks instead of oversubscribing them.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // c.num_gpus))
        device = misc.init_process(
            rank, c.num_gpus, c.device_type, temp_dir, timeout_min=c.dist_timeout
        )
        run_rank_reporting_errors(rank, device, c)
    finally:
        if c.num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        logger.close()


def run_rank_reporting_errors(rank: int, device: torch.device, c: dnnlib.EasyDict) -> None:
    """Run the training loop. Errors whose message already gives the next step (a stop by the
    NaN policy, a failed snapshot write, a damaged image) end the process with that message
    and exit code 1, without a traceback."""
    try:
        run_training_loop(rank, device, c)
        if c.num_gpus > 1:
            # Finish together, so that no rank tears down the process group while another
            # still uses it (a rank then aborted at exit under load, in gloo's threads).
            with misc.collective_phase("exit", c.total_kimg):
                torch.distributed.barrier()
    except faults.TrainingStopped as err:
        # Every rank stops at the same step, and rank 0 prints the reason, also into log.txt.
        if rank == 0:
            print(f"\nError: {err}", flush=True)
        raise SystemExit(1) from None
    except DatasetError as err:
        print(f"\nError on rank {rank}: {err}", flush=True)
        raise SystemExit(1) from None


def run_training_loop(rank: int, device: torch.device, c: dnnlib.EasyDict) -> None:
    kwargs = {k: v for k, v in c.items() if k not in LAUNCH_ONLY_KEYS}
    training_loop.training_loop(rank=rank, device=device, **kwargs)


def next_run_dir(outdir: str, desc: str) -> str:
    """Return `outdir/NNNNN-desc` with the next free run number."""
    prev_ids = []
    if os.path.isdir(outdir):
        for name in os.listdir(outdir):
            match = re.match(r"^\d+", name)
            if match and os.path.isdir(os.path.join(outdir, name)):
                prev_ids.append(int(match.group()))
    cur_id = max(prev_ids, default=-1) + 1
    return os.path.join(outdir, f"{cur_id:05d}-{desc}")


def launch_training(c: dnnlib.EasyDict, desc: str, outdir: str, dry_run: bool) -> None:
    """Create the run directory and start the training processes: one per --gpus, spawned
    here, or under torchrun this process as one rank."""
    dist_env = misc.torchrun_env()
    if dist_env is not None:
        launch_torchrun_rank(c, desc, outdir, dry_run, dist_env)
        return
    create_run_dir(c, desc, outdir, dry_run)
    if dry_run:
        return

    print("Launching processes...")
    torch.multiprocessing.set_start_method("spawn", force=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        if c.num_gpus == 1:
            subprocess_fn(rank=0, c=c, temp_dir=temp_dir)
        else:
            # NOTE: one process per GPU with NCCL has not been run on GPUs yet; the same code
            # path is tested on the CPU with gloo.
            spawn_ranks(c, temp_dir)


def spawn_ranks(c: dnnlib.EasyDict, temp_dir: str) -> None:
    """Run subprocess_fn in c.num_gpus processes and wait for them.

    While they run, this process forwards SIGINT and SIGTERM to them, so that each rank
    writes its part of a final snapshot and stops cleanly. A terminal's Ctrl-C also reaches
    every rank directly; the ranks count a repeat within 2 seconds as the same signal. A rank
    that exits with an error ends this process with the same exit code; the rank has already
    printed why.
    """
    context = torch.multiprocessing.spawn(
        fn=subprocess_fn, args=(c, temp_dir), nprocs=c.num_gpus, join=False
    )

    def forward(signum, _frame):
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in faults.StopSignal.SIGNALS}
    try:
        while not context.join():
            pass
    except torch.multiprocessing.ProcessExitedException as err:
        raise SystemExit(err.exit_code or 1) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def launch_torchrun_rank(
    c: dnnlib.EasyDict, desc: str, outdir: str, dry_run: bool, dist_env: dnnlib.EasyDict
) -> None:
    """Run this process as rank dist_env.rank of a torchrun job (env:// rendezvous).

    Rank 0 alone chooses and creates the run directory and writes into it. It sends the
    path, or the error that stopped it, to the other ranks.
    """
    if dry_run:
        if dist_env.rank == 0:
            create_run_dir(c, desc, outdir, dry_run=True)
        return
    device = misc.init_process(
        dist_env.rank,
        c.num_gpus,
        c.device_type,
        temp_dir=None,
        timeout_min=c.dist_timeout,
        local_rank=dist_env.local_rank,
    )
    try:
        outcome = None
        if dist_env.rank == 0:
            try:
                create_run_dir(c, desc, outdir, dry_run=False)
                outcome = ("ok", c.run_dir)
            except (OSError, click.ClickException) as err:
                outcome = ("error", str(err))
        if c.num_gpus > 1:
            outcome = misc.broadcast_object(outcome, phase="setup")
        if outcome[0] == "error":
            raise click.ClickException(f"Rank 0 failed to create the run directory: {outcome[1]}")
        c.run_dir = outcome[1]
        log_path = os.path.join(c.run_dir, "log.txt") if dist_env.rank == 0 else None
        logger = dnnlib.util.Logger(file_name=log_path, file_mode="a", should_flush=True)
        try:
            run_rank_reporting_errors(dist_env.rank, device, c)
        finally:
            logger.close()
    finally:
        if c.num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def create_run_dir(c: dnnlib.EasyDict, desc: str, outdir: str, dry_run: bool) -> None:
    """Choose the run directory, print the options and, unless dry_run, create the directory
    with training_options.json in it."""
    c.run_dir = next_run_dir(outdir, desc)
    if os.path.exists(c.run_dir):
        raise click.ClickException(
            f"Run directory {c.run_dir} already exists; pick another --outdir"
        )

    print()
    print("Training options:")
    print(json.dumps(c, indent=2))
    print()
    print(f"Output directory:    {c.run_dir}")
    print(f"Number of GPUs:      {c.num_gpus}")
    print(f"Device:              {c.device_type}")
    print(f"Batch size:          {c.batch_size} images")
    print(f"Training duration:   {c.total_kimg} kimg")
    print(f"Dataset path:        {c.training_set_kwargs.path}")
    print(f"Dataset size:        {c.training_set_kwargs.max_size} images")
    print(f"Dataset resolution:  {c.training_set_kwargs.resolution}")
    print(f"Dataset labels:      {c.training_set_kwargs.use_labels}")
    print(f"Dataset x-flips:     {c.training_set_kwargs.xflip}")
    print(f"Augmentation:        {describe_augmentation(c)}")
    print(f"DMD:                 {describe_dmd(c)}")
    print()

    if dry_run:
        print("Dry run; exiting.")
        return

    print("Creating output directory...")
    os.makedirs(c.run_dir)
    with dnnlib.util.atomic_write(os.path.join(c.run_dir, "training_options.json"), "w") as f:
        json.dump(c, f, indent=2)


def describe_augmentation(c: dnnlib.EasyDict) -> str:
    if not c.get("augment_kwargs"):
        return "off"
    names = sorted(k for k, v in c.augment_kwargs.items() if k != "class_name" and v)
    if c.get("ada_target") is not None:
        mode = f"adaptive p, target {c.ada_target:g}"
    else:
        mode = f"fixed p = {c.get('augment_p', 0):g}"
    return f"{mode}; {', '.join(names)}"


def describe_dmd(c: dnnlib.EasyDict) -> str:
    dmd_kwargs = c.D_kwargs.get("dmd_kwargs")
    if dmd_kwargs is None:
        return "off"
    return ", ".join(f"{k}={v}" for k, v in dmd_kwargs.items())


# ----------------------------------------------------------------------------
# Option parsing helpers.


def parse_comma_list(value: str | list | None) -> list[str]:
    if value is None or isinstance(value, list):
        return value or []
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_int_list(value: str | None, flag: str) -> list[int] | None:
    """Parse '8,16' into [8, 16]; '' or None means 'use the default'."""
    items = parse_comma_list(value)
    if not items:
        return None
    try:
        return [int(item) for item in items]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, got {value!r}", param_hint=flag
        ) from None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.ClickException(
            "--device=cuda: no CUDA device is available; use --device=cpu or auto"
        )
    return device


def open_training_set(data: str, use_labels: bool, mirror: bool) -> tuple[dnnlib.EasyDict, str]:
    """Open the data once to validate it and fill in resolution, labels and size."""
    # An absolute path, so resumed runs and calc_metrics.py find the data from any directory.
    training_set_kwargs = dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset",
        path=os.path.abspath(data),
        use_labels=False,
        max_size=None,
        xflip=False,
    )
    try:
        dataset = dnnlib.util.construct_class_by_name(**training_set_kwargs)
        if use_labels and not dataset.labels_available:
            raise click.ClickException(
                f"--cond=1 requires labels, but {data} has no dataset.json labels; "
                f"use --cond=False or convert labeled data with dataset_tool.py"
            )
        if use_labels:
            dataset.close()
            training_set_kwargs.use_labels = True
            dataset = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"--data={data}: {err}") from err
    training_set_kwargs.resolution = dataset.resolution
    training_set_kwargs.max_size = len(dataset)
    training_set_kwargs.xflip = mirror
    name = dataset.name
    dataset.close()
    return training_set_kwargs, name


def dmd_kwargs_from_options(opts: dnnlib.EasyDict, img_resolution: int) -> dict | None:
    """Build and validate the DMD options; None when --dmd is off."""
    if not opts.dmd:
        return None
    from dmd_patch.config import DMDConfig

    config = DMDConfig(
        interval_kimg=opts.dmd_interval,
        detect=opts.dmd_detect,
        ema_beta=opts.dmd_ema_beta,
        tol=opts.dmd_tol,
        warmup_kimg=opts.dmd_warmup,
        speed=opts.dmd_speed,
        policy=opts.dmd_policy,
        layers=parse_int_list(opts.dmd_layers, "--dmd-layers"),
        ratio=opts.dmd_ratio,
        rescale=bool(opts.dmd_rescale),
        resample=opts.dmd_resample,
        seed=opts.seed,
    )
    try:
        config.validate(img_resolution)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    return config.to_dict()


def diagnostics_hook_kwargs(opts: dnnlib.EasyDict, img_resolution: int) -> dnnlib.EasyDict:
    """Build the DMDDiagnosticsHook options, checking --dmd-layers for baseline runs too."""
    from dmd_patch.config import DMDConfig

    layers = parse_int_list(opts.dmd_layers, "--dmd-layers")
    try:
        DMDConfig(interval_kimg=opts.dmd_interval, layers=layers).validate(img_resolution)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    return dnnlib.EasyDict(
        class_name="dmd_patch.diagnostics.DMDDiagnosticsHook",
        interval_kimg=opts.dmd_interval,
        layers=layers,
        seed=opts.seed,
    )


def dmd_desc(dmd_kwargs: dict | None) -> str:
    if dmd_kwargs is None:
        return "nodmd"
    return f"dmd-{dmd_kwargs['policy']}-r{dmd_kwargs['ratio']:g}-int{dmd_kwargs['interval_kimg']:g}"


# ----------------------------------------------------------------------------
# Validation and configuration.


# Options of the StyleGAN configurations that BigGAN has no use for, and the reverse.
STYLEGAN_ONLY_OPTIONS = ["gamma", "cbase", "cmax", "map_depth", "mbstd_group", "freezed"]
BIGGAN_ONLY_OPTIONS = ["ch", "attn_res"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_config_options(opts: dnnlib.EasyDict) -> None:
    """Reject options given on the command line that the chosen --cfg does not use, and
    require --gamma for the StyleGAN configurations."""
    is_biggan = opts.cfg == "biggan"
    unused = STYLEGAN_ONLY_OPTIONS if is_biggan else BIGGAN_ONLY_OPTIONS
    unused_flags = [flag(name) for name in unused if name in opts.explicit]
    if unused_flags:
        family = "BigGAN" if is_biggan else "StyleGAN"
        verb, pronoun = ("does", "it") if len(unused_flags) == 1 else ("do", "them")
        raise click.ClickException(
            f"{', '.join(unused_flags)} {verb} not apply to --cfg={opts.cfg}: the {family} "
            f"configuration has no such setting. Remove {pronoun}."
        )
    if not is_biggan and opts.gamma is None:
        raise click.ClickException(
            f"Missing option '--gamma' (the R1 regularization weight), required with "
            f"--cfg={opts.cfg}"
        )


def resolve_process_count(opts: dnnlib.EasyDict) -> None:
    """Set opts.gpus, taking it from torchrun's WORLD_SIZE under torchrun, and check that
    this rank's CUDA device exists."""
    try:
        dist_env = misc.torchrun_env()
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    if dist_env is None:
        if opts.gpus is None:
            raise click.ClickException(
                "Missing option '--gpus' (the number of processes); it may be left out only "
                "under torchrun, which sets WORLD_SIZE"
            )
        device_index = opts.gpus - 1  # The highest of the spawned ranks.
    else:
        if opts.gpus is not None and opts.gpus != dist_env.world_size:
            raise click.ClickException(
                f"--gpus={opts.gpus} disagrees with torchrun's WORLD_SIZE={dist_env.world_size}"
                f"; leave out --gpus under torchrun or make it equal the total number of "
                f"processes (--nnodes times --nproc-per-node)"
            )
        opts.gpus = dist_env.world_size
        device_index = dist_env.local_rank
    if opts.device == "cuda" and device_index >= torch.cuda.device_count():
        raise click.ClickException(
            f"--gpus={opts.gpus}: process {device_index} needs CUDA device {device_index}, "
            f"but only {torch.cuda.device_count()} exist on this machine; lower --gpus "
            f"(or --nproc-per-node under torchrun)"
        )


def validate_options(opts: dnnlib.EasyDict) -> None:
    """Reject option values that cannot work, naming the flag and the legal values."""
    check_config_options(opts)
    if opts.batch % opts.gpus != 0:
        raise click.ClickException(f"--batch={opts.batch} must be a multiple of --gpus={opts.gpus}")
    batch_gpu = opts.batch_gpu or opts.batch // opts.gpus
    if opts.batch % (opts.gpus * batch_gpu) != 0:
        raise click.ClickException(
            f"--batch={opts.batch} must be a multiple of --gpus times --batch-gpu ({opts.gpus} x {batch_gpu})"
        )
    if opts.cfg != "biggan" and batch_gpu % opts.mbstd_group != 0:
        raise click.ClickException(
            f"--batch-gpu={batch_gpu} (per-process batch) must be a multiple of --mbstd-group={opts.mbstd_group}"
        )
    if (opts.dmd or opts.dmd_diagnostics) and opts.dmd_interval * 1000 < opts.batch:
        raise click.ClickException(
            f"--dmd-interval={opts.dmd_interval:g} kimg is shorter than one minibatch "
            f"(--batch={opts.batch}); use at least {opts.batch / 1000:g} kimg"
        )
    for name in ("p", "target"):
        if not np.isfinite(opts[name]):
            raise click.ClickException(f"--{name}={opts[name]} is not a number in [0, 1]")
    if opts.resume is not None and not os.path.isfile(opts.resume):
        raise click.ClickException(
            f"--resume={opts.resume}: file not found; give a snapshot file, a run directory "
            f"or 'latest'"
        )
    from metrics import metric_main

    for metric in opts.metrics:
        spec = metric_main.parse_metric(metric)
        if spec is None:
            raise click.ClickException(
                f"--metrics: unknown metric {metric!r}; valid metrics are "
                f"{metric_main.describe_valid_metrics()}, or 'none'"
            )
        if spec.generator == "stylegan3" and not opts.cfg.startswith("stylegan3"):
            raise click.ClickException(
                f"--metrics={metric}: equivariance metrics need a StyleGAN3 generator; use "
                f"--cfg=stylegan3-t or stylegan3-r, or drop {metric}"
            )
        if spec.generator == "stylegan" and opts.cfg == "biggan":
            raise click.ClickException(
                f"--metrics={metric}: perceptual path length needs a StyleGAN generator "
                f"(mapping and synthesis networks); BigGAN has none"
            )


def build_config(opts: dnnlib.EasyDict) -> tuple[dnnlib.EasyDict, str]:
    """Turn the command-line options into training_loop() keyword arguments and a run name."""
    c = dnnlib.EasyDict()
    c.training_set_kwargs, dataset_name = open_training_set(opts.data, opts.cond, opts.mirror)
    img_resolution = c.training_set_kwargs.resolution
    c.data_loader_kwargs = dnnlib.EasyDict(
        num_workers=opts.workers, pin_memory=opts.device == "cuda"
    )
    if opts.workers > 0:
        c.data_loader_kwargs.prefetch_factor = 2

    c.num_gpus = opts.gpus
    c.device_type = opts.device
    c.dist_timeout = opts.dist_timeout
    c.batch_size = opts.batch
    c.batch_gpu = opts.batch_gpu or opts.batch // opts.gpus
    c.metrics = opts.metrics
    c.metric_kwargs = dnnlib.EasyDict(
        detector_path=opts.detector, vgg16_path=opts.vgg16, progress=True
    )
    c.total_kimg = opts.kimg
    c.kimg_per_tick = opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.random_seed = opts.seed
    c.cudnn_benchmark = not opts.nobench
    c.allow_tf32 = opts.allow_tf32
    c.torch_compile = opts.compile
    c.nan_policy = opts.nan_policy

    if opts.cfg == "biggan":
        add_biggan_recipe(c, opts)
    else:
        add_stylegan_recipe(c, opts)
    dmd_kwargs = dmd_kwargs_from_options(opts, img_resolution)
    c.hook_kwargs = []
    if dmd_kwargs is not None:
        c.D_kwargs.class_name = DMD_DISCRIMINATORS[c.D_kwargs.class_name]
        c.D_kwargs.dmd_kwargs = dmd_kwargs
        c.hook_kwargs.append(dnnlib.EasyDict(class_name="dmd_patch.hook.DMDHook"))
    if opts.dmd_diagnostics:
        c.hook_kwargs.append(diagnostics_hook_kwargs(opts, img_resolution))
    add_augmentation(c, opts)

    if opts.resume is not None:
        c.resume_pkl = os.path.abspath(opts.resume)
        if "blur_init_sigma" in c.loss_kwargs:
            c.loss_kwargs.blur_init_sigma = 0  # A resumed D no longer needs blurred inputs.

    desc = f"{opts.cfg}-{dataset_name}-gpus{c.num_gpus}-batch{c.batch_size}"
    if opts.cfg != "biggan":
        desc += f"-gamma{c.loss_kwargs.r1_gamma:g}"
    if opts.aug != "noaug" and opts.augpipe != "bgc":
        desc += f"-{opts.augpipe}"
    desc += "-" + dmd_desc(dmd_kwargs)
    if opts.desc:
        desc += f"-{opts.desc}"
    return c, desc


# The DMD subclass of each discriminator that train.py can build.
DMD_DISCRIMINATORS = {
    "training.networks_stylegan2.Discriminator": "dmd_patch.networks.DMDDiscriminator",
    "training.networks_biggan.Discriminator": "dmd_patch.networks.DMDBigGANDiscriminator",
}


def add_stylegan_recipe(c: dnnlib.EasyDict, opts: dnnlib.EasyDict) -> None:
    """Networks, optimizers, loss and G_ema schedule of the StyleGAN2/StyleGAN3 configs."""
    c.G_kwargs = generator_kwargs(opts)
    c.D_kwargs = dnnlib.EasyDict(
        class_name="training.networks_stylegan2.Discriminator",
        channel_base=opts.cbase,
        channel_max=opts.cmax,
        block_kwargs=dnnlib.EasyDict(freeze_layers=opts.freezed),
        mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=opts.mbstd_group),
    )
    num_fp16_res, conv_clamp = (0, None) if opts.fp32 else (4, 256)
    for kwargs in (c.G_kwargs, c.D_kwargs):
        kwargs.num_fp16_res = num_fp16_res
        kwargs.conv_clamp = conv_clamp

    glr = opts.glr
    if glr is None:
        glr = 0.002 if opts.cfg == "stylegan2" else 0.0025
    dlr = opts.dlr if opts.dlr is not None else 0.002
    c.G_opt_kwargs = dnnlib.EasyDict(
        class_name="torch.optim.Adam", lr=glr, betas=[0.0, 0.99], eps=1e-8
    )
    c.D_opt_kwargs = dnnlib.EasyDict(
        class_name="torch.optim.Adam", lr=dlr, betas=[0.0, 0.99], eps=1e-8
    )
    c.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=opts.gamma)
    c.D_reg_interval = 16
    if opts.cfg == "stylegan2":
        c.loss_kwargs.update(
            style_mixing_prob=0.9, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.01
        )  # fmt: skip
        c.G_reg_interval = 4
    else:
        # StyleGAN3 has no path-length regularization, so G needs no lazy regularization.
        c.G_reg_interval = None
    if opts.cfg == "stylegan3-r":
        c.loss_kwargs.blur_init_sigma = 10
        c.loss_kwargs.blur_fade_kimg = opts.batch * 200 / 32
    c.ema_kimg = c.batch_size * 10 / 32
    c.ema_rampup = 0.05


# BigGAN's recipe (Brock et al. 2019) counts in G steps; the loop counts images.
BIGGAN_D_STEPS = 4  # D steps per G step.
BIGGAN_EMA_DECAY = 0.9999  # G_ema decay per G step...
BIGGAN_EMA_START = 1000  # ...starting after this many G steps (a plain copy before).


def add_biggan_recipe(c: dnnlib.EasyDict, opts: dnnlib.EasyDict) -> None:
    """Networks, optimizers, hinge loss and G_ema schedule of --cfg=biggan."""
    resolution = c.training_set_kwargs.resolution
    # Self-attention goes after a block: G's outputs are 8 .. resolution, D's resolution/2 .. 8.
    attn_choices = [2**i for i in range(3, int(np.log2(resolution)))]
    if opts.attn_res not in [0, *attn_choices]:
        raise click.ClickException(
            f"--attn-res={opts.attn_res} is not a block resolution of both BigGAN networks at "
            f"{resolution}x{resolution}; use 0 (none) or one of {attn_choices}"
        )

    common = dict(ch=opts.ch, attn_res=opts.attn_res)
    # z splits into one chunk per up-block (4x4 to the output size) plus one: 32 numbers
    # each, so 128 at 32x32 as in BigGAN's CIFAR models.
    num_chunks = int(np.log2(resolution)) - 1
    c.G_kwargs = dnnlib.EasyDict(
        class_name="training.networks_biggan.Generator", z_dim=32 * num_chunks, w_dim=0, **common
    )
    c.D_kwargs = dnnlib.EasyDict(class_name="training.networks_biggan.Discriminator", **common)

    glr = opts.glr if opts.glr is not None else 2e-4
    dlr = opts.dlr if opts.dlr is not None else 2e-4
    c.G_opt_kwargs = dnnlib.EasyDict(
        class_name="torch.optim.Adam", lr=glr, betas=[0.0, 0.999], eps=1e-8
    )
    c.D_opt_kwargs = dnnlib.EasyDict(
        class_name="torch.optim.Adam", lr=dlr, betas=[0.0, 0.999], eps=1e-8
    )
    c.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.BigGANLoss")
    c.G_reg_interval = None  # No regularization: plain optimizer settings for both.
    c.D_reg_interval = None

    c.num_D_steps = BIGGAN_D_STEPS
    images_per_G_step = BIGGAN_D_STEPS * opts.batch
    half_life_G_steps = np.log(0.5) / np.log(BIGGAN_EMA_DECAY)  # about 6931
    c.ema_kimg = half_life_G_steps * images_per_G_step / 1000
    c.ema_start_kimg = BIGGAN_EMA_START * images_per_G_step / 1000
    c.ema_rampup = None
    c.ema_average_buffers = True  # As BigGAN averages its whole state, batch-norm statistics too.


def generator_kwargs(opts: dnnlib.EasyDict) -> dnnlib.EasyDict:
    """G's class and options for --cfg, with upstream's presets."""
    # Upstream's mapping depth: 8 layers for StyleGAN2, 2 for StyleGAN3, unless --map-depth.
    map_depth = opts.map_depth
    if map_depth is None:
        map_depth = 8 if opts.cfg == "stylegan2" else 2
    kwargs = dnnlib.EasyDict(
        z_dim=512,
        w_dim=512,
        channel_base=opts.cbase,
        channel_max=opts.cmax,
        mapping_kwargs=dnnlib.EasyDict(num_layers=map_depth),
    )
    if opts.cfg == "stylegan2":
        kwargs.class_name = "training.networks_stylegan2.Generator"
        kwargs.mapping_kwargs.w_avg_beta = 0.995
        kwargs.fused_modconv_default = "inference_only"
        return kwargs
    kwargs.class_name = "training.networks_stylegan3.Generator"
    # Half-life of the input magnitude averages: 20k images, whatever the batch size.
    kwargs.magnitude_ema_beta = 0.5 ** (opts.batch / (20 * 1e3))
    if opts.cfg == "stylegan3-r":
        kwargs.conv_kernel = 1
        kwargs.channel_base *= 2
        kwargs.channel_max *= 2
        kwargs.use_radial_filters = True
    return kwargs


def add_augmentation(c: dnnlib.EasyDict, opts: dnnlib.EasyDict) -> None:
    """Set the augmentation pipe and its p schedule for --aug, --augpipe, --p and --target."""
    if opts.aug == "noaug":
        return
    c.augment_kwargs = dnnlib.EasyDict(
        class_name="training.augment.AugmentPipe", **AUGPIPE_SPECS[opts.augpipe]
    )
    if opts.aug == "ada":
        c.ada_target = opts.target
    else:
        c.augment_p = opts.p


def check_resume(c: dnnlib.EasyDict) -> None:
    """Check that --resume names a readable snapshot whose networks fit the requested
    architecture, before the run directory is made."""
    if c.get("resume_pkl") is None:
        return
    from training import snapshot as snapshot_lib

    try:
        data = snapshot_lib.read_snapshot(c.resume_pkl)
        dims = dnnlib.EasyDict(
            c_dim=0, img_resolution=c.training_set_kwargs.resolution, img_channels=1
        )
        dataset = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
        dims.c_dim, dims.img_channels = dataset.label_dim, dataset.num_channels
        dataset.close()
        if c.get("ada_target") is not None and data.get("augment_pipe") is None:
            # ADA starts again from p = 0, so let p find its level quickly, as upstream does
            # on every resume. A snapshot with a pipe gives its p back, at the normal speed.
            c.ada_kimg = 100
        if int((data.get("progress") or {}).get("cur_nimg", 0)) == 0:
            # The G_ema ramp-up limits the half-life to cur_nimg * ema_rampup. It continues
            # unchanged when the snapshot restores cur_nimg, but at cur_nimg = 0 it would make
            # an already averaged G_ema copy G.
            c.ema_rampup = None
        for name, kwargs in [("G", c.G_kwargs), ("D", c.D_kwargs), ("G_ema", c.G_kwargs)]:
            if data.get(name) is None:
                raise snapshot_lib.SnapshotError(f"{c.resume_pkl} contains no {name} network")
            module = dnnlib.util.construct_class_by_name(**kwargs, **dims)
            snapshot_lib.load_state_checked(module, data[name]["state_dict"], source=c.resume_pkl)
    except (OSError, snapshot_lib.SnapshotError) as err:
        raise click.ClickException(f"--resume: {err}") from err


def check_compile_early(opts: dnnlib.EasyDict) -> None:
    """With --compile=1, check that torch.compile works on the device before the run
    directory exists, and report a failure as a one-line option error."""
    if not opts.compile or opts.dry_run:
        return
    try:
        compiling.check_compiler(torch.device(opts.device))
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error


def resolve_resume(opts: dnnlib.EasyDict) -> None:
    """Turn --resume=latest or --resume=<run directory> into the newest valid snapshot file."""
    if opts.resume is None:
        return
    from training import snapshot as snapshot_lib

    try:
        path = snapshot_lib.find_resume_snapshot(opts.resume, opts.outdir, log=print)
    except (OSError, snapshot_lib.SnapshotError) as err:
        raise click.ClickException(str(err)) from err
    if path != opts.resume:
        print(f"--resume={opts.resume}: continuing from {path}")
    opts.resume = path


# Options that set G or D constructor arguments, with the dotted names of those arguments. On
# --resume from an NVIDIA pickle the arguments come from the pickle unless the option is given.
NVIDIA_RESUME_OPTIONS = {
    "cbase": ["G.channel_base", "D.channel_base"],
    "cmax": ["G.channel_max", "D.channel_max"],
    "map_depth": ["G.mapping_kwargs.num_layers"],
    "mbstd_group": ["D.epilogue_kwargs.mbstd_group_size"],
    "fp32": ["G.num_fp16_res", "G.conv_clamp", "D.num_fp16_res", "D.conv_clamp"],
    "freezed": ["D.block_kwargs.freeze_layers"],
}
DATA_DIMENSIONS = ("c_dim", "img_resolution", "img_channels")  # Set from --data, not kwargs.


def adopt_nvidia_resume(c: dnnlib.EasyDict, opts: dnnlib.EasyDict) -> None:
    """When --resume names an NVIDIA StyleGAN2-ADA/StyleGAN3 pickle, take G and D's
    architecture from it (except where options override it), print where each argument came
    from, and point c.resume_pkl at a copy converted to our snapshot format."""
    from training import legacy
    from training import snapshot as snapshot_lib

    pkl = c.get("resume_pkl")
    if pkl is None or not snapshot_lib.is_nvidia_torch_pickle(pkl):
        return
    try:
        data = legacy.load_network_pkl(pkl)
    except (OSError, snapshot_lib.SnapshotError) as err:
        raise click.ClickException(f"--resume: {err}") from err
    check_nvidia_networks(pkl, data, c, opts)
    sources = merge_nvidia_kwargs(c, opts, data.G.init_kwargs, data.D.init_kwargs)
    print_nvidia_resume(pkl, c, sources)
    group = get_nested(c.D_kwargs, ["epilogue_kwargs", "mbstd_group_size"]) or 1
    if c.batch_gpu % group != 0:
        raise click.ClickException(
            f"--resume: {pkl} has minibatch-std group size {group}, which does not divide the "
            f"per-process batch {c.batch_gpu}; set --mbstd-group or --batch-gpu"
        )
    c.resume_pkl = write_converted_snapshot(pkl, data)


def check_nvidia_networks(pkl: str, data: dict, c: dnnlib.EasyDict, opts) -> None:
    """Raise unless the pickle has G, D and G_ema, and its G fits --cfg and --data."""
    for name in ("G", "D", "G_ema"):
        if data[name] is None:
            raise click.ClickException(f"--resume: {pkl} contains no {name} network")
    G = data["G"]
    G_class = f"{type(G).__module__}.{type(G).__name__}"
    if G_class != c.G_kwargs.class_name:
        raise click.ClickException(
            f"--resume: {pkl} contains a {G_class}, but --cfg={opts.cfg} trains a "
            f"{c.G_kwargs.class_name}; use the --cfg of the pickle's generator"
        )
    resolution = c.training_set_kwargs.resolution
    if G.img_resolution != resolution:
        raise click.ClickException(
            f"--resume: {pkl} makes {G.img_resolution}x{G.img_resolution} images, but --data "
            f"{opts.data} is {resolution}x{resolution}; use data at the pickle's resolution"
        )
    if (G.c_dim > 0) != bool(opts.cond):
        kind = "class-conditional" if G.c_dim > 0 else "unconditional"
        raise click.ClickException(
            f"--resume: {pkl} contains a {kind} network, so set --cond={int(G.c_dim > 0)}"
        )


def merge_nvidia_kwargs(c, opts, G_init: dict, D_init: dict) -> dict[str, str]:
    """Replace c.G_kwargs and c.D_kwargs by the pickle's arguments, keeping our class names,
    the DMD settings and the arguments of options given on the command line. Returns where
    each argument came from, by dotted name: 'the pickle' or the option's flag."""
    flags = {
        key: "--" + name.replace("_", "-")
        for name, keys in NVIDIA_RESUME_OPTIONS.items()
        if name in opts.explicit
        for key in keys
    }
    sources = {}
    for net, pickled, ours in [("G", G_init, c.G_kwargs), ("D", D_init, c.D_kwargs)]:
        kwargs = copy.deepcopy({k: v for k, v in pickled.items() if k not in DATA_DIMENSIONS})
        sources.update({key: "the pickle" for key in flatten_keys(kwargs, net)})
        for key, flag in flags.items():
            if key.startswith(net + "."):
                path = key.split(".")[1:]
                set_nested(kwargs, path, get_nested(ours, path))
                sources[key] = flag
        kwargs = dnnlib.EasyDict(kwargs, class_name=ours.class_name)
        if "dmd_kwargs" in ours:
            kwargs.dmd_kwargs = ours.dmd_kwargs
        c[f"{net}_kwargs"] = kwargs
    return sources


def flatten_keys(kwargs: dict, prefix: str) -> list[str]:
    """Return the dotted names of the leaves of nested dicts, e.g. 'G.mapping_kwargs.num_layers'."""
    keys = []
    for name, value in kwargs.items():
        if isinstance(value, dict) and value:
            keys += flatten_keys(value, f"{prefix}.{name}")
        else:
            keys.append(f"{prefix}.{name}")
    return keys


def get_nested(kwargs: dict, path: list[str]):
    for name in path:
        kwargs = kwargs.get(name) if isinstance(kwargs, dict) else None
    return kwargs


def set_nested(kwargs: dict, path: list[str], value) -> None:
    for name in path[:-1]:
        kwargs = kwargs.setdefault(name, {})
    kwargs[path[-1]] = value


def print_nvidia_resume(pkl: str, c: dnnlib.EasyDict, sources: dict[str, str]) -> None:
    """Print every G and D argument with its value and source, and what a resume from an
    NVIDIA pickle leaves out."""
    print(f"Resuming from the NVIDIA network pickle {pkl}.")
    print("G and D arguments, from the pickle unless given on the command line:")
    for key in sorted(sources):
        net, *path = key.split(".")
        value = get_nested(c[f"{net}_kwargs"], path)
        print(f"  {key:<36} {value!r:<24} from {sources[key]}")
    print(
        "NVIDIA pickles record no training progress and no optimizer state: training counts "
        "from 0 kimg and both optimizers start fresh."
    )


def write_converted_snapshot(pkl: str, data: dict) -> str:
    """Save the networks of an NVIDIA pickle as one of our snapshots and return its path. The
    temporary folder of the file is removed when this process exits."""
    from training import snapshot as snapshot_lib

    folder = tempfile.mkdtemp(prefix="nvidia-resume-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = os.path.join(folder, os.path.basename(pkl))
    networks = {k: data[k] for k in ("G", "D", "G_ema", "augment_pipe") if data[k] is not None}
    snapshot_lib.save_network_snapshot(
        path, networks, training_set_kwargs=data.get("training_set_kwargs")
    )
    print(f"Converted {pkl} to this project's snapshot format: {path}")
    return path


def resolve_detector_early(opts: dnnlib.EasyDict) -> None:
    """Find the metrics' feature networks now, so a missing file fails before any training."""
    if not opts.metrics:
        return
    from metrics import metric_main

    try:
        networks = metric_main.resolve_feature_networks(opts.metrics, opts.detector, opts.vgg16)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"--metrics={','.join(opts.metrics)}: {err}") from err
    opts.detector, opts.vgg16 = networks.detector_path, networks.vgg16_path


# ----------------------------------------------------------------------------
# Command line.


# fmt: off
@click.command()
# Required.
@click.option("--outdir",       help="Where to make the run directory", metavar="DIR",              type=str, required=True)
@click.option("--cfg",          help="Base configuration",                                          type=click.Choice(["stylegan3-t", "stylegan3-r", "stylegan2", "biggan"]), required=True)
@click.option("--data",         help="Training data: a zip or folder made by dataset_tool.py", metavar="[ZIP|DIR]", type=str, required=True)
@click.option("--gpus",         help="Number of processes (one per GPU); CPU runs use gloo  [required; default under torchrun: WORLD_SIZE]", metavar="INT", type=click.IntRange(min=1))
@click.option("--batch",        help="Total batch size over all GPUs, in images", metavar="INT",   type=click.IntRange(min=1), required=True)
@click.option("--gamma",        help="R1 regularization weight (StyleGAN configs; required there)", metavar="FLOAT", type=click.FloatRange(min=0))
# Optional features.
@click.option("--cond",         help="Train a class-conditional model from dataset.json labels", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--mirror",       help="Add x-flipped copies of the data", metavar="BOOL",           type=bool, default=False, show_default=True)
@click.option("--aug",          help="Augmentation mode  [default: ada; noaug for biggan]",        type=click.Choice(["noaug", "ada", "fixed"]), default="ada")
@click.option("--augpipe",      help="Augmentations for --aug=ada|fixed: blit, geom, color, filter, noise, cutout or the unions bg, bgc, bgcf, bgcfn, bgcfnc", type=click.Choice(list(AUGPIPE_SPECS)), default="bgc", show_default=True)
@click.option("--resume",       help="Resume from a snapshot or NVIDIA network pickle, the newest valid snapshot of a run directory, or 'latest' (newest run under --outdir)", metavar="[PKL|DIR|latest]", type=str)
@click.option("--freezed",      help="Freeze this many of D's first layers", metavar="INT",       type=click.IntRange(min=0), default=0, show_default=True)
# Misc hyperparameters.
@click.option("--p",            help="Augmentation probability for --aug=fixed", metavar="FLOAT",  type=click.FloatRange(min=0, max=1), default=0.2, show_default=True)
@click.option("--target",       help="Target value of the ADA overfitting heuristic", metavar="FLOAT", type=click.FloatRange(min=0, max=1), default=0.6, show_default=True)
@click.option("--batch-gpu",    help="Images per forward pass on one GPU [default: batch/gpus]", metavar="INT", type=click.IntRange(min=1))
@click.option("--cbase",        help="Channel base: channels at resolution r are min(cbase/r, cmax); stylegan3-r doubles cbase and cmax for G", metavar="INT", type=click.IntRange(min=1), default=32768, show_default=True)
@click.option("--cmax",         help="Maximum number of channels per layer", metavar="INT",        type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--glr",          help="G learning rate  [default: 0.002 for stylegan2, 0.0025 for stylegan3, 2e-4 for biggan]", metavar="FLOAT", type=click.FloatRange(min=0))
@click.option("--dlr",          help="D learning rate  [default: 0.002; 2e-4 for biggan]", metavar="FLOAT", type=click.FloatRange(min=0))
@click.option("--map-depth",    help="Mapping network depth  [default: 8 for stylegan2, 2 for stylegan3]", metavar="INT", type=click.IntRange(min=1))
@click.option("--mbstd-group",  help="Minibatch standard deviation group size", metavar="INT",    type=click.IntRange(min=1), default=4, show_default=True)
# BigGAN.
@click.option("--ch",           help="BigGAN width: every block has 4 * ch channels", metavar="INT", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--attn-res",     help="BigGAN self-attention at this resolution (0 = none)", metavar="INT", type=click.IntRange(min=0), default=0, show_default=True)
# DMD.
@click.option("--dmd",          help="Use the dynamically masked discriminator", metavar="BOOL",   type=bool, default=False, show_default=True)
@click.option("--dmd-interval", help="Time interval between detections, in kimg", metavar="KIMG",  type=click.FloatRange(min=0, min_open=True), default=4, show_default=True)
@click.option("--dmd-detect",   help="Reference speed: previous interval's or an EMA of past ones", type=click.Choice(["prev", "ema"]), default="prev", show_default=True)
@click.option("--dmd-ema-beta", help="EMA decay of the reference speed for --dmd-detect=ema", metavar="FLOAT", type=click.FloatRange(min=0, max=1), default=0.9, show_default=True)
@click.option("--dmd-tol",      help="Detect when speed < (1 - tol) * reference", metavar="FLOAT", type=click.FloatRange(min=0, max=1), default=0.0, show_default=True)
@click.option("--dmd-warmup",   help="No detection before this many kimg", metavar="KIMG",         type=click.FloatRange(min=0), default=0, show_default=True)
@click.option("--dmd-speed",    help="Learning speed over all parameters or averaged per block",  type=click.Choice(["global", "block"]), default="global", show_default=True)
@click.option("--dmd-policy",   help="How detections switch the masks",                           type=click.Choice(["toggle", "pulse", "always", "never"]), default="toggle", show_default=True)
@click.option("--dmd-layers",   help="D block output resolutions to mask, e.g. 8,16  [default: max(8, res/8)]", metavar="LIST", type=str, default="")
@click.option("--dmd-ratio",    help="Fraction of feature-map positions zeroed by a mask", metavar="FLOAT", type=click.FloatRange(min=0, max=1, max_open=True), default=0.25, show_default=True)
@click.option("--dmd-rescale",  help="Scale kept positions by 1/(1-ratio)", metavar="BOOL",        type=bool, default=True, show_default=True)
@click.option("--dmd-resample", help="Draw a mask pattern per masked interval or per minibatch",  type=click.Choice(["interval", "batch"]), default="interval", show_default=True)
@click.option("--dmd-diagnostics", help="Log DMD diagnostics per --dmd-interval: feature_cos, generated-feature drift, and the learning speed of baseline runs", metavar="BOOL", type=bool, default=True, show_default=True)
# Misc settings.
@click.option("--desc",         help="String to include in the run directory name", metavar="STR", type=str)
@click.option("--metrics",      help="Quality metrics, comma-separated, or 'none'", metavar="[NAME|A,B,C|none]", type=parse_comma_list, default="fid50k_full", show_default=True)
@click.option("--detector",     help="Inception network for FID/KID/IS: path or URL  [default: search]", metavar="PATH|URL", type=str)
@click.option("--vgg16",        help="VGG16 network for precision/recall and PPL: path or URL  [default: search]", metavar="PATH|URL", type=str)
@click.option("--kimg",         help="Training duration, in thousands of real images", metavar="KIMG", type=click.FloatRange(min=0, min_open=True), default=25000, show_default=True)
@click.option("--tick",         help="How often to print progress, in kimg", metavar="KIMG",       type=click.FloatRange(min=0, min_open=True), default=4, show_default=True)
@click.option("--snap",         help="How often to save snapshots and images, in ticks", metavar="TICKS", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed",         help="Random seed", metavar="INT",                                 type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--fp32",         help="Disable mixed precision (CPU always runs fp32)", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--nobench",      help="Disable cuDNN benchmarking", metavar="BOOL",                 type=bool, default=False, show_default=True)
@click.option("--allow-tf32",   help="Allow TF32 in CUDA matmuls and convolutions (faster on Ampere and newer, less precise)", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--compile",      help="torch.compile the networks' forwards in the main phases (see docs/benchmarks.md before turning it on)", metavar="BOOL", type=bool, default=False, show_default=True)
@click.option("--nan-policy",   help="On NaN/Inf losses or gradients: skip that phase's optimizer step, or stop without a snapshot", type=click.Choice(list(faults.NAN_POLICIES)), default="skip", show_default=True)
@click.option("--workers",      help="DataLoader worker processes (0 = load in the main process)", metavar="INT", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--dist-timeout", help="Time limit of each collective between processes, in minutes", metavar="MIN", type=click.FloatRange(min=0, min_open=True), default=misc.DEFAULT_DIST_TIMEOUT_MIN, show_default=True)
@click.option("--device",       help="Device to train on",                                         type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--ops",          help="CUDA kernels for bias_act, upfirdn2d, filtered_lrelu: auto (validated ones only), cuda (always), ref (never)  [default: $DMD_OPS, else auto]", type=click.Choice(list(custom_ops.POLICIES)))
@click.option("-n", "--dry-run", help="Print the training options and exit",                       is_flag=True)
# fmt: on
def main(**kwargs):
    """Train a StyleGAN2, StyleGAN3 or BigGAN network, optionally with the dynamically
    masked discriminator.

    \b
    # CPU demo on the bundled Fashion-MNIST data, with DMD
    python train.py --outdir=training-runs --cfg=stylegan2 --data=data/fashion-mnist-32x32.zip \\
        --gpus=1 --batch=16 --gamma=0.1 --cbase=2048 --cmax=128 --map-depth=2 --dmd=1 \\
        --kimg=16 --tick=2 --snap=4 --metrics=fid500

    \b
    # Your own data on 8 GPUs, baseline vs. DMD
    python dataset_tool.py --source=~/images --dest=~/datasets/mydata-256x256.zip --resolution=256x256
    python train.py --outdir=~/training-runs --cfg=stylegan2 --data=~/datasets/mydata-256x256.zip \\
        --gpus=8 --batch=64 --gamma=1 --dmd=0
    python train.py --outdir=~/training-runs --cfg=stylegan2 --data=~/datasets/mydata-256x256.zip \\
        --gpus=8 --batch=64 --gamma=1 --dmd=1

    \b
    # BigGAN on CIFAR-10 (hinge loss, 4 D steps per G step), class-conditional, with DMD
    python dataset_tool.py --source=~/downloads/cifar-10-python.tar.gz --dest=~/datasets/cifar10.zip
    python train.py --outdir=~/training-runs --cfg=biggan --data=~/datasets/cifar10.zip \\
        --gpus=1 --batch=50 --cond=1 --dmd=1
    """
    custom_ops.apply_ops_option(kwargs["ops"])
    opts = dnnlib.EasyDict(kwargs)
    ctx = click.get_current_context()
    opts.explicit = {
        name for name in kwargs if ctx.get_parameter_source(name) != ParameterSource.DEFAULT
    }
    if opts.cfg == "biggan" and "aug" not in opts.explicit:
        opts.aug = "noaug"  # The BigGAN recipe trains without augmentation.
    opts.metrics = [m for m in opts.metrics if m.lower() != "none"]
    opts.device = resolve_device(opts.device)
    resolve_process_count(opts)
    resolve_resume(opts)
    validate_options(opts)
    resolve_detector_early(opts)
    c, desc = build_config(opts)
    adopt_nvidia_resume(c, opts)
    check_resume(c)
    check_compile_early(opts)
    launch_training(c, desc=desc, outdir=opts.outdir, dry_run=opts.dry_run)


if __name__ == "__main__":
    main()
