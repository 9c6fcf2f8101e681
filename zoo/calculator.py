"""An ASE calculator for any equizoo potential: ``atoms.calc = Calculator("mace_tdn_organics")``.

Properties (ASE units and conventions):

- ``energy``, ``free_energy`` (eV; the same number, the model has no electronic entropy),
- ``energies`` (eV per atom, :math:`E^0_{z_i}` included; they sum to ``energy``),
- ``forces`` (eV/Å) :math:`F_i = -\\partial E / \\partial r_i`,
- ``stress`` (eV/Å³, Voigt order ``xx yy zz yz xz xy``) :math:`\\sigma = \\frac{1}{V}\\,\\partial E/\\partial \\varepsilon`
  under a symmetric strain, ASE's sign (positive when the cell wants to shrink); for structures with a
  periodic direction and a cell of nonzero volume, else ``PropertyNotImplementedError``.

Neighbour lists are built with vesin (:mod:`datasets.neighbours`) out to ``r_max + skin`` and reused
while no atom has moved more than ``skin / 2`` since the last build, and the atoms, the cell and the
boundary conditions are unchanged: then every pair now closer than ``r_max`` was within ``r_max + skin``
at the build, so it is in the list, and pairs beyond ``r_max`` are dropped before the model sees them.
Cells smaller than the cutoff get every periodic image (an atom's own images included). An atom with
no neighbour has the energy :math:`E^0` of its element (plus the model's shift) and zero force.

:meth:`Calculator.predict` evaluates a list of structures in batches (screening).

Bad input gets a clear error: an element the model does not know (named, with the model's elements);
positions or cell with NaN or inf (the atom named); a missing or unreadable checkpoint
(:mod:`zoo.checkpoint`).
"""

from __future__ import annotations

import copy
import os
from typing import Any, Optional, Sequence, Union

import ase
import numpy as np
import torch
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from torch import nn

from datasets import schema
from datasets.neighbours import neighbour_list
from zoo.pretrained import load

ModelLike = Union[str, os.PathLike, nn.Module]


def check_structure(atoms: ase.Atoms, elements: Sequence[int], what: str = "atoms") -> None:
    """Raise ``ValueError`` naming the problem if ``atoms`` cannot be evaluated by a model of ``elements``."""
    positions = atoms.get_positions()
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{what}: position of atom {i} ({atoms[i].symbol}) is not finite: {positions[i].tolist()}"
                         + (f" ({bad.size} atoms in all)" if bad.size > 1 else ""))
    if atoms.pbc.any() and not np.isfinite(atoms.cell.array).all():
        raise ValueError(f"{what}: the cell is not finite: {atoms.cell.array.tolist()}")
    unknown = sorted(set(atoms.numbers.tolist()) - set(int(z) for z in elements))
    if unknown:
        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
        known = ", ".join(chemical_symbols[z] for z in elements)
        raise ValueError(f"{what}: element(s) {names} not among the model's elements {known}")


def _edges_within(positions: np.ndarray, cell: np.ndarray, edge_index: np.ndarray, unit_shifts: np.ndarray,
                  r_max: float) -> np.ndarray:
    """Mask of the listed edges whose current length is below ``r_max``."""
    vectors = positions[edge_index[1]] - positions[edge_index[0]] + unit_shifts @ cell
    return np.einsum("ij,ij->i", vectors, vectors) < r_max * r_max


class SkinNeighbourList:
    """A neighbour list out to ``r_max + skin`` that is rebuilt only when it could miss a pair.

    :meth:`edges` returns ``edge_index [2, E]`` and ``unit_shifts [E, 3]`` of the pairs within ``r_max``
    now; ``num_builds`` counts the builds (for tests and logs).
    """

    def __init__(self, r_max: float, skin: float = 0.5) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.r_max, self.skin = float(r_max), float(skin)
        self.num_builds = 0
        self._reference: Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None
        self._edges: tuple[np.ndarray, np.ndarray] = (np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int64))

    def _stale(self, positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        if self._reference is None:
            return True
        old_positions, old_numbers, old_cell, old_pbc = self._reference
        if positions.shape != old_positions.shape or not np.array_equal(numbers, old_numbers):
            return True
        if not np.array_equal(pbc, old_pbc) or not np.array_equal(cell, old_cell):
            return True
        displacement = np.sqrt(((positions - old_positions) ** 2).sum(axis=1).max(initial=0.0))
        return bool(displacement > 0.5 * self.skin)

    def edges(self, atoms: ase.Atoms) -> tuple[np.ndarray, np.ndarray]:
        positions, numbers = atoms.get_positions(), atoms.numbers.copy()
        cell, pbc = atoms.cell.array.copy(), atoms.pbc.copy()
        if self._stale(positions, numbers, cell, pbc):
            edge_index, unit_shifts, _ = neighbour_list(positions, cell, pbc, self.r_max + self.skin)
            self._edges = (edge_index, unit_shifts)
            self._reference = (positions.copy(), numbers, cell, pbc)
            self.num_builds += 1
        edge_index, unit_shifts = self._edges
        if self.skin == 0.0:
            return edge_index, unit_shifts
        keep = _edges_within(positions, cell if pbc.any() else np.zeros((3, 3)), edge_index, unit_shifts, self.r_max)
        return edge_index[:, keep], unit_shifts[keep]


def batch_tensors(structures: Sequence[ase.Atoms], edges: Sequence[tuple[np.ndarray, np.ndarray]],
                  dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The fields of :mod:`datasets.schema` a model reads, for ``structures`` with their ``edges``.

    POSITIONS [N, 3], ATOMIC_NUMBERS [N], BATCH [N], EDGE_INDEX [2, E] (offset per structure),
    UNIT_SHIFTS [E, 3], CELL [G, 3, 3] (zeros for a structure with no periodic direction).
    """
    offsets = np.cumsum([0] + [len(atoms) for atoms in structures])
    cells = [atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3)) for atoms in structures]

    def floats(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float64), dtype=dtype, device=device)

    def ints(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.int64), device=device)

    return {
        schema.POSITIONS: floats(np.concatenate([atoms.get_positions() for atoms in structures]).reshape(-1, 3)),
        schema.ATOMIC_NUMBERS: ints(np.concatenate([atoms.numbers for atoms in structures])),
        schema.BATCH: ints(np.repeat(np.arange(len(structures)), np.diff(offsets))),
        schema.EDGE_INDEX: ints(np.concatenate([e + o for (e, _), o in zip(edges, offsets)], axis=1).reshape(2, -1)),
        schema.UNIT_SHIFTS: floats(np.concatenate([s for _, s in edges]).reshape(-1, 3)),
        schema.CELL: floats(np.stack(cells)),
    }


def _has_volume(atoms: ase.Atoms) -> bool:
    return bool(atoms.pbc.any()) and abs(atoms.cell.volume) > 1e-12


class Calculator(AseCalculator):
    """ASE calculator of an equizoo potential (see the module docstring).

    Args:
        model: a pretrained name (``zoo.pretrained.available()``), a checkpoint path, or a model object
            (an ``nn.Module`` with ``elements``, ``r_max`` and ``forward(batch, compute_forces, compute_stress)``;
            used as it is when its device and dtype match, else a converted copy is, the caller's left alone).
        device: ``"cpu"``, ``"cuda"``, ... (default: CPU).
        dtype: ``"float64"`` (default; what MD wants) or ``"float32"``, or None to keep the model's.
        kernel: tensor-product kernel when loading by name or path (default: as saved).
        skin: neighbour-list skin in Å (0 rebuilds the list on every call).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: ModelLike = "mace_tdn_organics",
        device: Union[str, torch.device, None] = None,
        dtype: Union[str, torch.dtype, None] = "float64",
        kernel: Optional[str] = None,
        skin: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        dtypes = {"float32": torch.float32, "float64": torch.float64}
        target = dtypes.get(dtype, dtype) if isinstance(dtype, str) else dtype
        if isinstance(dtype, str) and dtype not in dtypes:
            raise ValueError(f"dtype={dtype!r}; valid: float32, float64")
        device = torch.device(device or "cpu")
        if isinstance(model, nn.Module):
            if kernel is not None:
                raise ValueError("kernel= applies when loading by name or path; build the model with the kernel instead")
            current = next(t for t in model.state_dict().values() if t.is_floating_point())
            if current.device != device or (target is not None and current.dtype != target):
                model = copy.deepcopy(model)  # convert a copy: the caller's model (maybe in use elsewhere) stays
            self.model = model.to(device=device, dtype=target) if target is not None else model.to(device)
        else:
            self.model = load(model, device=device, dtype=target, kernel=kernel)
        self.model.eval()
        for attribute in ("elements", "r_max"):
            if not hasattr(self.model, attribute):
                raise TypeError(f"the model has no {attribute!r}: the calculator needs an equizoo potential")
        self.device = device
        self.dtype = next(p for p in self.model.state_dict().values() if p.is_floating_point()).dtype
        self.neighbours = SkinNeighbourList(self.model.r_max, skin)

    # -- one structure ---------------------------------------------------------------------
    def calculate(self, atoms: Optional[ase.Atoms] = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        check_structure(atoms, self.model.elements)
        want_stress = "stress" in properties
        if want_stress and not _has_volume(atoms):
            raise PropertyNotImplementedError("stress needs a periodic direction and a cell of nonzero volume")
        edges = self.neighbours.edges(atoms)
        # stress costs a strain derivative: only when asked (MD asks for forces only; ASE asks again for stress)
        self.results = self._evaluate([atoms], [edges], stress=want_stress)[0]

    def _evaluate(self, structures: Sequence[ase.Atoms], edges, stress: bool) -> list[dict[str, Any]]:
        batch = batch_tensors(structures, edges, self.dtype, self.device)
        out = self.model(batch, compute_forces=True, compute_stress=stress)
        energy = out[schema.ENERGY].detach().cpu().double().numpy()
        node_energy = out[schema.NODE_ENERGY].detach().cpu().double().numpy()
        forces = out[schema.FORCES].detach().cpu().double().numpy()
        stresses = out[schema.STRESS].detach().cpu().double().numpy() if stress else None
        results, start = [], 0
        for g, atoms in enumerate(structures):
            end = start + len(atoms)
            result = {
                "energy": float(energy[g]), "free_energy": float(energy[g]),
                "energies": node_energy[start:end].copy(), "forces": forces[start:end].copy(),
            }
            if stresses is not None:
                result["stress"] = full_3x3_to_voigt_6_stress(stresses[g])
            results.append(result)
            start = end
        return results

    # -- many structures -------------------------------------------------------------------
    def predict(self, structures: Sequence[ase.Atoms], batch_size: int = 16) -> list[dict[str, Any]]:
        """Energies, per-atom energies, forces (and stress where defined) of many structures.

        Structures are evaluated ``batch_size`` at a time in one model call each; stress is computed
        for a batch when all its structures have a periodic cell. Returns one dict per structure with
        the keys of :attr:`implemented_properties` (``stress`` only where computed).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results: list[dict[str, Any]] = []
        for first in range(0, len(structures), batch_size):
            chunk = list(structures[first:first + batch_size])
            edges = []
            for k, atoms in enumerate(chunk, start=first):
                check_structure(atoms, self.model.elements, what=f"structure {k}")
                edge_index, unit_shifts, _ = neighbour_list(atoms.get_positions(), atoms.cell.array, atoms.pbc,
                                                            self.model.r_max)
                edges.append((edge_index, unit_shifts))
            results.extend(self._evaluate(chunk, edges, stress=all(_has_volume(atoms) for atoms in chunk)))
        return results
