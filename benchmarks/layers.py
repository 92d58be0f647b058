"""Time two layer-level choices of the StyleGAN2 networks on the shapes they train at:
fused (one grouped convolution per layer) against unfused modulated convolution, and the
contiguous against the channels-last memory format for D's convolutions.

Example, on the CPU:

    python benchmarks/layers.py --repeats=5
"""

import os
import sys

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fir import time_call  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from torch_utils.ops import upfirdn2d  # noqa: E402
from training.networks_stylegan2 import modulated_conv2d  # noqa: E402

# Synthesis layers of StyleGAN2 at 32x32 (CIFAR-style, cbase 16384, cmax 512) and 64x64
# (cbase 32768): label, channels in, channels out, input resolution, upsampling factor.
MODCONV_SHAPES = [
    ("SG2 32 conv 4x4", 512, 512, 4, 1),
    ("SG2 32 conv 8x8 up", 512, 512, 4, 2),
    ("SG2 32 conv 16x16", 512, 512, 16, 1),
    ("SG2 32 conv 32x32", 512, 512, 32, 1),
    ("SG2 64 conv 64x64 up", 512, 512, 32, 2),
    ("SG2 64 conv 64x64", 512, 512, 64, 1),
]

# Discriminator 3x3 convolutions at the same sizes: label, channels in, out, resolution.
CONV_SHAPES = [
    ("SG2 D 32x32", 512, 512, 32),
    ("SG2 D 16x16", 512, 512, 16),
    ("SG2 D 8x8", 512, 512, 8),
    ("SG2 64 D 64x64", 512, 512, 64),
]


def cell(seconds: tuple[float, float]) -> str:
    return f"{seconds[0] * 1e3:8.1f}/{seconds[1] * 1e3:8.1f}"


# ----------------------------------------------------------------------------
# Fused against unfused modulated convolution.


def modconv_passes(batch, c_in, c_out, res, up, fused, dtype, device):
    """Return the inference (forward, no grad) and training (forward+backward) closures."""
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn([batch, c_in, res, res], generator=gen, device=device, dtype=dtype)
    weight = torch.randn([c_out, c_in, 3, 3], generator=gen, device=device)
    styles = torch.randn([batch, c_in], generator=gen, device=device)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    kwargs = dict(up=up, padding=1, resample_filter=f, fused_modconv=fused)

    def inference():
        with torch.no_grad():
            modulated_conv2d(x, weight, styles, **kwargs)

    def training():
        w, s, inputs = (t.detach().requires_grad_(True) for t in (weight, styles, x))
        modulated_conv2d(inputs, w, s, **kwargs).float().square().mean().backward()

    return inference, training


def print_modconv_table(batch, repeats, dtype, device) -> None:
    print(f"\nmodulated conv 3x3, batch {batch}, {dtype}, ms (min / median)")
    print(f"{'layer':<24} {'fused inference':>19} {'unfused inference':>19}", end="")
    print(f" {'fused training':>19} {'unfused training':>19}")
    for label, c_in, c_out, res, up in MODCONV_SHAPES:
        results = {}
        for fused in (True, False):
            passes = modconv_passes(batch, c_in, c_out, res, up, fused, dtype, device)
            results[fused] = [time_call(fn, repeats, device) for fn in passes]
        cells = [results[True][0], results[False][0], results[True][1], results[False][1]]
        print(f"{label:<24} " + " ".join(f"{cell(c):>19}" for c in cells), flush=True)


# ----------------------------------------------------------------------------
# Memory formats.


def conv_training_pass(batch, c_in, c_out, res, memory_format, dtype, device):
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn([batch, c_in, res, res], generator=gen, device=device, dtype=dtype)
    weight = torch.randn([c_out, c_in, 3, 3], generator=gen, device=device, dtype=dtype)
    x = x.contiguous(memory_format=memory_format)
    weight = weight.contiguous(memory_format=memory_format)

    def training():
        inputs, w = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
        F.leaky_relu(F.conv2d(inputs, w, padding=1), 0.2).float().square().mean().backward()

    return training


def print_memory_format_table(batch, repeats, dtype, device) -> None:
    print(f"\nconv 3x3 + leaky ReLU, forward+backward, batch {batch}, {dtype}, ms (min / median)")
    print(f"{'layer':<24} {'contiguous':>19} {'channels_last':>19} {'ratio of mins':>14}")
    for label, c_in, c_out, res in CONV_SHAPES:
        times = []
        for memory_format in (torch.contiguous_format, torch.channels_last):
            run = conv_training_pass(batch, c_in, c_out, res, memory_format, dtype, device)
            times.append(time_call(run, repeats, device))
        ratio = times[1][0] / times[0][0]
        print(f"{label:<24} {cell(times[0]):>19} {cell(times[1]):>19} {ratio:14.2f}", flush=True)


# ----------------------------------------------------------------------------


# fmt: off
@click.command()
@click.option("--repeats", help="Timed runs per entry, after one warm-up run", metavar="INT", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--batch",   help="Images per pass",                             metavar="INT", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device",  help="Device to time on",                           type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", help="torch CPU threads; 0 = torch's default",     metavar="INT", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--tables",  help="Tables to print",                             type=click.Choice(["modconv", "memory-format", "all"]), default="all", show_default=True)
# fmt: on
def main(repeats: int, batch: int, device: str, threads: int, tables: str) -> None:
    """Print times of fused and unfused modulated convolution, and of convolutions in the
    contiguous and channels-last memory formats. On CUDA each table also runs in float16."""
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device=cpu")
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    dtypes = [torch.float32] + ([torch.float16] if dev.type == "cuda" else [])
    for dtype in dtypes:
        if tables in ("modconv", "all"):
            print_modconv_table(batch, repeats, dtype, dev)
        if tables in ("memory-format", "all"):
            print_memory_format_table(batch, repeats, dtype, dev)


if __name__ == "__main__":
    main()
