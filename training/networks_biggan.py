"""BigGAN generator and projection discriminator at CIFAR scale, following Brock et al., "Large
Scale GAN Training for High Fidelity Natural Image Synthesis" (ICLR 2019).

Both networks use spectral normalization on every convolution and linear layer (Miyato et
al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018) and orthogonal
initialization. The generator splits z into one chunk per stage (hierarchical latents) and
conditions its batch norms on a shared class embedding. The discriminator scores classes by
projection (Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018).

At 32x32 the layout is BigGAN's CIFAR-10 one: G has three up-blocks from a 4x4 start, D has
four residual blocks (32 -> 16 -> 8 -> 8 -> 8), all 4 * ch channels wide.
NOTE: other resolutions (powers of two >= 16) extend that layout at the same constant width.
They are not BigGAN's published 64x64 and larger layouts, whose widths grow with depth.

Running statistics: a training-mode forward normalizes with batch statistics and, unless
G is called with update_emas=False, stores the batch-norm running averages and the
spectral-norm vector u. An eval-mode forward uses the running averages and stores nothing.
No helper re-estimates the running averages of an averaged generator (BigGAN's "standing
statistics"): train.py's BigGAN recipe averages them into G_ema like the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from training.networks_stylegan2 import record_init_kwargs

SN_EPS = 1e-6  # Floor of the norms in the power iteration and of the estimated sigma.
BN_EPS = 1e-5  # Added to the variance in every batch norm.
BN_MOMENTUM = 0.1  # Weight of the newest batch in the running mean and variance.

# Keywords that StyleGAN callers pass to G, which a BigGAN generator accepts and ignores.
STYLEGAN_FORWARD_KWARGS = ("truncation_cutoff", "noise_mode", "force_fp32", "fused_modconv")

# ----------------------------------------------------------------------------
# Spectral normalization.


def spectral_normalize(
    weight: torch.Tensor,  # Weight [out, ...], read as the matrix [out, prod(...)].
    u: torch.Tensor,  # Current estimate of the first left singular vector [out].
    eps: float = SN_EPS,  # Floor of the vector norms and of sigma.
) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide `weight` by its largest singular value, estimated by one power iteration.

    Returns (weight / sigma, new u). The new u is computed without autograd and is a fresh
    tensor, so storing it later never modifies a tensor that a graph has saved. Gradients flow
    through sigma = u'^T W v into the weight. A weight with sigma below eps is divided by eps.
    """
    matrix = weight.flatten(1)
    with torch.no_grad():
        v = F.normalize(torch.mv(matrix.t(), u), dim=0, eps=eps)
        u_new = F.normalize(torch.mv(matrix, v), dim=0, eps=eps)
    sigma = torch.dot(u_new, torch.mv(matrix, v))
    return weight / sigma.clamp_min(eps), u_new


class SpectralNormMixin:
    """Spectral normalization for a layer with a `weight` parameter [out, ...].

    The vector u is a buffer, so it travels with state_dict and deepcopy. Every forward runs
    one power iteration from u, but only a training-mode forward with update=True stores it.
    """

    def _init_spectral_norm(self) -> None:
        torch.nn.init.orthogonal_(self.weight)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)
        u = F.normalize(torch.randn(self.weight.shape[0]), dim=0, eps=SN_EPS)
        self.register_buffer("u", u)

    def normalized_weight(self, update: bool = True) -> torch.Tensor:
        """Return the weight divided by its estimated largest singular value."""
        weight, u_new = spectral_normalize(self.weight, self.u)
        if update and self.training:
            with torch.no_grad():
                self.u.copy_(u_new)
        return weight


class SNConv2d(SpectralNormMixin, torch.nn.Conv2d):
    """Spectrally normalized convolution with stride 1 and 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
        self._init_spectral_norm()

    def forward(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Map [N, in_channels, H, W] to [N, out_channels, H, W]."""
        return self._conv_forward(x, self.normalized_weight(update), self.bias)


class SNLinear(SpectralNormMixin, torch.nn.Linear):
    """Spectrally normalized linear layer."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self._init_spectral_norm()

    def forward(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Map [N, in_features] to [N, out_features]."""
        return F.linear(x, self.normalized_weight(update), self.bias)


# ----------------------------------------------------------------------------
# Batch norm and self-attention.


class RunningStats(torch.nn.Module):
    """Per-channel batch-norm statistics without an affine transform."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_channels = num_channels
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))

    def normalize(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Normalize x [N, C, H, W] per channel.

        Training mode uses the batch statistics and stores them in the running averages when
        `update`. Eval mode uses the running averages.
        """
        if self.training and not update:
            return F.batch_norm(x, None, None, training=True, eps=BN_EPS)
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            training=self.training,
            momentum=BN_MOMENTUM,
            eps=BN_EPS,
        )

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"


class ConditionalBatchNorm(RunningStats):
    """Batch norm whose gain and bias are linear functions of a conditioning vector:
    normalize(x) * (1 + gain(cond)) + bias(cond)."""

    def __init__(self, num_channels: int, cond_dim: int):
        super().__init__(num_channels)
        self.gain = SNLinear(cond_dim, num_channels, bias=False)
        self.bias = SNLinear(cond_dim, num_channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Map x [N, C, H, W] and cond [N, cond_dim] to [N, C, H, W]."""
        gain = 1 + self.gain(cond, update).reshape(-1, self.num_channels, 1, 1)
        bias = self.bias(cond, update).reshape(-1, self.num_channels, 1, 1)
        return self.normalize(x, update) * gain + bias


class BatchNorm(RunningStats):
    """Batch norm with a learned per-channel gain (initially 1) and bias (initially 0)."""

    def __init__(self, num_channels: int):
        super().__init__(num_channels)
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Map [N, C, H, W] to [N, C, H, W]."""
        shape = [1, self.num_channels, 1, 1]
        return self.normalize(x, update) * self.weight.reshape(shape) + self.bias.reshape(shape)


class SelfAttention(torch.nn.Module):
    """Self-attention over spatial positions (Zhang et al., "Self-Attention Generative
    Adversarial Networks", ICML 2019), added to its input with a learned weight gamma.

    Keys (phi) and values (g) are max-pooled 2x2, so H and W must be even. gamma starts at 0,
    which makes the layer the identity at initialization.
    """

    def __init__(self, channels: int):
        super().__init__()
        if channels % 8 != 0:
            raise ValueError(
                f"Invalid self-attention width {channels}: expected a multiple of 8, so change ch"
            )
        self.channels = channels
        self.theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.out = SNConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = torch.nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Map [N, C, H, W] to [N, C, H, W]."""
        N, C, H, W = x.shape
        theta = self.theta(x, update).flatten(2)  # [N, C/8, HW]
        phi = F.max_pool2d(self.phi(x, update), 2).flatten(2)  # [N, C/8, HW/4]
        g = F.max_pool2d(self.g(x, update), 2).flatten(2)  # [N, C/2, HW/4]
        attention = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [N, HW, HW/4]
        o = (g @ attention.transpose(1, 2)).reshape(N, C // 2, H, W)
        return x + self.gamma * self.out(o, update)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


# ----------------------------------------------------------------------------
# Generator.


def reject_unknown_kwargs(owner: str, unknown: dict, valid: list[str]) -> None:
    """Raise TypeError naming the unknown keyword arguments of `owner` and the valid ones."""
    if unknown:
        raise TypeError(
            f"{owner} got unknown keyword argument(s) {sorted(unknown)}. It accepts {valid}. "
            f"StyleGAN options such as num_fp16_res or conv_clamp do not apply to BigGAN."
        )


def check_biggan_resolution(img_resolution: int) -> int:
    """Return log2 of `img_resolution`, raising ValueError unless it is a power of two >= 16."""
    log2 = int(np.log2(img_resolution)) if img_resolution >= 1 else 0
    if img_resolution < 16 or 2**log2 != img_resolution:
        raise ValueError(
            f"Invalid img_resolution {img_resolution} for BigGAN: expected a power of two of "
            f"at least 16 (32 is BigGAN's CIFAR layout)"
        )
    return log2


class GeneratorBlock(torch.nn.Module):
    """Residual up-block: CBN -> ReLU -> 2x nearest upsample -> 3x3 conv -> CBN -> ReLU ->
    3x3 conv, plus a skip of 2x upsample -> 1x1 conv. Doubles H and W."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.bn0 = ConditionalBatchNorm(in_channels, cond_dim)
        self.conv0 = SNConv2d(in_channels, out_channels, 3)
        self.bn1 = ConditionalBatchNorm(out_channels, cond_dim)
        self.conv1 = SNConv2d(out_channels, out_channels, 3)
        self.skip = SNConv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Map x [N, in_channels, H, W] and cond [N, cond_dim] to [N, out_channels, 2H, 2W]."""
        y = F.relu(self.bn0(x, cond, update))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = self.conv0(y, update)
        y = F.relu(self.bn1(y, cond, update))
        y = self.conv1(y, update)
        skip = self.skip(F.interpolate(x, scale_factor=2, mode="nearest"), update)
        return y + skip


class Generator(torch.nn.Module):
    """BigGAN generator: hierarchical latents, a shared class embedding, conditional batch
    norm, optional self-attention. Called whole as G(z, c); there is no mapping network."""

    def __init__(
        self,
        z_dim: int,  # Latent size; split into one equal chunk per up-block plus one.
        c_dim: int,  # One-hot label size (number of classes); 0 = unconditional.
        w_dim: int,  # Unused: BigGAN has no w space. Accepted for the StyleGAN interface.
        img_resolution: int,  # Output resolution, a power of two >= 16.
        img_channels: int,  # Number of output image channels.
        ch: int = 64,  # Width multiplier: every block has 4 * ch channels.
        attn_res: int = 0,  # Self-attention after the up-block with this output; 0 = none.
        embed_dim: int = 128,  # Size of the shared class embedding (ignored when c_dim = 0).
        **unknown: Any,  # Rejected with a TypeError.
    ):
        super().__init__()
        reject_unknown_kwargs("BigGAN Generator", unknown, ["ch", "attn_res", "embed_dim"])
        record_init_kwargs(
            self,
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            ch=ch,
            attn_res=attn_res,
            embed_dim=embed_dim,
        )
        log2 = check_biggan_resolution(img_resolution)
        self.block_resolutions = [2**i for i in range(3, log2 + 1)]  # Up-block outputs.
        num_chunks = len(self.block_resolutions) + 1
        if z_dim <= 0 or z_dim % num_chunks != 0:
            raise ValueError(
                f"Invalid z_dim {z_dim} for a {img_resolution}x{img_resolution} BigGAN "
                f"generator: expected a positive multiple of {num_chunks} (one chunk per "
                f"up-block plus one), e.g. 128"
            )
        if attn_res not in [0] + self.block_resolutions:
            raise ValueError(
                f"Invalid attn_res {attn_res} for the generator: expected 0 (none) or one of "
                f"{self.block_resolutions}"
            )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.attn_res = attn_res
        self.chunk_dim = z_dim // num_chunks
        self.channels = 4 * ch
        self._build_layers(embed_dim)

    def _build_layers(self, embed_dim: int) -> None:
        channels = self.channels
        cond_dim = self.chunk_dim
        if self.c_dim > 0:
            # One-hot c times this weight is an embedding lookup. Not spectrally normalized,
            # like BigGAN's shared embedding.
            self.embed = torch.nn.Linear(self.c_dim, embed_dim, bias=False)
            torch.nn.init.orthogonal_(self.embed.weight)
            cond_dim += embed_dim
        self.linear = SNLinear(self.chunk_dim, channels * 4 * 4)
        for res in self.block_resolutions:
            setattr(self, f"b{res}", GeneratorBlock(channels, channels, cond_dim))
        if self.attn_res:
            self.attn = SelfAttention(channels)
        self.out_bn = BatchNorm(channels)
        self.out_conv = SNConv2d(channels, self.img_channels, 3)

    def forward(
        self,
        z: torch.Tensor,  # Latents [N, z_dim].
        c: torch.Tensor,  # One-hot labels [N, c_dim].
        truncation_psi: float = 1,  # Must be 1: truncate z when sampling instead.
        update_emas: bool = True,  # False = a training-mode pass stores no running statistics.
        **stylegan_kwargs: Any,  # truncation_cutoff, noise_mode, ...: accepted and ignored.
    ) -> torch.Tensor:
        """Return images [N, img_channels, img_resolution, img_resolution] in [-1, 1].

        In training mode the batch norms use batch statistics. With update_emas=True they
        also store them in the running averages, and the spectral norms store their new u;
        update_emas=False leaves both as they were, for probes that must not change training.
        """
        reject_unknown_kwargs(
            "BigGAN Generator.forward",
            {k: v for k, v in stylegan_kwargs.items() if k not in STYLEGAN_FORWARD_KWARGS},
            ["truncation_psi", "update_emas", *STYLEGAN_FORWARD_KWARGS],
        )
        if truncation_psi != 1:
            raise ValueError(
                f"Invalid truncation_psi {truncation_psi} for a BigGAN generator: it has no w "
                f"space to truncate, so use 1"
            )
        misc.assert_shape(z, [None, self.z_dim])
        misc.assert_shape(c, [z.shape[0], self.c_dim])
        update = bool(update_emas)
        chunks = z.split(self.chunk_dim, dim=1)
        embedding = self.embed(c) if self.c_dim > 0 else None
        x = self.linear(chunks[0], update).reshape(-1, self.channels, 4, 4)
        for res, chunk in zip(self.block_resolutions, chunks[1:]):
            cond = chunk if embedding is None else torch.cat([embedding, chunk], dim=1)
            x = getattr(self, f"b{res}")(x, cond, update)
            if res == self.attn_res:
                x = self.attn(x, update)
        x = F.relu(self.out_bn(x, update))
        return torch.tanh(self.out_conv(x, update))

    def extra_repr(self) -> str:
        return (
            f"z_dim={self.z_dim}, c_dim={self.c_dim}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, attn_res={self.attn_res}"
        )


# ----------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(torch.nn.Module):
    """Residual block: ReLU -> 3x3 conv -> ReLU -> 3x3 conv -> 2x2 average pool (when
    downsampling). The skip is a 1x1 conv (then the pool) when the shape changes, else the
    identity. The first block of D omits the leading ReLU and pools before its skip conv."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, first: bool = False):
        super().__init__()
        self.down = down
        self.first = first
        self.conv0 = SNConv2d(in_channels, out_channels, 3)
        self.conv1 = SNConv2d(out_channels, out_channels, 3)
        self.skip = None
        if in_channels != out_channels or down:
            self.skip = SNConv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [N, in_channels, H, W] to [N, out_channels, H', W'] (H' = H / 2 when down)."""
        y = x if self.first else F.relu(x)
        y = self.conv1(F.relu(self.conv0(y)))
        if self.down:
            y = F.avg_pool2d(y, 2)
        return y + self._shortcut(x)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is None:
            return x
        if self.first:
            return self.skip(F.avg_pool2d(x, 2) if self.down else x)
        x = self.skip(x)
        return F.avg_pool2d(x, 2) if self.down else x

    def extra_repr(self) -> str:
        return f"down={self.down}, first={self.first}"


class Discriminator(torch.nn.Module):
    """BigGAN projection discriminator: residual blocks, ReLU, sum over space, a linear logit
    plus <embed(c), h> when conditional.

    Subclasses can observe or change the features between resolutions by overriding
    block_output(), which forward() calls once per resolution, after the last block with that
    output resolution and before any self-attention.
    """

    def __init__(
        self,
        c_dim: int,  # One-hot label size (number of classes); 0 = unconditional.
        img_resolution: int,  # Input resolution, a power of two >= 16.
        img_channels: int,  # Number of input image channels.
        ch: int = 64,  # Width multiplier: every block has 4 * ch channels.
        attn_res: int = 0,  # Self-attention after the first block with this output; 0 = none.
        **unknown: Any,  # Rejected with a TypeError.
    ):
        super().__init__()
        reject_unknown_kwargs("BigGAN Discriminator", unknown, ["ch", "attn_res"])
        record_init_kwargs(
            self,
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            ch=ch,
            attn_res=attn_res,
        )
        log2 = check_biggan_resolution(img_resolution)
        # Output resolution of each block: halve down to 8x8, then two more blocks at 8x8.
        self.block_out_resolutions = [2**i for i in range(log2 - 1, 2, -1)] + [8, 8]
        if attn_res not in [0] + self.block_out_resolutions:
            raise ValueError(
                f"Invalid attn_res {attn_res} for the discriminator: expected 0 (none) or one "
                f"of {sorted(set(self.block_out_resolutions), reverse=True)}"
            )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.attn_res = attn_res
        self.attn_index = self.block_out_resolutions.index(attn_res) if attn_res else None
        channels = 4 * ch
        in_res = img_resolution
        for index, out_res in enumerate(self.block_out_resolutions):
            in_channels = img_channels if index == 0 else channels
            block = DiscriminatorBlock(
                in_channels, channels, down=out_res < in_res, first=index == 0
            )
            setattr(self, f"block{index}", block)
            in_res = out_res
        if attn_res:
            self.attn = SelfAttention(channels)
        self.linear = SNLinear(channels, 1)
        if c_dim > 0:
            self.embed = SNLinear(c_dim, channels, bias=False)  # One-hot c: an embedding.

    def block_output(self, out_res: int, x: torch.Tensor) -> torch.Tensor:
        """Hook on the features [N, C, out_res, out_res] that leave resolution out_res: the
        output of the last block at that resolution (at 32x32: 16 after block 0, and 8 after
        block 3). Returns x unchanged; subclasses may return a modified tensor of the same
        shape. One call per resolution keeps a DMD mask and its 1/(1 - ratio) rescaling
        from being applied again by the residual blocks that follow at the same size."""
        del out_res
        return x

    def forward(
        self,
        img: torch.Tensor,  # Images [N, img_channels, img_resolution, img_resolution].
        c: torch.Tensor,  # One-hot labels [N, c_dim].
        update_emas: bool = False,  # Unused: every training-mode forward stores the SN vector u.
        **block_kwargs: Any,  # Unused, accepted for a signature shared with StyleGAN's D.
    ) -> torch.Tensor:
        """Return logits [N, 1]."""
        del update_emas, block_kwargs
        size = self.img_resolution
        misc.assert_shape(img, [None, self.img_channels, size, size])
        misc.assert_shape(c, [img.shape[0], self.c_dim])
        x = img
        resolutions = self.block_out_resolutions
        for index, out_res in enumerate(resolutions):
            x = getattr(self, f"block{index}")(x)
            if index + 1 == len(resolutions) or resolutions[index + 1] != out_res:
                x = self.block_output(out_res, x)
            if index == self.attn_index:
                x = self.attn(x)
        h = F.relu(x).sum(dim=[2, 3])  # [N, C]
        logits = self.linear(h)
        if self.c_dim > 0:
            logits = logits + (self.embed(c) * h).sum(dim=1, keepdim=True)
        return logits

    def extra_repr(self) -> str:
        return (
            f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, attn_res={self.attn_res}"
        )
