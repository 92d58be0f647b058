"""Custom tensor ops used by the StyleGAN2 and StyleGAN3 networks.

Every op is written with plain PyTorch operations, so autograd differentiates it to any
order. The `impl` argument is the seam where a fused CUDA kernel could be added later; none
exists yet. upfirdn2d has two implementations of its filtering: 'ref' (single-channel
conv2d) and 'matmul' (banded-matrix products), and its default 'auto' takes the matmul
path on the CPU for small and medium images, where it is many times faster
(benchmarks/fir.py).
"""
