r"""The CP-decomposed tensor product of Tensor Decomposition Networks (TDN).

Lin et al., "Tensor Decomposition Networks for Fast Machine Learning Interatomic Potential
Computations", NeurIPS 2025. The full Clebsch-Gordan product of one copy of each irrep is a
bilinear map with coupling tensor :math:`M \in \mathbb{R}^{D_1 \times D_2 \times D_3}`
(:func:`layers.tensor_product.cp_fit.coupling_tensor`: every parity- and triangle-allowed path).
TDN replaces it by a rank-:math:`R` CP decomposition :math:`M \approx \sum_r a_r \otimes b_r
\otimes c_r`, so one product costs :math:`O(R\,(D_1 + D_2 + D_3))` instead of
:math:`O(D_1 D_2 D_3)`:

.. math:: z_k = \sum_r c_{kr}\, (a_r \cdot x)(b_r \cdot y).

**Path-weight sharing** (TDN section 4): all paths share one set of channel weights, as if
every path's weight block were the same tensor; per mode::

    uvw  z_w = sum_{u,v} W_uvw M_R(x_u, y_v) / sqrt(U V)    weights [U, V, W]
    uvu  z_u = sum_v     W_uv  M_R(x_u, y_v) / sqrt(V)      weights [U, V]  (MACE's message)
    uuu  z_u =           W_u   M_R(x_u, y_u)                weights [U]

With :math:`R` large enough for an exact decomposition this equals the ``cg`` product whose path
weight blocks are all set to the same :math:`W` (``path_normalization="element"``).

**Only approximately equivariant.** With :math:`E = M_R - M` and orthogonal representations
:math:`D`, :math:`\|M_R(Dx, Dy) - D M_R(x, y)\| = \|E(Dx, Dy) - D E(x,y)\| \le 2\|E\|_F \|x\|\|y\|`
per channel pair; :meth:`CPTensorProduct.equivariance_bound` evaluates this bound for given
inputs. It falls with the rank. ``relative_error`` is :math:`\|E\|_F/\|M\|_F`.

**Rank.** ``rank=None`` (default) picks the smallest rank reaching ``target_error`` (default
1e-3) relative error; factors are fitted once and cached on disk
(:mod:`layers.tensor_product.cp_fit`). The default ranks and the relative errors their factors reach,
measured with ``scripts/cp_ranks.py`` (float64 ALS, 2026-11-23; all within the 1e-3 target):

=================================================  ====  ==============  =========
irreps (in1 x in2 -> out, one copy each)           rank  relative error  D1*D2*D3
=================================================  ====  ==============  =========
0e+1o x 0e+1o -> 0e+1o                                6         8.6e-11  4*4*4
0e+1o x 0e+1o -> 0e+1o+1e                            10         1.9e-10  4*4*7
0e+1o+2e x 0e+1o+2e -> 0e+1o+2e                      20         7.8e-09  9*9*9
0e+1o+2e x 0e+1o+2e -> 0e+1o+1e+2e+2o                50         9.9e-11  9*9*17
0e+1o x 0e+1o+2e+3o -> 0e+1o+1e+2e+2o+3e+3o          47         2.6e-10  4*16*31
0e+1o+2e+3o x 0e+1o+2e+3o -> 0e+1o+2e+3o             58         6.6e-06  16*16*16
0e+1o+2e+3o+4e x 0e+1o+2e+3o+4e -> 0e+1o+2e+3o+4e   140         2.4e-06  25*25*25
=================================================  ====  ==============  =========

The factors are persistent buffers: a checkpoint keeps the exact factors it was trained with.
"""

from __future__ import annotations

from math import sqrt
from typing import Optional

import torch

from layers.irreps import ChannelSignal, IrrepsLike
from layers.tensor_product.base import TensorProduct, weight_block
from layers.tensor_product.cp_fit import (
    CPFactors,
    auto_rank_cp,
    cached_cp,
    coupling_paths,
    coupling_tensor,
    fitting_deferred,
    path_coefficient,
    placeholder_factors,
)
from layers.tensor_product.spec import Capabilities, Path, TensorProductSpec, lay_out_weights

MODES = ("uuu", "uvu", "uvw")


class CPTensorProduct(TensorProduct):
    """CP-decomposed tensor product with TDN's path-weight sharing (module docstring).

    Args:
        irreps_in1, irreps_in2, irreps_out: irreps with one multiplicity each (``"16x0e+16x1o"``).
        mode: ``"uuu"``, ``"uvu"`` or ``"uvw"`` (default).
        kernel, shared_weights, internal_weights: see :func:`~layers.tensor_product.registry.make_tensor_product`.
        rank: CP rank ``R``; ``None`` chooses the smallest rank reaching ``target_error``.
        target_error: relative Frobenius error the automatic rank must reach.
    """

    method = "cp"
    capabilities = Capabilities(
        equivariance="approximate",
        paths="every |l1 - l2| <= l3 <= l1 + l2, all sharing one channel weight (TDN path-weight sharing)",
        parity="O(3) paths as in cg; equivariant up to the CP error (equivariance_bound)",
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
        rank: Optional[int] = None,
        target_error: float = 1e-3,
    ) -> None:
        mode = mode or "uvw"
        if mode not in MODES:
            raise ValueError(f"cp: unknown mode {mode!r}; valid: {', '.join(MODES)}")
        sig1 = ChannelSignal.of(irreps_in1, "irreps_in1")
        sig2 = ChannelSignal.of(irreps_in2, "irreps_in2")
        sig_out = ChannelSignal.of(irreps_out, "irreps_out")
        U, V, W = sig1.mul, sig2.mul, sig_out.mul
        if mode == "uuu" and not U == V == W:
            raise ValueError(f"cp: mode uuu needs equal multiplicities, got {U}, {V} -> {W}")
        if mode == "uvu" and U != W:
            raise ValueError(f"cp: mode uvu needs mul_out == mul_in1, got {U} -> {W}")
        if rank is not None and int(rank) < 1:
            raise ValueError(f"cp: rank must be a positive integer, got {rank!r}")
        paths = coupling_paths(sig1.base, sig2.base, sig_out.base)
        missing = sorted({i for i in range(len(sig_out.base))} - {p[2] for p in paths})
        if missing:
            names = ", ".join(str(sig_out.base[i].ir) for i in missing)
            raise ValueError(f"cp: no path of {sig1.irreps} x {sig2.irreps} reaches {names}")
        shape = {"uvw": (U, V, W), "uvu": (U, V), "uuu": (U,)}[mode]
        tensor = coupling_tensor(sig1.base, sig2.base, sig_out.base)
        description = f"{sig1.base} x {sig2.base} -> {sig_out.base}"
        if fitting_deferred():  # the factors are loaded next (a checkpoint): do not fit what is overwritten
            factors = placeholder_factors(tuple(tensor.shape), int(rank or 1))
        else:
            factors = (
                auto_rank_cp(tensor, target_error, description) if rank is None
                else cached_cp(tensor, int(rank), description)
            )
        spec = TensorProductSpec(
            method="cp",
            mode=mode,
            irreps_in1=sig1.irreps,
            irreps_in2=sig2.irreps,
            irreps_out=sig_out.irreps,
            paths=tuple(Path(i1, i2, i3, mode, coefficient=path_coefficient(sig_out.base, paths, i3)) for i1, i2, i3 in paths),
            weights=lay_out_weights([("channel weights (shared by all paths)", shape)]),
            options=(("rank", factors.rank),),
        )
        super().__init__(spec, kernel=kernel, shared_weights=shared_weights, internal_weights=internal_weights)
        self.signals = (sig1, sig2, sig_out)
        self._shapes = ((sig1.mul, sig1.base.dim), (sig2.mul, sig2.base.dim))  # channel views, as ints
        self.rank = factors.rank
        self.weight_layout = spec.weights[0]
        dtype = torch.get_default_dtype()
        self.register_buffer("factor_in1", factors.in1.to(dtype))
        self.register_buffer("factor_in2", factors.in2.to(dtype))
        self.register_buffer("factor_out", factors.out.to(dtype))
        self.register_constant("to_channels1", sig1.to_channels_index())
        self.register_constant("to_channels2", sig2.to_channels_index())
        self.register_constant("from_channels", sig_out.from_channels_index())
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Loading factors of another rank (a checkpoint fitted with ``rank=None``, loaded into a product
        built under :func:`~layers.tensor_product.cp_fit.deferred_fitting`) adopts that rank."""
        names = ("factor_in1", "factor_in2", "factor_out")
        incoming = [state_dict.get(prefix + name) for name in names]
        if all(t is not None and t.dim() == 2 for t in incoming):
            ranks = {t.shape[1] for t in incoming}
            rows = tuple(t.shape[0] for t in incoming)
            if len(ranks) == 1 and rows == tuple(getattr(self, n).shape[0] for n in names) and ranks != {self.rank}:
                for name, tensor in zip(names, incoming):
                    current = getattr(self, name)
                    setattr(self, name, torch.empty(tensor.shape, dtype=current.dtype, device=current.device))
                self.rank = ranks.pop()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # -- error of the decomposition ------------------------------------------------------
    def coupling_error(self) -> tuple[float, float]:
        """``(||E||_F, ||E||_F / ||M||_F)`` of the factors held now (float64)."""
        sig1, sig2, sig_out = self.signals
        tensor = coupling_tensor(sig1.base, sig2.base, sig_out.base)
        factors = CPFactors(*(f.detach().double().cpu() for f in (self.factor_in1, self.factor_in2, self.factor_out)))
        error = float((factors.reconstruct() - tensor).norm())
        return error, error / float(tensor.norm())

    @property
    def relative_error(self) -> float:
        return self.coupling_error()[1]

    def equivariance_bound(self, x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[...]``: an upper bound on ``||f(D1 x1, D2 x2) - D_out f(x1, x2)||`` for any rotation/inversion.

        Per output channel, ``2 ||E||_F`` times the forward's channel contraction applied to
        ``|W|`` and the per-channel norms ``||x1_u||``, ``||x2_v||``; the row bound is the 2-norm
        over channels.
        """
        sig1, sig2, _ = self.signals
        weight = self._resolve_weight(weight)
        n1 = x1[..., self.to_channels1].unflatten(-1, (sig1.mul, sig1.base.dim)).norm(dim=-1)
        n2 = x2[..., self.to_channels2].unflatten(-1, (sig2.mul, sig2.base.dim)).norm(dim=-1)
        w = weight_block(weight, self.spec.weights[0]).abs()
        mode = self.spec.mode
        if mode == "uvw":
            per_channel = torch.einsum("...u,...v,...uvw->...w", n1, n2, w) / sqrt(sig1.mul * sig2.mul)
        elif mode == "uvu":
            per_channel = n1 * torch.einsum("...v,...uv->...u", n2, w) / sqrt(sig2.mul)
        else:
            per_channel = n1 * n2 * w
        return 2 * self.coupling_error()[0] * per_channel.norm(dim=-1)

    # -- forward -------------------------------------------------------------------------
    def _reference(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        (mul1, dim1), (mul2, dim2) = self._shapes
        batch = x1.shape[0]
        x1 = x1.index_select(1, self.to_channels1).reshape(batch, mul1, dim1)
        x2 = x2.index_select(1, self.to_channels2).reshape(batch, mul2, dim2)
        p = x1 @ self.factor_in1.to(x1.dtype)  # [Z, U, R]
        q = x2 @ self.factor_in2.to(x1.dtype)  # [Z, V, R]
        w = weight_block(weight, self.weight_layout)
        z = "z" if weight.dim() == 2 else ""
        if self.mode == "uvw":
            h = torch.einsum(f"zur,zvr,{z}uvw->zwr", p, q, w) / sqrt(mul1 * mul2)
        elif self.mode == "uvu":
            h = p * torch.einsum(f"zvr,{z}uv->zur", q, w) / sqrt(mul2)
        else:
            h = p * q * w.unsqueeze(-1)
        out = h @ self.factor_out.to(x1.dtype).T  # [Z, C, D3]
        return out.reshape(batch, -1).index_select(1, self.from_channels)
