"""What a tensor product computes, kept apart from how it is run.

A :class:`TensorProductSpec` is frozen and built once in a module's ``__init__``: the irreps,
the connection mode, the coupling paths with their normalisation, and the layout of the flat
weight vector. Kernels (reference, fused Triton, cuEquivariance) read the spec and the module's
buffers; they never change what is computed.

Connection modes name how channels (multiplicities) meet, as in e3nn::

    uvw  z_w = sum_{u,v} W_uvw x_u (x) y_v      fully connected
    uvu  z_u = sum_v     W_uv  x_u (x) y_v      channelwise in x (MACE's message: y has mul 1)
    uvv  z_v = sum_u     W_uv  x_u (x) y_v
    uuw  z_w = sum_u     W_uw  x_u (x) y_u
    uuu  z_u =           W_u   x_u (x) y_u      channelwise
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Optional

import torch
from e3nn import o3

ALL_MODES = ("uvw", "uvu", "uvv", "uuw", "uuu")
KERNELS = ("reference", "fused", "cueq", "auto")


@dataclass(frozen=True)
class Capabilities:
    """What a method can do; ``make_tensor_product`` checks requests against it."""

    equivariance: str  # "exact" or "approximate"
    paths: str  # which (l1, l2, l3) couplings the method can express, in words
    parity: str  # how parity is handled, in words
    max_l: Optional[int]  # largest degree supported, None if unbounded
    modes: tuple[str, ...]
    kernels: tuple[str, ...]  # kernels besides "auto"
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

    def describe(self) -> str:
        max_l = "any" if self.max_l is None else str(self.max_l)
        return (
            f"{self.equivariance} equivariance; paths: {self.paths}; parity: {self.parity}; max l: {max_l}; "
            f"modes: {', '.join(self.modes)}; kernels: {', '.join(self.kernels)}"
        )


@dataclass(frozen=True)
class WeightBlock:
    """A named slice ``[start, start + numel)`` of the flat weight vector, read as ``shape``."""

    name: str
    shape: tuple[int, ...]
    start: int

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def stop(self) -> int:
        return self.start + self.numel


def lay_out_weights(named_shapes: list[tuple[str, tuple[int, ...]]]) -> tuple[WeightBlock, ...]:
    """Place weight blocks back to back, in the given order."""
    blocks, start = [], 0
    for name, shape in named_shapes:
        blocks.append(WeightBlock(name=name, shape=tuple(shape), start=start))
        start += prod(shape)
    return tuple(blocks)


@dataclass(frozen=True)
class Path:
    """One Clebsch-Gordan coupling ``irreps_in1[i_in1] x irreps_in2[i_in2] -> irreps_out[i_out]``.

    ``coefficient`` multiplies the path's output (normalisation and any user path weight);
    ``weight`` is its block of the flat weights, or ``None`` for a path without weights (or for
    methods whose weights are not per path).
    """

    i_in1: int
    i_in2: int
    i_out: int
    mode: str
    coefficient: float
    weight: Optional[WeightBlock] = None


@dataclass(frozen=True)
class TensorProductSpec:
    """The whole description of one tensor product (see the module docstring)."""

    method: str
    mode: str
    irreps_in1: o3.Irreps
    irreps_in2: o3.Irreps
    irreps_out: o3.Irreps
    paths: tuple[Path, ...]
    weights: tuple[WeightBlock, ...]
    options: tuple[tuple[str, object], ...] = field(default=())

    @property
    def weight_numel(self) -> int:
        return self.weights[-1].stop if self.weights else 0

    def path_triples(self) -> list[tuple[o3.Irrep, o3.Irrep, o3.Irrep]]:
        return [(self.irreps_in1[p.i_in1].ir, self.irreps_in2[p.i_in2].ir, self.irreps_out[p.i_out].ir) for p in self.paths]

    def describe(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options)
        return (
            f"{self.method}[{self.mode}{', ' + options if options else ''}]: {self.irreps_in1} x {self.irreps_in2} "
            f"-> {self.irreps_out} | {len(self.paths)} paths | {self.weight_numel} weights"
        )


def unreachable_outputs(irreps_out: o3.Irreps, paths: tuple[Path, ...] | list[Path]) -> list[int]:
    """Indices of output irreps that no path reaches."""
    reached = {p.i_out for p in paths}
    return [i for i in range(len(irreps_out)) if i not in reached and irreps_out[i].mul > 0]
