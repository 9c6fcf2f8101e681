r"""MACE: higher-order equivariant message passing (Batatia et al., NeurIPS 2022), any tensor product.

The assembly of mace-torch's ``ScaleShiftMACE``, built from equizoo layers:

1. element embedding :math:`h^{(0)}_i = W\,\mathrm{onehot}(z_i)` (``C x 0e``);
2. per edge :math:`j \to i`: spherical harmonics :math:`Y(\hat r_{ij})` up to ``max_ell`` and the
   Bessel embedding of :math:`|r_{ij}|` with a polynomial cutoff (:mod:`layers.radial`);
3. ``num_interactions`` times: the interaction (:class:`layers.interaction.Interaction`) gives the
   atomic basis :math:`A_i`; the product basis (:class:`layers.symmetric_contraction.SymmetricContraction`,
   correlation order :math:`\nu \le` ``correlation``, element-dependent weights) and a linear map
   give the new features, plus the residual skip from the second interaction on; a readout gives
   a per-atom energy term (linear, and an MLP after the last interaction);
4. :math:`E_i = E^0_{z_i} + \text{scale}\cdot\sum_t E^{(t)}_i + \text{shift}`,
   :math:`E = \sum_i E_i`; forces and stress by autograd (:mod:`zoo.derivatives`).

Hidden features are ``C x 0e + C x 1o + ...`` up to ``max_L`` (natural parity), and only ``C x 0e``
after the last interaction, which feeds the readout alone.

The message tensor product and the product basis are built from the ``tensor_product`` entry
(``{"method": "cg" | "gaunt" | "grid" | "cp", **options}``) through the layers registry; the
model never branches on the method. What a method cannot express is asked of the registry: Gaunt
and grid products have no odd paths, so their product basis stays in the natural-parity class
(see :mod:`layers.symmetric_contraction`), and their messages reach every irrep MACE uses.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
from e3nn import o3
from torch import nn

from datasets import schema
from layers.element_linear import ElementLinear
from layers.interaction import Interaction
from layers.radial import RadialEmbedding
from layers.readout import LinearReadout, NonLinearReadout
from layers.symmetric_contraction import SymmetricContraction
from layers.tensor_product.registry import METHODS
from zoo.derivatives import apply_strain, forces_virials_stress

MAX_ATOMIC_NUMBER = 118


def natural_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``channels x 0e + channels x 1o + channels x 2e + ...`` up to ``lmax`` (parity ``(-1)^l``)."""
    return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


class ProductBlock(nn.Module):
    """Product basis, then an equivariant linear map, plus the residual skip when given.

    ``atomic_basis: [num_atoms, irreps_in.dim]`` -> ``[num_atoms, irreps_out.dim]``.
    """

    def __init__(self, irreps_in, irreps_out, correlation, num_elements, tensor_product, kernel) -> None:
        super().__init__()
        self.contraction = SymmetricContraction(
            irreps_in, irreps_out, correlation, num_elements, tensor_product, kernel=kernel
        )
        self.linear = o3.Linear(irreps_out, irreps_out)

    def forward(
        self, atomic_basis: torch.Tensor, element_one_hot: torch.Tensor, skip: Optional[torch.Tensor]
    ) -> torch.Tensor:
        features = self.linear(self.contraction(atomic_basis, element_one_hot))
        return features if skip is None else features + skip


class MACE(nn.Module):
    """A MACE interatomic potential; the constructor's keyword arguments are the ``model:`` config.

    Args:
        elements: atomic numbers the model knows, e.g. ``[1, 6, 8]``.
        atomic_energies: reference energy :math:`E^0` (eV) of each element, a dict ``{Z: eV}`` or a
            list in the order of ``elements``; ``None`` means zeros.
        avg_num_neighbors: mean number of neighbours within ``r_max`` in the training set.
        scale, shift: :math:`E_i = E^0 + \\text{scale} \\cdot (\\ldots) + \\text{shift}` (eV);
            MACE's default takes the RMS of the force components and the mean interaction energy per atom.
        r_max: cutoff radius (Å).
        num_bessel: Bessel functions in the radial embedding.
        num_polynomial_cutoff: order ``p`` of the polynomial envelope.
        max_ell: largest ``l`` of the edge spherical harmonics (and of the messages).
        num_channels: channels ``C`` of the hidden features (MACE's ``128x0e + 128x1o``: 128).
        max_L: largest ``l`` of the hidden features (MACE's ``128x0e + 128x1o``: 1).
        num_interactions: message-passing layers.
        correlation: order of the product basis (body order minus one).
        radial_mlp: hidden widths of the radial MLP.
        readout_mlp: hidden width of the last, non-linear readout.
        tensor_product: ``{"method": "cg" | "gaunt" | "grid" | "cp", **options}`` for the message
            product and the product basis (e.g. ``{"method": "cp", "rank": 16}``).
        kernel: tensor-product kernel (``auto``, ``reference``, ``fused``, ``cueq``); never the math.
    """

    # named parts of the network, for zoo.transfer.freeze (fine-tuning): parameter name prefixes
    PARTS = {
        "embedding": ("node_embedding",),
        "radial": ("interactions.*.radial",),
        "interactions": ("interactions",),
        "products": ("products",),
        "readouts": ("readouts",),
    }

    def __init__(
        self,
        *,
        elements: Sequence[int],
        atomic_energies: Union[Mapping[int, float], Sequence[float], None] = None,
        avg_num_neighbors: float = 1.0,
        scale: float = 1.0,
        shift: float = 0.0,
        r_max: float = 5.0,
        num_bessel: int = 8,
        num_polynomial_cutoff: int = 5,
        max_ell: int = 3,
        num_channels: int = 128,
        max_L: int = 1,
        num_interactions: int = 2,
        correlation: int = 3,
        radial_mlp: Sequence[int] = (64, 64, 64),
        readout_mlp: int = 16,
        tensor_product: Optional[Mapping[str, Any]] = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        elements = [int(z) for z in elements]
        if not elements:
            raise ValueError("elements: give the atomic numbers the model knows, e.g. [1, 6, 8]")
        if len(set(elements)) != len(elements) or any(not 1 <= z <= MAX_ATOMIC_NUMBER for z in elements):
            raise ValueError(f"elements={elements}: atomic numbers must be distinct and in 1..{MAX_ATOMIC_NUMBER}")
        if num_interactions < 1 or correlation < 1 or max_ell < 0 or max_L < 0 or max_L > max_ell:
            raise ValueError(
                f"need num_interactions >= 1, correlation >= 1 and 0 <= max_L <= max_ell; got "
                f"num_interactions={num_interactions}, correlation={correlation}, max_L={max_L}, max_ell={max_ell}"
            )
        tensor_product = dict(tensor_product or {"method": "cg"})
        if tensor_product.get("method", "cg") not in METHODS:
            raise ValueError(
                f"tensor_product.method={tensor_product.get('method')!r}; valid: {', '.join(METHODS)}"
            )
        self.elements = sorted(elements)
        self.r_max = float(r_max)
        self.tensor_product = tensor_product
        num_elements = len(self.elements)

        # atomic number -> row of the element tables (-1: unknown)
        element_index = torch.full((MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        element_index[self.elements] = torch.arange(num_elements)
        self.register_buffer("element_index", element_index, persistent=False)
        self.register_buffer("atomic_energies", self._atomic_energy_table(atomic_energies))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("shift", torch.tensor(float(shift)))

        channels = int(num_channels)
        irreps_sh = o3.Irreps.spherical_harmonics(max_ell)
        hidden = natural_irreps(channels, max_L)
        self.spherical_harmonics = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
        self.radial_embedding = RadialEmbedding(r_max, num_bessel, num_polynomial_cutoff)
        self.node_embedding = o3.Linear(o3.Irreps(f"{num_elements}x0e"), o3.Irreps(f"{channels}x0e"))

        self.interactions, self.products, self.readouts = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        irreps_node = o3.Irreps(f"{channels}x0e")
        for t in range(num_interactions):
            last = t == num_interactions - 1
            irreps_out = o3.Irreps(f"{channels}x0e") if last else hidden
            interaction = Interaction(
                irreps_node, irreps_sh, channels, num_bessel, list(radial_mlp), num_elements, avg_num_neighbors,
                tensor_product, residual=t > 0, irreps_skip=irreps_out if t > 0 else None, kernel=kernel,
            )
            self.interactions.append(interaction)
            self.products.append(
                ProductBlock(interaction.irreps_message, irreps_out, correlation, num_elements, tensor_product, kernel)
            )
            self.readouts.append(NonLinearReadout(irreps_out, readout_mlp) if last else LinearReadout(irreps_out))
            irreps_node = irreps_out

    def _atomic_energy_table(self, atomic_energies) -> torch.Tensor:
        if atomic_energies is None:
            return torch.zeros(len(self.elements), dtype=torch.get_default_dtype())
        if isinstance(atomic_energies, Mapping):
            given = {int(z): float(e) for z, e in atomic_energies.items()}
            missing = [z for z in self.elements if z not in given]
            if missing:
                raise ValueError(f"atomic_energies has no entry for element(s) {missing}; elements={self.elements}")
            values = [given[z] for z in self.elements]
        else:
            values = [float(e) for e in atomic_energies]
            if len(values) != len(self.elements):
                raise ValueError(
                    f"atomic_energies has {len(values)} values for {len(self.elements)} elements {self.elements}"
                )
        return torch.tensor(values, dtype=torch.get_default_dtype())

    @torch.no_grad()
    def copy_weights_from(self, source: "MACE") -> None:
        """Take every weight of ``source``, a MACE of the same architecture whose elements may differ.

        Weights that do not depend on the element are copied; element tables (the embedding, the
        skip products, the product-basis weights) are copied row by row for the elements both models
        know, rescaled where the normalisation depends on the number of elements, so a shared element
        is computed exactly as in ``source``. New elements keep their initial weights; E0s, scale and
        shift stay as this model was built with (fine-tuning sets them). Used by fine-tuning to add
        elements a pretrained model lacks.
        """
        rows = [source.elements.index(z) if z in source.elements else None for z in self.elements]
        element_modules = {"node_embedding"} | {f"interactions.{t}.skip" for t in range(len(self.interactions))} \
            | {f"products.{t}.contraction" for t in range(len(self.products))}
        own = dict(self.named_modules())
        theirs = dict(source.named_modules())
        for name in element_modules:
            if name == "node_embedding":
                target = own[name].weight.view(len(self.elements), -1)
                origin = theirs[name].weight.view(len(source.elements), -1)
                ratio = theirs[name].instructions[0].path_weight / own[name].instructions[0].path_weight
                for e, row in enumerate(rows):
                    if row is not None:
                        target[e] = origin[row] * ratio
            elif name in own:
                own[name].copy_elements_from(theirs[name], rows)
        # element tables, copied above; E0s, scale and shift are this model's own
        skip = {"atomic_energies", "scale", "shift", "node_embedding.weight"}
        skip |= {f"interactions.{t}.skip.tp.weight" for t in range(len(self.interactions))}
        tables = tuple(f"products.{t}.contraction.{kind}." for t in range(len(self.products))
                       for kind in ("product_weights", "selection_weights"))
        theirs_state = source.state_dict()
        shared = [key for key in self.state_dict() if key not in skip and not key.startswith(tables)]
        missing = [key for key in shared if key not in theirs_state]
        if missing:
            raise ValueError(f"the source model differs in architecture: it lacks {missing[:5]}")
        try:  # load_state_dict, so that fitted constants (CP factors) are adopted with their rank
            self.load_state_dict({key: theirs_state[key] for key in shared}, strict=False)
        except RuntimeError as error:
            raise ValueError(f"the source model differs in architecture: {error}") from None

    def element_one_hot(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """``atomic_numbers: [num_atoms]`` -> ``[num_atoms, num_elements]``; unknown elements raise."""
        index = self.element_index[atomic_numbers.clamp(0, MAX_ATOMIC_NUMBER)]
        if not torch.compiler.is_compiling():
            unknown = (index < 0) | (atomic_numbers < 0) | (atomic_numbers > MAX_ATOMIC_NUMBER)
            if bool(unknown.any()):
                found = sorted(set(atomic_numbers[unknown].tolist()))
                raise ValueError(f"atomic number(s) {found} not among the model's elements {self.elements}")
        return torch.nn.functional.one_hot(index, len(self.elements)).to(self.atomic_energies.dtype)

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies (and forces, stress) of a batch of graphs with the fields of :mod:`datasets.schema`.

        Returns ``energy: [num_graphs]``, ``node_energy: [num_atoms]``, and when asked
        ``forces: [num_atoms, 3]``, ``stress, virials: [num_graphs, 3, 3]``. ``training=True`` keeps
        the graph of forces and stress so that a loss on them can be backpropagated.
        """
        positions = batch[schema.POSITIONS]
        cell = batch[schema.CELL].view(-1, 3, 3)
        num_graphs = cell.shape[0]
        graph_of_atom = batch[schema.BATCH] if schema.BATCH in batch else torch.zeros_like(batch[schema.ATOMIC_NUMBERS])
        with torch.set_grad_enabled(torch.is_grad_enabled() or compute_forces or compute_stress):
            if compute_forces or compute_stress:
                if not positions.requires_grad:
                    positions = positions.detach().requires_grad_(True)
            displacement = None
            if compute_stress:
                positions, cell, displacement = apply_strain(positions, cell, graph_of_atom)
            node_energy = self.node_energies(
                positions, batch[schema.ATOMIC_NUMBERS], batch[schema.EDGE_INDEX], batch[schema.UNIT_SHIFTS],
                cell, graph_of_atom,
            )
            energy = torch.zeros(num_graphs, dtype=node_energy.dtype, device=node_energy.device).index_add(
                0, graph_of_atom, node_energy
            )
            out = {schema.ENERGY: energy, schema.NODE_ENERGY: node_energy}
            if compute_forces or compute_stress:
                forces, virials, stress = forces_virials_stress(
                    energy, positions, displacement, cell, create_graph=training
                )
                if compute_forces:
                    out[schema.FORCES] = forces
                if compute_stress:
                    out[schema.VIRIALS], out[schema.STRESS] = virials, stress
        return out

    def node_energies(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        unit_shifts: torch.Tensor,
        cell: torch.Tensor,
        graph_of_atom: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom energies ``[num_atoms]`` (eV, including :math:`E^0`) from the geometry."""
        one_hot = self.element_one_hot(atomic_numbers)
        sender, receiver = edge_index[0], edge_index[1]
        shifts = torch.einsum("ei,eij->ej", unit_shifts.to(positions.dtype), cell.index_select(0, graph_of_atom[sender]))
        vectors = positions.index_select(0, receiver) - positions.index_select(0, sender) + shifts
        lengths = vectors.norm(dim=-1, keepdim=True)
        edge_sh = self.spherical_harmonics(vectors)
        edge_radial = self.radial_embedding(lengths)

        node_feats = self.node_embedding(one_hot)
        terms = []
        for interaction, product, readout in zip(self.interactions, self.products, self.readouts):
            atomic_basis, skip = interaction(node_feats, one_hot, edge_sh, edge_radial, sender, receiver)
            node_feats = product(atomic_basis, one_hot, skip)
            terms.append(readout(node_feats))
        interaction_energy = torch.stack(terms, dim=0).sum(dim=0)
        return one_hot @ self.atomic_energies + self.scale * interaction_energy + self.shift
