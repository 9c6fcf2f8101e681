"""Fused kernel of the Gaunt product (and of the grid product, which shares its structure).

The channel operators (per-irrep scales and mixes) run as ordinary tensor operations; each
parity-class product of spherical functions runs as one :func:`~layers.kernels.trilinear_triton.trilinear`
launch over all ``Z * C`` channel rows, with the multiplier's exact dense factors
(``FourierMultiplier.dense_factors`` / ``GridMultiplier.dense_factors``).
"""

from __future__ import annotations

from typing import Optional

import torch

from layers.kernels.trilinear_triton import trilinear


def unsupported(module) -> Optional[str]:
    """Every mode of the function products is supported."""
    return None


def _factors(module, device: torch.device, dtype: torch.dtype) -> list:
    cache = module.__dict__.setdefault("_fused_factors", {})
    key = (device, dtype)
    if key not in cache:
        cache[key] = [tuple(f.to(device=device, dtype=dtype) for f in m.dense_factors()) for m in module.multipliers]
    return cache[key]


def fused_function_product(module, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    factors = _factors(module, x1.device, x1.dtype)

    def multiply(k: int, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        factor1, factor2, factor_out = factors[k]
        rows = f1.shape[0] * f1.shape[1]
        out = trilinear([(f1.reshape(rows, -1), factor1, 1), (f2.reshape(rows, -1), factor2, 1)], factor_out, rows)
        return out.view(f1.shape[0], f1.shape[1], -1)

    return module.evaluate(x1, x2, weight, multiply)


fused_gaunt = fused_function_product
