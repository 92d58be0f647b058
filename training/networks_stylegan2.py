"""StyleGAN2 generator and discriminator (config F) following Karras et al., "Analyzing and
Improving the Image Quality of StyleGAN" (CVPR 2020).

Module, parameter and buffer names follow NVIDIA's public StyleGAN2-ADA/StyleGAN3 releases
(`mapping.fc0.weight`, `synthesis.b8.conv0.noise_const`, `b32.skip.weight`, ...), so their
network snapshots can be loaded tensor by tensor. Mixed precision is used only for tensors on
CUDA, so on CPU every block runs in float32 regardless of `num_fp16_res`.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import torch

from dnnlib import EasyDict
from torch_utils import misc
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

NOISE_MODES = ("random", "const", "none")

# ----------------------------------------------------------------------------
# Helpers.


def record_init_kwargs(module: torch.nn.Module, **kwargs: Any) -> EasyDict:
    """Store a deep copy of a constructor's keyword arguments as `module.init_kwargs`, so a
    snapshot can rebuild the module from its class name and these values alone. Raises
    TypeError naming the argument when a value cannot be written as JSON."""
    for name, value in kwargs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{type(module).__name__} argument {name}={value!r} is not JSON-serializable "
                f"({error}); pass ints, floats, strings, lists or dicts"
            ) from None
    module.init_kwargs = EasyDict(copy.deepcopy(kwargs))
    return module.init_kwargs


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` so that its mean square along `dim` is 1."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def check_resolution(img_resolution: int) -> int:
    """Return log2 of `img_resolution`, raising ValueError unless it is a power of two >= 4."""
    log2 = int(np.log2(img_resolution)) if img_resolution >= 1 else 0
    if img_resolution < 4 or 2**log2 != img_resolution:
        raise ValueError(
            f"Invalid img_resolution {img_resolution}: expected a power of two of at least 4"
        )
    return log2


def select_dtype(
    use_fp16: bool, force_fp32: bool, channels_last: bool, device: torch.device
) -> tuple[torch.dtype, torch.memory_format]:
    """Pick the compute dtype and memory format of one block: float16 (and channels_last when
    requested) only for fp16 blocks on CUDA, float32 and contiguous everywhere else."""
    # NOTE: the test suite runs on CPU, so whole blocks in float16 are untested. Only
    # modulated_conv2d's float16 branch is tested, on CPU.
    if use_fp16 and not force_fp32 and device.type == "cuda":
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return torch.float16, memory_format
    return torch.float32, torch.contiguous_format


# ----------------------------------------------------------------------------
# Modulated convolution.


def modulated_conv2d(
    x: torch.Tensor,  # Input activations [N, I, H, W].
    weight: torch.Tensor,  # Shared convolution weight [O, I, kh, kw].
    styles: torch.Tensor,  # Per-sample scale of each input channel [N, I].
    noise: torch.Tensor | None = None,  # Added to the output, broadcast to [N, O, H', W'].
    up: int = 1,  # Integer upsampling factor.
    down: int = 1,  # Integer downsampling factor.
    padding: int = 0,  # Padding of the convolution, in input pixels.
    resample_filter: torch.Tensor | None = None,  # FIR filter for up/down; None = unfiltered.
    demodulate: bool = True,  # Normalize each output channel's modulated weight to unit norm.
    flip_weight: bool = True,  # False = true convolution; True = correlation, as F.conv2d.
    fused_modconv: bool = True,  # One grouped convolution instead of scaling activations.
) -> torch.Tensor:
    """Convolve each sample with the weight scaled per input channel by its style and, when
    `demodulate` is set, renormalized per output channel (eps 1e-8). Returns [N, O, H', W']."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [None, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    # Bring weight and styles to a safe magnitude before float16 arithmetic. Demodulation
    # cancels this scale, so the result is unchanged.
    if x.dtype == torch.float16 and demodulate:
        max_weight = weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / max_weight)
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = demodulation_coefficients(weight, styles) if demodulate else None  # [N, O]
    conv_kwargs = dict(
        f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight
    )
    if not fused_modconv:
        return _modulated_conv2d_unfused(x, weight, styles, dcoefs, noise, conv_kwargs)

    # Fused path: per-sample weights [N, O, I, kh, kw], folded into one grouped convolution.
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x, w.to(x.dtype), groups=batch_size, **conv_kwargs)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Return [N, O]: 1 / sqrt(sum over i, k of (weight[o, i, k] * styles[n, i])^2 + 1e-8), the
    inverse norm of each output channel's modulated weight. One matrix product computes it
    without the per-sample weights, since the sum equals sum over i of styles[n, i]^2 times
    sum over k of weight[o, i, k]^2."""
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def _modulated_conv2d_unfused(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    dcoefs: torch.Tensor | None,
    noise: torch.Tensor | None,
    conv_kwargs: dict,
) -> torch.Tensor:
    """Apply the modulation to the activations instead of the weight: scale the inputs by the
    styles, run the shared convolution, then scale the outputs by the demodulation
    coefficients. Equal to the fused path, and faster when training."""
    batch_size = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
    x = conv2d_resample.conv2d_resample(x, weight.to(x.dtype), **conv_kwargs)
    if dcoefs is not None and noise is not None:
        return fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
    if dcoefs is not None:
        return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
    if noise is not None:
        return x.add_(noise.to(x.dtype))
    return x


# ----------------------------------------------------------------------------
# Equalized-learning-rate layers.


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with the equalized learning rate: weights are stored at unit variance and
    scaled by lr_multiplier / sqrt(in_features) at run time."""

    def __init__(
        self,
        in_features: int,  # Number of input features.
        out_features: int,  # Number of output features.
        bias: bool = True,  # Add a learned bias before the activation.
        activation: str = "linear",  # Activation name from bias_act.activation_funcs.
        lr_multiplier: float = 1.0,  # Learning-rate multiplier of weight and bias.
        bias_init: float = 0.0,  # Initial stored bias; forward() scales it by lr_multiplier.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        init = torch.full([out_features], np.float32(bias_init))
        self.bias = torch.nn.Parameter(init) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [N, in_features] to [N, out_features]."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"activation={self.activation}"
        )


class Conv2dLayer(torch.nn.Module):
    """Convolution with the equalized learning rate, optional FIR-filtered up/downsampling,
    bias, activation and output clamping."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        kernel_size: int,  # Width and height of the square kernel.
        bias: bool = True,  # Add a learned bias before the activation.
        activation: str = "linear",  # Activation name from bias_act.activation_funcs.
        up: int = 1,  # Integer upsampling factor.
        down: int = 1,  # Integer downsampling factor.
        resample_filter: tuple = (1, 3, 3, 1),  # 1D taps of the low-pass resampling filter.
        conv_clamp: float | None = None,  # Clamp outputs to +-this value; None = no clamp.
        channels_last: bool = False,  # Store the weight in channels_last memory format.
        trainable: bool = True,  # False = weight and bias become fixed buffers.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        weight = weight.to(memory_format=memory_format)
        bias_init = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_init) if bias_init is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_init)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        """Map [N, in_channels, H, W] to [N, out_channels, H * up / down, W * up / down]; `gain`
        scales the activation output and the clamp."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample.conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),  # Transposed convolution expects a flipped kernel.
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"activation={self.activation}, up={self.up}, down={self.down}"
        )


# ----------------------------------------------------------------------------
# Mapping network.


class MappingNetwork(torch.nn.Module):
    """MLP from latent z and label c to the intermediate latent w, broadcast to `num_ws`
    copies, with a running average of w for the truncation trick."""

    def __init__(
        self,
        z_dim: int,  # Input latent (z) dimensionality; 0 = no latent input.
        c_dim: int,  # Conditioning label (c) dimensionality; 0 = unconditional.
        w_dim: int,  # Intermediate latent (w) dimensionality.
        num_ws: int | None,  # Number of ws to broadcast to; None = return [N, w_dim].
        num_layers: int = 8,  # Number of fully connected layers.
        embed_features: int | None = None,  # Label embedding size; None = w_dim.
        layer_features: int | None = None,  # Hidden layer width; None = w_dim.
        activation: str = "lrelu",  # Activation of every layer.
        lr_multiplier: float = 0.01,  # Learning-rate multiplier of every layer.
        w_avg_beta: float | None = 0.998,  # Decay of the w average; None = no w_avg buffer.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx],
                features[idx + 1],
                activation=activation,
                lr_multiplier=lr_multiplier,
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,  # [N, z_dim], or None when z_dim == 0.
        c: torch.Tensor | None,  # [N, c_dim], or None when c_dim == 0.
        truncation_psi: float = 1,  # Interpolation from w_avg (0) to w (1).
        truncation_cutoff: int | None = None,  # Truncate only the first ws; None = all.
        update_emas: bool = False,  # Move w_avg toward this batch's mean w.
    ) -> torch.Tensor:
        """Return ws [N, num_ws, w_dim], or w [N, w_dim] when num_ws is None."""
        x = self._embed_inputs(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        # Track the average w: w_avg <- beta * w_avg + (1 - beta) * mean(w).
        if update_emas and self.w_avg_beta is not None and self.num_ws is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _embed_inputs(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """Normalize z and the embedded label and concatenate them: [N, z_dim + embed]."""
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        if x is None:
            raise ValueError("MappingNetwork has no input: set z_dim > 0 or c_dim > 0")
        return x

    def _truncate(self, x: torch.Tensor, psi: float, cutoff: int | None) -> torch.Tensor:
        """Interpolate ws toward w_avg by `psi`, for the first `cutoff` ws (None = all)."""
        if not hasattr(self, "w_avg"):
            raise ValueError(
                f"truncation_psi={psi} needs w_avg, but this MappingNetwork was built with "
                "num_ws=None or w_avg_beta=None; pass truncation_psi=1"
            )
        if self.num_ws is None or cutoff is None:
            return self.w_avg.lerp(x, psi)
        x = x.clone()
        x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# ----------------------------------------------------------------------------
# Synthesis network.


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution with per-pixel noise, bias and leaky ReLU."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        w_dim: int,  # Intermediate latent (w) dimensionality.
        resolution: int,  # Output resolution.
        kernel_size: int = 3,  # Convolution kernel size.
        up: int = 1,  # Integer upsampling factor.
        use_noise: bool = True,  # Add per-pixel noise scaled by a learned strength.
        activation: str = "lrelu",  # Activation name from bias_act.activation_funcs.
        resample_filter: tuple = (1, 3, 3, 1),  # 1D taps of the low-pass resampling filter.
        conv_clamp: float | None = None,  # Clamp outputs to +-this value; None = no clamp.
        channels_last: bool = False,  # Store the weight in channels_last memory format.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,  # [N, in_channels, resolution / up, resolution / up].
        w: torch.Tensor,  # [N, w_dim].
        noise_mode: str = "random",  # 'random' = fresh noise, 'const' = noise_const, 'none'.
        fused_modconv: bool = True,  # See modulated_conv2d().
        gain: float = 1,  # Extra gain of the activation output and the clamp.
    ) -> torch.Tensor:
        """Return [N, out_channels, resolution, resolution]."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"Invalid noise_mode {noise_mode!r}: expected one of {NOISE_MODES}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.in_channels, in_resolution, in_resolution])
        styles = self.affine(w)

        # Noise [N, 1, res, res] or [res, res], scaled by the learned strength.
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            # NOTE: draws from torch's global generator; seed it with torch.manual_seed().
            noise = torch.randn(shape, device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(
            x=x,
            weight=self.weight,
            styles=styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),  # Transposed convolution expects a flipped kernel.
            fused_modconv=fused_modconv,
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype)
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"w_dim={self.w_dim}, resolution={self.resolution}, up={self.up}, "
            f"activation={self.activation}"
        )


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of image channels.
        w_dim: int,  # Intermediate latent (w) dimensionality.
        kernel_size: int = 1,  # Convolution kernel size.
        conv_clamp: float | None = None,  # Clamp outputs to +-this value; None = no clamp.
        channels_last: bool = False,  # Store the weight in channels_last memory format.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        """Map [N, in_channels, H, W] and w [N, w_dim] to [N, out_channels, H, W]."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(
            x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv
        )
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}"
        )


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: an upsampling modulated conv, a plain one and
    an RGB output. The first block replaces the upsampling conv with a learned constant."""

    def __init__(
        self,
        in_channels: int,  # Input channels; 0 = first block, which starts from a constant.
        out_channels: int,  # Output channels.
        w_dim: int,  # Intermediate latent (w) dimensionality.
        resolution: int,  # Output resolution of this block.
        img_channels: int,  # Number of image channels.
        is_last: bool,  # Whether this is the highest-resolution block.
        architecture: str = "skip",  # 'orig', 'skip' or 'resnet'.
        resample_filter: tuple = (1, 3, 3, 1),  # 1D taps of the low-pass resampling filter.
        conv_clamp: float | None = 256,  # Clamp conv outputs to +-this value; None = no clamp.
        use_fp16: bool = False,  # Run in float16 on CUDA (never on CPU).
        fp16_channels_last: bool = False,  # Use channels_last while running in float16.
        fused_modconv_default: bool | str = True,  # Default of forward(fused_modconv=None):
        # True, False or 'inference_only' (fused in eval mode on CUDA, unfused otherwise).
        **layer_kwargs: Any,  # Extra arguments of every SynthesisLayer.
    ):
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(
                f"Invalid SynthesisBlock architecture {architecture!r}: "
                "expected 'orig', 'skip' or 'resnet'"
            )
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        conv_kwargs = dict(
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, up=2, resample_filter=resample_filter, **conv_kwargs
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **conv_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,  # Features [N, in_channels, res / 2, res / 2]; None at b4.
        img: torch.Tensor | None,  # Image so far [N, img_channels, res / 2, res / 2] or None.
        ws: torch.Tensor,  # [N, num_conv + num_torgb, w_dim].
        force_fp32: bool = False,  # Run in float32 even when use_fp16 is set.
        fused_modconv: bool | str | None = None,  # None = fused_modconv_default.
        update_emas: bool = False,  # Unused; accepted so callers can pass it to every block.
        **layer_kwargs: Any,  # Passed to every SynthesisLayer.forward (noise_mode).
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return features [N, out_channels, res, res] (in the block's dtype) and the float32
        image [N, img_channels, res, res] (None for a non-last 'orig'/'resnet' block)."""
        del update_emas
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype, memory_format = select_dtype(
            self.use_fp16, force_fp32, self.channels_last, ws.device
        )
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            # NVIDIA's rule on CUDA. On the CPU the grouped convolution was up to 25 times
            # slower, in inference too, and never faster beyond noise (docs/benchmarks.md).
            fused_modconv = not self.training and ws.device.type != "cpu"
        layer_kwargs = dict(fused_modconv=fused_modconv, **layer_kwargs)

        # Main path.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **layer_kwargs)
        else:
            half = self.resolution // 2
            misc.assert_shape(x, [None, self.in_channels, half, half])
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self._convolve(x, w_iter, layer_kwargs)

        # Image path: upsample the previous image and add this block's RGB output.
        if img is not None:
            half = self.resolution // 2
            misc.assert_shape(img, [None, self.img_channels, half, half])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def _convolve(self, x: torch.Tensor, w_iter, layer_kwargs: dict) -> torch.Tensor:
        """Run conv0 (upsampling) and conv1, with the residual skip for 'resnet'."""
        if self.architecture != "resnet":
            x = self.conv0(x, next(w_iter), **layer_kwargs)
            return self.conv1(x, next(w_iter), **layer_kwargs)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x, next(w_iter), **layer_kwargs)
        x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer_kwargs)
        return y.add_(x)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class SynthesisNetwork(torch.nn.Module):
    """Stack of SynthesisBlocks from 4x4 up to img_resolution, mapping ws to an image."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (w) dimensionality.
        img_resolution: int,  # Output resolution, a power of two >= 4.
        img_channels: int,  # Number of output image channels.
        channel_base: int = 32768,  # Channels at resolution r are channel_base // r ...
        channel_max: int = 512,  # ... capped at channel_max.
        num_fp16_res: int = 4,  # Run the highest resolutions in float16 on CUDA; 0 = none.
        **block_kwargs: Any,  # Extra arguments of every SynthesisBlock.
    ):
        super().__init__()
        log2 = check_resolution(img_resolution)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels=channels[res // 2] if res > 4 else 0,
                out_channels=channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            # Neighboring blocks share a w: each block's RGB output uses the next block's
            # first w, so only the last block adds its torgb w to the count.
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, **block_kwargs: Any) -> torch.Tensor:
        """Map ws [N, num_ws, w_dim] to a float32 image [N, img_channels, res, res].
        `block_kwargs` (noise_mode, force_fp32, fused_modconv, update_emas) reach every
        block."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}"
        )


class Generator(torch.nn.Module):
    """StyleGAN2 generator: a MappingNetwork (z, c -> ws) followed by a SynthesisNetwork.

    Subclasses with other mapping or synthesis networks (StyleGAN3) set the two class
    attributes below.
    """

    mapping_class: type = MappingNetwork
    synthesis_class: type = SynthesisNetwork

    def __init__(
        self,
        z_dim: int,  # Input latent (z) dimensionality; 0 = none, then c_dim must be > 0.
        c_dim: int,  # Conditioning label (c) dimensionality; 0 = unconditional.
        w_dim: int,  # Intermediate latent (w) dimensionality.
        img_resolution: int,  # Output resolution, a power of two >= 4.
        img_channels: int,  # Number of output image channels.
        mapping_kwargs: dict | None = None,  # Extra arguments of MappingNetwork; None = {}.
        **synthesis_kwargs: Any,  # Extra arguments of SynthesisNetwork and its blocks.
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        record_init_kwargs(
            self,
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=mapping_kwargs,
            **synthesis_kwargs,
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = self.synthesis_class(
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            **synthesis_kwargs,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = self.mapping_class(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs
        )

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim].
        c: torch.Tensor,  # [N, c_dim].
        truncation_psi: float = 1,  # Interpolation from w_avg (0) to w (1).
        truncation_cutoff: int | None = None,  # Truncate only the first ws; None = all.
        update_emas: bool = False,  # Update w_avg (and StyleGAN3's magnitude_ema) from this batch.
        **synthesis_kwargs: Any,  # noise_mode, force_fp32, fused_modconv (StyleGAN3: no noise).
    ) -> torch.Tensor:
        """Return images [N, img_channels, img_resolution, img_resolution], about [-1, 1]."""
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


# ----------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: two 3x3 convs, the second halving the
    resolution, with a 1x1 residual skip ('resnet')."""

    def __init__(
        self,
        in_channels: int,  # Input channels; 0 = first block, which reads the image.
        tmp_channels: int,  # Channels of the intermediate features.
        out_channels: int,  # Output channels.
        resolution: int,  # Input resolution of this block; the output is half of it.
        img_channels: int,  # Number of image channels.
        first_layer_idx: int,  # Index of this block's first layer, counted from the input.
        architecture: str = "resnet",  # 'orig', 'skip' or 'resnet'.
        activation: str = "lrelu",  # Activation name from bias_act.activation_funcs.
        resample_filter: tuple = (1, 3, 3, 1),  # 1D taps of the low-pass resampling filter.
        conv_clamp: float | None = None,  # Clamp conv outputs to +-this value; None = no clamp.
        use_fp16: bool = False,  # Run in float16 on CUDA (never on CPU).
        fp16_channels_last: bool = False,  # Use channels_last while running in float16.
        freeze_layers: int = 0,  # Layers with index below this are frozen (buffers); 0 = none.
    ):
        if in_channels not in (0, tmp_channels):
            raise ValueError(
                f"Invalid DiscriminatorBlock in_channels={in_channels}: expected 0 (first "
                f"block) or tmp_channels={tmp_channels}"
            )
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(
                f"Invalid DiscriminatorBlock architecture {architecture!r}: "
                "expected 'orig', 'skip' or 'resnet'"
            )
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args: Any, **kwargs: Any) -> Conv2dLayer:
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            kwargs.setdefault("channels_last", self.channels_last)
            return Conv2dLayer(*args, trainable=trainable, **kwargs)

        conv_kwargs = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, **conv_kwargs)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, **conv_kwargs)
        self.conv1 = layer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            down=2,
            resample_filter=resample_filter,
            **conv_kwargs,
        )
        if architecture == "resnet":
            self.skip = layer(
                tmp_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                down=2,
                resample_filter=resample_filter,
            )

    def forward(
        self,
        x: torch.Tensor | None,  # Features [N, in_channels, res, res]; None at the first block.
        img: torch.Tensor | None,  # Image [N, img_channels, res, res] or None.
        force_fp32: bool = False,  # Run in float32 even when use_fp16 is set.
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return features [N, out_channels, res / 2, res / 2] and, for 'skip', the image
        downsampled to res / 2 (else None)."""
        device = (x if x is not None else img).device
        dtype, memory_format = select_dtype(self.use_fp16, force_fp32, self.channels_last, device)
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Image input.
        if self.in_channels == 0 or self.architecture == "skip":
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            if self.architecture == "skip":
                img = upfirdn2d.downsample2d(img, self.resample_filter)
            else:
                img = None

        # Main path.
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class MinibatchStdLayer(torch.nn.Module):
    """Append the standard deviation across a group of samples as extra feature maps."""

    def __init__(
        self,
        group_size: int | None,  # Samples per group; None = the whole minibatch.
        num_channels: int = 1,  # Number of statistics (channel groups) appended.
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [N, C, H, W] to [N, C + num_channels, H, W]. Sample n joins group n % (N / G),
        where G = min(group_size, N) must divide N."""
        N, C, H, W = x.shape
        G = N if self.group_size is None else min(self.group_size, N)
        F = self.num_channels
        c = C // F
        if N % G != 0 or C % F != 0:
            raise ValueError(
                f"MinibatchStdLayer: batch size {N} must be a multiple of the group size {G} "
                f"and channels {C} a multiple of num_channels {F}; change the batch size or "
                "mbstd_group_size"
            )

        y = x.reshape(G, -1, F, c, H, W)  # [G, N / G, F, c, H, W]
        y = y - y.mean(dim=0)  # Deviation from the group mean.
        y = y.square().mean(dim=0)  # Variance over the group: [N / G, F, c, H, W].
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # Average over channels and pixels: [N / G, F].
        y = y.reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(torch.nn.Module):
    """Final 4x4 stage: minibatch standard deviation, a 3x3 conv, two dense layers and the
    projection onto the label embedding when conditional."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        cmap_dim: int,  # Label embedding size; 0 = unconditional, one logit from `out`.
        resolution: int,  # Input resolution (4).
        img_channels: int,  # Number of image channels.
        architecture: str = "resnet",  # 'orig', 'skip' or 'resnet'.
        mbstd_group_size: int | None = 4,  # Minibatch-std group; None = whole minibatch.
        mbstd_num_channels: int = 1,  # Minibatch-std features appended; 0 = no mbstd layer.
        activation: str = "lrelu",  # Activation name from bias_act.activation_funcs.
        conv_clamp: float | None = None,  # Clamp conv outputs to +-this value; None = no clamp.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation=activation)
        self.mbstd = None
        if mbstd_num_channels > 0:
            self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(
            in_channels * resolution**2, in_channels, activation=activation
        )
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(
        self,
        x: torch.Tensor,  # Features [N, in_channels, 4, 4].
        img: torch.Tensor | None,  # Image [N, img_channels, 4, 4] for 'skip', else None.
        cmap: torch.Tensor | None,  # Label embedding [N, cmap_dim], None when unconditional.
        force_fp32: bool = False,  # Unused; the epilogue always runs in float32.
    ) -> torch.Tensor:
        """Return logits [N, 1]."""
        del force_fp32
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            x = x + self.fromrgb(img.to(torch.float32))

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))  # [N, in_channels]
        x = self.out(x)  # [N, max(cmap_dim, 1)]

        # Projection discriminator: score = <out, cmap> / sqrt(cmap_dim).
        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class Discriminator(torch.nn.Module):
    """StyleGAN2 residual discriminator, conditioned by projection onto a label embedding.

    Subclasses can observe or change the features between blocks by overriding
    block_output(), which forward() calls after every DiscriminatorBlock."""

    def __init__(
        self,
        c_dim: int,  # Conditioning label (c) dimensionality; 0 = unconditional.
        img_resolution: int,  # Input resolution, a power of two >= 4.
        img_channels: int,  # Number of input image channels.
        architecture: str = "resnet",  # 'orig', 'skip' or 'resnet'.
        channel_base: int = 32768,  # Channels at resolution r are channel_base // r ...
        channel_max: int = 512,  # ... capped at channel_max.
        num_fp16_res: int = 4,  # Run the highest resolutions in float16 on CUDA; 0 = none.
        conv_clamp: float | None = 256,  # Clamp conv outputs to +-this value; None = no clamp.
        cmap_dim: int | None = None,  # Label embedding size; None = channels at 4x4.
        block_kwargs: dict | None = None,  # Extra arguments of each block; None = {}.
        mapping_kwargs: dict | None = None,  # Extra arguments of the label mapping; None = {}.
        epilogue_kwargs: dict | None = None,  # Extra arguments of the epilogue; None = {}.
    ):
        super().__init__()
        block_kwargs = dict(block_kwargs or {})
        mapping_kwargs = dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        record_init_kwargs(
            self,
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            architecture=architecture,
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp,
            cmap_dim=cmap_dim,
            block_kwargs=block_kwargs,
            mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs,
        )
        log2 = check_resolution(img_resolution)
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {
            res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]
        }
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim

        common_kwargs = dict(
            img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp
        )
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                in_channels=channels[res] if res < img_resolution else 0,
                tmp_channels=channels[res],
                out_channels=channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
                **common_kwargs,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common_kwargs
        )

    def block_output(self, out_res: int, x: torch.Tensor) -> torch.Tensor:
        """Hook on the output [N, C, out_res, out_res] of block b{2 * out_res}, called on every
        forward for out_res = img_resolution / 2 down to 4. Returns x unchanged; subclasses
        may return a modified tensor of the same shape."""
        del out_res
        return x

    def forward(
        self,
        img: torch.Tensor,  # Images [N, img_channels, img_resolution, img_resolution].
        c: torch.Tensor,  # Labels [N, c_dim].
        update_emas: bool = False,  # Unused; accepted for a signature shared with G.
        **block_kwargs: Any,  # Passed to every DiscriminatorBlock.forward (force_fp32).
    ) -> torch.Tensor:
        """Return logits [N, 1]."""
        del update_emas
        size = self.img_resolution
        misc.assert_shape(img, [None, self.img_channels, size, size])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
            x = self.block_output(res // 2, x)

        cmap = None
        if self.c_dim > 0:
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)

    def extra_repr(self) -> str:
        return (
            f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}"
        )
