"""Errors of energies, forces, stress and virials, exact over a whole set and across processes.

A metric is never averaged over batches or over processes. Each process accumulates, per quantity,
the sum of absolute errors, the sum of squared errors and the number of entries (in float64); the
sums are added over processes once, at the end of the epoch; then

    MAE = sum |e| / n,    RMSE = sqrt(sum e^2 / n),

which is what one process would compute on the whole set in one batch, whatever the batching, the
uneven split of frames between processes, or the number of processes.

Quantities and units (errors are reported in meV):

=================  =====================================================  ==========
energy             total energy per graph                                 meV
energy_per_atom    energy per graph divided by its number of atoms        meV/atom
forces             force components                                       meV/Å
stress             stress components                                      meV/Å³
virials            virial components                                      meV
virials_per_atom   virial components divided by the number of atoms       meV/atom
=================  =====================================================  ==========

Only entries whose label weight is positive count (a frame without stress adds nothing to the stress
errors); a quantity with no entry is left out of the result.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from datasets import schema
from train.losses import atoms_per_graph

EV_TO_MEV = 1000.0

# name -> (label it is computed from, unit of the reported error)
QUANTITIES = {
    "energy": (schema.ENERGY, "meV"),
    "energy_per_atom": (schema.ENERGY, "meV/atom"),
    "forces": (schema.FORCES, "meV/Å"),
    "stress": (schema.STRESS, "meV/Å³"),
    "virials": (schema.VIRIALS, "meV"),
    "virials_per_atom": (schema.VIRIALS, "meV/atom"),
}


def quantities_for(labels: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The metric quantities of the given predicted labels (e.g. ``{ENERGY, FORCES}``)."""
    return tuple(name for name, (label, _) in QUANTITIES.items() if label in labels)


def _errors(name: str, prediction: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Flat errors (eV units) of quantity ``name`` over the entries whose label weight is positive."""
    label = QUANTITIES[name][0]
    present = batch[schema.LABEL_WEIGHT[label]] > 0  # [num_graphs]
    error = prediction[label].detach() - batch[label]
    if name.endswith("_per_atom"):
        num_atoms = atoms_per_graph(batch).to(error.dtype)
        error = error / num_atoms.view(-1, *([1] * (error.dim() - 1)))
    if label == schema.FORCES:
        present = present.index_select(0, batch[schema.BATCH])  # [num_atoms]
    return error[present].reshape(-1)


class ErrorSums:
    """Per-quantity ``(sum |e|, sum e^2, n)`` of the errors seen so far, on one process.

    ``sums: [num_quantities, 3]`` float64, rows in the order of ``quantities``.
    """

    def __init__(self, quantities: tuple[str, ...], device: torch.device | str = "cpu") -> None:
        unknown = [q for q in quantities if q not in QUANTITIES]
        if unknown:
            raise ValueError(f"unknown metric quantities {unknown}; valid: {list(QUANTITIES)}")
        self.quantities = tuple(quantities)
        self.sums = torch.zeros(len(self.quantities), 3, dtype=torch.float64, device=device)

    def reset(self, device: torch.device | str | None = None) -> None:
        self.sums = torch.zeros_like(self.sums, device=device or self.sums.device)

    def update(self, prediction: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> None:
        """Add the errors of one batch (``prediction`` as returned by the model)."""
        rows = []
        for name in self.quantities:
            error = _errors(name, prediction, batch).to(torch.float64)
            rows.append(torch.stack([error.abs().sum(), error.square().sum(),
                                     torch.tensor(float(error.numel()), dtype=torch.float64, device=error.device)]))
        if rows:
            self.sums += torch.stack(rows).to(self.sums.device)

    def reduced(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> "ErrorSums":
        """A copy whose sums are added over processes by ``reduce_sum`` (e.g. an all-reduce)."""
        out = ErrorSums(self.quantities, self.sums.device)
        out.sums = reduce_sum(self.sums.clone())
        return out

    def compute(self) -> dict[str, dict[str, float]]:
        """``{quantity: {"mae", "rmse", "count", "unit"}}`` in meV units; quantities without entries left out."""
        out = {}
        for name, (abs_sum, sq_sum, count) in zip(self.quantities, self.sums.tolist()):
            if count > 0:
                out[name] = dict(
                    mae=EV_TO_MEV * abs_sum / count,
                    rmse=EV_TO_MEV * (sq_sum / count) ** 0.5,
                    count=int(count),
                    unit=QUANTITIES[name][1],
                )
        return out


class LossSums:
    """Per loss term ``(sum S_k, sum C_k)`` over batches (see :mod:`train.losses`), on one process."""

    def __init__(self, labels: tuple[str, ...], device: torch.device | str = "cpu") -> None:
        self.labels = tuple(labels)
        self.sums = torch.zeros(len(self.labels), 2, dtype=torch.float64, device=device)

    def reset(self, device: torch.device | str | None = None) -> None:
        self.sums = torch.zeros_like(self.sums, device=device or self.sums.device)

    def update(self, terms: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        rows = [torch.stack([terms[label][0].detach(), terms[label][1]]).to(torch.float64) for label in self.labels]
        if rows:
            self.sums += torch.stack(rows).to(self.sums.device)

    def reduced(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> "LossSums":
        out = LossSums(self.labels, self.sums.device)
        out.sums = reduce_sum(self.sums.clone())
        return out

    def terms(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{label: (S, C)}`` as :meth:`train.losses.PotentialLoss.terms` returns for one batch."""
        return {label: (row[0], row[1]) for label, row in zip(self.labels, self.sums)}


def flatten_metrics(metrics: Mapping[str, Mapping[str, float]], prefix: str) -> dict[str, float]:
    """``{"val/forces_rmse": ..., ...}`` from :meth:`ErrorSums.compute`, for loggers."""
    return {f"{prefix}/{name}_{stat}": values[stat] for name, values in metrics.items() for stat in ("mae", "rmse")}
