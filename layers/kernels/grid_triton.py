"""Fused kernel of the grid product: the quadrature as a rank-Q factorisation (see gaunt_triton)."""

from layers.kernels.gaunt_triton import fused_function_product as fused_grid
from layers.kernels.gaunt_triton import unsupported

__all__ = ["fused_grid", "unsupported"]
