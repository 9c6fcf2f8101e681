"""Fused kernel of the CP (TDN) product for the channelwise modes ``uuu`` and ``uvu``.

Rows are ``(z, u)`` channel pairs; the CP factors are the trilinear map's factors and the channel
weight enters as a third operand with factor ``ones [1, R]``. ``uvu`` with ``V > 1`` mixes ``x2``'s
channels first (a tensor operation), then runs without weight operand. ``uvw`` couples every
channel pair and is left to the reference.
"""

from __future__ import annotations

from math import sqrt
from typing import Optional

import torch

from layers.kernels.trilinear_triton import trilinear
from layers.tensor_product.base import weight_block


def unsupported(module) -> Optional[str]:
    if module.spec.mode == "uvw":
        return "the fused cp kernel covers modes uuu and uvu (uvw couples every channel pair)"
    return None


def fused_cp(module, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    sig1, sig2, sig_out = module.signals
    batch, channels = x1.shape[0], sig1.mul
    rows = batch * channels
    dtype = x1.dtype
    a = x1.index_select(1, module.to_channels1).reshape(rows, sig1.base.dim)
    x2 = x2.index_select(1, module.to_channels2).reshape(batch, sig2.mul, sig2.base.dim)
    w = weight_block(weight, module.spec.weights[0])
    ones = torch.ones(1, module.rank, dtype=dtype, device=x1.device)
    operands = [(a, module.factor_in1, 1)]
    if module.spec.mode == "uuu":
        operands += [(x2.reshape(rows, -1), module.factor_in2, 1), (w.reshape(-1, 1), ones, 1)]
    elif sig2.mul == 1:  # uvu, MACE's message: one x2 row per z, one weight per (z, u)
        operands += [(x2.reshape(batch, -1), module.factor_in2, channels), (w.reshape(-1, 1), ones, 1)]
    else:  # uvu: mix x2's channels into x1's first
        subscripts = "zvd,zuv->zud" if w.dim() == 3 else "zvd,uv->zud"
        mixed = torch.einsum(subscripts, x2, w) / sqrt(sig2.mul)
        operands += [(mixed.reshape(rows, -1), module.factor_in2, 1)]
    out = trilinear(operands, module.factor_out, rows)
    return out.reshape(batch, -1).index_select(1, module.from_channels)
