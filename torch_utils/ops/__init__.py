"""Custom tensor ops used by the StyleGAN2 networks.

Each op is a pure PyTorch reference implementation selected by `impl='ref'`. The `impl`
argument is the seam where a fused CUDA kernel could be added later; none exists yet.
"""
