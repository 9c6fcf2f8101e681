r"""Tensor products that multiply functions on the sphere: what ``gaunt`` and ``grid`` share.

Channel ``u`` of a feature with irreps ``U x S`` (``S`` distinct irreps, e.g. ``0e+1o+2e``) is
read as the function :math:`f_u(r) = \sum_{l m} x_{u,lm} Y_{lm}(r)` (orthonormal real
spherical harmonics). Multiplying two such functions and projecting back on :math:`Y_{l_3 m_3}`
is the Gaunt product

.. math:: (f g)_{l_3 m_3} = \sum_{l_1 m_1 l_2 m_2} G^{l_1 l_2 l_3}_{m_1 m_2 m_3}\, x_{l_1 m_1} y_{l_2 m_2},
   \qquad G = \int Y_{l_1 m_1} Y_{l_2 m_2} Y_{l_3 m_3}\, d\Omega,

a Clebsch-Gordan product whose path weights are fixed ratios (``G`` is proportional to the
Wigner 3j symbol, :func:`layers.spherical.gaunt_coefficients`). ``G`` vanishes unless
:math:`l_1 + l_2 + l_3` is even, so these products **cannot express odd paths**: the cross
product ``1o x 1o -> 1e`` (:math:`1+1+1 = 3`) or ``1o x 2e -> 2o``. Ask
:func:`layers.tensor_product.registry.output_irreps` what a method can produce.

Parity. ``Y_l`` has parity :math:`(-1)^l`; an irrep's *parity class* is
:math:`\sigma = p\,(-1)^l` (``0e, 1o, 2e`` have :math:`\sigma=+1`; ``0o, 1e, 2o`` have
:math:`\sigma=-1`). Each input splits into one function per class present; classes multiply, so
a product of classes :math:`\sigma_1, \sigma_2` lands on the output irreps of class
:math:`\sigma_1\sigma_2` -- exact O(3) equivariance, with at most four products per channel.

Weights (Luo et al. 2024, section 3.3, parameterise path weights as
:math:`w_{l_1} w_{l_2} w_{l_3}`; here each factor is per irrep and per channel)::

    mode  before the product (per input irrep)       after (per output irrep)   channels
    uuu   x1: scale a[i1, u]    x2: scale b[i2, u]     scale c[i3, u]             U = V = W
    uvu   x1: scale a[i1, u]    x2: mix   B[i2, u, v]  scale c[i3, u]             W = U
    uvw   x1: mix   A[i1, w, u] x2: mix   B[i2, w, v]  scale c[i3, w]             any

so channel ``c`` of the output is :math:`c_{i_3}\,\nu_{i_3}\,[(A x)_c \cdot (B y)_c]_{i_3}`.
Mixes are normalised by :math:`1/\sqrt{\text{fan-in}}` and initialised :math:`N(0,1)`; scales
start at 1. :math:`\nu_{i_3}` makes each output component unit-variance for unit-variance
inputs: :math:`\nu^{-2} = \sum_{\text{paths} \to i_3} \|G^{l_1 l_2 l_3}\|_F^2 / (2l_3+1)`.

Subclasses supply the multiplier: a module taking dense coefficient tensors
``[Z, C, (L1+1)^2]`` and ``[Z, C, (L2+1)^2]`` and returning ``[Z, C, (L3+1)^2]``.
"""

from __future__ import annotations

from math import sqrt
from typing import ClassVar, Optional

import torch
from e3nn import o3
from torch import nn

from layers.irreps import ChannelSignal, IrrepsLike, irrep_of_each_component, parity_class
from layers.spherical import gaunt_coefficients
from layers.tensor_product.base import TensorProduct, weight_block
from layers.tensor_product.spec import Path, TensorProductSpec, lay_out_weights

MODES = ("uuu", "uvu", "uvw")


def class_members(base: o3.Irreps, sigma: int) -> list[int]:
    """Indices of the irreps of ``base`` in parity class ``sigma``."""
    return [i for i, (_, ir) in enumerate(base) if parity_class(ir) == sigma]


def dense_gather_index(base: o3.Irreps, members: list[int], lmax: int) -> torch.Tensor:
    """``[(lmax+1)^2]``: where each dense (l, m) coefficient sits in ``base``'s components (``base.dim`` = zero)."""
    index = torch.full(((lmax + 1) ** 2,), base.dim, dtype=torch.long)
    for i in members:
        l = base[i].ir.l
        start = base.slices()[i].start
        index[l * l : (l + 1) * (l + 1)] = torch.arange(start, start + 2 * l + 1)
    return index


class SphericalFunctionProduct(TensorProduct):
    """Shared machinery of :class:`GauntTensorProduct` and :class:`GridTensorProduct` (module docstring)."""

    capabilities: ClassVar
    method: ClassVar[str]

    @classmethod
    def couples(cls, ir1, ir2, ir_out) -> bool:
        return ir_out in ir1 * ir2 and (ir1.l + ir2.l + ir_out.l) % 2 == 0

    def make_multiplier(self, lmax1: int, lmax2: int, lmax_out: int) -> nn.Module:
        raise NotImplementedError

    def __init__(
        self,
        irreps_in1: IrrepsLike,
        irreps_in2: IrrepsLike,
        irreps_out: IrrepsLike,
        *,
        mode: Optional[str],
        kernel: str,
        shared_weights: bool,
        internal_weights: Optional[bool],
        options: tuple = (),
    ) -> None:
        mode = mode or "uvw"
        if mode not in MODES:
            raise ValueError(f"{self.method}: unknown mode {mode!r}; valid: {', '.join(MODES)}")
        sig1 = ChannelSignal.of(irreps_in1, "irreps_in1")
        sig2 = ChannelSignal.of(irreps_in2, "irreps_in2")
        sig_out = ChannelSignal.of(irreps_out, "irreps_out")
        U, V, W = sig1.mul, sig2.mul, sig_out.mul
        if mode == "uuu" and not U == V == W:
            raise ValueError(f"{self.method}: mode uuu needs equal multiplicities, got {U}, {V} -> {W}")
        if mode == "uvu" and U != W:
            raise ValueError(f"{self.method}: mode uvu needs mul_out == mul_in1, got {U} -> {W}")
        n1, n2, n3 = len(sig1.base), len(sig2.base), len(sig_out.base)
        in1_op = ("in1 mix", (n1, W, U)) if mode == "uvw" else ("in1 scale", (n1, U))
        in2_op = ("in2 scale", (n2, U)) if mode == "uuu" else ("in2 mix", (n2, W, V))
        blocks = lay_out_weights([in1_op, in2_op, ("out scale", (n3, W))])

        # class pairs (with the output irreps each reaches) and the normalisation of each output irrep
        pairs, variance, paths = [], [0.0] * n3, []
        for s1 in (1, -1):
            for s2 in (1, -1):
                m1, m2 = class_members(sig1.base, s1), class_members(sig2.base, s2)
                reached = []
                for i3 in class_members(sig_out.base, s1 * s2):
                    ir3 = sig_out.base[i3].ir
                    for i1 in m1:
                        for i2 in m2:
                            ir1, ir2 = sig1.base[i1].ir, sig2.base[i2].ir
                            if self.couples(ir1, ir2, ir3):
                                variance[i3] += float(gaunt_coefficients(ir1.l, ir2.l, ir3.l).pow(2).sum()) / ir3.dim
                                paths.append((i1, i2, i3))
                                if i3 not in reached:
                                    reached.append(i3)
                if reached:
                    pairs.append((m1, m2, reached))
        missing = [str(sig_out.base[i].ir) for i in range(n3) if variance[i] == 0.0]
        if missing:
            raise ValueError(
                f"{self.method}: no even path (l1 + l2 + l3 even) of {sig1.irreps} x {sig2.irreps} reaches "
                f"{', '.join(missing)}; a product of functions on the sphere cannot make it (a Clebsch-Gordan "
                "'cg' or 'cp' product can). Ask registry.output_irreps() for what is reachable."
            )
        normalisation = [1.0 / sqrt(v) for v in variance]
        spec = TensorProductSpec(
            method=self.method,
            mode=mode,
            irreps_in1=sig1.irreps,
            irreps_in2=sig2.irreps,
            irreps_out=sig_out.irreps,
            paths=tuple(Path(i1, i2, i3, mode, coefficient=normalisation[i3]) for i1, i2, i3 in paths),
            weights=blocks,
            options=tuple(options),
        )
        super().__init__(spec, kernel=kernel, shared_weights=shared_weights, internal_weights=internal_weights)
        self.signals = (sig1, sig2, sig_out)
        self._shapes = ((sig1.mul, sig1.base.dim), (sig2.mul, sig2.base.dim))  # channel views, as ints
        self.in1_block, self.in2_block, self.out_block = blocks
        self.register_constant("to_channels1", sig1.to_channels_index())
        self.register_constant("to_channels2", sig2.to_channels_index())
        self.register_constant("from_channels", sig_out.from_channels_index())
        self.register_constant("irrep_of_component1", irrep_of_each_component(sig1.base))
        self.register_constant("irrep_of_component2", irrep_of_each_component(sig2.base))
        self.register_constant("irrep_of_component_out", irrep_of_each_component(sig_out.base))
        self.register_constant(
            "normalisation", torch.tensor(normalisation, dtype=torch.float64))
        # one multiplier per pair of parity classes, with the gathers into and out of dense (l, m) order
        self.multipliers = nn.ModuleList()
        self.pair_gathers: list[tuple[str, str, str]] = []
        for k, (m1, m2, m3) in enumerate(pairs):
            lmax1 = max(sig1.base[i].ir.l for i in m1)
            lmax2 = max(sig2.base[i].ir.l for i in m2)
            lmax3 = max(sig_out.base[i].ir.l for i in m3)
            self.multipliers.append(self.make_multiplier(lmax1, lmax2, lmax3))
            names = (f"dense1_{k}", f"dense2_{k}", f"scatter_out_{k}")
            self.register_constant(names[0], dense_gather_index(sig1.base, m1, lmax1))
            self.register_constant(names[1], dense_gather_index(sig2.base, m2, lmax2))
            scatter = torch.full((sig_out.base.dim,), (lmax3 + 1) ** 2, dtype=torch.long)
            for i in m3:
                l, start = sig_out.base[i].ir.l, sig_out.base.slices()[i].start
                scatter[start : start + 2 * l + 1] = torch.arange(l * l, (l + 1) * (l + 1))
            self.register_constant(names[2], scatter)
            self.pair_gathers.append(names)
        self.reset_parameters()

    def initialize_weight(self, weight: torch.Tensor) -> None:
        """Scales start at 1 (the plain product of functions); mixes are standard normal."""
        with torch.no_grad():
            for block in self.spec.weights:
                part = weight[..., block.start : block.stop]
                if "scale" in block.name:
                    part.fill_(1.0)
                else:
                    part.normal_()

    # -- forward pieces ------------------------------------------------------------------
    @staticmethod
    def _operate(x: torch.Tensor, op: torch.Tensor, irrep_of_component: torch.Tensor, mix: bool) -> torch.Tensor:
        """Per-irrep channel operator. ``x: [Z, U, D]``; ``op: [(Z,) n, U]`` (scale) or ``[(Z,) n, C, U]`` (mix)."""
        op = op.index_select(-2 if not mix else -3, irrep_of_component)  # per component
        if not mix:  # op: [(Z,) D, U]
            return x * op.transpose(-1, -2)
        subscripts = "zud,zdcu->zcd" if op.dim() == 4 else "zud,dcu->zcd"
        return torch.einsum(subscripts, x, op) / sqrt(x.shape[1])

    def _reference(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.evaluate(x1, x2, weight, lambda k, f1, f2: self.multipliers[k](f1, f2))

    def evaluate(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, multiply) -> torch.Tensor:
        """The product with ``multiply(k, f1, f2)`` doing the ``k``-th parity-class product.

        ``f1: [Z, C, (L1+1)^2]``, ``f2: [Z, C, (L2+1)^2]`` -> ``[Z, C, (L3+1)^2]``; the reference
        passes the method's multiplier, the fused kernel its own.
        """
        (mul1, dim1), (mul2, dim2) = self._shapes
        batch = x1.shape[0]
        x1 = x1.index_select(1, self.to_channels1).reshape(batch, mul1, dim1)
        x2 = x2.index_select(1, self.to_channels2).reshape(batch, mul2, dim2)
        f1 = self._operate(x1, weight_block(weight, self.in1_block), self.irrep_of_component1, self.mode == "uvw")
        f2 = self._operate(x2, weight_block(weight, self.in2_block), self.irrep_of_component2, self.mode != "uuu")
        f1 = torch.cat([f1, f1.new_zeros(f1.shape[:-1] + (1,))], dim=-1)  # a zero to gather absent degrees from
        f2 = torch.cat([f2, f2.new_zeros(f2.shape[:-1] + (1,))], dim=-1)
        out = None
        for k, (dense1, dense2, scatter) in enumerate(self.pair_gathers):
            product = multiply(k, f1[..., getattr(self, dense1)], f2[..., getattr(self, dense2)])
            product = torch.cat([product, product.new_zeros(product.shape[:-1] + (1,))], dim=-1)
            part = product[..., getattr(self, scatter)]
            out = part if out is None else out + part
        scale = weight_block(weight, self.out_block) * self.normalisation.to(x1.dtype).unsqueeze(-1)  # [(Z,) n3, W]
        out = out * scale.index_select(-2, self.irrep_of_component_out).transpose(-1, -2)
        return out.reshape(batch, -1).index_select(1, self.from_channels)
