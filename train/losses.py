"""Weighted losses on energies, forces, stress and virials (MACE's weighted and Huber losses).

Every loss is a weighted sum of terms, and every term is a mean over entries,

    loss = sum_k  lambda_k * S_k / C_k,    S_k = sum_entries w_e * f(r_e),    C_k = number of entries,

with ``lambda_k`` the term's weight from the config, ``w_e`` the per-graph label weight of the batch
(``schema.ENERGY_WEIGHT`` ..., which already holds the frame weight and is 0 where a frame lacks the
label), ``r_e`` a residual and ``f`` the square (``kind="mse"``) or a Huber function
(``kind="huber"``). The terms are (as ``mace.modules.loss``):

- energy: ``r = (E_ref - E_pred) / N`` per graph (eV/atom), ``C = num_graphs``;
- forces: ``r = F_ref - F_pred`` per component (eV/Å), ``C = 3 num_atoms``;
- stress: ``r = S_ref - S_pred`` per component (eV/Å³), ``C = 9 num_graphs``;
- virials: ``r = (V_ref - V_pred) / N`` per component (eV/atom), ``C = 9 num_graphs``.

``kind="mse"`` is MACE's ``WeightedEnergyForces{Stress,Virials}Loss``. ``kind="huber"`` is MACE's
``UniversalLoss``: Huber with ``huber_delta`` on energy per atom, stress and virials, and a Huber whose
delta shrinks for large reference forces on the forces (``delta x (1, 0.7, 0.4, 0.1)`` for
``|F_ref| < 100, < 200, < 300, >= 300`` eV/Å). MACE multiplies reference and prediction by the label
weight inside the Huber function; here the Huber value is multiplied by the weight, which is the same
for weights 0 and 1 and a proper weighting otherwise.

Keeping the sums ``S_k`` and counts ``C_k`` apart is what makes the loss exact across batches and
processes: the validation loss of a whole set is ``sum_k lambda_k (sum S_k) / (sum C_k)``, the loss of
the set as one batch, whatever the batching or the number of processes.
"""

from __future__ import annotations

from typing import Mapping

import torch

from datasets import schema

KINDS = ("mse", "huber")
# MACE's conditional Huber on forces: the delta is scaled by these factors above these |F_ref| (eV/Å)
FORCE_HUBER_FACTORS = (1.0, 0.7, 0.4, 0.1)
FORCE_HUBER_THRESHOLDS = (100.0, 200.0, 300.0)


def atoms_per_graph(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[num_graphs]`` number of atoms of each graph, from ``schema.PTR``."""
    ptr = batch[schema.PTR]
    return ptr[1:] - ptr[:-1]


def huber(residual: torch.Tensor, delta: torch.Tensor | float) -> torch.Tensor:
    """Elementwise Huber function: ``r^2 / 2`` for ``|r| <= delta``, else ``delta (|r| - delta / 2)``.

    ``delta`` may be a tensor broadcasting against ``residual`` (one delta per entry).
    """
    absolute = residual.abs()
    delta = torch.as_tensor(delta, dtype=residual.dtype, device=residual.device)
    return torch.where(absolute <= delta, 0.5 * residual.square(), delta * (absolute - 0.5 * delta))


def conditional_force_delta(reference_forces: torch.Tensor, delta: float) -> torch.Tensor:
    """``[num_atoms, 1]`` MACE's Huber delta per atom, smaller where the reference force is large."""
    norm = reference_forces.norm(dim=-1, keepdim=True)
    factor = torch.full_like(norm, FORCE_HUBER_FACTORS[-1])
    for threshold, value in reversed(list(zip(FORCE_HUBER_THRESHOLDS, FORCE_HUBER_FACTORS))):
        factor = torch.where(norm < threshold, torch.full_like(norm, value), factor)
    return delta * factor


class PotentialLoss(torch.nn.Module):
    """A weighted loss on the labels of :mod:`datasets.schema` (see the module docstring).

    Args:
        kind: ``"mse"`` (MACE's weighted loss) or ``"huber"`` (MACE's universal loss).
        energy_weight, forces_weight, stress_weight, virials_weight: ``lambda_k`` of each term; a term
            with weight 0 is not computed (so a model need not predict stress for a loss without it).
        huber_delta: delta of the Huber function (eV/atom, eV/Å, eV/Å³), for ``kind="huber"``.
    """

    def __init__(
        self,
        kind: str = "mse",
        energy_weight: float = 1.0,
        forces_weight: float = 100.0,
        stress_weight: float = 0.0,
        virials_weight: float = 0.0,
        huber_delta: float = 0.01,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"loss kind {kind!r} is not one of {KINDS}")
        weights = dict(energy=energy_weight, forces=forces_weight, stress=stress_weight, virials=virials_weight)
        negative = {name: w for name, w in weights.items() if w < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}")
        if not any(w > 0 for w in weights.values()):
            raise ValueError("every loss weight is 0: give at least one of energy/forces/stress/virials a weight")
        if kind == "huber" and not huber_delta > 0:
            raise ValueError(f"huber_delta must be positive, got {huber_delta}")
        self.kind = kind
        self.huber_delta = float(huber_delta)
        # label -> lambda, only the terms that count
        self.weights = {
            label: float(w)
            for label, w in zip(schema.LABELS, (energy_weight, forces_weight, stress_weight, virials_weight))
            if w > 0
        }

    def extra_repr(self) -> str:
        return f"kind={self.kind}, weights={self.weights}" + (
            f", huber_delta={self.huber_delta}" if self.kind == "huber" else ""
        )

    @property
    def needs_forces(self) -> bool:
        return schema.FORCES in self.weights

    @property
    def needs_stress(self) -> bool:
        return schema.STRESS in self.weights or schema.VIRIALS in self.weights

    def _penalty(self, residual: torch.Tensor, delta: torch.Tensor | float | None = None) -> torch.Tensor:
        if self.kind == "mse":
            return residual.square()
        return huber(residual, self.huber_delta if delta is None else delta)

    def terms(
        self, prediction: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{label: (S, C)}``: the weighted sum of penalties and the number of entries of each term.

        ``S`` is a differentiable scalar; ``C`` a scalar tensor of the same dtype.
        """
        num_atoms = atoms_per_graph(batch).to(prediction[schema.ENERGY].dtype)
        graph_of_atom = batch[schema.BATCH]
        out = {}
        for label in self.weights:
            weight = batch[schema.LABEL_WEIGHT[label]]  # [num_graphs]
            reference, predicted = batch[label], prediction[label]
            if label == schema.ENERGY:
                penalty = self._penalty((reference - predicted) / num_atoms)
            elif label == schema.FORCES:
                delta = conditional_force_delta(reference, self.huber_delta) if self.kind == "huber" else None
                penalty = self._penalty(reference - predicted, delta)
                weight = weight.index_select(0, graph_of_atom)[:, None]  # [num_atoms, 1]
            elif label == schema.STRESS:
                penalty = self._penalty(reference - predicted)
                weight = weight[:, None, None]
            else:  # virials, per atom as in MACE
                penalty = self._penalty((reference - predicted) / num_atoms[:, None, None])
                weight = weight[:, None, None]
            weighted = weight * penalty
            out[label] = (weighted.sum(), torch.tensor(float(weighted.numel()), dtype=weighted.dtype,
                                                       device=weighted.device))
        return out

    def combine(
        self, terms: Mapping[str, tuple[torch.Tensor, torch.Tensor]], counts: Mapping[str, torch.Tensor] | None = None,
        scale: float = 1.0,
    ) -> torch.Tensor:
        """``scale * sum_k lambda_k S_k / C_k`` with the counts of ``terms`` or the given ``counts``.

        Under DDP each process passes its own sums, the counts summed over processes and
        ``scale = world_size``, so that the gradient averaged by DDP is the gradient of the loss of
        the global batch (as ``mace.modules.loss.reduce_loss``).
        """
        total = 0.0
        for label, (value, count) in terms.items():
            denominator = count if counts is None else counts[label]
            total = total + self.weights[label] * value / denominator
        return scale * total

    def forward(self, prediction: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss of one batch (a differentiable scalar)."""
        return self.combine(self.terms(prediction, batch))
