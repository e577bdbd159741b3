"""labkit.structure against torch.func per-example gradients (float64)."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from labkit import structure
from labkit.models import ParamSpec, cnn, mlp, param_dict


def _reference(model, params, x, cot):
    """Per-example gradients of c_j . f(x_i) by vmap(grad), flattened: (k, n, numel)."""
    spec = ParamSpec.of(params)

    def scalar(p, xi, ci):
        return (functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0) * ci).sum()

    per_k = [spec.flatten(vmap(grad(scalar), in_dims=(None, 0, 0))(params, x, c)) for c in cot]
    return torch.stack(per_k)


def _from_traces(traces, spec, k, n):
    grads = {}
    for t in traces:
        prefix = f"{t.name}." if t.name else ""
        for key, g in structure.layer_gradients(t).items():
            grads[prefix + key] = g
    assert set(grads) == set(spec.names)
    return spec.flatten(grads)


class Seq3(nn.Module):
    """nn.Linear on inputs with an extra (sequence) dimension, summed at the end."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))).sum(1)


@pytest.mark.parametrize(
    "make, in_shape",
    [
        (lambda: mlp(3, [7, 5], 2, activation="tanh", parameterization="ntk", weight_std=1.3, bias_std=0.4, seed=0),
         (3,)),
        (lambda: mlp(3, [6], 4, activation="relu", parameterization="mean_field", seed=1), (3,)),
        (lambda: nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2, bias=False)), (3,)),
        (lambda: Seq3(), (5, 4)),
        (lambda: cnn(image_size=6, channels=2, num_classes=3, width=3, activation="tanh", seed=0), (2, 6, 6)),
    ],
)
def test_per_example_grads_match_torch_func(make, in_shape):
    torch.manual_seed(0)
    model = make().double()
    for p in model.parameters():  # cnn zero-initialises its biases: make them generic
        p.data.add_(0.1 * torch.randn_like(p))
    assert structure.supported(model)
    params = param_dict(model)
    n = 5
    x = torch.randn(n, *in_shape, dtype=torch.float64)
    out_dim = model(x).shape[-1]
    k = 3
    cot = torch.randn(k, n, out_dim, dtype=torch.float64)
    traces, out = structure.backprop_layers(model, params, x, cot, return_output=True)
    torch.testing.assert_close(out, model(x).detach(), rtol=1e-13, atol=1e-13)
    spec = ParamSpec.of(params)
    got = _from_traces(traces, spec, k, n)
    want = _reference(model, params, x, cot)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)
    norms = structure.per_example_sq_norms(traces)
    torch.testing.assert_close(norms, want.square().sum(-1), rtol=1e-11, atol=1e-12)
    # one cotangent vector takes the non-batched path
    one = structure.backprop_layers(model, params, x, cot[:1])
    torch.testing.assert_close(_from_traces(one, spec, 1, n), want[:1], rtol=1e-11, atol=1e-12)


def test_shapes_and_multipliers():
    model = mlp(4, [8], 3, parameterization="ntk", weight_std=2.0, bias_std=0.5, seed=0).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    traces = structure.backprop_layers(model, param_dict(model), x, torch.randn(2, 6, 3, dtype=torch.float64))
    assert [t.name for t in traces] == ["0", "2"]
    assert traces[0].inputs.shape == (6, 4) and traces[0].grads.shape == (2, 6, 8)
    assert traces[1].inputs.shape == (6, 8) and traces[1].grads.shape == (2, 6, 3)
    assert traces[0].weight_mult == pytest.approx(2.0 / 2.0) and traces[0].bias_mult == 0.5
    assert traces[1].weight_mult == pytest.approx(2.0 / 8**0.5)
    assert all(t.has_bias for t in traces)
    torch.testing.assert_close(traces[0].inputs, x)


def test_cotangent_function_and_frozen_bias():
    model = mlp(3, [5], 2, activation="tanh", seed=0).double()
    model[0].bias.requires_grad_(False)
    params = param_dict(model)
    x = torch.randn(4, 3, dtype=torch.float64)
    traces = structure.backprop_layers(model, params, x, lambda out: out.unsqueeze(0))
    assert not traces[0].has_bias and traces[1].has_bias
    torch.testing.assert_close(traces[1].grads[0], model(x).detach())


def test_unsupported_and_bad_input():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert not structure.supported(model)
    with pytest.raises(ValueError, match="not supported"):
        structure.backprop_layers(model, param_dict(model), torch.randn(2, 3), torch.randn(1, 2, 2))
    assert not structure.supported(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
    good = mlp(3, [4], 2, seed=0)
    with pytest.raises(ValueError, match="cotangents has shape"):
        structure.backprop_layers(good, param_dict(good), torch.randn(2, 3), torch.randn(1, 3, 2))
    with pytest.raises(TypeError, match="x must be a tensor"):
        structure.backprop_layers(good, param_dict(good), [[1.0, 2.0, 3.0]], torch.randn(1, 1, 2))

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            return self.a(self.a(x))

    tw = Twice()
    with pytest.raises(ValueError, match="called twice"):
        structure.backprop_layers(tw, param_dict(tw), torch.randn(2, 3), torch.randn(1, 2, 3))


def test_no_grad_context_is_harmless():
    model = mlp(3, [5], 2, seed=0).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    cot = torch.randn(2, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        a = structure.backprop_layers(model, param_dict(model), x, cot)
    b = structure.backprop_layers(model, param_dict(model), x, cot)
    for s, t in zip(a, b):
        torch.testing.assert_close(s.grads, t.grads)
