r"""U-Net baseline for operator learning, 1-D or 2-D.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation" (MICCAI
2015), in the form PDEBench (Takamoto et al., NeurIPS 2022) and neural-operator comparisons use: on
``x: [batch, in_channels, *spatial]`` with ``L = levels``::

    e_0 = Stage(in_channels -> w)(x)                           (w = width)
    e_l = Stage(w 2^(l-1) -> w 2^l)(AvgPool_2(e_{l-1})),       l = 1 .. L
    d_L = e_L
    d_l = Stage(2 w 2^l -> w 2^l)([Up(d_{l+1}), e_l]),         l = L-1 .. 0
    y   = Conv_1x1(w -> out_channels)(d_0)

``Stage`` is two (3x3 convolution, GroupNorm, GELU) blocks; ``Up`` a stride-2 transposed convolution that
halves the channels; ``[., .]`` concatenates the skip connection along the channels. Channels double per
level, so the coarsest features have ``w 2^L`` channels on a grid ``2^L`` times coarser.

**Sizes.** Pooling ``L`` times needs every spatial size divisible by ``2^L``. Any other size is padded at
the end of each dimension up to the next multiple of ``2^L`` and the output cropped back to the input's
size: circular (wrap-around) padding on the ``"periodic"`` domain, where the field continues that way,
and edge replication on ``"nodes"``, which avoids a jump at the boundary. The 3x3 convolutions pad the
same way (circular on the torus, replicate on ``"nodes"``), so the periodic U-Net commutes with shifts
of a grid whose sizes are multiples of ``2^L``.

The output grid is the input grid: ``output_shape`` must equal the input's spatial shape (a U-Net has no
other grid to offer).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layers.spectral import ChannelNormalisation
from zoo.deeponet import make_activation

CONV = {1: nn.Conv1d, 2: nn.Conv2d}
TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}


def group_count(channels: int, preferred: int = 8) -> int:
    """The largest number of GroupNorm groups ``<= preferred`` that divides ``channels``."""
    return math.gcd(channels, preferred)


class Stage(nn.Module):
    """Two (3x3 convolution, GroupNorm, activation) blocks: ``[B, c_in, *S] -> [B, c_out, *S]``."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, padding_mode: str, activation: str):
        super().__init__()
        blocks: list[nn.Module] = []
        for fan_in in (in_channels, out_channels):
            blocks += [
                CONV[dims](fan_in, out_channels, kernel_size=3, padding=1, padding_mode=padding_mode),
                nn.GroupNorm(group_count(out_channels), out_channels),
                make_activation(activation),
            ]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class UNet(nn.Module):
    r"""U-Net (Ronneberger et al. 2015) for fields on 1-D or 2-D grids; module docstring for the layout.

    Args:
        in_channels: channels of the input function.
        out_channels: channels of the output function.
        spatial_dims: 1 or 2.
        width: channels of the finest stage (default 32); level ``l`` has ``width 2^l``.
        levels: number of down-samplings (default 4, >= 1).
        activation: ``"gelu"`` (default), ``"relu"``, ``"tanh"`` or ``"silu"``.
        domain: ``"periodic"`` (circular padding) or ``"nodes"`` (replicate padding); default ``"periodic"``.
        input_mean, input_std, output_mean, output_std: per-channel normalisers (None: identity).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 2,
        width: int = 32,
        levels: int = 4,
        activation: str = "gelu",
        domain: str = "periodic",
        input_mean: list[float] | None = None,
        input_std: list[float] | None = None,
        output_mean: list[float] | None = None,
        output_std: list[float] | None = None,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width), ("levels", levels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        if spatial_dims not in CONV:
            raise ValueError(f"UNet supports spatial_dims 1 or 2; got {spatial_dims!r}")
        make_activation(activation)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        if domain not in ("periodic", "nodes"):
            raise ValueError(f"UNet takes domain 'periodic' or 'nodes' (one padding rule for every dimension); got {domain!r}")
        self.domain = domain
        self.levels = levels
        padding_mode = "circular" if domain == "periodic" else "replicate"
        self.pad_mode = padding_mode  # F.pad's name for the same thing

        channels = [width * 2**level for level in range(levels + 1)]
        self.encoder = nn.ModuleList(
            Stage(spatial_dims, in_channels if level == 0 else channels[level - 1], channels[level], padding_mode, activation)
            for level in range(levels + 1)
        )
        self.pool = POOL[spatial_dims](kernel_size=2)
        self.up = nn.ModuleList(
            TRANSPOSED[spatial_dims](channels[level + 1], channels[level], kernel_size=2, stride=2) for level in range(levels)
        )
        self.decoder = nn.ModuleList(
            Stage(spatial_dims, 2 * channels[level], channels[level], padding_mode, activation) for level in range(levels)
        )
        self.head = CONV[spatial_dims](width, out_channels, kernel_size=1)
        self.input_normalisation = ChannelNormalisation(in_channels, input_mean, input_std)
        self.output_normalisation = ChannelNormalisation(out_channels, output_mean, output_std)

    def forward(self, x: Tensor, output_shape: Sequence[int] | None = None) -> Tensor:
        """``x: [batch, in_channels, *spatial]`` -> ``[batch, out_channels, *spatial]`` (any sizes; padded
        to multiples of ``2^levels`` and cropped back)."""
        if x.dim() != 2 + self.spatial_dims or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects x of shape [batch, {self.in_channels}, {self.spatial_dims} spatial sizes]; got {tuple(x.shape)}"
            )
        shape = tuple(x.shape[2:])
        if output_shape is not None and tuple(int(n) for n in output_shape) != shape:
            raise ValueError(f"UNet outputs on its input grid {list(shape)}; it cannot produce output_shape {list(output_shape)}")
        multiple = 2**self.levels
        extra = [(-n) % multiple for n in shape]
        h = self.input_normalisation.encode(x)
        if any(extra):
            # F.pad lists (before, after) pairs from the last dimension backwards; pad only after
            pads = [p for e in reversed(extra) for p in (0, e)]
            if self.pad_mode == "circular" and any(e > n for e, n in zip(extra, shape)):
                # circular padding cannot wrap around more than once: tile the field first
                reps = [1, 1] + [math.ceil((n + e) / n) for n, e in zip(shape, extra)]
                h = h.repeat(*reps)[(..., *[slice(0, n + e) for n, e in zip(shape, extra)])]
            else:
                h = F.pad(h, pads, mode=self.pad_mode)
        skips = []
        for level, stage in enumerate(self.encoder):
            h = stage(h if level == 0 else self.pool(h))
            skips.append(h)
        h = skips.pop()
        for level in reversed(range(self.levels)):
            h = self.decoder[level](torch.cat([self.up[level](h), skips[level]], dim=1))
        y = self.head(h)[(..., *[slice(0, n) for n in shape])]
        return self.output_normalisation.decode(y)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, levels={self.levels}, domain={self.domain!r}"
