"""Graphs for model tests, built with ASE's own neighbour list (independent of ``datasets``)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from datasets import schema


def graph_of(atoms: Atoms, r_max: float, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """One structure as a batch of one graph (the fields of :mod:`datasets.schema`)."""
    dtype = dtype or torch.get_default_dtype()
    sender, receiver, shifts = neighbor_list("ijS", atoms, r_max)
    return {
        schema.POSITIONS: torch.tensor(atoms.positions, dtype=dtype),
        schema.ATOMIC_NUMBERS: torch.tensor(atoms.numbers, dtype=torch.long),
        schema.EDGE_INDEX: torch.tensor(np.stack([sender, receiver]), dtype=torch.long),
        schema.UNIT_SHIFTS: torch.tensor(shifts, dtype=dtype),
        schema.CELL: torch.tensor(atoms.cell.array, dtype=dtype).unsqueeze(0),
        schema.PBC: torch.tensor(atoms.pbc).unsqueeze(0),
        schema.BATCH: torch.zeros(len(atoms), dtype=torch.long),
    }


def batch_of(graphs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate graphs as torch_geometric does (edge indices offset by the atoms before)."""
    offsets = np.cumsum([0] + [len(g[schema.POSITIONS]) for g in graphs])
    return {
        schema.POSITIONS: torch.cat([g[schema.POSITIONS] for g in graphs]),
        schema.ATOMIC_NUMBERS: torch.cat([g[schema.ATOMIC_NUMBERS] for g in graphs]),
        schema.EDGE_INDEX: torch.cat([g[schema.EDGE_INDEX] + int(o) for g, o in zip(graphs, offsets)], dim=1),
        schema.UNIT_SHIFTS: torch.cat([g[schema.UNIT_SHIFTS] for g in graphs]),
        schema.CELL: torch.cat([g[schema.CELL] for g in graphs]),
        schema.PBC: torch.cat([g[schema.PBC] for g in graphs]),
        schema.BATCH: torch.cat([torch.full((len(g[schema.POSITIONS]),), k) for k, g in enumerate(graphs)]),
    }
