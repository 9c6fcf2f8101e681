"""Per-channel affine normalisation of fields, the statistics neural operators are trained with.

A model owns one :class:`ChannelNormalisation` for its input and one for its output (like MACE owns its
energy scale and shift), so a saved model maps physical input to physical output:

.. math::
    \\mathrm{encode}(x)_c = (x_c - \\mu_c) / \\sigma_c, \\qquad \\mathrm{decode}(y)_c = y_c \\sigma_c + \\mu_c,

on ``x: [batch, channels, *spatial]``, the per-channel constants broadcast over batch and space
(neuraloperator's ``UnitGaussianNormalizer`` with ``dim=[0, 2, ...]``, i.e. one mean and one standard
deviation per channel). :func:`channel_statistics` computes :math:`\\mu_c, \\sigma_c` from a training set.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

# the smallest standard deviation, relative to the channel's scale (max |x|, or 1 for an all-zero channel):
# a constant channel would otherwise divide by zero
RELATIVE_STD_FLOOR = 1e-12


class ChannelNormalisation(nn.Module):
    """``encode(x) = (x - mean) / std`` and its inverse ``decode``, one constant per channel.

    Args:
        channels: the number of channels ``C`` of the fields it normalises.
        mean: ``C`` floats, or None for zeros (no shift).
        std: ``C`` positive floats, or None for ones (no scaling).

    Buffers ``mean`` and ``std`` (shape ``[C]``, the default dtype like parameters, persistent) travel with the state dict, so a
    checkpoint carries its statistics.
    """

    def __init__(self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"channels must be >= 1; got {channels}")
        self.channels = int(channels)
        mean_tensor = self._vector("mean", mean, 0.0)
        std_tensor = self._vector("std", std, 1.0)
        if not bool(torch.all(std_tensor > 0)):
            raise ValueError(f"std must be positive in every channel; got {std_tensor.tolist()}")
        self.register_buffer("mean", mean_tensor)
        self.register_buffer("std", std_tensor)

    def _vector(self, what: str, values: Sequence[float] | None, default: float) -> Tensor:
        if values is None:
            return torch.full((self.channels,), default)
        values = [float(value) for value in values]
        if len(values) != self.channels:
            raise ValueError(f"{what} needs one value per channel ({self.channels}); got {len(values)}: {values}")
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"{what} must be finite; got {values}")
        return torch.tensor(values, dtype=torch.get_default_dtype())

    def _broadcast(self, x: Tensor, buffer: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected x of shape [batch, {self.channels}, *spatial]; got {tuple(x.shape)}")
        return buffer.to(dtype=x.dtype).reshape(1, self.channels, *([1] * (x.dim() - 2)))

    def encode(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` on ``x: [batch, channels, *spatial]``."""
        return (x - self._broadcast(x, self.mean)) / self._broadcast(x, self.std)

    def decode(self, y: Tensor) -> Tensor:
        """``y * std + mean`` on ``y: [batch, channels, *spatial]``; the inverse of :meth:`encode`."""
        return y * self._broadcast(y, self.std) + self._broadcast(y, self.mean)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def channel_statistics(x: Tensor) -> tuple[list[float], list[float]]:
    """Mean and (population) standard deviation of every channel of ``x: [N, C, *spatial]``.

    Accumulated in float64 over samples and space. A constant channel gets the floor
    ``RELATIVE_STD_FLOOR * max(max |x_c|, 1)`` instead of 0, so :class:`ChannelNormalisation` never divides
    by zero. Non-finite values raise a ValueError naming the channel.

    Returns:
        ``(mean, std)``, two lists of ``C`` Python floats (JSON-plain, ready for a model's arguments).
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"channel_statistics expects a tensor [N, C, *spatial]; got {getattr(x, 'shape', type(x))}")
    if x.shape[0] == 0:
        raise ValueError("channel_statistics needs at least one sample; got N = 0")
    values = x.detach().to(torch.float64).transpose(0, 1).reshape(x.shape[1], -1)
    finite = torch.isfinite(values).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"channel_statistics: non-finite values (nan/inf) in channel(s) {bad}")
    mean = values.mean(dim=1)
    std = (values - mean[:, None]).pow(2).mean(dim=1).sqrt()
    scale = values.abs().amax(dim=1).clamp_min(1.0)
    std = torch.maximum(std, RELATIVE_STD_FLOOR * scale)
    return mean.tolist(), std.tolist()
