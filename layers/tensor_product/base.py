"""The module all tensor-product methods share: weights, broadcasting and the kernel choice.

A method subclass builds its :class:`~layers.tensor_product.spec.TensorProductSpec` and its
coefficient buffers in ``__init__`` and implements ``_reference(x1, x2, weight)`` on flat
inputs. Everything else lives here:

* weights are either an internal parameter ``weight: [weight_numel]`` (shared by all rows) or
  given per call: ``[weight_numel]`` (shared) or ``[..., weight_numel]`` (one set per row, as
  MACE feeds from its radial MLP);
* leading dimensions of ``x1``, ``x2`` and per-row weights broadcast, as in e3nn;
* ``kernel`` picks the executor. Every kernel of a method reads the same parameters and
  buffers, so a state dict moves between kernels (and CPU/GPU) untouched. ``"auto"`` takes the
  fused kernel where it exists and runs (CUDA tensors, Triton installed), otherwise the
  reference, and logs its choice once.
"""

from __future__ import annotations

import logging
from typing import Callable, ClassVar, Optional

import torch
from torch import nn

from layers.exact_constants import ExactConstants
from layers.tensor_product.spec import KERNELS, Capabilities, TensorProductSpec, WeightBlock

log = logging.getLogger("equizoo.tensor_product")
_announced: set[tuple[str, str, str]] = set()


def weight_block(weight: torch.Tensor, block: WeightBlock) -> torch.Tensor:
    """``weight: [..., weight_numel]`` -> ``[..., *block.shape]``."""
    return weight[..., block.start : block.stop].reshape(weight.shape[:-1] + block.shape)


class TensorProduct(ExactConstants):
    """Base class; see the module docstring. Subclasses set ``method`` and ``capabilities``."""

    method: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(
        self,
        spec: TensorProductSpec,
        *,
        kernel: str = "auto",
        shared_weights: bool = True,
        internal_weights: Optional[bool] = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.irreps_in1 = spec.irreps_in1
        self.irreps_in2 = spec.irreps_in2
        self.irreps_out = spec.irreps_out
        self.weight_numel = spec.weight_numel
        self.mode = spec.mode
        self._dims = (spec.irreps_in1.dim, spec.irreps_in2.dim, spec.irreps_out.dim)  # forward reads ints only
        if internal_weights is None:
            internal_weights = shared_weights and self.weight_numel > 0
        if internal_weights and not shared_weights:
            raise ValueError("internal_weights=True needs shared_weights=True: an internal weight is one shared vector")
        self.shared_weights = bool(shared_weights)
        self.internal_weights = bool(internal_weights)
        if self.internal_weights:
            self.weight = nn.Parameter(torch.empty(self.weight_numel))
        else:
            self.register_parameter("weight", None)
        self.set_kernel(kernel)

    @classmethod
    def couples(cls, ir1, ir2, ir_out) -> bool:
        """Whether this method has a path ``ir1 x ir2 -> ir_out`` (all Clebsch-Gordan paths by default)."""
        return ir_out in ir1 * ir2

    # -- kernels -------------------------------------------------------------------------
    def set_kernel(self, kernel: str) -> None:
        """Choose how ``forward`` runs; never changes parameters or results beyond round-off."""
        valid = tuple(self.capabilities.kernels) + ("auto",)
        if kernel not in valid:
            known = "" if kernel in KERNELS else f" (kernels are {', '.join(KERNELS)})"
            raise ValueError(f"{self.method} tensor product has no kernel {kernel!r}{known}; valid: {', '.join(valid)}")
        self.kernel = kernel
        self.__dict__["_executors"] = {}  # (device type, index) -> executor, chosen once

    def _fused(self) -> tuple[Optional[Callable], str]:
        """The fused (Triton) executor of this method and ``""``, or ``(None, why not)``."""
        from layers.kernels import fused_executor  # lazy: keeps CPU installs free of GPU packages

        return fused_executor(self)

    def _executor(self, device: torch.device) -> Callable:
        key = (device.type, device.index)
        if key not in self._executors:
            self._executors[key] = self._choose_executor(device)
        return self._executors[key]

    def _choose_executor(self, device: torch.device) -> Callable:
        if self.kernel == "reference":
            return self._reference
        if self.kernel == "auto":
            from layers.kernels import fused_kernels_usable  # lazy: keeps CPU installs free of GPU packages

            usable, reason = fused_kernels_usable(device)
            fused, unsupported = self._fused() if usable else (None, reason)
            choice, why = ("fused", "") if fused is not None else ("reference", f" ({unsupported})")
            key = (self.method, device.type, choice)
            if key not in _announced:
                _announced.add(key)
                log.info("equizoo: %s tensor product runs the %s kernel on %s%s", self.method, choice, device.type, why)
            return fused if fused is not None else self._reference
        if self.kernel == "fused":
            from layers.kernels import fused_kernels_usable

            usable, reason = fused_kernels_usable(device, allow_interpreter=True)
            fused, unsupported = self._fused() if usable else (None, reason)
            if fused is None:
                raise RuntimeError(f"{self.method}: the fused kernel cannot run here: {unsupported}")
            return fused
        return self._other_kernel(self.kernel)

    def _other_kernel(self, kernel: str) -> Callable:
        if kernel == "cueq":
            from layers.kernels import cueq_executor  # lazy: cuEquivariance is optional

            return cueq_executor(self)
        raise ValueError(f"{self.method}: unknown kernel {kernel!r}")

    # -- weights -------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Initialise the internal weights, if any, with :meth:`initialize_weight`."""
        if self.weight is not None:
            self.initialize_weight(self.weight)

    def initialize_weight(self, weight: torch.Tensor) -> None:
        """Fill ``weight: [..., weight_numel]`` in place as this method initialises its weights.

        Standard normal, as e3nn (normalisation constants live in the forward). Models that keep
        external weights (e.g. one weight vector per chemical element) use this so every method
        starts from the product it was designed around.
        """
        with torch.no_grad():
            weight.normal_()

    def _resolve_weight(self, weight: Optional[torch.Tensor]) -> torch.Tensor:
        if weight is None:
            if self.weight is None:
                if self.weight_numel == 0:
                    return torch.empty(0)
                raise ValueError(
                    f"{self.spec.describe()}: no internal weights; pass weight=[..., {self.weight_numel}]"
                )
            return self.weight
        if weight.shape[-1:] != (self.weight_numel,):
            raise ValueError(f"weight has shape {tuple(weight.shape)}; expected [..., {self.weight_numel}]")
        if self.shared_weights and weight.dim() != 1:
            raise ValueError(
                f"shared weights expect shape [{self.weight_numel}], got {tuple(weight.shape)}; "
                "build with shared_weights=False for one weight vector per row"
            )
        return weight

    # -- forward -------------------------------------------------------------------------
    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x1: [..., irreps_in1.dim]``, ``x2: [..., irreps_in2.dim]`` -> ``[..., irreps_out.dim]``."""
        dim1, dim2, dim_out = self._dims
        if x1.shape[-1] != dim1:
            raise ValueError(f"x1 has last dimension {x1.shape[-1]}; irreps_in1 {self.irreps_in1} has dim {dim1}")
        if x2.shape[-1] != dim2:
            raise ValueError(f"x2 has last dimension {x2.shape[-1]}; irreps_in2 {self.irreps_in2} has dim {dim2}")
        weight = self._resolve_weight(weight)
        per_row = weight.dim() > 1
        leading = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], *([weight.shape[:-1]] if per_row else []))
        x1 = x1.expand(leading + x1.shape[-1:]).reshape(-1, x1.shape[-1])
        x2 = x2.expand(leading + x2.shape[-1:]).reshape(-1, x2.shape[-1])
        if per_row:
            weight = weight.expand(leading + weight.shape[-1:]).reshape(-1, weight.shape[-1])
        if weight.numel() > 0:
            weight = weight.to(x1.dtype)
        out = self._executor(x1.device)(x1, x2, weight)
        return out.reshape(leading + (dim_out,))

    def _reference(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x1: [Z, d1]``, ``x2: [Z, d2]``, ``weight: [numel]`` or ``[Z, numel]`` -> ``[Z, d_out]``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.spec.describe()}, kernel={self.kernel}"
