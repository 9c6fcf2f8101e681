r"""The Clebsch-Gordan tensor product: exact, with parity, every path, one weight block per path.

For each path ``(i1, i2, i_out)`` with irreps :math:`l_1^{p_1}, l_2^{p_2} \to l_3^{p_3}`
(:math:`|l_1-l_2| \le l_3 \le l_1+l_2`, :math:`p_1 p_2 = p_3`) and, for mode ``uvw``,

.. math::  z^{(i_{out})}_{w,k} \mathrel{+}= \alpha_{path} \sum_{u,v,i,j} W_{uvw}\, C^{l_1 l_2 l_3}_{ijk}\, x^{(i_1)}_{u,i}\, y^{(i_2)}_{v,j}

with :math:`C` = ``e3nn.o3.wigner_3j`` (real basis, Frobenius norm 1) and :math:`\alpha` e3nn's
normalisation: ``irrep_normalization="component"`` gives :math:`2l_3+1`, ``"norm"``
:math:`(2l_1+1)(2l_2+1)`; ``path_normalization="element"`` divides by the number of weighted
elements summed into the output irrep, ``"path"`` by that of the path times the number of paths
(:math:`\alpha` enters as :math:`\sqrt{\alpha}`). With the same instructions, path order and
flat weights this reproduces ``e3nn.o3.TensorProduct`` (and ``FullyConnectedTensorProduct``
for ``mode="uvw"``), so e3nn and MACE weights import unchanged.

Cost: :math:`O(L^6)` per channel pair for all paths up to degree :math:`L`.
"""

from __future__ import annotations

from math import sqrt
from typing import Optional, Sequence

import torch
from e3nn import o3

from layers.irreps import ChannelSignal, IrrepsLike, as_irreps
from layers.tensor_product.base import TensorProduct
from layers.tensor_product.spec import (
    ALL_MODES,
    Capabilities,
    Path,
    TensorProductSpec,
    WeightBlock,
    unreachable_outputs,
)

Instruction = tuple  # (i_in1, i_in2, i_out, mode, has_weight[, path_weight]) as in e3nn


def _path_shape(mode: str, mul1: int, mul2: int, mul_out: int) -> tuple[int, ...]:
    return {
        "uvw": (mul1, mul2, mul_out),
        "uvu": (mul1, mul2),
        "uvv": (mul1, mul2),
        "uuw": (mul1, mul_out),
        "uuu": (mul1,),
    }[mode]


def _multiplicities_fit(mode: str, mul1: int, mul2: int, mul_out: int) -> bool:
    return {
        "uvw": True,
        "uvu": mul1 == mul_out,
        "uvv": mul2 == mul_out,
        "uuw": mul1 == mul2,
        "uuu": mul1 == mul2 == mul_out,
    }[mode]


def _summed_elements(mode: str, mul1: int, mul2: int) -> int:
    """How many weighted terms one output component sums over (e3nn's ``num_elements``)."""
    return {"uvw": mul1 * mul2, "uvu": mul2, "uvv": mul1, "uuw": mul1, "uuu": 1}[mode]


def cg_instructions(irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, irreps_out: o3.Irreps, mode: str) -> list[Instruction]:
    """Every path the selection rules and the mode's multiplicity constraint allow, in e3nn's order."""
    return [
        (i1, i2, i_out, mode, True, 1.0)
        for i1, (mul1, ir1) in enumerate(irreps_in1)
        for i2, (mul2, ir2) in enumerate(irreps_in2)
        for i_out, (mul_out, ir_out) in enumerate(irreps_out)
        if ir_out in ir1 * ir2 and _multiplicities_fit(mode, mul1, mul2, mul_out)
    ]


def build_cg_spec(
    irreps_in1: o3.Irreps,
    irreps_in2: o3.Irreps,
    irreps_out: o3.Irreps,
    instructions: Sequence[Instruction],
    irrep_normalization: str,
    path_normalization: str,
    mode_label: str,
) -> TensorProductSpec:
    """Validate e3nn-style instructions and compute each path's normalisation, as e3nn does."""
    if irrep_normalization not in ("component", "norm", "none"):
        raise ValueError(f"irrep_normalization={irrep_normalization!r}; valid: component, norm, none")
    if path_normalization not in ("element", "path", "none"):
        raise ValueError(f"path_normalization={path_normalization!r}; valid: element, path, none")
    parsed = []
    for n, ins in enumerate(instructions):
        if len(ins) not in (5, 6):
            raise ValueError(f"instruction {n} {ins!r}: expected (i_in1, i_in2, i_out, mode, has_weight[, path_weight])")
        i1, i2, i_out, mode, has_weight = ins[:5]
        path_weight = float(ins[5]) if len(ins) == 6 else 1.0
        if mode not in ALL_MODES:
            raise ValueError(f"instruction {n}: unknown mode {mode!r}; valid: {', '.join(ALL_MODES)}")
        for index, irreps, what in ((i1, irreps_in1, "i_in1"), (i2, irreps_in2, "i_in2"), (i_out, irreps_out, "i_out")):
            if not 0 <= index < len(irreps):
                raise ValueError(f"instruction {n}: {what}={index} out of range for {irreps}")
        (mul1, ir1), (mul2, ir2), (mul_out, ir_out) = irreps_in1[i1], irreps_in2[i2], irreps_out[i_out]
        if ir_out not in ir1 * ir2:
            raise ValueError(f"instruction {n}: {ir1} x {ir2} cannot give {ir_out} (triangle rule or parity)")
        if not _multiplicities_fit(mode, mul1, mul2, mul_out):
            raise ValueError(f"instruction {n}: mode {mode} does not fit multiplicities {mul1}, {mul2} -> {mul_out}")
        if mode in ("uvw", "uuw") and not has_weight:
            raise ValueError(f"instruction {n}: mode {mode} needs weights")
        parsed.append((i1, i2, i_out, mode, bool(has_weight), path_weight))

    def elements(entry) -> int:
        i1, i2, _, mode, _, _ = entry
        return _summed_elements(mode, irreps_in1[i1].mul, irreps_in2[i2].mul)

    paths, shapes = [], []
    start = 0
    for i1, i2, i_out, mode, has_weight, path_weight in parsed:
        ir1, ir2, ir_out = irreps_in1[i1].ir, irreps_in2[i2].ir, irreps_out[i_out].ir
        alpha = {"component": ir_out.dim, "norm": ir1.dim * ir2.dim, "none": 1}[irrep_normalization]
        siblings = [e for e in parsed if e[2] == i_out]
        fan_in = {
            "element": sum(elements(e) for e in siblings),
            "path": elements((i1, i2, i_out, mode, has_weight, path_weight)) * len(siblings),
            "none": 1,
        }[path_normalization]
        if fan_in > 0:
            alpha /= fan_in
        alpha *= path_weight
        block = None
        if has_weight:
            shape = _path_shape(mode, irreps_in1[i1].mul, irreps_in2[i2].mul, irreps_out[i_out].mul)
            block = WeightBlock(name=f"path {len(paths)}: {ir1} x {ir2} -> {ir_out}", shape=shape, start=start)
            start += block.numel
            shapes.append(block)
        paths.append(Path(i1, i2, i_out, mode, coefficient=sqrt(alpha), weight=block))

    options = (("irrep_normalization", irrep_normalization), ("path_normalization", path_normalization))
    return TensorProductSpec(
        method="cg",
        mode=mode_label,
        irreps_in1=irreps_in1,
        irreps_in2=irreps_in2,
        irreps_out=irreps_out,
        paths=tuple(paths),
        weights=tuple(shapes),
        options=options,
    )


# einsum of one path, with and without weights: x1 [z,u,i], x2 [z,v,j], C [i,j,k], W (with a z index if per row)
_PATH_EINSUM = {
    "uvw": ("zui,zvj,ijk,{z}uvw->zwk", None),
    "uvu": ("zui,zvj,ijk,{z}uv->zuk", "zui,zvj,ijk->zuk"),
    "uvv": ("zui,zvj,ijk,{z}uv->zvk", "zui,zvj,ijk->zvk"),
    "uuw": ("zui,zuj,ijk,{z}uw->zwk", None),
    "uuu": ("zui,zuj,ijk,{z}u->zuk", "zui,zuj,ijk->zuk"),
}


class CGTensorProduct(TensorProduct):
    """Clebsch-Gordan tensor product (see the module docstring).

    Args:
        irreps_in1, irreps_in2, irreps_out: e3nn irreps (strings accepted).
        mode: connection mode for the automatically generated paths (default ``"uvw"``).
        kernel: ``"reference"``, ``"fused"`` (Triton), ``"cueq"`` (cuEquivariance) or ``"auto"``.
        shared_weights, internal_weights: as in e3nn.
        instructions: explicit e3nn instructions ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])``;
            replaces the automatic paths (outputs without instructions are then zero, as in e3nn).
        irrep_normalization: ``"component"`` (default), ``"norm"`` or ``"none"``.
        path_normalization: ``"element"`` (default), ``"path"`` or ``"none"``.
    """

    method = "cg"
    capabilities = Capabilities(
        equivariance="exact",
        paths="every |l1 - l2| <= l3 <= l1 + l2",
        parity="exact O(3): paths with p1 * p2 = p3",
        max_l=None,
        modes=ALL_MODES,
        kernels=("reference", "fused", "cueq"),
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
        instructions: Optional[Sequence[Instruction]] = None,
        irrep_normalization: str = "component",
        path_normalization: str = "element",
    ) -> None:
        irreps_in1 = as_irreps(irreps_in1, "irreps_in1")
        irreps_in2 = as_irreps(irreps_in2, "irreps_in2")
        irreps_out = as_irreps(irreps_out, "irreps_out")
        automatic = instructions is None
        if automatic:
            mode = mode or "uvw"
            if mode not in ALL_MODES:
                raise ValueError(f"cg: unknown mode {mode!r}; valid: {', '.join(ALL_MODES)}")
            instructions = cg_instructions(irreps_in1, irreps_in2, irreps_out, mode)
            label = mode
        else:
            modes = sorted({ins[3] for ins in instructions})
            if mode is not None and modes != [mode]:
                raise ValueError(f"cg: mode={mode!r} disagrees with the instructions' modes {modes}")
            label = "+".join(modes) if modes else (mode or "uvw")
        spec = build_cg_spec(irreps_in1, irreps_in2, irreps_out, instructions, irrep_normalization, path_normalization, label)
        missing = unreachable_outputs(irreps_out, spec.paths)
        if automatic and missing:
            names = ", ".join(str(irreps_out[i]) for i in missing)
            raise ValueError(
                f"cg: no path of {irreps_in1} x {irreps_in2} in mode {label} reaches output {names}; "
                "drop it from irreps_out or pass explicit instructions"
            )
        super().__init__(spec, kernel=kernel, shared_weights=shared_weights, internal_weights=internal_weights)
        # bookkeeping once, as plain ints: (start, stop, mul, dim) of each irrep block
        self._blocks1 = tuple((s.start, s.stop, mul, ir.dim) for s, (mul, ir) in zip(irreps_in1.slices(), irreps_in1))
        self._blocks2 = tuple((s.start, s.stop, mul, ir.dim) for s, (mul, ir) in zip(irreps_in2.slices(), irreps_in2))
        self._blocks_out = tuple((mul, ir.dim) for mul, ir in irreps_out)
        # each path as (i_in1, i_in2, i_out, einsum with weights, einsum without, weight start, stop, shape or None)
        self._paths = tuple(
            (p.i_in1, p.i_in2, p.i_out, *_PATH_EINSUM[p.mode],
             *((p.weight.start, p.weight.stop, p.weight.shape) if p.weight is not None else (0, 0, None)))
            for p in spec.paths
        )
        for n, path in enumerate(spec.paths):
            l1, l2, l3 = irreps_in1[path.i_in1].ir.l, irreps_in2[path.i_in2].ir.l, irreps_out[path.i_out].ir.l
            coupling = path.coefficient * o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
            self.register_constant(f"coupling_{n}", coupling)
        self._channelwise = self._plan_channelwise()
        self.reset_parameters()

    def _plan_channelwise(self) -> Optional[tuple[int, int, int, int]]:
        r"""Channelwise products (``uuu``; ``uvu`` with one channel in ``x2``, MACE's message and
        product basis) are evaluated path-free: the sum over paths and Clebsch-Gordan entries is
        one sum over the nonzero slices :math:`(p, i, j)` of the couplings,

        .. math:: z_{u,k} = \sum_{(p,i,j)} w_{u,p}\, x_{u,i}\, y_{u,j}\, C^p_{ijk},

        i.e. three gathers, a product and one matrix ``[R, D_out]`` (the same numbers as the
        per-path einsums, in a handful of large operations instead of several per path; on CPU
        this is 10-30x faster for a MACE model with its gradients of gradients). Returns the
        channel counts and the base dimensions, or ``None`` where the per-path form is used.
        """
        spec = self.spec
        if spec.mode not in ("uuu", "uvu") or not spec.paths or any(p.weight is None for p in spec.paths):
            return None
        try:
            sig1, sig2, sig_out = (ChannelSignal.of(i) for i in (spec.irreps_in1, spec.irreps_in2, spec.irreps_out))
        except ValueError:
            return None
        channels = sig1.mul
        if sig_out.mul != channels or sig2.mul != (channels if spec.mode == "uuu" else 1):
            return None
        # weight blocks must be [U] (uuu) or [U, 1] (uvu), laid out path after path
        if any(p.weight.start != n * channels or p.weight.stop != (n + 1) * channels for n, p in enumerate(spec.paths)):
            return None
        s1, s2, s3 = sig1.base.slices(), sig2.base.slices(), sig_out.base.slices()
        take1, take2, take_weight, rows = [], [], [], []
        for n, path in enumerate(spec.paths):
            coupling = self.master(f"coupling_{n}")
            for i in range(coupling.shape[0]):
                for j in range(coupling.shape[1]):
                    if coupling[i, j].abs().max() > 0:
                        take1.append(s1[path.i_in1].start + i)
                        take2.append(s2[path.i_in2].start + j)
                        take_weight.append(n)
                        row = torch.zeros(sig_out.base.dim, dtype=torch.float64)
                        row[s3[path.i_out]] = coupling[i, j]
                        rows.append(row)
        self.register_buffer("slice_in1", torch.tensor(take1), persistent=False)
        self.register_buffer("slice_in2", torch.tensor(take2), persistent=False)
        self.register_buffer("slice_weight", torch.tensor(take_weight), persistent=False)
        self.register_constant("slice_out", torch.stack(rows))  # [R, D_out]
        self.register_buffer("to_channels1", sig1.to_channels_index(), persistent=False)
        self.register_buffer("to_channels2", sig2.to_channels_index(), persistent=False)
        self.register_buffer("from_channels", sig_out.from_channels_index(), persistent=False)
        return channels, sig2.mul, sig1.base.dim, sig2.base.dim

    def _reference_channelwise(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        channels, channels2, dim1, dim2 = self._channelwise
        batch = x1.shape[0]
        a = x1.index_select(1, self.to_channels1).reshape(batch, channels, dim1)
        b = x2.index_select(1, self.to_channels2).reshape(batch, channels2, dim2)  # [Z, U or 1, D2]
        w = weight.reshape(weight.shape[:-1] + (len(self._paths), channels)).transpose(-1, -2)  # [(Z,) U, P]
        terms = a.index_select(-1, self.slice_in1) * b.index_select(-1, self.slice_in2) * w.index_select(-1, self.slice_weight)
        out = terms @ self.slice_out.to(x1.dtype)  # [Z, U, D_out]
        return out.reshape(batch, channels * out.shape[-1]).index_select(1, self.from_channels)

    def _reference(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self._channelwise is not None:
            return self._reference_channelwise(x1, x2, weight)
        batch = x1.shape[0]
        x1_blocks = [x1[:, start:stop].reshape(batch, mul, dim) for start, stop, mul, dim in self._blocks1]
        x2_blocks = [x2[:, start:stop].reshape(batch, mul, dim) for start, stop, mul, dim in self._blocks2]
        per_row = weight.dim() == 2
        outputs: list[Optional[torch.Tensor]] = [None] * len(self.irreps_out)
        for n, (i1, i2, i_out, with_weight, without_weight, start, stop, shape) in enumerate(self._paths):
            coupling = getattr(self, f"coupling_{n}").to(x1.dtype)
            a, b = x1_blocks[i1], x2_blocks[i2]
            if shape is not None:
                w = weight[..., start:stop].reshape(weight.shape[:-1] + shape)
                result = torch.einsum(with_weight.format(z="z" if per_row else ""), a, b, coupling, w)
            else:
                result = torch.einsum(without_weight, a, b, coupling)
            current = outputs[i_out]
            outputs[i_out] = result if current is None else current + result
        pieces = [
            (out if out is not None else x1.new_zeros(batch, mul, dim)).reshape(batch, mul * dim)
            for out, (mul, dim) in zip(outputs, self._blocks_out)
        ]
        return torch.cat(pieces, dim=1) if pieces else x1.new_zeros(batch, 0)
