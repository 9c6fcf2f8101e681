r"""Forces, virials and stress of a potential by automatic differentiation.

For a total energy :math:`E(\{x_i\}, \text{cell})` (Knuth et al. 2015; as mace-torch):

.. math::
   F_i = -\frac{\partial E}{\partial x_i}, \qquad
   W = -\frac{\partial E}{\partial \varepsilon}\Big|_{\varepsilon=0}, \qquad
   \sigma = -\frac{W}{V} = \frac{1}{V}\frac{\partial E}{\partial \varepsilon},

where the symmetric strain :math:`\varepsilon` deforms positions and cell alike,
:math:`x \mapsto x (1 + \varepsilon)`, :math:`\text{cell} \mapsto \text{cell}\,(1 + \varepsilon)`
(row vectors), and :math:`V = |\det \text{cell}|`. :func:`apply_strain` inserts the strain
before the model sees the geometry; :func:`forces_virials_stress` differentiates. Signs follow
ASE: a crystal compressed below its equilibrium volume has negative stress.
"""

from __future__ import annotations

from typing import Optional

import torch


def apply_strain(
    positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Insert a zero strain to differentiate against.

    ``positions: [num_atoms, 3]``, ``cell: [num_graphs, 3, 3]``, ``batch: [num_atoms]`` ->
    ``(strained positions, strained cell, displacement: [num_graphs, 3, 3])``; the displacement
    is zero and requires grad, so the values are unchanged but depend on it.
    """
    displacement = torch.zeros_like(cell).requires_grad_(True)
    symmetric = 0.5 * (displacement + displacement.transpose(-1, -2))
    positions = positions + torch.einsum("ni,nij->nj", positions, symmetric.index_select(0, batch))
    cell = cell + torch.bmm(cell, symmetric)
    return positions, cell, displacement


def forces_virials_stress(
    energy: torch.Tensor,
    positions: torch.Tensor,
    displacement: Optional[torch.Tensor],
    cell: torch.Tensor,
    create_graph: bool,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``energy: [num_graphs]`` -> ``forces: [num_atoms, 3]``, ``virials, stress: [num_graphs, 3, 3]`` (or ``None``).

    ``create_graph=True`` keeps the graph so that a loss on forces or stress can be
    backpropagated (training). The stress of a graph without volume (an open molecule) is zero.
    """
    inputs = [positions] if displacement is None else [positions, displacement]
    gradients = torch.autograd.grad(
        [energy.sum()], inputs, create_graph=create_graph, retain_graph=create_graph, allow_unused=True
    )
    forces = -gradients[0] if gradients[0] is not None else torch.zeros_like(positions)
    if displacement is None:
        return forces, None, None
    de_dstrain = gradients[1] if gradients[1] is not None else torch.zeros_like(displacement)
    virials = -de_dstrain
    volume = torch.linalg.det(cell).abs().view(-1, 1, 1)
    has_volume = volume > 1e-12
    stress = torch.where(has_volume, de_dstrain / torch.where(has_volume, volume, torch.ones_like(volume)), 0.0)
    return forces, virials, stress
