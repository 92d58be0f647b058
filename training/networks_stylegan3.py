"""StyleGAN3 generator (configs -T and -R) following Karras et al., "Alias-Free Generative
Adversarial Networks" (NeurIPS 2021).

The synthesis network treats every feature map as a band-limited continuous signal. It starts
from Fourier features. Each layer runs a modulated convolution and then a leaky ReLU, which is
evaluated at a raised sampling rate between two windowed-sinc low-pass filters
(filtered_lrelu). Cutoffs, stopbands, sampling rates and widths follow a per-layer schedule.

Module, parameter and buffer names follow NVIDIA's public StyleGAN3 release (`mapping.fc0`,
`synthesis.input.freqs`, `synthesis.L3_36_512.down_filter`, ...), so training/legacy.py copies
the tensors of their network pickles by name. Mixed precision is used only for tensors on
CUDA, so on CPU every layer runs in float32 regardless of `num_fp16_res`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils.ops import filtered_lrelu
from training import networks_stylegan2
from training.networks_stylegan2 import (
    NOISE_MODES,
    FullyConnectedLayer,
    select_dtype,
)

# ----------------------------------------------------------------------------
# Filter design and the per-layer schedule.


def design_lowpass_filter(
    numtaps: int,  # Number of taps; 1 = no filter.
    cutoff: float,  # Cutoff frequency, in the same unit as fs.
    width: float,  # Width of the transition band (twice the half-width), same unit.
    fs: float,  # Sampling rate.
    radial: bool = False,  # Radially symmetric 2D jinc instead of a separable 1D sinc.
) -> torch.Tensor | None:
    """Design a Kaiser-windowed low-pass FIR filter. Returns float32 taps [numtaps] (apply
    along both axes), [numtaps, numtaps] when `radial`, or None when numtaps is 1. The radial
    filter's window is the outer product of two 1D Kaiser windows, so its taps are radially
    symmetric only up to that window."""
    if numtaps < 1:
        raise ValueError(f"Invalid filter length numtaps={numtaps}: expected at least 1")
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)

    # Jinc, the impulse response of an ideal disc-shaped low-pass filter: J1(2 pi c r) /
    # (pi r), whose limit at r = 0 is c. The taps are normalized to unit sum below.
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    safe_r = np.where(r == 0, 1.0, r)
    jinc = scipy.special.j1(2 * np.pi * cutoff * safe_r) / (np.pi * safe_r)
    taps = np.where(r == 0, cutoff, jinc)
    attenuation = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    window = np.kaiser(numtaps, scipy.signal.kaiser_beta(attenuation))
    taps = taps * np.outer(window, window)
    taps = taps / taps.sum()
    return torch.as_tensor(taps, dtype=torch.float32)


def design_schedule(
    img_resolution: int,
    img_channels: int,
    channel_base: int,
    channel_max: int,
    num_layers: int,
    num_critical: int,
    first_cutoff: float,
    first_stopband: float,
    last_stopband_rel: float,
    margin_size: int,
) -> dict[str, np.ndarray]:
    """Compute the per-layer schedule of the synthesis network as arrays over index 0 (the
    input) to num_layers (ToRGB): cutoffs, stopbands, sampling_rates, half_widths, sizes and
    channels. Cutoffs and stopbands rise geometrically over the first num_layers -
    num_critical layers and then stay at their final values."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents

    # Each rate is the smallest power of two >= min(2 * stopband, img_resolution), so the
    # stopband lies below Nyquist except in the last layers. The margin keeps border effects
    # away from the image area.
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(
        cutoffs=cutoffs,
        stopbands=stopbands,
        sampling_rates=sampling_rates,
        half_widths=half_widths,
        sizes=sizes.astype(np.int64),
        channels=channels.astype(np.int64),
    )


# ----------------------------------------------------------------------------
# Modulated convolution.


def modulated_conv2d(
    x: torch.Tensor,  # Input activations [N, I, H, W].
    weight: torch.Tensor,  # Shared convolution weight [O, I, kh, kw].
    styles: torch.Tensor,  # Per-sample scale of each input channel [N, I].
    demodulate: bool = True,  # Normalize each output channel's modulated weight to unit norm.
    padding: int = 0,  # Zero padding of the input on every side.
    input_gain: torch.Tensor | None = None,  # Scale of the input, a scalar or [N, I].
    fused: bool = True,  # True: one grouped convolution. False: scale the activations.
) -> torch.Tensor:
    """Correlate each sample with the weight scaled per input channel by its style. With
    `demodulate`, weight and styles are first scaled to unit mean square (which keeps float16
    in range and changes the result only through the 1e-8 epsilon), then each output channel
    is renormalized. Returns [N, O, H', W']."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(x, [None, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    if not fused:
        return _modulated_conv2d_unfused(x, weight, styles, demodulate, padding, input_gain)
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, in_channels, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(batch_size, out_channels, 1, 1, 1)
    if input_gain is not None:
        input_gain = input_gain.expand(batch_size, in_channels)
        w = w * input_gain.reshape(batch_size, 1, in_channels, 1, 1)

    # Fold the batch into the channel axis: [1, N * I, H, W] with N groups.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = F.conv2d(x, w.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, -1, *x.shape[2:])


def _modulated_conv2d_unfused(x, weight, styles, demodulate, padding, input_gain):
    """Run modulated_conv2d() with the shared weight: scale the inputs by styles * input_gain,
    convolve, then scale the outputs by the demodulation coefficients."""
    batch_size, in_channels = styles.shape
    scale = styles
    if input_gain is not None:
        scale = scale * input_gain.expand(batch_size, in_channels)
    x = x * scale.to(x.dtype).reshape(batch_size, in_channels, 1, 1)
    x = F.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        dcoefs = networks_stylegan2.demodulation_coefficients(weight, styles)  # [N, O]
        x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
    return x


# ----------------------------------------------------------------------------
# Mapping network.


class MappingNetwork(networks_stylegan2.MappingNetwork):
    """StyleGAN2's mapping network with StyleGAN3's defaults: two layers, and the label
    embedding and hidden layers as wide as w."""

    def __init__(
        self,
        z_dim: int,  # Input latent (z) dimensionality; 0 = no latent input.
        c_dim: int,  # Conditioning label (c) dimensionality; 0 = unconditional.
        w_dim: int,  # Intermediate latent (w) dimensionality.
        num_ws: int,  # Number of ws to broadcast to.
        num_layers: int = 2,  # Number of fully connected layers.
        lr_multiplier: float = 0.01,  # Learning-rate multiplier of every layer.
        w_avg_beta: float = 0.998,  # Decay of the running average of w.
    ):
        super().__init__(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            num_ws=num_ws,
            num_layers=num_layers,
            lr_multiplier=lr_multiplier,
            w_avg_beta=w_avg_beta,
        )


# ----------------------------------------------------------------------------
# Synthesis network.


class SynthesisInput(torch.nn.Module):
    """Fourier features: `channels` sinusoids with random frequencies inside a disc of radius
    `bandwidth`, sampled on a size x size grid, rotated and translated per sample by a
    transform predicted from w, then mixed by a learned channels x channels matrix.

    Coordinates: the image spans [-0.5, 0.5] along x (width) and y (height), so one output
    pixel is 1 / img_resolution. The `transform` buffer (3x3, homogeneous, identity by
    default) maps output coordinates to input coordinates: the output at point p is the
    untransformed signal at transform @ p. To move the image content by a translation and
    rotation M, set transform to inverse(M). The buffer may also be replaced by one of shape
    [N, 3, 3], one matrix per sample of a batch of N, as the equivariance metrics do."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (w) dimensionality.
        channels: int,  # Number of output channels (sinusoids).
        size: int,  # Output width and height in samples, including the margin.
        sampling_rate: float,  # Samples per unit length.
        bandwidth: float,  # Maximum frequency of the sinusoids, cycles per unit length.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = int(size)
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)

        # Frequencies uniform over the disc: uniform direction, radius sqrt(u) * bandwidth.
        directions = torch.randn([channels, 2])
        directions = directions / directions.norm(dim=1, keepdim=True)
        radii = torch.rand([channels, 1]).sqrt() * self.bandwidth
        self.register_buffer("freqs", directions * radii)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)  # In cycles.
        self.register_buffer("transform", torch.eye(3))
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))

        # Per-sample rotation (cos, sin) and translation (tx, ty), starting at the identity.
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Map w [N, w_dim] to features [N, channels, size, size]."""
        misc.assert_shape(w, [None, self.w_dim])
        freqs, phases = self._transform_frequencies(self._learned_transform(w))

        # Fade out frequencies that a scaling transform pushes above the bandwidth, reaching
        # zero at the Nyquist frequency.
        fade_band = self.sampling_rate / 2 - self.bandwidth
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / fade_band).clamp(0, 1)

        # Sample centers: (i + 0.5 - size / 2) / sampling_rate along each axis.
        coords = (torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5) - (
            self.size / 2
        )
        coords = coords / self.sampling_rate
        grid_y, grid_x = torch.meshgrid(coords, coords, indexing="ij")
        grid = torch.stack([grid_x, grid_y], dim=2)  # [H, W, 2] as (x, y)

        x = torch.einsum("hwk,nck->nhwc", grid, freqs) + phases.reshape(-1, 1, 1, self.channels)
        x = torch.sin(x * (2 * math.pi)) * amplitudes.reshape(-1, 1, 1, self.channels)
        x = x @ (self.weight / math.sqrt(self.channels)).t()  # [N, H, W, C]
        return x.permute(0, 3, 1, 2).contiguous()

    def _learned_transform(self, w: torch.Tensor) -> torch.Tensor:
        """Return [N, 3, 3]: rotation @ translation from w, applied after `transform` ([3, 3]
        shared by all samples or [N, 3, 3] per sample)."""
        t = self.affine(w)  # [N, 4]: cos, sin, tx, ty, up to a common scale.
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])
        rotation = eye.clone()
        rotation[:, 0, 0] = t[:, 0]
        rotation[:, 0, 1] = -t[:, 1]
        rotation[:, 1, 0] = t[:, 1]
        rotation[:, 1, 1] = t[:, 0]
        translation = eye.clone()
        translation[:, 0, 2] = -t[:, 2]
        translation[:, 1, 2] = -t[:, 3]
        transform = self.transform
        if transform.ndim == 2:
            transform = transform.unsqueeze(0)
        elif transform.shape[0] != w.shape[0]:
            raise ValueError(
                f"SynthesisInput transform has shape {list(transform.shape)}, but the batch has "
                f"{w.shape[0]} samples: expected [3, 3] or [{w.shape[0]}, 3, 3]"
            )
        return rotation @ translation @ transform

    def _transform_frequencies(self, transforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewrite sin(2 pi (f . (A p + b) + phase)) as sin(2 pi (f' . p + phase')): return
        f' = f A [N, C, 2] and phase' = phase + f . b [N, C]."""
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        return freqs, phases

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
            f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"
        )


class SynthesisLayer(torch.nn.Module):
    """Modulated convolution followed by a filtered leaky ReLU: upsample to a temporary rate,
    apply the nonlinearity there, low-pass filter and downsample to the output rate. The last
    layer (ToRGB) is a 1x1 convolution without demodulation or nonlinearity."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (w) dimensionality.
        is_torgb: bool,  # The last layer: 1x1 conv to image channels, linear, no filters.
        is_critically_sampled: bool,  # Cutoff at Nyquist, so never a radial filter.
        use_fp16: bool,  # Run in float16 on CUDA (never on CPU).
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        in_size: int,  # Input width and height in samples, including the margin.
        out_size: int,  # Output width and height in samples, including the margin.
        in_sampling_rate: float,  # Sampling rate of the input.
        out_sampling_rate: float,  # Sampling rate of the output.
        in_cutoff: float,  # Cutoff of the input signal (designs the upsampling filter).
        out_cutoff: float,  # Cutoff of the output signal (designs the downsampling filter).
        in_half_width: float,  # Half-width of the input's transition band.
        out_half_width: float,  # Half-width of the output's transition band.
        conv_kernel: int = 3,  # Convolution kernel size (ToRGB always uses 1).
        filter_size: int = 6,  # Filter taps per factor of up/downsampling.
        lrelu_upsampling: int = 2,  # Extra oversampling of the nonlinearity; ToRGB uses 1.
        use_radial_filters: bool = False,  # Radially symmetric downsampling filter (-R).
        conv_clamp: float | None = 256,  # Clamp outputs to +-this value; None = no clamp.
        magnitude_ema_beta: float = 0.999,  # Decay of the input magnitude average.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (
            1 if is_torgb else lrelu_upsampling
        )
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        shape = [out_channels, in_channels, self.conv_kernel, self.conv_kernel]
        self.weight = torch.nn.Parameter(torch.randn(shape))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self._design_filters(filter_size, use_radial_filters)
        self.padding = self._compute_padding()

    def _design_filters(self, filter_size: int, use_radial_filters: bool) -> None:
        """Set the resampling factors and the `up_filter` and `down_filter` buffers."""
        self.up_factor = self._resampling_factor(self.in_sampling_rate, "in_sampling_rate")
        self.down_factor = self._resampling_factor(self.out_sampling_rate, "out_sampling_rate")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 else 1
        if self.is_torgb:
            self.up_taps = self.down_taps = 1
        self.down_radial = use_radial_filters and not self.is_critically_sampled
        up_filter = design_lowpass_filter(
            numtaps=self.up_taps,
            cutoff=self.in_cutoff,
            width=self.in_half_width * 2,
            fs=self.tmp_sampling_rate,
        )
        down_filter = design_lowpass_filter(
            numtaps=self.down_taps,
            cutoff=self.out_cutoff,
            width=self.out_half_width * 2,
            fs=self.tmp_sampling_rate,
            radial=self.down_radial,
        )
        self.register_buffer("up_filter", up_filter)
        self.register_buffer("down_filter", down_filter)

    def _resampling_factor(self, rate: float, name: str) -> int:
        """Return tmp_sampling_rate / rate, raising ValueError unless it is an integer."""
        factor = int(np.rint(self.tmp_sampling_rate / rate))
        if factor < 1 or rate * factor != self.tmp_sampling_rate:
            raise ValueError(
                f"Invalid SynthesisLayer {name}={rate}: the temporary sampling rate "
                f"{self.tmp_sampling_rate} must be an integer multiple of it"
            )
        return factor

    def _compute_padding(self) -> list[int]:
        """Return [x0, x1, y0, y1], the padding of the upsampled signal that makes the output
        exactly out_size after both filters."""
        # Upsampled length before filtering that yields out_size samples after the down
        # filter and keeping every down_factor-th sample, minus what the conv output gives.
        conv_size = self.in_size + self.conv_kernel - 1
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= conv_size * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        # Zero insertion puts each input sample at the start of its up_factor block. Shifting
        # by up_factor / 2 centers it, so the input and output sample grids stay aligned.
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        return [int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)]

    def forward(
        self,
        x: torch.Tensor,  # [N, in_channels, in_size, in_size].
        w: torch.Tensor,  # [N, w_dim].
        noise_mode: str = "random",  # Ignored, since StyleGAN3 has no noise inputs.
        force_fp32: bool = False,  # Run in float32 even when use_fp16 is set.
        update_emas: bool = False,  # Update magnitude_ema from this batch's input.
    ) -> torch.Tensor:
        """Return [N, out_channels, out_size, out_size]."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"Invalid noise_mode {noise_mode!r}: expected one of {NOISE_MODES}")
        misc.assert_shape(x, [None, self.in_channels, self.in_size, self.in_size])
        misc.assert_shape(w, [x.shape[0], self.w_dim])

        # Normalize the input by the running average of its mean square.
        if update_emas:
            magnitude = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        dtype, _ = select_dtype(self.use_fp16, force_fp32, False, x.device)
        x = modulated_conv2d(
            x=x.to(dtype),
            weight=self.weight,
            styles=styles,
            padding=self.conv_kernel - 1,
            demodulate=not self.is_torgb,
            input_gain=input_gain,
            # On the CPU the grouped convolution was up to 25 times slower at StyleGAN2's layer
            # shapes, and never faster beyond noise (docs/benchmarks.md). CUDA keeps NVIDIA's.
            fused=x.device.type != "cpu",
        )
        x = filtered_lrelu.filtered_lrelu(
            x,
            fu=self.up_filter,
            fd=self.down_filter,
            b=self.bias.to(x.dtype),
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1 if self.is_torgb else math.sqrt(2),
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )
        misc.assert_shape(x, [None, self.out_channels, self.out_size, self.out_size])
        assert x.dtype == dtype
        return x

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, is_torgb={self.is_torgb}, "
            f"is_critically_sampled={self.is_critically_sampled}, use_fp16={self.use_fp16},\n"
            f"in_sampling_rate={self.in_sampling_rate:g}, "
            f"out_sampling_rate={self.out_sampling_rate:g},\n"
            f"in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g},\n"
            f"in_half_width={self.in_half_width:g}, out_half_width={self.out_half_width:g},\n"
            f"in_size={self.in_size}, out_size={self.out_size},\n"
            f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        )


class SynthesisNetwork(torch.nn.Module):
    """Fourier-feature input followed by num_layers + 1 SynthesisLayers, the last one ToRGB.
    Layer i reads ws[:, i + 1]; the input reads ws[:, 0]."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (w) dimensionality.
        img_resolution: int,  # Output resolution, a power of two >= 4.
        img_channels: int,  # Number of output image channels.
        channel_base: int = 32768,  # Channels of layer i are channel_base / 2 / cutoff_i ...
        channel_max: int = 512,  # ... capped at channel_max.
        num_layers: int = 14,  # Number of layers, not counting the input and ToRGB.
        num_critical: int = 2,  # Critically sampled layers at the end (cutoff at Nyquist).
        first_cutoff: float = 2,  # Cutoff of the input layer.
        first_stopband: float = 2**2.1,  # Stopband of the input layer.
        last_stopband_rel: float = 2**0.3,  # Last layers' stopband / (img_resolution / 2).
        margin_size: int = 10,  # Extra samples on each side of every layer but the last two.
        output_scale: float = 0.25,  # Scale of the output image.
        num_fp16_res: int = 4,  # Layers with sampling rate * 2**num_fp16_res > img_resolution
        # run in float16 on CUDA; 0 = none.
        **layer_kwargs: Any,  # Extra arguments of every SynthesisLayer.
    ):
        super().__init__()
        networks_stylegan2.check_resolution(img_resolution)
        if num_layers <= num_critical:
            raise ValueError(
                f"Invalid SynthesisNetwork num_layers={num_layers}: expected more than "
                f"num_critical={num_critical}"
            )
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        self.schedule = design_schedule(
            img_resolution=img_resolution,
            img_channels=img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
        )
        self.input = self._build_input()
        self.layer_names = []
        for idx in range(num_layers + 1):
            layer = self._build_layer(idx, layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def _build_input(self) -> SynthesisInput:
        """Build the Fourier-feature input from schedule entry 0."""
        s = self.schedule
        return SynthesisInput(
            w_dim=self.w_dim,
            channels=int(s["channels"][0]),
            size=int(s["sizes"][0]),
            sampling_rate=float(s["sampling_rates"][0]),
            bandwidth=float(s["cutoffs"][0]),
        )

    def _build_layer(self, idx: int, layer_kwargs: dict) -> SynthesisLayer:
        """Build layer `idx` from the schedule entries idx - 1 (input side) and idx."""
        s = self.schedule
        prev = max(idx - 1, 0)
        return SynthesisLayer(
            w_dim=self.w_dim,
            is_torgb=(idx == self.num_layers),
            is_critically_sampled=(idx >= self.num_layers - self.num_critical),
            use_fp16=bool(s["sampling_rates"][idx] * 2**self.num_fp16_res > self.img_resolution),
            in_channels=int(s["channels"][prev]),
            out_channels=int(s["channels"][idx]),
            in_size=int(s["sizes"][prev]),
            out_size=int(s["sizes"][idx]),
            in_sampling_rate=int(s["sampling_rates"][prev]),
            out_sampling_rate=int(s["sampling_rates"][idx]),
            in_cutoff=float(s["cutoffs"][prev]),
            out_cutoff=float(s["cutoffs"][idx]),
            in_half_width=float(s["half_widths"][prev]),
            out_half_width=float(s["half_widths"][idx]),
            **layer_kwargs,
        )

    def forward(self, ws: torch.Tensor, **layer_kwargs: Any) -> torch.Tensor:
        """Map ws [N, num_ws, w_dim] to a float32 image [N, img_channels, res, res].
        `layer_kwargs` (noise_mode, force_fp32, update_emas) reach every SynthesisLayer."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_layers={self.num_layers}, "
            f"num_critical={self.num_critical}, margin_size={self.margin_size}, "
            f"num_fp16_res={self.num_fp16_res}"
        )


class Generator(networks_stylegan2.Generator):
    """StyleGAN3 generator: a MappingNetwork (z, c -> ws) followed by a SynthesisNetwork.

    Construction, truncation and forward() are those of the StyleGAN2 generator; only the two
    networks differ. Synthesis keywords go to SynthesisNetwork and its layers, and forward()
    ignores noise_mode because StyleGAN3 has no per-pixel noise.
    """

    mapping_class = MappingNetwork
    synthesis_class = SynthesisNetwork
