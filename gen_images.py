"""Generate images from a network snapshot, one PNG per seed.

    python gen_images.py --network=training-runs/00000-.../network-snapshot-000016.pkl \\
        --seeds=0-7 --trunc=1 --outdir=out

StyleGAN3 networks also take --translate and --rotate, which move the generator's input
coordinate grid: the whole image shifts or turns, as the networks are built to allow.
"""

from __future__ import annotations

import os
import re

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import custom_ops
from training import legacy
from training import snapshot as snapshot_lib


def parse_range(value: str | list) -> list[int]:
    """Parse '1,2,5-10' into [1, 2, 5, 6, 7, 8, 9, 10]."""
    if isinstance(value, list):
        return value
    numbers = []
    for part in value.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi < lo:
                raise click.BadParameter(f"range {part!r} ends before it starts")
            numbers.extend(range(lo, hi + 1))
        elif part.isdigit():
            numbers.append(int(part))
        else:
            raise click.BadParameter(f"expected numbers and ranges like '0,3,5-9', got {part!r}")
    too_large = [n for n in numbers if n > 2**32 - 1]
    if too_large:
        raise click.BadParameter(f"seed {too_large[0]} is too large; seeds go up to {2**32 - 1}")
    return numbers


def parse_vec2(value: str | tuple) -> tuple[float, float]:
    """Parse 'x,y' into a pair of floats."""
    if isinstance(value, tuple):
        return value
    parts = value.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = (float(part) for part in parts)
    except ValueError:
        raise click.BadParameter(f"expected two numbers 'x,y', got {value!r}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise click.BadParameter(f"expected finite numbers, got {value!r}")
    return x, y


def make_transform(translate: tuple[float, float], angle_deg: float) -> np.ndarray:
    """Return the 3x3 matrix that rotates by `angle_deg` and then translates by `translate`."""
    angle = np.deg2rad(angle_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array(
        [[cos, sin, translate[0]], [-sin, cos, translate[1]], [0, 0, 1]], dtype=np.float64
    )


def set_input_transform(G, translate: tuple[float, float], rotate: float) -> None:
    """Point G's input grid at the transformed view. The input layer maps output coordinates
    to input ones, so it receives the inverse of make_transform(translate, rotate)."""
    if translate == (0, 0) and rotate == 0:
        return
    net_input = getattr(getattr(G, "synthesis", None), "input", None)
    if net_input is None or not hasattr(net_input, "transform"):
        raise click.ClickException(
            "--translate and --rotate need a StyleGAN3 network; this network has no "
            "transformable input (StyleGAN2 starts from a learned constant, BigGAN from z)"
        )
    matrix = np.linalg.inv(make_transform(translate, rotate))
    net_input.transform.copy_(torch.from_numpy(matrix).to(net_input.transform))


def make_label(G, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """Return the label [1, c_dim] for `--class`, checking it fits the network."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            print("Warning: --class is ignored because the network is unconditional")
        return label
    if class_idx is None:
        raise click.ClickException(
            f"The network is conditional ({G.c_dim} classes); pass --class=0..{G.c_dim - 1}"
        )
    if not 0 <= class_idx < G.c_dim:
        raise click.ClickException(
            f"--class={class_idx} is out of range; valid classes are 0..{G.c_dim - 1}"
        )
    label[:, class_idx] = 1
    return label


def save_image(img: torch.Tensor, path: str) -> None:
    """Save one image [C, H, W] in [-1, 1] as an 8-bit PNG (grayscale for 1 channel)."""
    array = (img.permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
    if array.shape[2] == 1:
        pil = PIL.Image.fromarray(array[:, :, 0], "L")
    elif array.shape[2] == 3:
        pil = PIL.Image.fromarray(array, "RGB")
    else:
        raise click.ClickException(f"Cannot save {array.shape[2]}-channel images as PNG")
    with dnnlib.util.atomic_write(path) as f:
        pil.save(f, format="PNG")


# fmt: off
@click.command()
@click.option("--network",    "network_pkl", help="Network snapshot or NVIDIA network pickle to load", metavar="PKL", required=True)
@click.option("--seeds",      help="Random seeds, e.g. '0,1,4-6'", metavar="LIST",                      type=parse_range, required=True)
@click.option("--trunc",      "truncation_psi", help="Truncation psi (1 = no truncation)", metavar="FLOAT", type=float, default=1, show_default=True)
@click.option("--class",      "class_idx", help="Class label for conditional networks", metavar="INT",   type=click.IntRange(min=0))
@click.option("--noise-mode", help="Per-pixel noise: fresh random, fixed per layer, or off",             type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--translate",  help="StyleGAN3: move the content by x,y image widths (+x right, +y down)", metavar="VEC2", type=parse_vec2, default="0,0", show_default=True)
@click.option("--rotate",     help="StyleGAN3: rotate the content counterclockwise, in degrees", metavar="ANGLE",   type=float, default=0, show_default=True)
@click.option("--outdir",     help="Where to save the images", metavar="DIR",                            type=str, required=True)
@click.option("--device",     help="Device to run on",                                                   type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--ops",        help="CUDA kernels for bias_act, upfirdn2d, filtered_lrelu: auto (validated ones only), cuda (always), ref (never)  [default: $DMD_OPS, else auto]", type=click.Choice(list(custom_ops.POLICIES)))
# fmt: on
def main(
    network_pkl,
    seeds,
    truncation_psi,
    class_idx,
    noise_mode,
    translate,
    rotate,
    outdir,
    device,
    ops,
):
    """Generate one image per seed with G_ema from a network snapshot."""
    custom_ops.apply_ops_option(ops)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    print(f'Loading networks from "{network_pkl}"...')
    try:
        G = legacy.load_network_pkl(network_pkl, device=device).G_ema
    except (FileNotFoundError, snapshot_lib.SnapshotError) as err:
        raise click.ClickException(str(err)) from err
    if G is None:
        raise click.ClickException(f"{network_pkl} contains no G_ema network")

    if not np.isfinite(rotate):
        raise click.BadParameter(f"expected a finite angle, got {rotate}", param_hint="--rotate")
    set_input_transform(G, translate, rotate)
    os.makedirs(outdir, exist_ok=True)
    label = make_label(G, class_idx, device)
    for seed_idx, seed in enumerate(seeds):
        print(f"Generating image for seed {seed} ({seed_idx + 1}/{len(seeds)}) ...")
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
        with torch.no_grad():
            try:
                img = G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode)
            except ValueError as err:  # e.g. --trunc on a network without truncation
                raise click.ClickException(str(err)) from err
        save_image(img[0], os.path.join(outdir, f"seed{seed:04d}.png"))


if __name__ == "__main__":
    main()
