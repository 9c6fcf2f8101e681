"""Separable spherical harmonics, Gauss-Legendre grids and Gaunt coefficients."""

import math

import pytest
import torch
from e3nn import o3

from layers.spherical import (
    azimuthal_factor,
    exact_resolution,
    gauss_legendre_grid,
    gaunt_coefficients,
    polar_factor,
    spherical_harmonics,
    unit_vector,
)


def test_separable_form_equals_e3nn_harmonics(float64):
    lmax = 5
    beta, alpha = torch.rand(50) * math.pi, torch.rand(50) * 2 * math.pi
    expected = o3.spherical_harmonics(list(range(lmax + 1)), unit_vector(beta, alpha), True, normalization="integral")
    ms = torch.cat([torch.arange(-l, l + 1) for l in range(lmax + 1)]) + lmax
    separable = polar_factor(lmax, beta) * azimuthal_factor(lmax, alpha)[:, ms]
    torch.testing.assert_close(separable, expected, atol=1e-13, rtol=0)


def test_polar_factor_is_a_trigonometric_polynomial_past_pi(float64):
    """Signed sin(beta): P_lm(beta + pi) follows from the polynomial in (cos, sin), not from |sin|."""
    lmax = 4
    beta = torch.rand(20) * math.pi
    ms = torch.cat([torch.arange(-l, l + 1) for l in range(lmax + 1)])
    alpha = torch.rand(20) * 2 * math.pi
    shifted = polar_factor(lmax, beta + math.pi) * azimuthal_factor(lmax, alpha)[:, ms + lmax]
    direct = o3.spherical_harmonics(list(range(lmax + 1)), unit_vector(beta + math.pi, alpha), True, normalization="integral")
    torch.testing.assert_close(shifted, direct, atol=1e-13, rtol=0)


@pytest.mark.parametrize("degree", [0, 3, 8, 13])
def test_gauss_legendre_grid_integrates_exactly(degree, float64):
    grid = gauss_legendre_grid(*exact_resolution(degree))
    assert torch.isclose(grid.weights.sum() * len(grid.alphas), torch.tensor(4 * math.pi, dtype=torch.float64))
    beta, alpha = torch.meshgrid(grid.betas, grid.alphas, indexing="ij")
    points = unit_vector(beta, alpha).reshape(-1, 3)
    weights = grid.weights[:, None].expand_as(beta).reshape(-1)
    # products Y_a Y_b with deg(a) + deg(b) <= degree integrate to the identity
    half = degree // 2
    y = spherical_harmonics(half, points, normalization="integral")
    gram = torch.einsum("q,qa,qb->ab", weights, y, y)
    torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-12, rtol=0)
    # a monomial of exactly that degree
    exact = 4 * math.pi / (degree + 1) if degree % 2 == 0 else 0.0
    integral = (weights * points[:, 1] ** degree).sum()
    assert abs(float(integral) - exact) < 1e-12


def test_gaunt_coefficients_selection_rules_and_symmetry():
    assert gaunt_coefficients(1, 1, 1).abs().max() == 0  # odd sum
    assert gaunt_coefficients(1, 1, 3).abs().max() == 0  # triangle
    g = gaunt_coefficients(1, 2, 3)
    torch.testing.assert_close(g.permute(1, 0, 2), gaunt_coefficients(2, 1, 3), atol=1e-14, rtol=0)
    torch.testing.assert_close(g.permute(2, 1, 0), gaunt_coefficients(3, 2, 1), atol=1e-14, rtol=0)
    # Y_00 = 1 / sqrt(4 pi): G^{0 l l} = delta / sqrt(4 pi)
    torch.testing.assert_close(gaunt_coefficients(0, 2, 2)[0], torch.eye(5, dtype=torch.float64) / math.sqrt(4 * math.pi))
