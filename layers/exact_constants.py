"""Buffers that are mathematical constants and stay exact through dtype changes.

A module built under float32 and later moved with ``.double()`` would normally carry its
coefficient tables (Clebsch-Gordan, Fourier, quadrature) rounded to float32: about 1e-7
relative error, enough to spoil float64 equivariance checks and energy conservation in
molecular dynamics. :class:`ExactConstants` keeps a float64 CPU master of each such buffer and,
after every ``.to()``, ``.double()``, ``.float()``, ``.cuda()``, rebuilds the buffer from the
master at the buffer's new device and dtype.

Constants are not saved in state dicts (``persistent=False``): they are derived exactly from the
module's constructor arguments, so a checkpoint holds parameters only.
"""

from __future__ import annotations

import torch
from torch import nn


class ExactConstants(nn.Module):
    """Mixin: ``register_constant(name, value)`` instead of ``register_buffer`` for derived tables."""

    def register_constant(self, name: str, value: torch.Tensor) -> None:
        """Register ``value`` (computed in float64 for floating tables) as a non-persistent buffer."""
        masters = self.__dict__.setdefault("_constant_masters", {})
        if value.is_floating_point():
            masters[name] = value.detach().to(device="cpu", dtype=torch.float64)
            value = value.to(torch.get_default_dtype())
        else:
            masters[name] = value.detach().cpu()
        self.register_buffer(name, value, persistent=False)

    def master(self, name: str) -> torch.Tensor:
        """The exact (float64, CPU) value of constant ``name``."""
        return self.__dict__["_constant_masters"][name]

    def _apply(self, fn, recurse: bool = True):
        result = super()._apply(fn, recurse)
        for name, master in self.__dict__.get("_constant_masters", {}).items():
            current = self._buffers[name]
            if current is not None:
                self._buffers[name] = master.to(device=current.device, dtype=current.dtype)
        return result
