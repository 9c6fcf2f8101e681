r"""MgNO: a neural operator whose linear operators are multigrid V-cycles.

He, Liu, Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid" (ICLR 2024). On
``x: [batch, in_channels, H, W]`` (2-D only: :class:`layers.spectral.VCycle` is a 2-D multigrid)::

    u_0     = Lift x                                     (1x1 convolution, in_channels -> width)
    u_{l+1} = act( V_l(u_l) + W_l u_l + b_l ),   l = 0 .. num_layers - 1
    y       = Project u_L                                (1x1 convolution(s), width -> out_channels)

``V_l`` is one V-cycle (smoothers, restrictions, prolongations and level operators are all learned 3x3
convolutions) that approximately solves ``A_l v = u_l`` with the current features as the right-hand
side, from a zero initial guess; it is the paper's multi-channel linear operator, with a global
receptive field from the coarse grids at the cost of ``O(H W)`` work. ``W_l`` (1x1 convolution) and
``b_l`` are MgNO's linear skip and bias ("MgNO neuron" ``sigma(A u + W u + b)``).

Boundary conditions are the V-cycle's padding: ``"zeros"`` (homogeneous Dirichlet beyond the array,
for Darcy-type data on a ``"nodes"`` grid) or ``"periodic"`` (circular convolutions, for the torus).
The grid must coarsen ``levels - 1`` times (each spatial size, independently):

* ``"zeros"``: ``n + 1`` divisible by ``2^(levels-1)`` and ``n >= 2^levels - 1`` (e.g. 15, 31, 63 for
  ``levels=4``): every level but the coarsest has an odd size ``n_{l+1} = (n_l - 1) / 2``;
* ``"periodic"``: ``n`` divisible by ``2^(levels-1)`` (e.g. 16, 32, 64 for ``levels=4``).

Other sizes raise a ValueError that lists admissible ones; the output is always on the input grid
(the V-cycle has no other grid to offer), so ``output_shape`` must equal the input's shape.

**Initialisation and step size.** The V-cycle is a deep product of its kernels (a term of a 3-level
cycle multiplies up to nine of them: ``P_0 P_1 S R_1 A_1 S R_0 A_0 S``), and PyTorch's initialisation makes
each kernel small, entries in ``+-1 / sqrt(9 width)`` (0.06 at width 32). Adam moves every entry by about
``lr`` per step whatever its size, so at ``lr = 1e-2`` each kernel changes by 10-20 % of itself per step,
the changes multiply through the product, and the V-cycle's gain (output over input size) grew from 1 to
over 10 in 20 steps and training blew up (loss 1e10 on Darcy 16x16; learning a smaller per-layer output
gain did not help, the kernels themselves run away). The fix is the "equalised learning rate" of Karras
et al. (ICLR 2018): every V-cycle kernel is stored as ``theta = c w`` and used as ``w = theta / c``, with
``c = vcycle_kernel_magnitude * sqrt(9 width)``, so the initial operator is unchanged, the stored entries
lie in ``+-vcycle_kernel_magnitude`` at any width, and one Adam step changes a kernel by about
``lr / vcycle_kernel_magnitude`` of itself. Measured (neuraloperator's Darcy 16x16 cropped to 15x15,
width 32, 4 layers, 4 levels, batch 16, relative L2 after 400 Adam steps): PyTorch's scale (magnitude
``1/sqrt(9 width)`` = 0.059) reaches 0.15 at ``lr = 1e-3`` and diverges (inf) at ``1e-2``; magnitude 0.15
still diverges at ``1e-2``; the default 0.3 reaches 0.19 at ``1e-3``, 0.16 at ``3e-3`` and 0.15 at
``1e-2`` without diverging. So with the default, Adam is stable from ``1e-3`` (a little slower there,
the V-cycle learning about 5x slower than with PyTorch's scale) to ``1e-2``; ``3e-3``-``1e-2`` works best.
The lifting and the skip convolutions are LeCun-normal (unit gain), so the feature scale neither grows nor shrinks with depth at init.
(The reparametrisation is :func:`torch.nn.utils.parametrize`; the state dict holds ``theta`` under
``...vcycle.<group>.parametrizations.<i>.original``.)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from layers.spectral import ChannelNormalisation, VCycle
from zoo.deeponet import make_activation

PADDINGS = {"zeros": "zeros", "periodic": "circular"}


def admissible_sizes(levels: int, padding: str, count: int = 4) -> list[int]:
    """The ``count`` smallest grid sizes a V-cycle with ``levels`` levels accepts under ``padding``."""
    step = 2 ** (levels - 1)
    if padding == "zeros":
        return [k * step - 1 for k in range(2, 2 + count)] if levels > 1 else list(range(1, 1 + count))
    return [k * step for k in range(1, 1 + count)]


def is_admissible(n: int, levels: int, padding: str) -> bool:
    """Whether a V-cycle with ``levels`` levels coarsens a grid of size ``n`` under ``padding``."""
    step = 2 ** (levels - 1)
    if padding == "zeros":
        return levels == 1 or ((n + 1) % step == 0 and n >= 2 * step - 1)
    return n % step == 0 and n >= step


class Rescaled(nn.Module):
    """Parametrisation ``w = theta / scale``; ``right_inverse`` stores ``theta = scale * w``."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, theta: Tensor) -> Tensor:
        return theta / self.scale

    def right_inverse(self, w: Tensor) -> Tensor:
        return w * self.scale


class MgNOLayer(nn.Module):
    """``u -> act(V(u) + W u + b)`` on ``u: [batch, width, H, W]`` (one MgNO layer).

    The V-cycle's kernels are stored scaled by ``kernel_magnitude * sqrt(9 width)`` (module docstring).
    """

    def __init__(self, width: int, levels: int, smoothing_steps: int, post_smoothing_steps: int, padding: str, activation: str, kernel_magnitude: float):
        super().__init__()
        self.vcycle = VCycle(width, levels, smoothing_steps, post_smoothing_steps, padding=PADDINGS[padding])
        scale = kernel_magnitude * math.sqrt(9 * width)
        for group in (self.vcycle.operator, self.vcycle.smoother, self.vcycle.restriction, self.vcycle.prolongation):
            for index in range(len(group)):
                parametrize.register_parametrization(group, str(index), Rescaled(scale))
        self.skip = nn.Conv2d(width, width, kernel_size=1)
        nn.init.normal_(self.skip.weight, std=1.0 / math.sqrt(width))
        nn.init.zeros_(self.skip.bias)
        self.activation = make_activation(activation)

    def forward(self, u: Tensor) -> Tensor:
        return self.activation(self.vcycle(u) + self.skip(u))


class MgNO(nn.Module):
    r"""MgNO (He, Liu, Xu 2024) on 2-D grids; module docstring for the architecture and admissible sizes.

    Args:
        in_channels: channels of the input function.
        out_channels: channels of the output function.
        spatial_dims: must be 2 (the V-cycle is 2-D).
        width: channels of the hidden features and of every V-cycle (default 32).
        num_layers: MgNO layers (default 4).
        levels: grids per V-cycle, including the finest (default 4).
        smoothing_steps: pre-smoothing steps per level (default 1).
        post_smoothing_steps: post-smoothing steps per level (default 0, as in MgNO).
        padding: ``"zeros"`` (Dirichlet) or ``"periodic"``; None (default) picks ``"periodic"`` on the
            ``"periodic"`` domain and ``"zeros"`` on ``"nodes"``.
        activation: ``"gelu"`` (default), ``"relu"``, ``"tanh"`` or ``"silu"``.
        projection_width: hidden channels of the projection (two 1x1 convolutions with the activation
            between); None (default): one 1x1 convolution ``width -> out_channels``.
        vcycle_kernel_magnitude: size of the stored V-cycle kernel entries at init (default 0.3); a kernel
            changes by about ``lr / vcycle_kernel_magnitude`` of itself per Adam step (module docstring).
        domain: ``"periodic"`` or ``"nodes"`` (default ``"periodic"``).
        input_mean, input_std, output_mean, output_std: per-channel normalisers (None: identity).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 2,
        width: int = 32,
        num_layers: int = 4,
        levels: int = 4,
        smoothing_steps: int = 1,
        post_smoothing_steps: int = 0,
        padding: str | None = None,
        activation: str = "gelu",
        projection_width: int | None = None,
        vcycle_kernel_magnitude: float = 0.3,
        domain: str = "periodic",
        input_mean: list[float] | None = None,
        input_std: list[float] | None = None,
        output_mean: list[float] | None = None,
        output_std: list[float] | None = None,
    ):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1), ("width", width, 1), ("num_layers", num_layers, 1), ("levels", levels, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
        if spatial_dims != 2:
            raise ValueError(f"MgNO supports spatial_dims=2 only (its V-cycle is a 2-D multigrid); got {spatial_dims!r}")
        if domain not in ("periodic", "nodes"):
            raise ValueError(f"MgNO takes domain 'periodic' or 'nodes' (one padding rule for every dimension); got {domain!r}")
        self.domain = domain
        if padding is None:
            padding = "periodic" if domain == "periodic" else "zeros"
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))} or None; got {padding!r}")
        if projection_width is not None and (not isinstance(projection_width, int) or projection_width < 1):
            raise ValueError(f"projection_width must be None or an int >= 1; got {projection_width!r}")
        if not (isinstance(vcycle_kernel_magnitude, (int, float)) and math.isfinite(vcycle_kernel_magnitude) and vcycle_kernel_magnitude > 0):
            raise ValueError(f"vcycle_kernel_magnitude must be finite and > 0; got {vcycle_kernel_magnitude!r}")
        make_activation(activation)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.levels, self.padding = levels, padding

        self.lift = nn.Conv2d(in_channels, width, kernel_size=1)
        nn.init.normal_(self.lift.weight, std=1.0 / math.sqrt(in_channels))  # unit-variance features from normalised input
        nn.init.zeros_(self.lift.bias)
        self.layers = nn.ModuleList(
            MgNOLayer(width, levels, smoothing_steps, post_smoothing_steps, padding, activation, float(vcycle_kernel_magnitude)) for _ in range(num_layers)
        )
        if projection_width is None:
            self.project: nn.Module = nn.Conv2d(width, out_channels, kernel_size=1)
        else:
            self.project = nn.Sequential(
                nn.Conv2d(width, projection_width, kernel_size=1),
                make_activation(activation),
                nn.Conv2d(projection_width, out_channels, kernel_size=1),
            )
        self.input_normalisation = ChannelNormalisation(in_channels, input_mean, input_std)
        self.output_normalisation = ChannelNormalisation(out_channels, output_mean, output_std)

    def check_shape(self, shape: Sequence[int]) -> None:
        """ValueError, naming admissible sizes, unless every size of ``shape`` coarsens ``levels - 1`` times."""
        bad = [n for n in shape if not is_admissible(int(n), self.levels, self.padding)]
        if bad:
            rule = (
                f"n + 1 divisible by 2^(levels-1) = {2 ** (self.levels - 1)} and n >= {2 ** self.levels - 1}"
                if self.padding == "zeros"
                else f"n divisible by 2^(levels-1) = {2 ** (self.levels - 1)}"
            )
            raise ValueError(
                f"MgNO with levels={self.levels} and padding={self.padding!r} needs every grid size n with {rule} "
                f"(e.g. {', '.join(map(str, admissible_sizes(self.levels, self.padding)))}); got grid {list(shape)}"
            )

    def forward(self, x: Tensor, output_shape: Sequence[int] | None = None) -> Tensor:
        """``x: [batch, in_channels, H, W]`` -> ``[batch, out_channels, H, W]``; ``output_shape``, if
        given, must be ``(H, W)`` (MgNO cannot change grids)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MgNO expects x of shape [batch, {self.in_channels}, H, W]; got {tuple(x.shape)}")
        if output_shape is not None and tuple(int(n) for n in output_shape) != tuple(x.shape[2:]):
            raise ValueError(
                f"MgNO outputs on its input grid {list(x.shape[2:])}; it cannot produce output_shape {list(output_shape)} "
                "(resample the input to the grid you want instead)"
            )
        self.check_shape(x.shape[2:])
        u = self.lift(self.input_normalisation.encode(x))
        for layer in self.layers:
            u = layer(u)
        return self.output_normalisation.decode(self.project(u))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, padding={self.padding!r}, domain={self.domain!r}"
