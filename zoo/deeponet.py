r"""DeepONet: an operator as a sum of learned basis functions with input-dependent coefficients.

Lu, Jin, Pang, Zhang, Karniadakis, "Learning nonlinear operators via DeepONet based on the universal
approximation theorem of operators", Nature Machine Intelligence 3, 218 (2021):

.. math::
    G(u)(y)_c = \sum_{k=1}^{p} b_{c,k}(u)\, t_k(y) + b_{0,c}

* the **branch** net sees the input function at fixed sensors: ``x: [batch, in_channels, *sensor_shape]``
  flattened to one vector of ``in_channels * prod(sensor_shape)`` numbers, and returns the coefficients
  ``b_{c,k}`` (``p = basis_size`` per output channel ``c``);
* the **trunk** net sees one output coordinate ``y`` (``grid_coordinates(output grid, domain)``, the
  ``spatial_dims`` numbers of a point) and returns the ``p`` basis values ``t_k(y)``, shared by the output
  channels (DeepXDE's "split branch" for several outputs). As in Lu et al., the activation is applied on
  the trunk's last layer too, so the basis functions are nonlinear features, not a linear map of ``y``;
* ``b_{0,c}`` is one learned bias per output channel.

The branch net is either *unstacked* (one MLP with ``p * out_channels`` outputs, the paper's
recommended default) or *stacked* (``p`` independent MLPs, each with ``out_channels`` outputs; the
universal-approximation construction). The stacked nets are evaluated together with batched weights
``[p, fan_in, fan_out]`` (one ``torch.baddbmm`` per layer), not by a Python loop over ``p`` modules.

Because the output grid enters only through the trunk, a trained DeepONet evaluates ``G(u)`` at any
coordinates: ``forward(x, output_shape=...)`` samples the trunk on another grid. The input, however,
must be given at the sensors the branch was built for.

Weights are Glorot-normal and biases zero (Lu et al. / DeepXDE).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from layers.spectral import ChannelNormalisation, grid_coordinates
from layers.spectral.grid import check_domain

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name``, or a ValueError naming the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {name!r}")
    return ACTIVATIONS[name]()


def _positive_ints(what: str, values: Sequence[int], allow_empty: bool = True) -> list[int]:
    values = list(values)
    if not allow_empty and not values:
        raise ValueError(f"{what} must not be empty")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{what} must be a list of ints >= 1; got {values}")
    return values


class BatchedMLP(nn.Module):
    """``copies`` independent MLPs of the same widths, evaluated together.

    ``x: [batch, fan_in]`` (the same input for every copy) -> ``[batch, copies, fan_out]``. Layer ``i``
    holds ``weight_i: [copies, n_i, n_{i+1}]`` and ``bias_i: [copies, n_{i+1}]``; the activation follows
    every layer but the last.
    """

    def __init__(self, copies: int, widths: Sequence[int], activation: str):
        super().__init__()
        self.copies, self.widths = copies, list(widths)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(self.widths[:-1], self.widths[1:]):
            std = math.sqrt(2.0 / (fan_in + fan_out))  # Glorot normal, per copy
            self.weights.append(nn.Parameter(torch.randn(copies, fan_in, fan_out) * std))
            self.biases.append(nn.Parameter(torch.zeros(copies, fan_out)))
        self.activation = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        # first layer: the shared input against every copy's weights in one matmul
        h = torch.einsum("bi,cio->cbo", x, self.weights[0]) + self.biases[0][:, None, :]
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            h = torch.baddbmm(bias[:, None, :], self.activation(h), weight)  # [copies, batch, fan_out]
        return h.transpose(0, 1)

    def extra_repr(self) -> str:
        return f"copies={self.copies}, widths={self.widths}"


def mlp(widths: Sequence[int], activation: str, last_activation: bool) -> nn.Sequential:
    """Glorot-normal MLP ``widths[0] -> ... -> widths[-1]`` with ``activation`` between layers (and after
    the last one when ``last_activation``)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.xavier_normal_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(widths) - 2 or last_activation:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class DeepONet(nn.Module):
    r"""DeepONet (Lu et al. 2021) on a regular grid; module docstring for the formula.

    Args:
        in_channels: channels of the input function.
        out_channels: channels of the output function.
        spatial_dims: 1, 2 or 3; the trunk takes ``spatial_dims`` coordinates.
        sensor_shape: the input grid (``spatial_dims`` sizes); the input must be sampled there.
        branch_layers: hidden widths of the branch net (default ``[128, 128]``; ``[]`` is a linear map).
        trunk_layers: hidden widths of the trunk net (default ``[128, 128]``).
        basis_size: ``p``, the number of basis functions (default 64).
        activation: ``"tanh"``, ``"relu"``, ``"gelu"`` or ``"silu"`` (default ``"gelu"``).
        stacked: False (default): one branch net with ``p * out_channels`` outputs; True: ``p`` branch nets
            with ``out_channels`` outputs each.
        domain: ``"periodic"`` (``y_j = j / N``) or ``"nodes"`` (``y_j = j / (N - 1)``), how the trunk's
            coordinates are laid out on a grid (default ``"periodic"``).
        input_mean, input_std, output_mean, output_std: per-channel normalisers (None: identity); the
            model maps physical input to physical output.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        spatial_dims: int,
        sensor_shape: Sequence[int],
        branch_layers: Sequence[int] = (128, 128),
        trunk_layers: Sequence[int] = (128, 128),
        basis_size: int = 64,
        activation: str = "gelu",
        stacked: bool = False,
        domain: str = "periodic",
        input_mean: list[float] | None = None,
        input_std: list[float] | None = None,
        output_mean: list[float] | None = None,
        output_std: list[float] | None = None,
    ):
        super().__init__()
        _positive_ints("in_channels", [in_channels])
        _positive_ints("out_channels", [out_channels])
        _positive_ints("basis_size", [basis_size])
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3; got {spatial_dims!r}")
        sensor_shape = _positive_ints("sensor_shape", sensor_shape, allow_empty=False)
        if len(sensor_shape) != spatial_dims:
            raise ValueError(f"sensor_shape needs {spatial_dims} sizes (spatial_dims); got {sensor_shape}")
        branch_layers = _positive_ints("branch_layers", branch_layers)
        trunk_layers = _positive_ints("trunk_layers", trunk_layers)
        make_activation(activation)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.domain = check_domain(domain)
        self.sensor_shape = tuple(sensor_shape)
        self.basis_size, self.stacked = basis_size, bool(stacked)

        sensors = in_channels * math.prod(sensor_shape)
        if self.stacked:
            self.branch: nn.Module = BatchedMLP(basis_size, [sensors, *branch_layers, out_channels], activation)
        else:
            self.branch = mlp([sensors, *branch_layers, basis_size * out_channels], activation, last_activation=False)
        self.trunk = mlp([spatial_dims, *trunk_layers, basis_size], activation, last_activation=True)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.input_normalisation = ChannelNormalisation(in_channels, input_mean, input_std)
        self.output_normalisation = ChannelNormalisation(out_channels, output_mean, output_std)

    def coefficients(self, x: Tensor) -> Tensor:
        """Branch coefficients ``b_{c,k}``: normalised ``x: [batch, in_channels, *sensor_shape]`` ->
        ``[batch, out_channels, basis_size]``."""
        flat = x.reshape(x.shape[0], -1)
        if self.stacked:
            return self.branch(flat).transpose(1, 2)  # [batch, p, C] -> [batch, C, p]
        return self.branch(flat).reshape(x.shape[0], self.out_channels, self.basis_size)

    def basis(self, output_shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """Trunk basis ``t_k(y)`` at the points of ``output_shape``: ``[prod(output_shape), basis_size]``."""
        coordinates = grid_coordinates(output_shape, self.domain, dtype=dtype, device=device)
        return self.trunk(coordinates.reshape(self.spatial_dims, -1).T)

    def forward(self, x: Tensor, output_shape: Sequence[int] | None = None) -> Tensor:
        """``x: [batch, in_channels, *sensor_shape]`` -> ``[batch, out_channels, *(output_shape or
        sensor_shape)]``; the output may be on any grid of the same ``domain``."""
        expected = (self.in_channels, *self.sensor_shape)
        if x.dim() != 2 + self.spatial_dims or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DeepONet's branch reads the input at its sensors: x must be [batch, {', '.join(map(str, expected))}]; "
                f"got {tuple(x.shape)} (resample the input to the sensor grid {list(self.sensor_shape)})"
            )
        output_shape = self.sensor_shape if output_shape is None else tuple(int(n) for n in output_shape)
        if len(output_shape) != self.spatial_dims:
            raise ValueError(f"output_shape needs {self.spatial_dims} sizes; got {list(output_shape)}")
        coefficients = self.coefficients(self.input_normalisation.encode(x))  # [B, C, p]
        basis = self.basis(output_shape, x.dtype, x.device)  # [P, p]
        y = torch.einsum("bcp,np->bcn", coefficients, basis) + self.bias[None, :, None]
        return self.output_normalisation.decode(y.reshape(x.shape[0], self.out_channels, *output_shape))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, sensor_shape={list(self.sensor_shape)}, "
            f"basis_size={self.basis_size}, stacked={self.stacked}, domain={self.domain!r}"
        )
