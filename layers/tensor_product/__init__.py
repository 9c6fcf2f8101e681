"""Equivariant tensor products in four methods behind one interface.

>>> from layers.tensor_product import make_tensor_product
>>> tp = make_tensor_product("8x0e+8x1o", "0e+1o+2e", "8x0e+8x1o+8x2e", method="gaunt", mode="uvu")
>>> tp(x1, x2).shape  # x1: [..., 32], x2: [..., 9]  ->  [..., 72]

Files: ``spec.py`` (what is computed), ``base.py`` (weights, broadcasting, kernels),
``registry.py`` (:func:`make_tensor_product`), one file per method: ``cg.py`` (Clebsch-Gordan),
``gaunt.py`` (Fourier/FFT), ``grid.py`` (S2 quadrature), ``cp.py`` (CP-decomposed, with
``cp_fit.py``); ``spherical_product.py`` holds what gaunt and grid share.
"""

from layers.tensor_product.base import TensorProduct
from layers.tensor_product.registry import METHODS, capabilities, make_tensor_product, method_options, output_irreps
from layers.tensor_product.spec import Capabilities, TensorProductSpec

__all__ = [
    "METHODS",
    "Capabilities",
    "TensorProduct",
    "TensorProductSpec",
    "capabilities",
    "make_tensor_product",
    "method_options",
    "output_irreps",
]
