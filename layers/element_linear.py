r"""Linear maps whose weights depend on each atom's chemical element.

:class:`ElementLinear` is MACE's "skip tensor product": an equivariant linear map with one weight
matrix per element, written as the tensor product of the features with the one-hot element
vector,

.. math:: y_{i} = \sum_{e} \delta_{e, z_i}\, W_e\, x_i
        = \mathrm{TP}_{uvw}(x_i,\ \mathrm{onehot}(z_i)),

with e3nn's normalisation (``element`` path normalisation: fan-in ``mul_in * num_elements``), so
it matches ``e3nn.o3.FullyConnectedTensorProduct(irreps_in, f"{E}x0e", irreps_out)`` weight for
weight and MACE checkpoints' ``skip_tp`` weights mean the same thing here. The product is the
exact Clebsch-Gordan one: with a scalar second input every method computes the same linear map,
so there is nothing for the ``tensor_product`` choice of a model to change.
"""

from __future__ import annotations

import torch
from torch import nn

from layers.irreps import IrrepsLike, as_irreps
from layers.tensor_product.registry import make_tensor_product


class ElementLinear(nn.Module):
    """``x: [num_atoms, irreps_in.dim]``, ``element_one_hot: [num_atoms, num_elements]`` -> ``[num_atoms, irreps_out.dim]``.

    Each output irrep mixes the input blocks of the same irrep, with weights chosen by the element.
    """

    def __init__(self, irreps_in: IrrepsLike, irreps_out: IrrepsLike, num_elements: int, kernel: str = "auto") -> None:
        super().__init__()
        self.irreps_in = as_irreps(irreps_in, "irreps_in")
        self.irreps_out = as_irreps(irreps_out, "irreps_out")
        self.num_elements = int(num_elements)
        self.tp = make_tensor_product(
            self.irreps_in, f"{self.num_elements}x0e", self.irreps_out, method="cg", mode="uvw", kernel=kernel
        )

    def forward(self, x: torch.Tensor, element_one_hot: torch.Tensor) -> torch.Tensor:
        return self.tp(x, element_one_hot)

    @torch.no_grad()
    def copy_elements_from(self, source: "ElementLinear", rows: list) -> None:
        """Take ``source``'s weights for the elements they share; ``rows[e]`` is ``source``'s row of this
        layer's element ``e`` (None: a new element, whose weights keep their initialisation).

        The path normalisation depends on the number of elements (fan-in ``mul_in * num_elements``),
        so copied weights are rescaled by the ratio of the two path coefficients: the map of a shared
        element is the same function in both layers.
        """
        if (source.irreps_in, source.irreps_out) != (self.irreps_in, self.irreps_out) or len(rows) != self.num_elements:
            raise ValueError(f"cannot copy {source} into {self}: different irreps or {len(rows)} rows for "
                             f"{self.num_elements} elements")
        mine, theirs = self.tp.weight, source.tp.weight
        for path, source_path in zip(self.tp.spec.paths, source.tp.spec.paths):
            block, source_block = path.weight, source_path.weight
            target = mine[block.start:block.stop].view(block.shape)  # [U, num_elements, W]
            origin = theirs[source_block.start:source_block.stop].view(source_block.shape)
            ratio = source_path.coefficient / path.coefficient
            for e, row in enumerate(rows):
                if row is not None:
                    target[:, e, :] = origin[:, row, :] * ratio

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, num_elements={self.num_elements}"
