"""bias_act and fma, checked against plain torch and numpy expressions."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import bias_act as ba
from torch_utils.ops.fma import fma

SQRT2 = math.sqrt(2)

# Activation name -> (reference function of x and alpha, expected default gain).
REFERENCES = {
    "linear": (lambda x, a: x, 1.0),
    "relu": (lambda x, a: torch.clamp(x, min=0), SQRT2),
    "lrelu": (lambda x, a: torch.where(x >= 0, x, x * a), SQRT2),
    "tanh": (lambda x, a: (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1), 1.0),
    "sigmoid": (lambda x, a: 1 / (1 + torch.exp(-x)), 1.0),
    "elu": (lambda x, a: torch.where(x > 0, x, torch.exp(x) - 1), 1.0),
    "selu": (
        lambda x, a: (
            1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * torch.expm1(x))
        ),
        1.0,
    ),
    "softplus": (lambda x, a: torch.log1p(torch.exp(x)), 1.0),
    "swish": (lambda x, a: x / (1 + torch.exp(-x)), SQRT2),
}


def _inputs(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=torch.float64, generator=gen) * 2


def test_activation_table_lists_every_activation():
    assert sorted(ba.activation_funcs) == sorted(REFERENCES)
    assert ba.activation_funcs["lrelu"].def_alpha == 0.2
    for name, (_, gain) in REFERENCES.items():
        assert ba.activation_funcs[name].def_gain == pytest.approx(gain), name


@pytest.mark.parametrize("act", sorted(REFERENCES))
def test_bias_act_defaults_match_reference(act):
    x = _inputs([3, 5, 4, 2])
    b = _inputs([5], seed=1)
    func, gain = REFERENCES[act]
    expected = func(x + b.reshape(1, 5, 1, 1), 0.2) * gain
    torch.testing.assert_close(ba.bias_act(x, b, act=act), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", sorted(REFERENCES))
def test_bias_act_custom_gain_and_clamp(act):
    x = _inputs([4, 6])
    b = _inputs([6], seed=2)
    func, _ = REFERENCES[act]
    expected = np.clip(func(x + b, 0.2).numpy() * 3.0, -1.5, 1.5)
    y = ba.bias_act(x, b, act=act, gain=3.0, clamp=1.5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert float(y.abs().max()) <= 1.5


def test_bias_act_lrelu_custom_alpha():
    x = _inputs([2, 3, 5])
    y = ba.bias_act(x, act="lrelu", alpha=0.05)
    expected = F.leaky_relu(x, 0.05) * SQRT2
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


def test_bias_act_negative_clamp_disables_clamping():
    x = _inputs([2, 8]) * 100
    y = ba.bias_act(x, act="linear", clamp=-1)
    torch.testing.assert_close(y, x)


@pytest.mark.parametrize("dim", [0, 2, -1])
def test_bias_act_bias_along_other_dim(dim):
    x = _inputs([3, 4, 5])
    b = _inputs([x.shape[dim]], seed=3)
    shape = [1, 1, 1]
    shape[dim] = -1
    expected = F.leaky_relu(x + b.reshape(shape), 0.2) * SQRT2
    torch.testing.assert_close(ba.bias_act(x, b, dim=dim, act="lrelu"), expected)


def test_bias_act_rejects_bad_arguments():
    x = torch.zeros([2, 3])
    with pytest.raises(ValueError, match="Unknown activation act='gelu'"):
        ba.bias_act(x, act="gelu")
    with pytest.raises(ValueError, match=r"bias shape \[4\]"):
        ba.bias_act(x, torch.zeros([4]))
    with pytest.raises(ValueError, match="dim=5 is out of range"):
        ba.bias_act(x, torch.zeros([3]), dim=5)
    with pytest.raises(ValueError, match="only 'ref'"):
        ba.bias_act(x, impl="cuda")


def test_bias_act_keeps_float16_dtype():
    x = torch.randn([2, 3]).half()
    y = ba.bias_act(x, torch.randn([3]), act="lrelu", clamp=256)
    assert y.dtype == torch.float16


@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "softplus"])
def test_bias_act_gradcheck(act):
    x = _inputs([2, 3, 4]).requires_grad_(True)
    b = _inputs([3], seed=4).requires_grad_(True)

    def op(x, b):
        return ba.bias_act(x, b, act=act, gain=1.3, clamp=2.5)

    assert torch.autograd.gradcheck(op, (x, b))
    assert torch.autograd.gradgradcheck(op, (x, b))


def test_fma_matches_numpy_with_broadcasting():
    a = _inputs([3, 1], seed=5)
    b = _inputs([1, 4], seed=6)
    c = _inputs([4], seed=7)
    y = fma(a, b, c)
    np.testing.assert_allclose(y.numpy(), a.numpy() * b.numpy() + c.numpy(), rtol=1e-12)


def test_fma_gradients_reduce_to_input_shapes():
    a = _inputs([3, 1], seed=8).requires_grad_(True)
    b = _inputs([1, 4], seed=9).requires_grad_(True)
    c = _inputs([4], seed=10).requires_grad_(True)
    fma(a, b, c).sum().backward()
    # d(sum)/da[i] = sum_j b[j], d/db[j] = sum_i a[i], d/dc[j] = number of rows.
    np.testing.assert_allclose(a.grad.numpy(), np.full([3, 1], b.detach().sum().item()))
    np.testing.assert_allclose(b.grad.numpy(), np.full([1, 4], a.detach().sum().item()))
    np.testing.assert_allclose(c.grad.numpy(), np.full([4], 3.0))
    assert torch.autograd.gradcheck(fma, (a, b, c))
