"""The one feature layout of equizoo, and the bookkeeping around it.

Every equivariant feature is an e3nn "mul_ir" tensor ``x: [..., irreps.dim]``. The irreps
``"8x0e+8x1o"`` lay out as eight scalars followed by eight vectors, each vector's three
components contiguous: block ``i`` of the irreps occupies ``mul_i * (2 l_i + 1)`` entries,
read as ``[mul_i, 2 l_i + 1]`` (channel first, then ``m = -l..l``).

Tensor products that treat each channel as one function on the sphere (Gaunt, grid, CP)
want the transposed view ``[..., mul, dim]``: channel ``u`` holds the coefficients of all
irreps of one copy (``"0e+1o"``, ``dim = 4``). :class:`ChannelSignal` describes that view
and builds the gather indices that move between the two layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from e3nn import o3

IrrepsLike = Union[str, o3.Irreps, o3.Irrep, list, tuple]


def as_irreps(irreps: IrrepsLike, name: str = "irreps") -> o3.Irreps:
    """Read ``irreps`` (an e3nn string such as ``"8x0e+8x1o"``, or an ``o3.Irreps``).

    Raises ``ValueError`` naming the argument when it cannot be read.
    """
    try:
        return o3.Irreps(irreps)
    except Exception as error:  # e3nn raises ValueError/AssertionError/TypeError
        raise ValueError(
            f"{name}: cannot read {irreps!r} as irreps (expected e3nn notation such as '8x0e+8x1o'): {error}"
        ) from None


def parity_class(ir: o3.Irrep) -> int:
    """The parity class ``sigma = p * (-1)^l`` of an irrep.

    Spherical harmonics ``Y_l`` have ``p = (-1)^l``, so ``sigma = +1`` (``0e, 1o, 2e, ...``). A
    pseudo-scalar function times ``Y_l`` has ``sigma = -1`` (``0o, 1e, 2o, ...``). Multiplying
    two functions on the sphere multiplies their classes.
    """
    return ir.p * (-1) ** ir.l


@dataclass(frozen=True)
class ChannelSignal:
    """Irreps with one multiplicity ``mul`` and distinct irreps, seen as ``mul`` channels.

    ``irreps = mul x base``: for ``"8x0e+8x1o"``, ``mul = 8`` and ``base = "0e+1o"``. The
    mul_ir tensor ``[..., irreps.dim]`` and the channel view ``[..., mul, base.dim]`` hold the
    same numbers; :meth:`to_channels_index` and :meth:`from_channels_index` are the gathers.
    """

    irreps: o3.Irreps
    mul: int
    base: o3.Irreps

    @classmethod
    def of(cls, irreps: IrrepsLike, name: str = "irreps") -> "ChannelSignal":
        irreps = as_irreps(irreps, name)
        if len(irreps) == 0:
            raise ValueError(f"{name}: empty irreps")
        muls = {mul for mul, _ in irreps}
        if len(muls) != 1:
            raise ValueError(
                f"{name}={irreps}: this product sees each channel as one spherical signal, so every irrep "
                f"needs the same multiplicity (got {sorted(muls)}); e.g. '8x0e+8x1o+8x2e'"
            )
        base = o3.Irreps([(1, ir) for _, ir in irreps])
        if len(set(base)) != len(base):
            raise ValueError(
                f"{name}={irreps}: each irrep may appear once (merge repeated irreps into one block with "
                f"'.simplify()')"
            )
        return cls(irreps=irreps, mul=muls.pop(), base=base)

    def to_channels_index(self) -> torch.Tensor:
        """``idx`` with ``x[..., idx].unflatten(-1, (mul, base.dim))`` = the channel view."""
        columns = []
        for (mul, ir), block in zip(self.irreps, self.irreps.slices()):
            offsets = torch.arange(block.start, block.stop).view(mul, ir.dim)
            columns.append(offsets)
        return torch.cat(columns, dim=1).reshape(-1)

    def from_channels_index(self) -> torch.Tensor:
        """``idx`` with ``y.flatten(-2)[..., idx]`` = the mul_ir tensor of a channel view ``y``."""
        return torch.argsort(self.to_channels_index())


def irrep_of_each_component(irreps: o3.Irreps) -> torch.Tensor:
    """``[irreps.dim]``: for each component, the index of its irrep block in ``irreps``."""
    return torch.cat([torch.full((mul * ir.dim,), i, dtype=torch.long) for i, (mul, ir) in enumerate(irreps)])
