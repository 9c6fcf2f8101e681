r"""MACE's interaction block: the two-body atomic basis of each atom from its neighbours.

For atom :math:`i` with neighbours :math:`j` (edges :math:`j \to i`, vector :math:`r_{ij}`),
MACE (Batatia et al. 2022, eqs. 8-9; mace-torch's ``RealAgnostic(Residual)InteractionBlock``)

.. math::
   A_{i} = \frac{1}{\bar n}\; W_{\text{out}} \sum_{j \in \mathcal N(i)}
           \mathrm{TP}_{uvu}\big(W_{\text{up}} h_j,\ Y(\hat r_{ij});\ R(|r_{ij}|)\big),

where :math:`Y` are spherical harmonics up to ``max_ell``, :math:`R` is a radial MLP on the
Bessel embedding that gives one weight vector per edge, :math:`\bar n` is the average number of
neighbours of the training set, and :math:`W` are equivariant linear maps. The tensor product is
channelwise (``uvu``): channel :math:`c` of the message is channel :math:`c` of the sender's
features times the edge's harmonics.

Two variants, as in MACE:

- ``residual=False`` (the first interaction): the message also goes through an element-dependent
  linear map, and the block returns ``(A, None)``.
- ``residual=True``: the block also returns the element-dependent linear "skip" of the incoming
  features, ``sc = W_{z_i} h_i`` in the hidden irreps, which the product block adds back.

The tensor product's method comes from the ``tensor_product`` entry, e.g. ``{"method": "grid"}``.
Paths that land on the same output irrep are summed, each with its own weights from the radial
MLP (e3nn's and NequIP's convention); mace-torch keeps one block per path and mixes them in
:math:`W_{\text{out}}`, which every method could not express (Gaunt and grid products have one
output per irrep). The messages have the natural-parity irreps (``0e, 1o, 2e, 3o, ...``) up to
``max_ell`` that the method reaches, MACE's ``interaction_irreps``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from layers.element_linear import ElementLinear
from layers.irreps import IrrepsLike, as_irreps
from layers.tensor_product.registry import make_tensor_product, output_irreps


def message_irreps(method: str, irreps_node: IrrepsLike, irreps_sh: IrrepsLike, channels: int) -> o3.Irreps:
    """``channels x`` each natural-parity irrep (``p = (-1)^l``) of ``node x sh`` that ``method`` reaches, ``l <= max(sh)``."""
    irreps_node, irreps_sh = as_irreps(irreps_node), as_irreps(irreps_sh)
    lmax = max(ir.l for _, ir in irreps_sh)
    reachable = output_irreps(method, o3.Irreps([(1, ir) for _, ir in irreps_node]), irreps_sh, lmax)
    return o3.Irreps([(channels, ir) for _, ir in reachable if ir.p == (-1) ** ir.l])


class Interaction(nn.Module):
    """One MACE interaction (module docstring).

    ``forward(node_feats, element_one_hot, edge_sh, edge_radial, sender, receiver)`` with
    ``node_feats: [num_atoms, irreps_node.dim]``, ``element_one_hot: [num_atoms, num_elements]``,
    ``edge_sh: [num_edges, irreps_sh.dim]``, ``edge_radial: [num_edges, num_radial]``,
    ``sender, receiver: [num_edges]`` returns ``(A: [num_atoms, irreps_message.dim], sc)`` with
    ``sc: [num_atoms, irreps_skip.dim]`` or ``None``.
    """

    def __init__(
        self,
        irreps_node: IrrepsLike,
        irreps_sh: IrrepsLike,
        channels: int,
        num_radial: int,
        radial_mlp: Sequence[int],
        num_elements: int,
        avg_num_neighbors: float,
        tensor_product: Mapping[str, Any],
        residual: bool,
        irreps_skip: Optional[IrrepsLike] = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        options = dict(tensor_product)
        method = options.pop("method", "cg")
        self.irreps_node = as_irreps(irreps_node, "irreps_node")
        self.irreps_sh = as_irreps(irreps_sh, "irreps_sh")
        self.irreps_message = message_irreps(method, self.irreps_node, self.irreps_sh, channels)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.residual = bool(residual)

        self.linear_up = o3.Linear(self.irreps_node, self.irreps_node)
        self.conv_tp = make_tensor_product(
            self.irreps_node, self.irreps_sh, self.irreps_message, method=method, mode="uvu",
            shared_weights=False, kernel=kernel, **options,
        )
        self.radial = e3nn_nn.FullyConnectedNet(
            [num_radial, *radial_mlp, self.conv_tp.weight_numel], torch.nn.functional.silu
        )
        self.linear = o3.Linear(self.irreps_message, self.irreps_message)
        if self.residual:
            if irreps_skip is None:
                raise ValueError("a residual interaction needs irreps_skip (the hidden irreps of the product block)")
            self.skip = ElementLinear(self.irreps_node, irreps_skip, num_elements, kernel=kernel)
        else:
            self.skip = ElementLinear(self.irreps_message, self.irreps_message, num_elements, kernel=kernel)

    def forward(
        self,
        node_feats: torch.Tensor,
        element_one_hot: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        sender: torch.Tensor,
        receiver: torch.Tensor,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        sc = self.skip(node_feats, element_one_hot) if self.residual else None
        node_feats = self.linear_up(node_feats)
        edge_weights = self.radial(edge_radial)
        messages = self.conv_tp(node_feats.index_select(0, sender), edge_sh, edge_weights)
        summed = torch.zeros(
            node_feats.shape[0], messages.shape[-1], dtype=messages.dtype, device=messages.device
        ).index_add(0, receiver, messages)
        atomic_basis = self.linear(summed) / self.avg_num_neighbors
        if not self.residual:
            atomic_basis = self.skip(atomic_basis, element_one_hot)
        return atomic_basis, sc

    def extra_repr(self) -> str:
        return f"residual={self.residual}, avg_num_neighbors={self.avg_num_neighbors:.4g}"
