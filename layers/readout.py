r"""Readouts: per-atom scalar energies from equivariant node features (MACE, eq. 13).

- :class:`LinearReadout`: :math:`E_i = W h_i^{(0e)}`, the invariant part of the features mapped
  linearly to one scalar (MACE after every interaction but the last).
- :class:`NonLinearReadout`: :math:`E_i = W_2\, \sigma(W_1 h_i^{(0e)})` with a hidden layer of
  ``hidden`` scalars and SiLU (MACE after the last interaction). Only scalars enter, so any
  pointwise non-linearity keeps the energy invariant.

e3nn's ``o3.Linear`` keeps only the ``0e`` blocks of the input (a linear map cannot turn a vector
into a scalar equivariantly) and normalises by the fan-in; ``e3nn.nn.Activation`` rescales SiLU
to unit second moment.
"""

from __future__ import annotations

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from layers.irreps import IrrepsLike, as_irreps


class LinearReadout(nn.Module):
    """``x: [num_atoms, irreps_in.dim]`` -> ``[num_atoms]``."""

    def __init__(self, irreps_in: IrrepsLike) -> None:
        super().__init__()
        self.linear = o3.Linear(as_irreps(irreps_in, "irreps_in"), o3.Irreps("0e"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class NonLinearReadout(nn.Module):
    """``x: [num_atoms, irreps_in.dim]`` -> ``[num_atoms]`` through ``hidden`` scalars and SiLU."""

    def __init__(self, irreps_in: IrrepsLike, hidden: int = 16) -> None:
        super().__init__()
        irreps_hidden = o3.Irreps(f"{hidden}x0e")
        self.linear_1 = o3.Linear(as_irreps(irreps_in, "irreps_in"), irreps_hidden)
        self.activation = e3nn_nn.Activation(irreps_hidden, [torch.nn.functional.silu])
        self.linear_2 = o3.Linear(irreps_hidden, o3.Irreps("0e"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.activation(self.linear_1(x))).squeeze(-1)
