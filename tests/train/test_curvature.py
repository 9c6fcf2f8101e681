"""train.optim.curvature against exact Hessians of small models (float64).

Models: linear least squares ``L = 1/(2B) |X w - y|^2`` (Hessian ``X^T X / B``, equal to its
Gauss–Newton matrix) and a small tanh MLP (exact Hessian by ``torch.autograd.functional.hessian``).
Stochastic estimators are checked through their mean over many probes, against the exact diagonal,
within 5 standard errors computed from the exact Hessian.
"""

from __future__ import annotations

import math

import pytest
import torch

from train.optim.curvature import (
    finite_difference_hvp,
    gauss_newton_bartlett_diagonal,
    gradients_with_graph,
    hessian_vector_product,
    hutchinson_diagonal,
)


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector, like):
    out, start = [], 0
    for p in like:
        out.append(vector[start:start + p.numel()].view_as(p))
        start += p.numel()
    return out


def mlp_problem():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    w1 = torch.randn(3, 4, generator=generator, dtype=torch.float64).requires_grad_()
    w2 = torch.randn(4, 2, generator=generator, dtype=torch.float64).requires_grad_()
    params = [w1, w2]

    def loss_at(a, b):
        return 0.5 * ((torch.tanh(x @ a) @ b - y) ** 2).sum(dim=1).mean()

    hessian = torch.autograd.functional.hessian(lambda v: loss_at(*unflat(v, params)), flat(params).detach())
    return params, lambda: loss_at(w1, w2), hessian


def linear_problem():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 5, generator=generator, dtype=torch.float64)
    y = torch.randn(32, 1, generator=generator, dtype=torch.float64)
    w = torch.randn(5, 1, generator=generator, dtype=torch.float64).requires_grad_()
    return [w], x, y, x.T @ x / len(x)


def test_exact_and_finite_difference_hvp_equal_the_hessian_times_v():
    params, loss, hessian = mlp_problem()
    vector = torch.randn(hessian.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = gradients_with_graph(loss(), params)
    exact = flat(hessian_vector_product(grads, params, unflat(vector, params)))
    torch.testing.assert_close(exact, hessian @ vector, rtol=1e-10, atol=1e-12)

    def gradient_at():
        return torch.autograd.grad(loss(), params)

    before = [p.detach().clone() for p in params]
    approximate = flat(finite_difference_hvp(gradient_at, params, unflat(vector, params), epsilon=1e-4))
    torch.testing.assert_close(approximate, hessian @ vector, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # parameters restored exactly


def test_hutchinson_mean_converges_to_the_exact_diagonal():
    params, loss, hessian = mlp_problem()
    samples = 4000
    estimate = flat(hutchinson_diagonal(gradients_with_graph(loss(), params), params, num_samples=samples,
                                        generator=torch.Generator().manual_seed(3)))
    # Var[z_i (Hz)_i] = sum_{j != i} H_ij^2
    variance = (hessian ** 2).sum(dim=1) - hessian.diagonal() ** 2
    standard_error = torch.sqrt(variance / samples)
    assert (estimate - hessian.diagonal()).abs().max() > 0  # a stochastic estimate, not the diagonal itself
    assert ((estimate - hessian.diagonal()).abs() <= 5 * standard_error + 1e-12).all()


def test_hutchinson_is_exact_for_a_diagonal_hessian_with_one_probe():
    w = torch.randn(7, dtype=torch.float64, requires_grad=True)
    a = torch.linspace(0.5, 3.0, 7, dtype=torch.float64)
    loss = (a * w ** 2).sum() + w.sum()
    estimate = hutchinson_diagonal(gradients_with_graph(loss, [w]), [w], num_samples=1)[0]
    torch.testing.assert_close(estimate, 2 * a)


@pytest.mark.parametrize("c, sigma", [(0.5, 1.0), (1.0, 1 / math.sqrt(2))])
def test_gauss_newton_bartlett_mean_is_the_gauss_newton_diagonal(c, sigma):
    params, x, _, hessian = linear_problem()
    w = params[0]
    generator = torch.Generator().manual_seed(4)
    samples = 4000
    total = torch.zeros_like(w)
    for _ in range(samples):
        (estimate,) = gauss_newton_bartlett_diagonal(lambda: x @ w, lambda f, y: c * ((f - y) ** 2).sum(dim=1).mean(),
                                                     params, batch_size=len(x), sigma=sigma, generator=generator)
        total += estimate
    expected = 2 * c * hessian.diagonal()  # Gauss–Newton of c|f - y|^2 (mean over examples) = its Hessian
    mean = (total / samples).reshape(-1)
    # each estimate is B g^2 with g Gaussian: variance 2 (expected)^2
    assert ((mean - expected).abs() <= 5 * math.sqrt(2 / samples) * expected).all()


def test_a_parameter_the_loss_ignores_has_zero_curvature():
    used, unused = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    loss = (used ** 3).sum()
    grads = gradients_with_graph(loss, [used, unused])
    assert torch.equal(grads[1], torch.zeros(2))
    diagonal = hutchinson_diagonal(grads, [used, unused], num_samples=2)
    torch.testing.assert_close(diagonal[0], 6 * torch.ones(3))
    assert torch.equal(diagonal[1], torch.zeros(2))
    with pytest.raises(ValueError, match="num_samples"):
        hutchinson_diagonal(grads, [used], num_samples=0)
