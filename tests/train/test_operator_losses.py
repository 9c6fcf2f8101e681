"""Operator losses: analytic values, quadrature, finite differences, neuraloperator's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

from train.operator_losses import (
    LOSSES,
    OperatorLoss,
    derivative,
    mse,
    quadrature_weights,
    relative_h1,
    relative_l2,
    relative_negative_sobolev,
)

DTYPE = torch.float64


def periodic_x(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=DTYPE) / n


def nodes_x(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=DTYPE) / (n - 1)


# --- a direct transcription of neuraloperator's LpLoss(d, p=2).rel and H1Loss(d).rel (measure 1, periodic) ---

def _neuralop_central_diff(x: torch.Tensor, d: int) -> list[torch.Tensor]:
    derivatives = []
    for axis in range(-d, 0):
        h = 1.0 / x.size(axis)
        derivatives.append((torch.roll(x, -1, dims=axis) - torch.roll(x, 1, dims=axis)) / (2.0 * h))
    return derivatives


def neuralop_lp_rel(x: torch.Tensor, y: torch.Tensor, d: int) -> torch.Tensor:
    """``[batch, channel]`` ratios, as neuraloperator before its reduction over leading axes."""
    diff = torch.norm(torch.flatten(x, start_dim=-d) - torch.flatten(y, start_dim=-d), p=2, dim=-1)
    return diff / torch.norm(torch.flatten(y, start_dim=-d), p=2, dim=-1)


def neuralop_h1_rel(x: torch.Tensor, y: torch.Tensor, d: int) -> torch.Tensor:
    terms_x = [x] + _neuralop_central_diff(x, d)
    terms_y = [y] + _neuralop_central_diff(y, d)
    diff = sum(torch.norm(torch.flatten(a - b, start_dim=-d), p=2, dim=-1) ** 2 for a, b in zip(terms_x, terms_y))
    ynorm = sum(torch.norm(torch.flatten(b, start_dim=-d), p=2, dim=-1) ** 2 for b in terms_y)
    return diff ** 0.5 / ynorm ** 0.5


@pytest.mark.parametrize("shape", [(3, 1, 24), (3, 1, 12, 10), (2, 1, 6, 8, 5)])
def test_matches_neuraloperator_formulas_on_periodic_grids(shape):
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(shape, generator=generator, dtype=DTYPE)
    prediction = target + 0.3 * torch.randn(shape, generator=generator, dtype=DTYPE)
    d = len(shape) - 2
    torch.testing.assert_close(relative_l2(prediction, target, "periodic"),
                               neuralop_lp_rel(prediction, target, d)[:, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(relative_h1(prediction, target, "periodic"),
                               neuralop_h1_rel(prediction, target, d)[:, 0], rtol=1e-12, atol=0)


def test_channels_are_measured_together():
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3, 16, generator=generator, dtype=DTYPE)
    prediction = target + torch.randn(2, 3, 16, generator=generator, dtype=DTYPE)
    e, t = (prediction - target).flatten(1), target.flatten(1)
    torch.testing.assert_close(relative_l2(prediction, target), e.norm(dim=1) / t.norm(dim=1))


def test_relative_l2_of_a_trigonometric_perturbation():
    # discrete orthogonality of sin(2 pi k x) on j/N: the ratio is exactly a
    n, a = 32, 0.25
    x = periodic_x(n)
    target = torch.sin(2 * math.pi * x)[None, None]
    prediction = target + a * torch.sin(2 * math.pi * 3 * x)[None, None]
    torch.testing.assert_close(relative_l2(prediction, target), torch.tensor([a], dtype=DTYPE))


def test_relative_h1_of_a_trigonometric_perturbation():
    # the central difference of sin(2 pi k x) is N sin(2 pi k / N) cos(2 pi k x) (exactly), so
    # ratio^2 = a^2 (1 + N^2 sin^2(6 pi / N)) / (1 + N^2 sin^2(2 pi / N)); continuum: a^2 (1 + 36 pi^2) / (1 + 4 pi^2)
    n, a = 64, 0.25
    x = periodic_x(n)
    target = torch.sin(2 * math.pi * x)[None, None]
    prediction = target + a * torch.sin(2 * math.pi * 3 * x)[None, None]
    value = relative_h1(prediction, target).item()
    discrete = a * math.sqrt((1 + n ** 2 * math.sin(6 * math.pi / n) ** 2)
                             / (1 + n ** 2 * math.sin(2 * math.pi / n) ** 2))
    continuum = a * math.sqrt((1 + 36 * math.pi ** 2) / (1 + 4 * math.pi ** 2))
    assert value == pytest.approx(discrete, rel=1e-12)
    assert value == pytest.approx(continuum, rel=2e-2)  # FD error ~ (6 pi / N)^2 / 6 = 1.4 %
    assert value > 2.5 * relative_l2(prediction, target).item()  # H1 weighs the k=3 error up


@pytest.mark.parametrize("domain", ["periodic", "nodes"])
def test_quadrature_weights_sum_to_one(domain):
    assert quadrature_weights((7, 5, 4), domain, dtype=DTYPE).sum().item() == pytest.approx(1.0, abs=1e-14)


def test_nodes_trapezoid_integrates_linear_functions_exactly():
    x = nodes_x(9)
    w = quadrature_weights((9, 9), "nodes", dtype=DTYPE)
    f = 2.0 + 3.0 * x[:, None] - 5.0 * x[None, :]
    assert (w * f).sum().item() == pytest.approx(2.0 + 1.5 - 2.5, abs=1e-13)
    # the weights are h/2 at the ends and h inside
    torch.testing.assert_close(w[0, :3] * 64, torch.tensor([0.25, 0.5, 0.5], dtype=DTYPE))


def test_nodes_relative_l2_equals_scipy_trapezoid():
    generator = torch.Generator().manual_seed(2)
    target = torch.randn(1, 1, 9, 7, generator=generator, dtype=DTYPE)
    prediction = target + torch.randn(1, 1, 9, 7, generator=generator, dtype=DTYPE)
    xs, ys = nodes_x(9).numpy(), nodes_x(7).numpy()

    def trapezoid_norm(f):
        return math.sqrt(scipy.integrate.trapezoid(scipy.integrate.trapezoid(f[0, 0].numpy() ** 2, ys), xs))

    expected = trapezoid_norm(prediction - target) / trapezoid_norm(target)
    assert relative_l2(prediction, target, "nodes").item() == pytest.approx(expected, rel=1e-12)


def test_nodes_derivative_is_numpy_gradient_edge_order_2():
    generator = torch.Generator().manual_seed(3)
    f = torch.randn(2, 1, 6, 5, generator=generator, dtype=DTYPE)
    for dim, h in ((2, 1 / 5), (3, 1 / 4)):
        expected = np.gradient(f.numpy(), h, axis=dim, edge_order=2)
        np.testing.assert_allclose(derivative(f, dim, "nodes").numpy(), expected, rtol=1e-12, atol=1e-12)
    # second order everywhere: exact for a quadratic, boundary included
    x = nodes_x(6)
    torch.testing.assert_close(derivative((x ** 2 - x)[None, None], 2, "nodes")[0, 0], 2 * x - 1)


def test_nodes_relative_h1_uses_gradient_and_trapezoid():
    n = 11
    x = nodes_x(n)
    target = (x ** 2)[None, None]  # derivative 2x, exact for second-order differences
    prediction = target + 0.1 * x[None, None]  # error 0.1 x, derivative 0.1
    w = quadrature_weights((n,), "nodes", dtype=DTYPE)
    expected = math.sqrt((w * (0.01 * x ** 2 + 0.01)).sum().item() / (w * (x ** 4 + 4 * x ** 2)).sum().item())
    assert relative_h1(prediction, target, "nodes").item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(2, 2, 16), (2, 1, 8, 6), (2, 1, 4, 6, 5)])
@pytest.mark.parametrize("domain", ["periodic", "nodes"])
@pytest.mark.parametrize("name", LOSSES)
def test_zero_for_equal_inputs_and_scale_invariance(shape, domain, name):
    generator = torch.Generator().manual_seed(4)
    target = torch.randn(shape, generator=generator, dtype=DTYPE)
    prediction = target + 0.1 * torch.randn(shape, generator=generator, dtype=DTYPE)
    loss = OperatorLoss(name, domain)
    values = loss.per_sample(prediction, target)
    assert values.shape == (shape[0],) and bool((values > 0).all())
    assert loss(prediction, target).item() == pytest.approx(values.mean().item())
    torch.testing.assert_close(loss.per_sample(target, target), torch.zeros(shape[0], dtype=DTYPE))
    scaled = loss.per_sample(7.0 * prediction, 7.0 * target)
    torch.testing.assert_close(scaled, values * (49.0 if name == "mse" else 1.0))
    # samples are independent: the loss of a batch is the losses of its samples
    torch.testing.assert_close(loss.per_sample(prediction[:1], target[:1]), values[:1])


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_is_finite_at_zero_error(name):
    target = torch.randn(2, 1, 8, 8, dtype=DTYPE)
    prediction = target.clone().requires_grad_(True)
    OperatorLoss(name, "periodic")(prediction, target).backward()
    assert torch.isfinite(prediction.grad).all()


def test_negative_sobolev_damps_high_frequencies():
    n, eps = 32, 0.1
    x = periodic_x(n)
    target = torch.sin(2 * math.pi * x)[None, None]
    low = target + eps * torch.cos(2 * math.pi * 1 * x)[None, None]  # a k = 1 error
    high = target + eps * torch.cos(2 * math.pi * 8 * x)[None, None]
    assert relative_l2(low, target).item() == pytest.approx(relative_l2(high, target).item(), rel=1e-12)
    for order in (0.5, 1.0, 2.0):
        ratio = (relative_negative_sobolev(low, target, order=order)
                 / relative_negative_sobolev(high, target, order=order)).item()
        assert ratio == pytest.approx((65.0 / 2.0) ** (order / 2), rel=1e-10)
    # order 0 is the relative L2 error (Parseval; odd and even sizes, the rfft half-spectrum counted twice)
    torch.testing.assert_close(relative_negative_sobolev(high, target, order=0.0), relative_l2(high, target))
    generator = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 2, 2, 7, 5, generator=generator, dtype=DTYPE)
    torch.testing.assert_close(relative_negative_sobolev(a, b, order=0.0), relative_l2(a, b))


def test_negative_sobolev_in_2d_uses_the_wavevector_length():
    n = 16
    x = periodic_x(n)
    target = torch.sin(2 * math.pi * (x[:, None] + 0 * x[None, :]))[None, None]  # k = (1, 0)
    error = torch.cos(2 * math.pi * (3 * x[:, None] + 4 * x[None, :]))[None, None]  # |k| = 5
    value = relative_negative_sobolev(target + error, target).item()
    expected = math.sqrt((1 + 1) / (1 + 25)) * relative_l2(target + error, target).item()
    assert value == pytest.approx(expected, rel=1e-10)


def test_sphere_quadrature_is_the_surface_measure():
    nlat, nlon = 9, 16
    theta = torch.pi * torch.arange(nlat, dtype=DTYPE) / (nlat - 1)
    w = quadrature_weights((nlat, nlon), "sphere", dtype=DTYPE)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-14)
    # mean of cos^2(colatitude) over the sphere is 1/3 (a uniform-in-theta rule would give about 1/2)
    assert (w * torch.cos(theta)[:, None] ** 2).sum().item() == pytest.approx(1.0 / 3.0, abs=1e-14)
    target = torch.ones(1, 1, nlat, nlon, dtype=DTYPE)
    prediction = target + torch.cos(theta)[:, None].expand(nlat, nlon)
    assert relative_l2(prediction, target, "sphere").item() == pytest.approx(math.sqrt(1.0 / 3.0), rel=1e-12)
    with pytest.raises(ValueError, match="sphere"):
        relative_h1(prediction, target, "sphere")
    with pytest.raises(ValueError, match="sphere"):
        OperatorLoss("negative_sobolev", "sphere")
    with pytest.raises(ValueError, match="nlat"):
        relative_l2(torch.ones(1, 1, 8), torch.ones(1, 1, 8), "sphere")


def test_mse_is_the_plain_mean():
    prediction = torch.tensor([[[1.0, 2.0, 3.0]], [[0.0, 0.0, 0.0]]], dtype=DTYPE)
    target = torch.zeros_like(prediction)
    torch.testing.assert_close(mse(prediction, target), torch.tensor([14.0 / 3.0, 0.0], dtype=DTYPE))


def test_clear_errors():
    a = torch.zeros(2, 1, 8)
    with pytest.raises(ValueError, match="unknown operator loss"):
        OperatorLoss("l1", "periodic")
    with pytest.raises(ValueError, match="domain"):
        OperatorLoss("relative_l2", "torus")
    with pytest.raises(ValueError, match="order"):
        OperatorLoss("negative_sobolev", "periodic", order=-1.0)
    with pytest.raises(ValueError, match="shape"):
        relative_l2(a, torch.zeros(2, 1, 9))
    with pytest.raises(ValueError, match="spatial"):
        relative_l2(torch.zeros(2, 8), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="floating"):
        relative_l2(torch.zeros(2, 1, 8, dtype=torch.long), torch.zeros(2, 1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 3 points"):
        relative_h1(torch.ones(1, 1, 2), torch.ones(1, 1, 2), "nodes")
