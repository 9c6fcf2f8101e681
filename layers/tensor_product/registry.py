"""One entry point for every tensor product: :func:`make_tensor_product`.

Models receive the tensor-product choice as data, e.g. ``{"method": "cp", "rank": 8}``, and call
``make_tensor_product(irreps_in1, irreps_in2, irreps_out, mode="uvu", **choice)``; they never
branch on the method's name. What a method can express is asked of it through
:func:`output_irreps` and :func:`capabilities`.
"""

from __future__ import annotations

import inspect
from typing import Optional

from e3nn import o3

from layers.irreps import IrrepsLike, as_irreps
from layers.tensor_product.base import TensorProduct
from layers.tensor_product.cg import CGTensorProduct
from layers.tensor_product.cp import CPTensorProduct
from layers.tensor_product.gaunt import GauntTensorProduct
from layers.tensor_product.grid import GridTensorProduct
from layers.tensor_product.spec import KERNELS, Capabilities

METHODS: dict[str, type[TensorProduct]] = {
    "cg": CGTensorProduct,
    "gaunt": GauntTensorProduct,
    "grid": GridTensorProduct,
    "cp": CPTensorProduct,
}

# keyword arguments every method takes; the rest of a constructor's keywords are its options
_COMMON = ("mode", "kernel", "shared_weights", "internal_weights")


def _method(method: str) -> type[TensorProduct]:
    if method not in METHODS:
        raise ValueError(f"unknown tensor-product method {method!r}; valid: {', '.join(METHODS)}")
    return METHODS[method]


def method_options(method: str) -> tuple[str, ...]:
    """The method-specific keyword options of ``method`` (its constructor's signature)."""
    parameters = inspect.signature(_method(method).__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _COMMON)


def capabilities(method: str) -> Capabilities:
    return _method(method).capabilities


def make_tensor_product(
    irreps_in1: IrrepsLike,
    irreps_in2: IrrepsLike,
    irreps_out: IrrepsLike,
    *,
    method: str = "cg",
    mode: Optional[str] = None,
    kernel: str = "auto",
    shared_weights: bool = True,
    internal_weights: Optional[bool] = None,
    **options,
) -> TensorProduct:
    """Build the tensor product ``irreps_in1 x irreps_in2 -> irreps_out`` with ``method``.

    Args:
        irreps_in1, irreps_in2, irreps_out: e3nn irreps or strings (``"8x0e+8x1o"``).
        method: ``"cg"`` (exact Clebsch-Gordan), ``"gaunt"`` (Fourier/FFT), ``"grid"`` (S2
            quadrature) or ``"cp"`` (CP-decomposed, approximate).
        mode: channel connection (``uvw``, ``uvu``, ``uuu``, ...); see each method's capabilities.
            Default ``uvw``.
        kernel: ``"reference"``, ``"fused"``, ``"cueq"`` or ``"auto"``; never changes the math.
        shared_weights: one weight vector for all rows (``[weight_numel]``) or one per row
            (``[..., weight_numel]``, passed to ``forward``).
        internal_weights: keep the shared weights as a parameter (default: when shared).
        **options: method options, e.g. ``rank=16`` for ``cp``; unknown names raise with the list.

    Returns:
        A module with ``weight_numel`` and ``forward(x1, x2, weight=None)`` on ``[..., irreps.dim]``.
    """
    cls = _method(method)
    if mode is not None and mode not in cls.capabilities.modes:
        raise ValueError(f"{method} tensor product has no mode {mode!r}; valid: {', '.join(cls.capabilities.modes)}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; valid: {', '.join(KERNELS)}")
    valid = method_options(method)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{method} tensor product got unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}"
        )
    return cls(
        irreps_in1,
        irreps_in2,
        irreps_out,
        mode=mode,
        kernel=kernel,
        shared_weights=shared_weights,
        internal_weights=internal_weights,
        **options,
    )


def output_irreps(method: str, irreps_in1: IrrepsLike, irreps_in2: IrrepsLike, lmax: Optional[int] = None) -> o3.Irreps:
    """The distinct irreps (mul 1, sorted) that ``method`` can produce from ``irreps_in1 x irreps_in2``.

    A model asks this instead of knowing, say, that Gaunt products have no ``l1 + l2 + l3`` odd
    paths: ``1o x 1o`` gives ``0e + 1e + 2e`` with ``cg`` and ``cp`` but ``0e + 2e`` with ``gaunt``.
    """
    cls = _method(method)
    irreps_in1, irreps_in2 = as_irreps(irreps_in1, "irreps_in1"), as_irreps(irreps_in2, "irreps_in2")
    found = set()
    for _, ir1 in irreps_in1:
        for _, ir2 in irreps_in2:
            for ir_out in ir1 * ir2:
                if (lmax is None or ir_out.l <= lmax) and cls.couples(ir1, ir2, ir_out):
                    found.add(ir_out)
    return o3.Irreps(sorted(found))
