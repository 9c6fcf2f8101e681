r"""The Gaunt tensor product: multiply spherical functions in a 2D Fourier basis with FFTs.

Luo, Chen, Krishnapriyan, "Enabling Efficient Equivariant Operations in the Fourier Basis via
Gaunt Tensor Products", ICLR 2024. The product of two functions on the sphere (see
:mod:`layers.tensor_product.spherical_product` for the weights, parity and normalisation) is
computed in three exact steps, :math:`O(L^3)` per channel instead of the :math:`O(L^6)` of a
full Clebsch-Gordan product:

1. **SH -> 2D Fourier.** With the polar angle extended to :math:`\beta \in [0, 2\pi)`, every
   real spherical harmonic is a trigonometric polynomial,
   :math:`Y_{lm}(\beta, \alpha) = P_{lm}(\beta)\Phi_m(\alpha) = \sum_{|u|,|v| \le l} y^{lm}_{uv}
   e^{i(u\beta + v\alpha)}`, with :math:`y^{lm}_{uv} = p^{lm}_u \phi^m_v` and :math:`\phi^m_v = 0`
   unless :math:`v = \pm m`. The coefficients come from an FFT of samples on a uniform grid
   (exact: the samples determine a trigonometric polynomial of that degree). Applying them
   factor by factor costs :math:`O(L^3)`.
2. **Product = 2D convolution**, done as FFT, pointwise product, inverse FFT on grids large
   enough that no frequency aliases: :math:`N_\beta \ge 2(L_1+L_2)+1` rows (every :math:`u` of the
   product is needed) and :math:`N_\alpha \ge L_1+L_2+L_3+1` columns (only :math:`|v| \le L_3` is read).
3. **2D Fourier -> SH.** On the sphere (:math:`\beta \in [0, \pi]`, measure :math:`\sin\beta\, d\beta\, d\alpha`)
   :math:`x_{l_3 m_3} = \sum_{uv} F_{uv} \int e^{iv\alpha}\Phi_{m_3}\,d\alpha \int_0^\pi e^{iu\beta}
   P_{l_3 m_3}\sin\beta\, d\beta`. The azimuthal integral is :math:`2\pi\phi^{m_3}_{-v}`; the polar
   one is :math:`\sum_{u'} p^{l_3 m_3}_{u'} I(u+u')` with the closed form
   :math:`I(k) = \int_0^\pi e^{ik\beta}\sin\beta\, d\beta = (1 + (-1)^k)/(1-k^2)` for
   :math:`|k| \ne 1` and :math:`\pm i\pi/2` for :math:`k = \pm 1`.

What it cannot express: only paths with :math:`l_1 + l_2 + l_3` even exist. ``1o x 1o -> 1e``
(the cross product :math:`a \times b`) has :math:`1+1+1 = 3`, so::

    make_tensor_product("1o", "1o", "1e", method="gaunt")   # ValueError: no even path reaches 1e
    make_tensor_product("1o", "1o", "0e+2e", method="gaunt")  # fine: dot product and traceless part

Equals :mod:`layers.tensor_product.grid` with the same weights, to round-off.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from layers.exact_constants import ExactConstants
from layers.irreps import IrrepsLike
from layers.spherical import azimuthal_factor, degree_order_index, padded_gather_index, polar_factor, to_padded
from layers.tensor_product.spec import Capabilities
from layers.tensor_product.spherical_product import MODES, SphericalFunctionProduct


def _fourier_coefficients(samples: torch.Tensor) -> torch.Tensor:
    """Complex coefficients ``c_k`` (``k`` in FFT order) of the trigonometric polynomial sampled at ``2 pi j / n``."""
    return torch.fft.fft(samples.to(torch.complex128), dim=-1, norm="forward")


def polar_fourier(lmax: int, size: int) -> torch.Tensor:
    """``[lmax+1, 2lmax+1, size]``: coefficients ``p^{lm}_u`` of ``P_lm(beta)`` at FFT index ``u mod size``.

    Entries with ``|m| > l`` are zero. Needs ``size >= 2 lmax + 1``.
    """
    beta = torch.arange(size, dtype=torch.float64) * (2 * math.pi / size)
    values = polar_factor(lmax, beta)  # [size, (lmax+1)^2]
    ls, ms = degree_order_index(lmax)
    table = torch.zeros(lmax + 1, 2 * lmax + 1, size, dtype=torch.complex128)
    table[ls, ms] = _fourier_coefficients(values.T)
    return table


def azimuthal_fourier(lmax: int, size: int) -> torch.Tensor:
    """``[2lmax+1, size]``: coefficients ``phi^m_v`` of ``Phi_m(alpha)`` at FFT index ``v mod size``."""
    alpha = torch.arange(size, dtype=torch.float64) * (2 * math.pi / size)
    return _fourier_coefficients(azimuthal_factor(lmax, alpha).T)


def _complex(table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``[..., 2]`` real buffer as a complex tensor of the precision of ``dtype``."""
    return torch.view_as_complex(table.to(dtype).contiguous())


def _frequencies(size: int) -> torch.Tensor:
    """Signed frequency of each FFT index."""
    return torch.fft.fftfreq(size, d=1.0 / size).round().long()


def _polar_integral(k: torch.Tensor) -> torch.Tensor:
    """``I(k) = int_0^pi exp(i k beta) sin(beta) d beta`` for integer ``k`` (closed form)."""
    k = k.to(torch.float64)
    even = torch.where(k.remainder(2) == 0, 2.0 / (1.0 - k**2), torch.zeros_like(k))
    result = torch.complex(even, torch.zeros_like(k))
    return torch.where(k.abs() == 1, torch.complex(torch.zeros_like(k), math.pi / 2 * k), result)


class FourierMultiplier(ExactConstants):
    """Multiplies functions of degree ``<= lmax1`` and ``<= lmax2``, keeping degrees ``<= lmax_out``.

    ``forward(f1: [Z, C, (lmax1+1)^2], f2: [Z, C, (lmax2+1)^2]) -> [Z, C, (lmax_out+1)^2]``
    in e3nn's flat (l, m) order, via steps 1-3 of the module docstring. The functions are real, so
    their spectra are Hermitian, ``F[-u, -v] = conj F[u, v]``: only the columns ``v >= 0`` are kept
    (real FFTs), and since the azimuthal and polar integrals satisfy ``a(-v) = conj a(v)`` and
    ``b(-u) = conj b(u)``, the columns ``v < 0`` add the same real part as ``v > 0``: step 3 reads
    ``x = Re[sum_u F[u,0] a(0) b(u) + 2 sum_u sum_{0<v<=L3} F[u,v] a(v) b(u)]``.
    """

    def __init__(self, lmax1: int, lmax2: int, lmax_out: int) -> None:
        super().__init__()
        self.lmax1, self.lmax2, self.lmax_out = lmax1, lmax2, lmax_out
        self.rows = 2 * (lmax1 + lmax2) + 1  # N_beta
        self.columns = lmax1 + lmax2 + lmax_out + 1  # N_alpha
        half = self.columns // 2 + 1  # columns v = 0 .. N_alpha // 2 of a real FFT
        for name, lmax in (("1", lmax1), ("2", lmax2)):
            polar = polar_fourier(lmax, self.rows)  # [L+1, 2L+1, N_beta] complex
            self.register_constant(f"polar{name}_real", polar.real.contiguous())
            self.register_constant(f"polar{name}_imag", polar.imag.contiguous())
            # complex tables are stored as real [..., 2] views: Module.to(dtype) would drop imaginary parts
            azimuthal = azimuthal_fourier(lmax, self.columns)[:, :half]  # [2L+1, half]
            self.register_constant(f"azimuthal{name}", torch.view_as_real(azimuthal.contiguous()))
            self.register_constant(f"padded_gather{name}", padded_gather_index(lmax))
        # back to SH: azimuthal integrals a(v) [L3+1, 2L3+1] (v >= 0, doubled for v > 0) and
        # polar integrals b(u) [N_beta, L3+1, 2L3+1]
        phi_out = azimuthal_fourier(lmax_out, self.columns)  # [2L3+1, N_alpha]
        v = torch.arange(lmax_out + 1)
        azimuthal_integral = 2 * math.pi * phi_out[:, (-v) % self.columns].T  # a(v) = 2 pi phi_{-v}
        azimuthal_integral[1:] *= 2
        u = _frequencies(self.rows)
        p_out = polar_fourier(lmax_out, 2 * lmax_out + 1)  # [L3+1, 2L3+1, 2L3+1] (coefficient index u')
        u_prime = _frequencies(2 * lmax_out + 1)
        integrals = _polar_integral(u[:, None] + u_prime[None, :])  # [N_beta, 2L3+1]
        polar_integral = torch.einsum("lmq,uq->ulm", p_out, integrals)
        self.register_constant("azimuthal_integral", torch.view_as_real(azimuthal_integral.contiguous()))
        self.register_constant("polar_integral_real", polar_integral.real.contiguous())
        self.register_constant("polar_integral_imag", polar_integral.imag.contiguous())
        ls, ms = degree_order_index(lmax_out)
        self.register_constant("flat_index_out", ls * (2 * lmax_out + 1) + ms)

    def values(self, f: torch.Tensor, which: str) -> torch.Tensor:
        """Steps 1-2a: ``[Z, C, (L+1)^2]`` coefficients -> ``[Z, C, N_beta, N_alpha]`` values on the torus grid."""
        lmax = self.lmax1 if which == "1" else self.lmax2
        padded = to_padded(f, getattr(self, f"padded_gather{which}"), lmax)
        per_m = torch.complex(
            torch.einsum("zclm,lmu->zcmu", padded, getattr(self, f"polar{which}_real").to(f.dtype)),
            torch.einsum("zclm,lmu->zcmu", padded, getattr(self, f"polar{which}_imag").to(f.dtype)),
        )
        spectrum = torch.einsum("zcmu,mv->zcuv", per_m, _complex(getattr(self, f"azimuthal{which}"), f.dtype))
        return torch.fft.irfft2(spectrum, s=(self.rows, self.columns), norm="forward")

    def coefficients(self, values: torch.Tensor) -> torch.Tensor:
        """Steps 2b-3: torus-grid values ``[Z, C, N_beta, N_alpha]`` -> ``[Z, C, (L3+1)^2]`` harmonics."""
        spectrum = torch.fft.rfft2(values, norm="forward")[..., : self.lmax_out + 1]
        per_m = torch.einsum("zcuv,vm->zcum", spectrum, _complex(self.azimuthal_integral, values.dtype))
        padded = torch.einsum("zcum,ulm->zclm", per_m.real, self.polar_integral_real.to(values.dtype)) - torch.einsum(
            "zcum,ulm->zclm", per_m.imag, self.polar_integral_imag.to(values.dtype)
        )
        return padded.flatten(-2).index_select(-1, self.flat_index_out)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        # convolution theorem: values on the uniform torus grid, pointwise product, back to coefficients
        return self.coefficients(self.values(f1, "1") * self.values(f2, "2"))

    def dense_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(F1 [D1, Q], F2 [D2, Q], F_out [D3, Q])`` float64 on the ``Q = N_beta * N_alpha`` torus grid.

        ``F_t`` holds each harmonic's values on the uniform torus grid (what the inverse FFT of
        step 2 produces) and ``F_out`` the exact linear map from grid values to harmonics (forward
        FFT and step 3), so ``forward(f1, f2) = ((f1 @ F1) * (f2 @ F2)) @ F_out.T``. The fused kernel
        runs these dense, real matrices: the same bilinear map without FFT launches.
        """
        exact = FourierMultiplier(self.lmax1, self.lmax2, self.lmax_out).double()
        factors = []
        for which, lmax in (("1", self.lmax1), ("2", self.lmax2)):
            basis = torch.eye((lmax + 1) ** 2, dtype=torch.float64)[None]
            factors.append(exact.values(basis, which)[0].flatten(1))
        grid_basis = torch.eye(self.rows * self.columns, dtype=torch.float64).view(1, -1, self.rows, self.columns)
        factors.append(exact.coefficients(grid_basis)[0].T.contiguous())  # [D3, Q]
        return factors[0], factors[1], factors[2]


class GauntTensorProduct(SphericalFunctionProduct):
    """Gaunt tensor product (module docstring); weights as in :mod:`~layers.tensor_product.spherical_product`.

    Args:
        irreps_in1, irreps_in2, irreps_out: irreps with one multiplicity each (``"16x0e+16x1o+16x2e"``).
        mode: ``"uuu"``, ``"uvu"`` or ``"uvw"`` (default).
        kernel, shared_weights, internal_weights: see :func:`~layers.tensor_product.registry.make_tensor_product`.
    """

    method = "gaunt"
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
    ) -> None:
        super().__init__(
            irreps_in1,
            irreps_in2,
            irreps_out,
            mode=mode,
            kernel=kernel,
            shared_weights=shared_weights,
            internal_weights=internal_weights,
        )

    def make_multiplier(self, lmax1: int, lmax2: int, lmax_out: int) -> nn.Module:
        return FourierMultiplier(lmax1, lmax2, lmax_out)
