"""Bias, activation, gain and clamp in one call, as used by every StyleGAN2 layer."""

import math

import torch
import torch.nn.functional as F

from dnnlib import EasyDict

# ----------------------------------------------------------------------------
# Activation functions. `alpha` is only read by lrelu (negative slope). `def_gain` is the
# gain that keeps the output magnitude close to the input magnitude for unit-variance
# input, as in StyleGAN2's equalized learning rate: sqrt(2) for the rectifiers, 1 otherwise.


def _linear(x, alpha):
    return x


def _relu(x, alpha):
    return F.relu(x)


def _lrelu(x, alpha):
    return F.leaky_relu(x, alpha)


def _tanh(x, alpha):
    return torch.tanh(x)


def _sigmoid(x, alpha):
    return torch.sigmoid(x)


def _elu(x, alpha):
    return F.elu(x)


def _selu(x, alpha):
    return F.selu(x)


def _softplus(x, alpha):
    return F.softplus(x)


def _swish(x, alpha):
    return torch.sigmoid(x) * x


activation_funcs = {
    "linear": EasyDict(func=_linear, def_alpha=0.0, def_gain=1.0),
    "relu": EasyDict(func=_relu, def_alpha=0.0, def_gain=math.sqrt(2)),
    "lrelu": EasyDict(func=_lrelu, def_alpha=0.2, def_gain=math.sqrt(2)),
    "tanh": EasyDict(func=_tanh, def_alpha=0.0, def_gain=1.0),
    "sigmoid": EasyDict(func=_sigmoid, def_alpha=0.0, def_gain=1.0),
    "elu": EasyDict(func=_elu, def_alpha=0.0, def_gain=1.0),
    "selu": EasyDict(func=_selu, def_alpha=0.0, def_gain=1.0),
    "softplus": EasyDict(func=_softplus, def_alpha=0.0, def_gain=1.0),
    "swish": EasyDict(func=_swish, def_alpha=0.0, def_gain=math.sqrt(2)),
}

# ----------------------------------------------------------------------------


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "ref",
) -> torch.Tensor:
    """Add bias `b` along dimension `dim` of `x`, apply activation `act`, multiply by `gain`
    and clamp the result to [-clamp, clamp].

    x:     input tensor of any shape.
    b:     bias [x.shape[dim]], or None for no bias.
    dim:   dimension of `x` that `b` runs along (negative values count from the end).
    act:   name of an activation in `activation_funcs`.
    alpha: negative slope for lrelu; None uses the activation's def_alpha.
    gain:  output scale; None uses the activation's def_gain.
    clamp: clamp bound applied after the gain; None or a negative value disables clamping.
    impl:  implementation; only 'ref' (plain PyTorch ops) exists.
    Returns a tensor with the shape and dtype of `x`.
    """
    if act not in activation_funcs:
        raise ValueError(
            f"Unknown activation act={act!r}; expected one of {list(activation_funcs)}"
        )
    if impl != "ref":
        raise ValueError(f"Unknown bias_act implementation impl={impl!r}; only 'ref' exists")
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    return _bias_act_ref(x, b, dim, spec.func, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, func, alpha, gain, clamp):
    if b is not None:
        if not -x.ndim <= dim < x.ndim:
            raise ValueError(f"bias_act: dim={dim} is out of range for a {x.ndim}-D input")
        dim = dim % x.ndim
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: bias shape {list(b.shape)} does not match input dimension {dim} "
                f"of size {x.shape[dim]}; expected a 1-D bias of that size"
            )
        # [C] -> [1, ..., C, ..., 1] so that it broadcasts along `dim`.
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
