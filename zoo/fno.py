r"""The Fourier neural operator family as one assembly: FNO, TFNO and SFNO differ only in the convolution.

Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart, Anandkumar, "Fourier Neural Operator for Parametric
Partial Differential Equations" (ICLR 2021); Kossaifi, Kovachki, Azizzadenesheli, Anandkumar, "Multi-Grid
Tensorized Fourier Neural Operator for High-Resolution PDEs" (TMLR 2023, TFNO: CP/Tucker weights); Bonev,
Kurth, Hundt, Pathak, Baust, Kashinath, Anandkumar, "Spherical Fourier Neural Operators" (ICML 2023, SFNO).

Shaped like neuraloperator 2.0's ``FNO`` (same defaults where it has them) so benchmarks compare like with
like. On ``x: [batch, in_channels, *spatial]`` (``d = spatial_dims`` = 1, 2 or 3)::

    v_0     = Q(cat(normalise(x), coordinates))          lifting: 1x1 Linear -> GELU -> 1x1 Linear, width
    (pad the grid on the right by round(N_j * domain_padding) zeros, if any)
    for each block l = 1 .. L:
        u   = K_l v + b_l + S_l v                       K_l the convolution, S_l a 1x1 linear skip (no bias)
        u   = GELU(u)                                   (not after the last block when channel_mlp=False)
        v   = MLP_l(u) + g_l * v                        channel MLP (1x1, hidden = expansion * width, GELU)
                                                        plus a soft-gating skip g_l (per channel, starts at 1)
        v   = GELU(v)                                   except after the last block
        v   = CAPE_l(v, p)                              only with channel_attention_parameters > 0
    (crop the padding)
    y       = denormalise(P(v))                          projection: 1x1 Linear -> GELU -> 1x1 Linear

neuraloperator defaults mirrored: ``n_layers=4``, lifting/projection channel ratio 2, channel MLP expansion
0.5 with a "soft-gating" skip, a "linear" block skip without bias, a bias on the spectral convolution (here
initialised to zero), the grid positional embedding, GELU, one-sided domain padding. Their ``FNOBlocks``
apply the GELU after ``K v + S v`` in every block whenever the channel MLP follows (the last block too), and
so does this model. Without the channel MLP (``channel_mlp=False``) a block is ``v = GELU(K v + b + S v)``,
no GELU after the last, the original FNO.

The convolution is data (:mod:`zoo.fno_convolution`): ``{"kind": "fourier", "modes": [...], "weights":
"dense"|"cp"|"tucker", "rank": ...}`` or ``{"kind": "spherical", "lmax": L, "grid": ...}``.

Grids and super-resolution. The model normalises its input and de-normalises its output (the statistics
are arguments, filled from the training set), so it maps physical fields to physical fields. The Fourier
convolution reads the samples as points ``j / N`` of a periodic box and ``forward(x, output_shape=M)``
evaluates the *last* block on ``M`` points of the same box: its convolution by the spectral layer's own
``output_shape``, its skip paths by band-limited Fourier interpolation (:func:`layers.spectral.grid.fourier_resample`).
The last block's ``u = K v + b + S v`` on the ``M`` grid is therefore exactly the trigonometric
interpolant of the one on the ``N`` grid (``K v`` is band-limited below ``N / 2``, ``S`` is pointwise
linear), and so is its gated skip; everything after is pointwise, so where the grids share points (``M``
a multiple of ``N``) the output equals the ``N``-grid output there. Between those points the output is a
pointwise function of band-limited interpolants, a smooth function of ``x``. The spherical convolution
resamples its skips by spherical harmonic analysis/synthesis (:func:`layers.spectral.grid.spherical_resample`).
With ``domain_padding`` the padded box scales with the grid (``round(M * domain_padding)`` points), exact
when ``N * domain_padding`` and ``M * domain_padding`` are integers in the ratio ``M / N``.

Positional embedding: the Fourier kind appends the ``d`` coordinates of :func:`layers.spectral.grid_coordinates`
(``domain`` convention, on the input grid); the spherical kind appends the colatitude ``theta / pi`` only,
which keeps the model equivariant to rotations about the polar axis (neuraloperator's SFNO appends both
coordinates, and loses that).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from layers.spectral import ChannelNormalisation, ParameterChannelAttention, grid_coordinates
from layers.spectral.grid import check_domain, fourier_resample, spherical_resample
from layers.spectral.spherical_conv import latitude_rule
from zoo.fno_convolution import build_convolution, parse_convolution
from zoo.fno_refine import full_modes, with_full_last_layer_modes

__all__ = ["FNO", "FourierBlock", "PointwiseMLP", "full_modes", "with_full_last_layer_modes"]


class PointwiseMLP(nn.Module):
    """``Linear -> GELU -> Linear`` on the channels of ``x: [batch, C, *spatial]`` (a stack of 1x1 convolutions)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.GELU(), nn.Linear(hidden_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.movedim(1, -1)).movedim(-1, 1)


class FourierBlock(nn.Module):
    """One block of :class:`FNO` (see the module docstring); ``convolution`` maps ``width -> width`` channels.

    ``resample(x, output_shape)`` moves the skip paths to the convolution's output grid.
    """

    def __init__(self, convolution: nn.Module, width: int, kind: str, channel_mlp: bool, expansion: float,
                 last: bool, attention_parameters: int):
        super().__init__()
        self.convolution = convolution
        self.kind, self.last = kind, last
        self.grid = getattr(convolution, "grid", "equiangular")
        self.bias = nn.Parameter(torch.zeros(width))
        self.skip = nn.Linear(width, width, bias=False)
        self.channel_mlp = PointwiseMLP(width, max(1, round(width * expansion)), width) if channel_mlp else None
        self.gate = nn.Parameter(torch.ones(width)) if channel_mlp else None
        self.attention = ParameterChannelAttention(width, attention_parameters) if attention_parameters > 0 else None
        self.activation = nn.GELU()

    def resample(self, x: Tensor, output_shape: Sequence[int]) -> Tensor:
        if tuple(x.shape[2:]) == tuple(output_shape):
            return x
        if self.kind == "fourier":
            return fourier_resample(x, output_shape)
        return spherical_resample(x, output_shape, self.grid)

    def forward(self, x: Tensor, output_shape: Sequence[int] | None = None, parameters: Tensor | None = None) -> Tensor:
        """``x: [batch, width, *spatial]`` -> ``[batch, width, *(output_shape or spatial)]``."""
        output_shape = tuple(x.shape[2:]) if output_shape is None else tuple(output_shape)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        skip = self.resample(self.skip(x.movedim(1, -1)).movedim(-1, 1), output_shape)
        u = self.convolution(x, output_shape=output_shape) + self.bias.view(shape) + skip
        if self.channel_mlp is not None:
            u = self.channel_mlp(self.activation(u)) + self.gate.view(shape) * self.resample(x, output_shape)
        if not self.last:
            u = self.activation(u)
        if self.attention is not None:
            u = self.attention(u, parameters)
        return u


class FNO(nn.Module):
    """A Fourier neural operator (FNO/TFNO/SFNO by ``convolution``); the keyword arguments are the ``model:`` config.

    Args:
        in_channels, out_channels: channels of the input and output fields.
        spatial_dims: ``d``, 1 to 3 (2 for a spherical convolution, ``[nlat, nlon]``).
        convolution: the integral operator of every block (:mod:`zoo.fno_convolution`), e.g.
            ``{"kind": "fourier", "modes": [16, 16]}`` (dense, FNO), ``{..., "weights": "tucker", "rank": 0.42}``
            (TFNO), ``{"kind": "spherical", "lmax": 15}`` (SFNO).
        width: channels inside the blocks (neuraloperator's ``hidden_channels``), default 32.
        num_layers: number of blocks, default 4.
        lifting_channels, projection_channels: hidden width of the lifting / projection MLP; default ``2 * width``.
        channel_mlp: use the channel MLP with soft-gating skip in each block (default True).
        channel_mlp_expansion: its hidden width as a fraction of ``width`` (default 0.5).
        positional_embedding: append grid coordinates to the input (default True; see the module docstring).
        domain: ``"periodic"`` (samples at ``j/N``) or ``"nodes"`` (``j/(N-1)``, boundary included).
        domain_padding: for non-periodic data, pad every spatial dimension on the right by
            ``round(N * domain_padding)`` zeros before the blocks, crop after (default 0: none).
        last_layer_modes: Fourier modes of the last block's convolution (default: ``convolution["modes"]``).
        channel_attention_parameters: ``P > 0`` adds CAPE channel attention after every block, driven by
            ``forward(..., pde_parameters=[batch, P])`` (default 0: none).
        input_mean, input_std, output_mean, output_std: per-channel normalisation statistics (None = identity).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        spatial_dims: int,
        convolution: Mapping[str, Any],
        width: int = 32,
        num_layers: int = 4,
        lifting_channels: int | None = None,
        projection_channels: int | None = None,
        channel_mlp: bool = True,
        channel_mlp_expansion: float = 0.5,
        positional_embedding: bool = True,
        domain: str = "periodic",
        domain_padding: float = 0.0,
        last_layer_modes: list[int] | None = None,
        channel_attention_parameters: int = 0,
        input_mean: list[float] | None = None,
        input_std: list[float] | None = None,
        output_mean: list[float] | None = None,
        output_std: list[float] | None = None,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                            ("num_layers", num_layers)):
            _check_positive_int(name, value)
        for name, value in (("lifting_channels", lifting_channels), ("projection_channels", projection_channels)):
            if value is not None:
                _check_positive_int(name, value)
        if spatial_dims not in (1, 2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 1, 2 or 3; got {spatial_dims!r}")
        if not isinstance(channel_attention_parameters, int) or channel_attention_parameters < 0:
            raise ValueError(f"channel_attention_parameters must be an int >= 0; got {channel_attention_parameters!r}")
        if not isinstance(channel_mlp_expansion, (int, float)) or not channel_mlp_expansion > 0:
            raise ValueError(f"channel_mlp_expansion must be a positive number; got {channel_mlp_expansion!r}")
        if not isinstance(domain_padding, (int, float)) or not 0.0 <= domain_padding < 1.0:
            raise ValueError(f"domain_padding must be a fraction in [0, 1); got {domain_padding!r}")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.domain = check_domain(domain)
        self.spec = parse_convolution(convolution, spatial_dims)
        self.kind = self.spec["kind"]
        if self.kind == "spherical" and domain_padding > 0:
            raise ValueError("domain_padding does not apply to a spherical convolution (the sphere has no boundary)")
        if last_layer_modes is not None:
            if self.kind != "fourier":
                raise ValueError("last_layer_modes applies to a Fourier convolution only")
            last_layer_modes = list(last_layer_modes)
            if len(last_layer_modes) != spatial_dims or not all(
                isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in last_layer_modes
            ):
                raise ValueError(f"last_layer_modes must be {spatial_dims} positive ints; got {last_layer_modes!r}")
        self.domain_padding = float(domain_padding)
        self.positional_embedding = bool(positional_embedding)
        self.channel_attention_parameters = channel_attention_parameters

        self.input_normalisation = ChannelNormalisation(in_channels, input_mean, input_std)
        self.output_normalisation = ChannelNormalisation(out_channels, output_mean, output_std)
        coordinates = (1 if self.kind == "spherical" else spatial_dims) if self.positional_embedding else 0
        self.lifting = PointwiseMLP(in_channels + coordinates, lifting_channels or 2 * width, width)
        self.blocks = nn.ModuleList(
            FourierBlock(
                build_convolution(self.spec, width, last_layer_modes if last else None), width, self.kind,
                bool(channel_mlp), float(channel_mlp_expansion), last, channel_attention_parameters,
            )
            for last in (index == num_layers - 1 for index in range(num_layers))
        )
        self.projection = PointwiseMLP(width, projection_channels or 2 * width, out_channels)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The parameters of the last block's convolution (Spectral-Refiner fine-tunes only these, on the model
        :func:`with_full_last_layer_modes` returns)."""
        return list(self.blocks[-1].convolution.parameters())

    def _coordinates(self, x: Tensor) -> Tensor:
        spatial = tuple(x.shape[2:])
        if self.kind == "spherical":
            theta = torch.from_numpy(latitude_rule(spatial[0], self.spec["grid"])[0] / torch.pi)
            grid = theta.to(dtype=x.dtype, device=x.device).view(1, -1, 1).expand(1, *spatial)
        else:
            grid = grid_coordinates(spatial, self.domain, dtype=x.dtype, device=x.device)
        return grid.unsqueeze(0).expand(x.shape[0], *grid.shape)

    def forward(self, x: Tensor, output_shape: Sequence[int] | None = None, pde_parameters: Tensor | None = None) -> Tensor:
        """``x: [batch, in_channels, *spatial]`` -> ``[batch, out_channels, *(output_shape or spatial)]``.

        ``output_shape`` evaluates the last block on another grid (super-resolution, module docstring);
        ``pde_parameters: [batch, P]`` drive the channel attention (required exactly when it is on).
        """
        if x.dim() != 2 + self.spatial_dims or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [batch, {self.in_channels}, {self.spatial_dims} spatial dims]; got {tuple(x.shape)}")
        if (pde_parameters is None) != (self.channel_attention_parameters == 0):
            raise ValueError(
                f"pde_parameters [batch, {self.channel_attention_parameters}] are required with channel attention"
                if pde_parameters is None else "pde_parameters given, but this model has no channel attention "
                "(channel_attention_parameters=0)"
            )
        spatial = tuple(x.shape[2:])
        target = spatial if output_shape is None else tuple(int(n) for n in output_shape)
        if len(target) != self.spatial_dims or any(n < 1 for n in target):
            raise ValueError(f"output_shape must be {self.spatial_dims} positive ints; got {output_shape!r}")
        v = self.input_normalisation.encode(x)
        if self.positional_embedding:
            v = torch.cat([v, self._coordinates(v)], dim=1)
        v = self.lifting(v)
        if self.domain_padding > 0:
            pad = [round(n * self.domain_padding) for n in spatial]
            v = nn.functional.pad(v, [size for p in reversed(pad) for size in (0, p)])
            padded_target = tuple(n + round(n * self.domain_padding) for n in target)
        else:
            padded_target = target
        for block in self.blocks:
            v = block(v, output_shape=padded_target if block.last else None, parameters=pde_parameters)
        for axis, n in enumerate(target):
            v = v.narrow(2 + axis, 0, n)
        return self.output_normalisation.decode(self.projection(v))


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
