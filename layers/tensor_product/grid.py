r"""The spherical-grid tensor product: multiply spherical functions pointwise on an S2 quadrature grid.

Xie, Daigavane, Kotak, Smidt, "The Price of Freedom: Exploring Expressivity and Runtime Tradeoffs
in Equivariant Tensor Products", ICML 2025, observe that the Gaunt product needs no 2D Fourier
detour: evaluate both functions on a grid, multiply pointwise, and project back with a quadrature
rule. With the separable harmonics :math:`Y_{lm}(\beta,\alpha) = P_{lm}(\beta)\Phi_m(\alpha)`
(:mod:`layers.spherical`)

.. math::
    f(\beta_j, \alpha_k) = \sum_m \Phi_m(\alpha_k) \sum_l x_{lm} P_{lm}(\beta_j), \qquad
    z_{l_3 m_3} = \sum_j w_j P_{l_3 m_3}(\beta_j) \sum_k \Phi_{m_3}(\alpha_k)\, f(\beta_j,\alpha_k)\, g(\beta_j,\alpha_k)

each sum a small matrix product, :math:`O(L^3)` per channel. The grid is Gauss-Legendre in
:math:`\cos\beta` and uniform in :math:`\alpha`. The integrand :math:`f g Y_{l_3}` is a polynomial
of degree :math:`L_1 + L_2 + L_3`, so ``res_beta >= (L1+L2+L3)//2 + 1`` rings and
``res_alpha >= L1+L2+L3+1`` points per ring integrate it exactly: then this product equals the
Gaunt product (:mod:`layers.tensor_product.gaunt`) with the same weights to round-off. That
minimum is the default; ``resolution=(res_beta, res_alpha)`` may ask for more, never less (a
coarser grid aliases and breaks equivariance).

Same weights, parity handling and limits as ``gaunt``: only paths with :math:`l_1+l_2+l_3` even.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from layers.exact_constants import ExactConstants
from layers.irreps import IrrepsLike
from layers.spherical import (
    azimuthal_factor,
    degree_order_index,
    exact_resolution,
    gauss_legendre_grid,
    padded_gather_index,
    polar_factor,
    to_padded,
)
from layers.tensor_product.spec import Capabilities
from layers.tensor_product.spherical_product import MODES, SphericalFunctionProduct


def _polar_table(lmax: int, betas: torch.Tensor) -> torch.Tensor:
    """``[lmax+1, 2lmax+1, res_beta]``: ``P_lm(beta_j)``, zero where ``|m| > l``."""
    ls, ms = degree_order_index(lmax)
    table = torch.zeros(lmax + 1, 2 * lmax + 1, len(betas), dtype=torch.float64)
    table[ls, ms] = polar_factor(lmax, betas).T
    return table


class GridMultiplier(ExactConstants):
    """Multiplies functions of degree ``<= lmax1``, ``<= lmax2`` on a Gauss-Legendre grid, keeps ``<= lmax_out``.

    ``forward(f1: [Z, C, (lmax1+1)^2], f2: [Z, C, (lmax2+1)^2]) -> [Z, C, (lmax_out+1)^2]``.
    """

    def __init__(self, lmax1: int, lmax2: int, lmax_out: int, resolution: Optional[tuple[int, int]] = None) -> None:
        super().__init__()
        needed = exact_resolution(lmax1 + lmax2 + lmax_out)
        if resolution is None:
            resolution = needed
        res_beta, res_alpha = resolution
        if res_beta < needed[0] or res_alpha < needed[1]:
            raise ValueError(
                f"grid: resolution {tuple(resolution)} is too coarse for degrees {lmax1} x {lmax2} -> {lmax_out}; "
                f"an exact product needs at least {needed} (res_beta, res_alpha)"
            )
        self.lmaxes = (lmax1, lmax2, lmax_out)
        self.resolution = (res_beta, res_alpha)
        grid = gauss_legendre_grid(res_beta, res_alpha)
        for name, lmax in (("1", lmax1), ("2", lmax2)):
            self.register_constant(f"polar{name}", _polar_table(lmax, grid.betas))
            self.register_constant(f"azimuthal{name}", azimuthal_factor(lmax, grid.alphas).T.contiguous())
            self.register_constant(f"padded_gather{name}", padded_gather_index(lmax))
            ls, ms = degree_order_index(lmax)
            self.register_constant(f"padded_index{name}", ls * (2 * lmax + 1) + ms)
        # projection back: the quadrature weight is folded into the polar table
        weighted_polar = _polar_table(lmax_out, grid.betas) * grid.weights
        self.register_constant("projection_polar", weighted_polar)
        self.register_constant("projection_azimuthal", azimuthal_factor(lmax_out, grid.alphas).T.contiguous())
        ls, ms = degree_order_index(lmax_out)
        self.register_constant("flat_index_out", ls * (2 * lmax_out + 1) + ms)

    def dense_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(F1 [D1, Q], F2 [D2, Q], F_out [D3, Q])`` float64 with ``Q = res_beta * res_alpha`` grid points.

        ``F_t[(l,m), q] = Y_lm(r_q)`` and ``F_out[(l,m), q] = w_q Y_lm(r_q)``, so that
        ``forward(f1, f2) = ((f1 @ F1) * (f2 @ F2)) @ F_out.T``: the quadrature as a rank-Q CP
        decomposition of the Gaunt tensor (used by the fused kernel).
        """

        def flat(polar: torch.Tensor, azimuthal: torch.Tensor, padded_index: torch.Tensor) -> torch.Tensor:
            table = torch.einsum("lmj,mk->lmjk", polar, azimuthal).flatten(0, 1)  # [(l, m) padded, j, k]
            return table[padded_index].flatten(1)

        return (
            flat(self.master("polar1"), self.master("azimuthal1"), self.master("padded_index1")),
            flat(self.master("polar2"), self.master("azimuthal2"), self.master("padded_index2")),
            flat(self.master("projection_polar"), self.master("projection_azimuthal"), self.master("flat_index_out")),
        )

    def _to_grid(self, f: torch.Tensor, which: str) -> torch.Tensor:
        """``[Z, C, (L+1)^2]`` coefficients -> ``[Z, C, res_beta, res_alpha]`` values."""
        lmax = self.lmaxes[0] if which == "1" else self.lmaxes[1]
        padded = to_padded(f, getattr(self, f"padded_gather{which}"), lmax)
        per_m = torch.einsum("zclm,lmj->zcjm", padded, getattr(self, f"polar{which}").to(f.dtype))
        return torch.einsum("zcjm,mk->zcjk", per_m, getattr(self, f"azimuthal{which}").to(f.dtype))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        values = self._to_grid(f1, "1") * self._to_grid(f2, "2")
        per_m = torch.einsum("zcjk,mk->zcjm", values, self.projection_azimuthal.to(f1.dtype))
        padded = torch.einsum("zcjm,lmj->zclm", per_m, self.projection_polar.to(f1.dtype))
        return padded.flatten(-2).index_select(-1, self.flat_index_out)


class GridTensorProduct(SphericalFunctionProduct):
    """Spherical-grid tensor product (module docstring); weights as in ``gaunt``.

    Args:
        irreps_in1, irreps_in2, irreps_out: irreps with one multiplicity each.
        mode: ``"uuu"``, ``"uvu"`` or ``"uvw"`` (default).
        kernel, shared_weights, internal_weights: see :func:`~layers.tensor_product.registry.make_tensor_product`.
        resolution: ``(res_beta, res_alpha)`` of the grid; default the smallest exact one for each
            product. A larger grid changes nothing but the cost.
    """

    method = "grid"
    capabilities = Capabilities(
        equivariance="exact",
        paths="only l1 + l2 + l3 even (no cross product 1o x 1o -> 1e); one weight per irrep and channel",
        parity="exact O(3): inputs split by parity class p(-1)^l, classes multiply",
        max_l=None,
        modes=MODES,
        kernels=("reference", "fused"),
    )

    def __init__(
        self,
        irreps_in1: IrrepsLike,
        irreps_in2: IrrepsLike,
        irreps_out: IrrepsLike,
        *,
        mode: Optional[str] = None,
        kernel: str = "auto",
        shared_weights: bool = True,
        internal_weights: Optional[bool] = None,
        resolution: Optional[tuple[int, int]] = None,
    ) -> None:
        self._resolution = None if resolution is None else (int(resolution[0]), int(resolution[1]))
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            mode=mode,
            kernel=kernel,
            shared_weights=shared_weights,
            internal_weights=internal_weights,
            options=(("resolution", self._resolution),) if resolution is not None else (),
        )

    def make_multiplier(self, lmax1: int, lmax2: int, lmax_out: int) -> nn.Module:
        return GridMultiplier(lmax1, lmax2, lmax_out, self._resolution)
