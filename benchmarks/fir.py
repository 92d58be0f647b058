"""Time upfirdn2d's conv2d ('ref') and banded-matrix ('matmul') paths on the FIR shapes of
StyleGAN2 and StyleGAN3, and whole networks with each path forced.

Example, on the CPU:

    python benchmarks/fir.py --repeats=5
"""

import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch_utils.ops import upfirdn2d as fir  # noqa: E402
from training import networks_stylegan2, networks_stylegan3  # noqa: E402

# ----------------------------------------------------------------------------
# Op shapes: the sizes, filters, factors and padding of upfirdn2d() calls that the StyleGAN2
# and StyleGAN3 networks make at batch 8, with fewer channels at large sizes to keep a run
# short. Columns: label, [N, C, H, W], taps (4 = setup_filter([1, 3, 3, 1]), which is 2D
# 4x4, and 12 or 24 = a separable lowpass), up, down, padding.

SG2_SHAPES = [
    *[("SG2 D down", [8, c, s, s], 4, 1, 2, 1) for s, c in [(8, 512), (32, 512), (128, 128)]],
    *[("SG2 D blur", [8, c, s, s], 4, 1, 1, 2) for s, c in [(8, 512), (32, 512), (128, 128)]],
    ("SG2 D blur", [8, 64, 256, 256], 4, 1, 1, 2),
    *[("SG2 G blur", [1, 8 * c, s, s], 4, 1, 1, 1) for s, c in [(9, 512), (33, 512), (129, 128)]],
    *[("SG2 G toRGB up", [8, 3, s, s], 4, 2, 1, [2, 1, 2, 1]) for s in [4, 16, 64, 128]],
]
SG3_UP_PADDING = [9, 8, 9, 8]
SG3_SHAPES = [
    *[("SG3 up", [8, c, s, s], 12, 2, 1, SG3_UP_PADDING) for s, c in [(38, 32), (54, 32)]],
    *[("SG3 up", [8, c, s, s], 12, 2, 1, SG3_UP_PADDING) for s, c in [(86, 64), (150, 16)]],
    *[("SG3 down", [8, c, s, s], 12, 1, 2, 0) for s, c in [(82, 32), (114, 32), (178, 16)]],
    ("SG3 down", [8, 4, 306, 306], 12, 1, 2, 0),
    ("SG3 up 1 ch", [8, 1, 54, 54], 12, 2, 1, SG3_UP_PADDING),
    ("SG3 up x4", [8, 32, 38, 38], 24, 4, 1, [-6, -9, -6, -9]),
]

PATHS = ["ref", "matmul"]

# ----------------------------------------------------------------------------
# Timing.


def time_call(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """Run fn once to warm up, then `repeats` times, and return (min, median) seconds."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def make_filter(taps: int, device: torch.device) -> torch.Tensor:
    """Return StyleGAN2's 2D [1, 3, 3, 1] filter for 4 taps, else a separable lowpass."""
    if taps == 4:
        return fir.setup_filter([1, 3, 3, 1], device=device)
    window = torch.hann_window(taps + 2, periodic=False, dtype=torch.float64)[1:-1]
    return fir.setup_filter(window, device=device, separable=True)


def op_passes(x, f, up, down, padding, impl):
    """Return the forward, forward+backward and double backward (R1-style) closures."""

    def op(inputs):
        return fir.upfirdn2d(inputs, f, up=up, down=down, padding=padding, impl=impl)

    def forward():
        with torch.no_grad():
            op(x)

    def forward_backward():
        inputs = x.detach().requires_grad_(True)
        op(inputs).square().sum().backward()

    def double_backward():
        inputs = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(op(inputs).square().sum(), inputs, create_graph=True)
        grad.square().sum().backward()

    return forward, forward_backward, double_backward


def print_op_table(shapes, repeats: int, device: torch.device) -> None:
    gen = torch.Generator(device=device).manual_seed(0)
    header = f"{'shape':<32} {'[N, C, H, W]':<20} {'up':>2} {'dn':>2} {'taps':>4} {'path':<7}"
    print(f"{header} {'fwd ms':>15} {'fwd+bwd ms':>15} {'double bwd ms':>15}   (min / median)")
    for label, shape, taps, up, down, padding in shapes:
        x = torch.randn(shape, device=device, generator=gen)
        f = make_filter(taps, device)
        auto = "matmul" if fir._prefer_matmul(x, f) else "ref"
        for path in PATHS:
            cells = []
            for fn in op_passes(x, f, up, down, padding, impl=path):
                t_min, t_med = time_call(fn, repeats, device)
                cells.append(f"{t_min * 1e3:7.2f}/{t_med * 1e3:7.2f}")
            mark = "*" if path == auto else " "
            shape_text = str(shape).replace(" ", "")
            row = f"{label:<32} {shape_text:<20} {up:>2} {down:>2} {taps:>4} {path + mark:<7}"
            print(f"{row} {' '.join(f'{c:>15}' for c in cells)}", flush=True)


# ----------------------------------------------------------------------------
# Whole networks.


def sg3_generator_pass(device: torch.device):
    """StyleGAN3-T at res 32 (channel_base 1024, channel_max 32, batch 8): G forward+backward."""
    torch.manual_seed(0)
    G = networks_stylegan3.Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3, channel_base=1024,
        channel_max=32, mapping_kwargs=dict(num_layers=2),
    ).to(device)  # fmt: skip
    z = torch.randn([8, 512], device=device, generator=torch.Generator(device).manual_seed(1))

    def run():
        G(z, None).square().mean().backward()

    return run


def sg2_discriminator_r1(device: torch.device):
    """StyleGAN2 at res 32 (channel_base 16384, channel_max 512, batch 8): D R1 double backward."""
    torch.manual_seed(0)
    D = networks_stylegan2.Discriminator(
        c_dim=0, img_resolution=32, img_channels=3, channel_base=16384, channel_max=512
    ).to(device)
    gen = torch.Generator(device).manual_seed(1)
    img = torch.randn([8, 3, 32, 32], device=device, generator=gen)

    def run():
        inputs = img.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(inputs, None).sum(), inputs, create_graph=True)
        grad.square().sum().backward()

    return run


def print_network_table(repeats: int, device: torch.device) -> None:
    print(f"\n{'network pass':<56} {'default_impl':<12} {'min s':>8} {'median s':>9}")
    cases = [
        ("StyleGAN3-T res 32, G forward+backward", sg3_generator_pass),
        ("StyleGAN2 res 32, D R1 double backward", sg2_discriminator_r1),
    ]
    saved = fir.default_impl
    try:
        for label, build in cases:
            run = build(device)
            for impl in ["ref", "matmul", "auto"]:
                fir.default_impl = impl
                t_min, t_med = time_call(run, repeats, device)
                print(f"{label:<56} {impl:<12} {t_min:8.3f} {t_med:9.3f}", flush=True)
    finally:
        fir.default_impl = saved


# ----------------------------------------------------------------------------


# fmt: off
@click.command()
@click.option("--repeats", help="Timed runs per entry, after one warm-up run", metavar="INT", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--device",  help="Device to time on",                            type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", help="torch CPU threads; 0 = torch's default",      metavar="INT", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--tables",  help="Tables to print",                              type=click.Choice(["ops", "networks", "all"]), default="all", show_default=True)
# fmt: on
def main(repeats: int, device: str, threads: int, tables: str) -> None:
    """Print times of upfirdn2d's two paths per op shape and per network pass.

    In the op table, * marks the path that impl='auto' picks for that shape."""
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device=cpu")
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    if tables in ("ops", "all"):
        print_op_table(SG2_SHAPES + SG3_SHAPES, repeats, dev)
    if tables in ("networks", "all"):
        print_network_table(repeats, dev)


if __name__ == "__main__":
    main()
