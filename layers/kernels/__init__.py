"""Fast executors of the tensor products: fused Triton kernels and the cuEquivariance adapter.

The only place where the optional GPU packages (``triton``, ``cuequivariance_torch``) are
imported, and always lazily, so a CPU-only install never needs them. Each executor reads the
parameters and buffers of a module from :mod:`layers.tensor_product` and computes exactly what
its ``_reference`` computes; ``tests/layers/kernels`` hold them to that (the Triton kernels on CPU
through ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Optional

import torch

# module holding the fused kernel of each method, and its entry point
_FUSED = {
    "cg": ("layers.kernels.cg_triton", "fused_cg"),
    "gaunt": ("layers.kernels.gaunt_triton", "fused_gaunt"),
    "grid": ("layers.kernels.grid_triton", "fused_grid"),
    "cp": ("layers.kernels.cp_triton", "fused_cp"),
}


def triton_interpreter() -> bool:
    """Whether Triton runs kernels on the CPU through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_status() -> tuple[bool, str]:
    try:
        importlib.import_module("triton")
    except ImportError:
        return False, "triton is not installed (pip install 'equizoo[gpu]')"
    return True, ""


def fused_kernels_usable(device: torch.device, allow_interpreter: bool = False) -> tuple[bool, str]:
    """Whether a fused kernel can run on ``device``; if not, why. Imports Triton only for CUDA or the interpreter."""
    if device.type != "cuda" and not (allow_interpreter and triton_interpreter()):
        return False, f"fused kernels need a CUDA device (got {device.type}; TRITON_INTERPRET=1 runs them on CPU for tests)"
    return triton_status()


def fused_executor(module) -> tuple[Optional[Callable], str]:
    """``((x1, x2, weight) -> out, "")`` running ``module`` with its fused kernel, or ``(None, why not)``."""
    entry = _FUSED.get(module.method)
    if entry is None:
        return None, f"no fused kernel for method {module.method}"
    ok, reason = triton_status()
    if not ok:
        return None, reason
    implementation = importlib.import_module(entry[0])
    reason = implementation.unsupported(module)
    if reason:
        return None, reason
    kernel = getattr(implementation, entry[1])
    return (lambda x1, x2, weight: kernel(module, x1, x2, weight)), ""


def cueq_executor(module) -> Callable:
    """``(x1, x2, weight) -> out`` running a Clebsch-Gordan ``module`` through cuEquivariance."""
    from layers.kernels.cueq import CueqExecutor

    return CueqExecutor(module)
