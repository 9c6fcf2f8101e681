"""Spherical harmonics, their separable form, Gaunt coefficients and S2 quadrature grids.

Conventions are e3nn's. A unit vector is written with polar angle ``beta`` measured from the
y axis and azimuth ``alpha``::

    r(beta, alpha) = (sin(beta) sin(alpha), cos(beta), sin(beta) cos(alpha))

and the real spherical harmonics, orthonormal on the sphere (``normalization="integral"``),
separate into a polar and an azimuthal factor::

    Y_lm(r(beta, alpha)) = P_lm(beta) * Phi_m(alpha)
    Phi_0 = 1,  Phi_m = sqrt(2) cos(m alpha) (m > 0),  Phi_m = sqrt(2) sin(|m| alpha) (m < 0)

``P_lm(beta) = sin(beta)^|m| * poly(cos(beta))`` is the normalised associated Legendre
function. Evaluated with the *signed* ``sin(beta)``, it is a trigonometric polynomial of degree
``l`` on the whole circle ``beta in [0, 2 pi)``; the Gaunt product relies on that to work in a 2D
Fourier basis. The factors come from e3nn (``o3.Legendre``, ``o3.spherical_harmonics_alpha``);
tests check their product against ``o3.spherical_harmonics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from e3nn import o3


def unit_vector(beta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` points ``r(beta, alpha)`` of e3nn's y-polar convention."""
    return torch.stack([beta.sin() * alpha.sin(), beta.cos(), beta.sin() * alpha.cos()], dim=-1)


def spherical_harmonics(lmax: int, vectors: torch.Tensor, normalization: str = "component") -> torch.Tensor:
    """``[..., (lmax+1)^2]`` real spherical harmonics of the directions ``vectors: [..., 3]``.

    ``normalization="component"`` (e3nn's default, ``sum_m Y_lm^2 = 2l+1``) or ``"integral"``
    (orthonormal on the sphere). The vectors are normalised first.
    """
    return o3.spherical_harmonics(list(range(lmax + 1)), vectors, normalize=True, normalization=normalization)


def polar_factor(lmax: int, beta: torch.Tensor) -> torch.Tensor:
    """``[..., (lmax+1)^2]``: ``P_lm(beta)`` for all ``l <= lmax``, in e3nn's (l, m) order.

    Uses the signed ``sin(beta)``, so the result is the trigonometric-polynomial extension to
    ``beta in [0, 2 pi)``; on ``[0, pi]`` it is the usual normalised Legendre function.
    """
    return o3.Legendre(list(range(lmax + 1)))(beta.cos(), beta.sin())


def azimuthal_factor(lmax: int, alpha: torch.Tensor) -> torch.Tensor:
    """``[..., 2 lmax + 1]``: ``Phi_m(alpha)`` for ``m = -lmax..lmax``."""
    return o3.spherical_harmonics_alpha(lmax, alpha)


def degree_order_index(lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the flat (l, m) order of ``(lmax+1)^2`` coefficients: ``(l, m + lmax)`` of each one."""
    ls = torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(lmax + 1)])
    ms = torch.cat([torch.arange(-l, l + 1) for l in range(lmax + 1)]) + lmax
    return ls, ms


def padded_gather_index(lmax: int) -> torch.Tensor:
    """``[(lmax+1) * (2lmax+1)]``: for each cell of the ``[l, m + lmax]`` grid, its flat (l, m) index;
    cells with ``|m| > l`` point one past the end (append a zero to the flat tensor before gathering)."""
    ls, ms = degree_order_index(lmax)
    index = torch.full(((lmax + 1) * (2 * lmax + 1),), (lmax + 1) ** 2, dtype=torch.long)
    index[ls * (2 * lmax + 1) + ms] = torch.arange((lmax + 1) ** 2)
    return index


def to_padded(f: torch.Tensor, gather: torch.Tensor, lmax: int) -> torch.Tensor:
    """``[..., (lmax+1)^2]`` flat coefficients -> ``[..., lmax+1, 2lmax+1]`` by degree and order, zero-filled."""
    padded = torch.cat([f, f.new_zeros(f.shape[:-1] + (1,))], dim=-1)[..., gather]
    return padded.unflatten(-1, (lmax + 1, 2 * lmax + 1))


@lru_cache(maxsize=None)
def gaunt_coefficients(l1: int, l2: int, l3: int) -> torch.Tensor:
    r"""``[2l1+1, 2l2+1, 2l3+1]`` float64: :math:`G = \int Y_{l_1 m_1} Y_{l_2 m_2} Y_{l_3 m_3} d\Omega`.

    Real, orthonormal (``"integral"``) spherical harmonics. Computed the Clebsch-Gordan way,
    without any quadrature: the invariant tensors of :math:`l_1 \otimes l_2 \otimes l_3` form a
    one-dimensional space, so :math:`G = \gamma\, W` with ``W = o3.wigner_3j(l1, l2, l3)``
    (Frobenius norm 1). Contracting :math:`Y_{l_1}(r) Y_{l_2}(r) = \sum_{L,M} G^{l_1 l_2 L}_{\cdot\cdot M}
    Y_{LM}(r)` with ``W`` and using :math:`\sum_{m_1 m_2} W W' = \delta/(2l_3+1)` gives
    :math:`\sum_{m_1 m_2} W_{m_1 m_2 m_3} Y_{l_1 m_1}(r) Y_{l_2 m_2}(r) = \gamma/(2l_3+1)\, Y_{l_3 m_3}(r)`
    for every direction ``r``; ``gamma`` is read off by least squares over a few directions.
    It vanishes unless ``l1 + l2 + l3`` is even and the triangle inequality holds.
    """
    if not abs(l1 - l2) <= l3 <= l1 + l2 or (l1 + l2 + l3) % 2 == 1:
        return torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=torch.float64)
    w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    r = torch.randn(16, 3, dtype=torch.float64, generator=generator)
    y1 = o3.spherical_harmonics(l1, r, normalize=True, normalization="integral")
    y2 = o3.spherical_harmonics(l2, r, normalize=True, normalization="integral")
    y3 = o3.spherical_harmonics(l3, r, normalize=True, normalization="integral")
    lhs = torch.einsum("ijk,zi,zj->zk", w3j, y1, y2).reshape(-1)
    ratio = (lhs @ y3.reshape(-1)) / (y3.reshape(-1) @ y3.reshape(-1))
    return ratio * (2 * l3 + 1) * w3j


@dataclass(frozen=True)
class S2Grid:
    """A product quadrature grid on the sphere: Gauss-Legendre in ``cos(beta)``, uniform in ``alpha``.

    ``sum_jk weights[j] * f(r(betas[j], alphas[k])) = integral of f over the sphere`` exactly for
    every polynomial ``f`` of degree ``<= 2 res_beta - 1`` that is also of degree ``< res_alpha``
    in the azimuth. ``weights: [res_beta]`` already include the azimuthal factor
    ``2 pi / res_alpha``; they sum to ``4 pi / res_alpha * res_alpha = 4 pi`` over the grid.
    """

    betas: torch.Tensor  # [res_beta]
    alphas: torch.Tensor  # [res_alpha]
    weights: torch.Tensor  # [res_beta]

    @property
    def resolution(self) -> tuple[int, int]:
        return len(self.betas), len(self.alphas)


def exact_resolution(degree: int) -> tuple[int, int]:
    """Smallest ``(res_beta, res_alpha)`` whose grid integrates every degree-``degree`` polynomial exactly.

    Gauss-Legendre with ``n`` nodes is exact up to degree ``2n - 1`` in ``cos(beta)``; the
    trapezoidal rule with ``n`` points is exact for azimuthal frequencies ``< n``.
    """
    return degree // 2 + 1, degree + 1


def gauss_legendre_grid(res_beta: int, res_alpha: int, dtype: torch.dtype = torch.float64) -> S2Grid:
    """The :class:`S2Grid` with ``res_beta`` Gauss-Legendre rings and ``res_alpha`` points per ring."""
    nodes, ring_weights = np.polynomial.legendre.leggauss(res_beta)
    betas = torch.as_tensor(np.arccos(nodes[::-1].copy()), dtype=dtype)
    weights = torch.as_tensor(ring_weights[::-1].copy(), dtype=dtype) * (2 * math.pi / res_alpha)
    alphas = torch.arange(res_alpha, dtype=dtype) * (2 * math.pi / res_alpha)
    return S2Grid(betas=betas, alphas=alphas, weights=weights)
