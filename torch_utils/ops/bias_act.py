"""Bias, activation, gain and clamp in one call, as used by every StyleGAN2 layer."""

import math

import torch
import torch.nn.functional as F

from dnnlib import EasyDict
from torch_utils import custom_ops

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
    impl: str | None = None,
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
    impl:  'ref' for the plain PyTorch ops, or None to follow the --ops policy of
           torch_utils.custom_ops, which picks the CUDA kernel or 'ref' for CUDA tensors.
    Returns a tensor with the shape and dtype of `x`.
    """
    if act not in activation_funcs:
        raise ValueError(
            f"Unknown activation act={act!r}; expected one of {list(activation_funcs)}"
        )
    if impl not in ("ref", None):
        raise ValueError(
            f"Unknown bias_act implementation impl={impl!r}; only 'ref' exists, and None "
            f"follows the --ops policy"
        )
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    if impl is None:
        tensors = (x,) if b is None else (x, b)
        if custom_ops.kernels_for("bias_act", *tensors) is not None:
            return bias_act_cuda(x, b, dim, act, alpha, gain, clamp)
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


# ----------------------------------------------------------------------------
# CUDA kernel path. The kernel computes one of three elementwise functions of z = x + b:
# order 0 is the op itself, order 1 the gradient dy * gain * act'(z) and order 2 the term
# dy * gain * act''(z) of the double backward. Both derivative orders are 0 where the clamp
# cut the forward value. Backward and double backward call the kernel again, so R1 and path
# length regularization, which differentiate through gradients, run on the GPU too.


def bias_act_cuda(x, b, dim, act, alpha, gain, clamp) -> torch.Tensor:
    """Run bias_act() with the CUDA kernel; arguments as there, with alpha, gain and clamp
    resolved to floats (clamp < 0 disables clamping)."""
    dim = dim % x.ndim
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(
            f"bias_act: bias shape {list(b.shape)} does not match input dimension {dim} "
            f"of size {x.shape[dim]}; expected a 1-D bias of that size"
        )
    params = (custom_ops.ACTIVATIONS.index(act), alpha, gain, clamp, dim)
    return _BiasActCuda.apply(x, b, params)


def _run_kernel(order, x, b, dy, params):
    act, alpha, gain, clamp, dim = params
    bias = x.new_empty([0]) if b is None else b.to(x.dtype).contiguous()
    grad = x.new_empty([0]) if dy is None else dy.to(x.dtype).contiguous()
    kernels = custom_ops.load_extension()
    return kernels.bias_act(x.contiguous(), bias, grad, order, act, alpha, gain, clamp, dim)


def _sum_to_bias(dz, b, dim):
    """Reduce a gradient dz with the shape of x to the shape and dtype of the bias b."""
    dims = [i for i in range(dz.ndim) if i != dim]
    return dz.sum(dim=dims).to(b.dtype)


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, params):
        ctx.save_for_backward(x, b)
        ctx.params = params
        return _run_kernel(0, x, b, None, params)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dz = _BiasActGradCuda.apply(dy, x, b, ctx.params)
        dx = dz if ctx.needs_input_grad[0] else None
        db = _sum_to_bias(dz, b, ctx.params[-1]) if ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActGradCuda(torch.autograd.Function):
    """Gradient dz = dy * gain * act'(x + b), 0 where the clamp cut the output. Its own
    backward runs the kernel again, and a third derivative raises an error."""

    @staticmethod
    def forward(ctx, dy, x, b, params):
        ctx.save_for_backward(dy, x, b)
        ctx.params = params
        return _run_kernel(1, x, b, dy, params)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ddz):
        dy, x, b = ctx.saved_tensors
        # dz is linear in dy, with the same elementwise factor, and its derivative with
        # respect to z = x + b is dy * gain * act''(z).
        d_dy = _run_kernel(1, x, b, ddz, ctx.params) if ctx.needs_input_grad[0] else None
        d_z = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            d_z = _run_kernel(2, x, b, ddz * dy, ctx.params)
        dx = d_z if ctx.needs_input_grad[1] else None
        db = _sum_to_bias(d_z, b, ctx.params[-1]) if ctx.needs_input_grad[2] else None
        return d_dy, dx, db, None
