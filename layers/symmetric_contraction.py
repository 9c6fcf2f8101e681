r"""MACE's many-body product basis, built from channelwise tensor products of any method.

MACE (Batatia et al., NeurIPS 2022, eqs. 10-11) turns the two-body atomic basis
:math:`A_{i,c,lm}` (the messages) into many-body features by symmetric tensor powers,

.. math::
   B^{(\nu)}_{i,c,LM} = \sum_{l_1 m_1 \dots l_\nu m_\nu} C^{LM}_{\eta_\nu, l_1 m_1 \dots l_\nu m_\nu}
       \prod_{\xi=1}^{\nu} A_{i,c,l_\xi m_\xi}, \qquad
   m_{i,c,LM} = \sum_{\nu=1}^{\text{correlation}} \sum_{\eta_\nu} W^{(\nu)}_{z_i, c, L, \eta_\nu} B^{(\nu)}_{i,c,LM},

with generalised Clebsch-Gordan coefficients :math:`C` and weights that depend on the element
:math:`z_i` of atom :math:`i`. mace-torch precomputes the :math:`C` (its ``U`` matrices) for the
Clebsch-Gordan product only. Here the same basis is built as a chain of pairwise channelwise
(``uuu``) tensor products, so that it can be formed by *any* method of the registry (``cg``,
``gaunt``, ``grid``, ``cp``) from one ``tensor_product`` configuration entry:

.. math::
   B^{(1)} = A, \qquad
   B^{(\nu)} = \mathrm{TP}_\nu\big(B^{(\nu-1)},\ A;\ w^{(\nu)}_{z_i}\big), \qquad
   m_{i,c,L} = \sum_{\nu} s^{(\nu)}_{z_i, c, L}\; B^{(\nu)}_{i,c,L}.

Each :math:`\mathrm{TP}_\nu` has per-atom weights :math:`w^{(\nu)}_{z_i}` (one weight vector per
element, looked up for each atom), playing the role of MACE's path weights :math:`W_{z,c,L,\eta}`;
:math:`s^{(\nu)}` selects the target irreps :math:`L` from each order with element-dependent
channel weights. Because :math:`A` enters every factor, the chain spans the symmetric powers
MACE contracts (a non-symmetric coupling of copies of the same :math:`A` is a combination of
symmetric ones). This is the construction of Luo et al. (ICLR 2024, section 4) for Gaunt MACE.

Differences from mace-torch's contraction, and how each method adapts:

- Intermediate orders keep irreps up to the largest ``l`` of :math:`A` (``max_ell``); couplings
  through intermediate ``l > max_ell`` (e.g. ``(3 x 3 -> 4) x 3 -> 1``) are left out.
- Which irreps an order can reach is asked of the method
  (:func:`layers.tensor_product.registry.output_irreps`), never assumed. ``cg`` and ``cp`` also
  reach the odd-parity-class intermediates (``1o x 1o -> 1e``, a cross product) and couple them
  back to the natural-parity targets through odd paths. ``gaunt`` and ``grid`` have only
  ``l1 + l2 + l3`` even paths: their chain stays in the natural-parity class, so their basis is
  the subspace of MACE's spanned by products of functions on the sphere (the polynomial
  invariants without cross products). Every target irrep is still reached (``0e`` through
  ``A_l . A_l``, ``1o`` through ``A_0 A_1`` and so on), so the model is the same assembly.
- ``cp`` is approximate: each product is a rank-R CP factorisation of the coupling tensor, with
  the error bound of :class:`layers.tensor_product.cp.CPTensorProduct` per link of the chain.
"""

from __future__ import annotations

from math import sqrt
from typing import Any, Mapping

import torch
from e3nn import o3
from torch import nn

from layers.irreps import IrrepsLike, as_irreps
from layers.tensor_product.registry import make_tensor_product, output_irreps


def _uniform_multiplicity(irreps: o3.Irreps, name: str) -> int:
    muls = {mul for mul, _ in irreps}
    if len(muls) != 1:
        raise ValueError(f"{name}={irreps}: the product basis needs one multiplicity for every irrep (channels)")
    return muls.pop()


class SymmetricContraction(nn.Module):
    """``A: [num_atoms, irreps_in.dim]``, ``element_one_hot: [num_atoms, num_elements]`` -> ``[num_atoms, irreps_out.dim]``.

    Args:
        irreps_in: the atomic basis, ``C x (irreps with l <= max_ell)``, one multiplicity ``C``.
        irreps_out: the target irreps, same multiplicity ``C`` (e.g. ``C x 0e + C x 1o``).
        correlation: the body order minus one, :math:`\\nu_{max}` (MACE: 3).
        num_elements: number of chemical elements (rows of the element weights).
        tensor_product: the method and its options, e.g. ``{"method": "cp", "rank": 16}``.
        kernel: tensor-product kernel (never changes the result).
    """

    def __init__(
        self,
        irreps_in: IrrepsLike,
        irreps_out: IrrepsLike,
        correlation: int,
        num_elements: int,
        tensor_product: Mapping[str, Any],
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        self.irreps_in = as_irreps(irreps_in, "irreps_in")
        self.irreps_out = as_irreps(irreps_out, "irreps_out")
        if correlation < 1:
            raise ValueError(f"correlation must be at least 1, got {correlation}")
        channels = _uniform_multiplicity(self.irreps_in, "irreps_in")
        if _uniform_multiplicity(self.irreps_out, "irreps_out") != channels:
            raise ValueError(f"irreps_out={self.irreps_out} must have the multiplicity {channels} of irreps_in")
        self.correlation = int(correlation)
        self.num_elements = int(num_elements)
        self.channels = channels
        options = dict(tensor_product)
        method = options.pop("method", "cg")
        base_in = o3.Irreps([(1, ir) for _, ir in self.irreps_in])
        lmax = max(ir.l for _, ir in self.irreps_in)
        targets = [ir for _, ir in self.irreps_out]

        # irreps of each order B^(nu): everything reachable up to max_ell, the last order only the targets
        orders = [self.irreps_in]
        self.products = nn.ModuleList()
        self.product_weights = nn.ParameterList()
        for nu in range(2, self.correlation + 1):
            reachable = output_irreps(method, o3.Irreps([(1, ir) for _, ir in orders[-1]]), base_in, lmax)
            keep = [ir for _, ir in reachable if nu < self.correlation or ir in targets]
            if not keep:
                raise ValueError(
                    f"{method}: order {nu} of the product basis reaches none of {self.irreps_out} from {self.irreps_in}"
                )
            irreps_nu = o3.Irreps([(channels, ir) for ir in keep])
            product = make_tensor_product(
                orders[-1], self.irreps_in, irreps_nu, method=method, mode="uuu", shared_weights=False,
                kernel=kernel, **options,
            )
            weight = nn.Parameter(torch.empty(self.num_elements, product.weight_numel))
            product.initialize_weight(weight)
            self.products.append(product)
            self.product_weights.append(weight)
            orders.append(irreps_nu)

        # selection of the targets from each order: gather index into B^(nu) (padded) and weight index
        unreached = [str(ir) for ir in targets if not any(ir in [i for _, i in order] for order in orders)]
        if unreached:
            raise ValueError(f"{method}: the product basis of {self.irreps_in} never reaches {', '.join(unreached)}")
        self.selection_weights = nn.ParameterList()
        self._selections: list[tuple[str, str]] = []
        for nu, order in enumerate(orders, start=1):
            take = torch.full((self.irreps_out.dim,), order.dim, dtype=torch.long)  # order.dim = the zero pad
            weight_index = torch.zeros(self.irreps_out.dim, dtype=torch.long)
            order_irreps = [ir for _, ir in order]
            for t, ((_, ir), out_slice) in enumerate(zip(self.irreps_out, self.irreps_out.slices())):
                components = torch.arange(out_slice.start, out_slice.stop)
                channel = (components - out_slice.start) // ir.dim
                weight_index[components] = t * channels + channel
                if ir in order_irreps:
                    source = order.slices()[order_irreps.index(ir)]
                    take[components] = torch.arange(source.start, source.stop)
            self.register_buffer(f"take_{nu}", take, persistent=False)
            self.register_buffer(f"weight_index_{nu}", weight_index, persistent=False)
            self._selections.append((f"take_{nu}", f"weight_index_{nu}"))
            # unit-variance orders summed over nu: selection weights start at N(0, 1/correlation)
            self.selection_weights.append(
                nn.Parameter(torch.randn(self.num_elements, len(self.irreps_out) * channels) / sqrt(self.correlation))
            )
        self.irreps_orders = tuple(orders)

    @torch.no_grad()
    def copy_elements_from(self, source: "SymmetricContraction", rows: list) -> None:
        """Take ``source``'s weights for the elements they share; ``rows[e]`` is ``source``'s row of this
        layer's element ``e`` (None: a new element, whose weights keep their initialisation). The
        element weights are plain rows picked by the one-hot vector, so they copy unscaled."""
        mine = list(self.product_weights) + list(self.selection_weights)
        theirs = list(source.product_weights) + list(source.selection_weights)
        if len(mine) != len(theirs) or any(a.shape[1:] != b.shape[1:] for a, b in zip(mine, theirs)) \
                or len(rows) != self.num_elements:
            raise ValueError(f"cannot copy the element weights of {source} into {self}")
        for target, origin in zip(mine, theirs):
            for e, row in enumerate(rows):
                if row is not None:
                    target[e] = origin[row]

    def forward(self, atomic_basis: torch.Tensor, element_one_hot: torch.Tensor) -> torch.Tensor:
        order = atomic_basis
        out = self._select(order, element_one_hot, 0)
        for k, (product, weight) in enumerate(zip(self.products, self.product_weights)):
            order = product(order, atomic_basis, element_one_hot @ weight)
            out = out + self._select(order, element_one_hot, k + 1)
        return out

    def _select(self, order: torch.Tensor, element_one_hot: torch.Tensor, k: int) -> torch.Tensor:
        """``s^(nu)_{z_i, c, L} B^(nu)_{i, c, L}`` laid out as ``irreps_out``; zeros where B^(nu) lacks L."""
        take_name, index_name = self._selections[k]
        padded = torch.nn.functional.pad(order, (0, 1))
        weights = element_one_hot @ self.selection_weights[k]  # [num_atoms, num_targets * C]
        return padded.index_select(-1, getattr(self, take_name)) * weights.index_select(-1, getattr(self, index_name))

    def extra_repr(self) -> str:
        chain = " -> ".join(str(o) for o in self.irreps_orders)
        return f"correlation={self.correlation}, num_elements={self.num_elements}, orders: {chain} => {self.irreps_out}"
