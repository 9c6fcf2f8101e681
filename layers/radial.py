r"""Radial embedding of edge lengths: Bessel basis times a smooth polynomial cutoff.

For an edge of length :math:`r` and cutoff :math:`r_c` (DimeNet, Gasteiger et al. 2020; MACE,
Batatia et al. 2022, eq. 8)

.. math::
   e_n(r) = \sqrt{2 / r_c}\; \frac{\sin(n \pi r / r_c)}{r}\; f_p(r / r_c), \qquad n = 1..N,

   f_p(x) = 1 - \frac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \frac{p(p+1)}{2} x^{p+2}
   \quad (x < 1), \qquad f_p(x) = 0 \quad (x \ge 1).

:math:`f_p` and its first two derivatives vanish at :math:`x = 1`, so energies and forces are
continuous as atoms cross the cutoff. The Bessel functions :math:`\sin(n\pi r/r_c)/r` are the
radial solutions of the Laplacian in a ball that vanish at :math:`r_c`.

Written here (not imported from e3nn) because e3nn's ``soft_one_hot_linspace`` has no Bessel
basis with this normalisation and no polynomial envelope; MACE's definitions are reproduced so
that MACE weights mean the same thing here.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    """``r: [num_edges, 1]`` -> ``[num_edges, num_basis]``: :math:`\\sqrt{2/r_c}\\,\\sin(n\\pi r/r_c)/r`.

    The frequencies :math:`n\\pi/r_c` are a parameter when ``trainable`` (MACE's default: fixed).
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        if r_max <= 0:
            raise ValueError(f"r_max must be positive, got {r_max}")
        if num_basis < 1:
            raise ValueError(f"num_basis must be at least 1, got {num_basis}")
        frequencies = math.pi / r_max * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        if trainable:
            self.frequencies = nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)
        self.r_max = float(r_max)
        self.prefactor = math.sqrt(2.0 / r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.prefactor * torch.sin(self.frequencies * r) / r

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, num_basis={self.frequencies.numel()}"


class PolynomialCutoff(nn.Module):
    """``r: [num_edges, 1]`` -> ``[num_edges, 1]``: the envelope :math:`f_p(r / r_c)` of the module docstring."""

    def __init__(self, r_max: float, p: int = 5) -> None:
        super().__init__()
        if p < 1:
            raise ValueError(f"polynomial cutoff order p must be at least 1, got {p}")
        self.r_max = float(r_max)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.r_max
        envelope = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x.pow(p)
            + p * (p + 2) * x.pow(p + 1)
            - 0.5 * p * (p + 1) * x.pow(p + 2)
        )
        return envelope * (x < 1.0).to(r.dtype)

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, p={self.p}"


class RadialEmbedding(nn.Module):
    """``lengths: [num_edges, 1]`` -> ``[num_edges, num_bessel]``: Bessel basis times polynomial cutoff."""

    def __init__(self, r_max: float, num_bessel: int = 8, num_polynomial_cutoff: int = 5) -> None:
        super().__init__()
        self.bessel = BesselBasis(r_max, num_bessel)
        self.cutoff = PolynomialCutoff(r_max, num_polynomial_cutoff)
        self.out_dim = num_bessel

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.bessel(lengths) * self.cutoff(lengths)
