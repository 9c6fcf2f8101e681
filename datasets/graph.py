"""A configuration as a ``torch_geometric.data.Data`` graph with the fields of ``datasets.schema``.

Nodes are atoms; edges are the full neighbour list within ``r_max`` (``datasets.neighbours``), with
the integer image shifts kept apart from the cell so a model can differentiate by strain. Per-graph
tensors carry a leading dimension of 1, so ``torch_geometric.loader.DataLoader`` stacks them into
``[num_graphs, ...]``; per-atom and per-edge tensors are concatenated (edge indices offset by
torch_geometric, which also adds ``batch`` and ``ptr``).

A label the frame lacks is stored as zeros with weight 0, so every batch has every field.
"""

from __future__ import annotations

import ase
import numpy as np
import torch
from torch_geometric.data import Data

from datasets import schema
from datasets.configuration import Configuration
from datasets.extxyz import configuration_from_atoms
from datasets.neighbours import neighbour_list


def to_graph(config: Configuration | ase.Atoms, r_max: float, dtype: torch.dtype | None = None) -> Data:
    """The graph of one configuration (an ``ase.Atoms`` is read with the default label keys).

    r_max: cutoff in Å. dtype: of every float tensor (default ``torch.get_default_dtype()``).

    Fields (N atoms, E edges): POSITIONS [N, 3], ATOMIC_NUMBERS [N] int64, EDGE_INDEX [2, E] int64,
    UNIT_SHIFTS [E, 3], CELL [1, 3, 3] (zeros when no direction is periodic), PBC [1, 3] bool,
    ENERGY [1], FORCES [N, 3], STRESS [1, 3, 3], VIRIALS [1, 3, 3], WEIGHT [1] and per label its
    weight [1] = frame weight x label weight (0 for a missing label).
    """
    if isinstance(config, ase.Atoms):
        config = configuration_from_atoms(config)
    dtype = dtype or torch.get_default_dtype()
    n = config.num_atoms
    edge_index, unit_shifts, _ = neighbour_list(config.positions, config.cell, config.pbc, r_max)
    cell = config.cell if config.pbc.any() else np.zeros((3, 3))

    def floats(array, shape):
        return torch.as_tensor(np.asarray(array, dtype=np.float64).reshape(shape), dtype=dtype)

    def label(name, shape):
        value = config.label(name)
        return floats(np.zeros(shape) if value is None else value, shape)

    fields = {
        schema.POSITIONS: floats(config.positions, (n, 3)),
        schema.ATOMIC_NUMBERS: torch.as_tensor(config.atomic_numbers, dtype=torch.int64),
        schema.EDGE_INDEX: torch.as_tensor(edge_index, dtype=torch.int64),
        schema.UNIT_SHIFTS: floats(unit_shifts, (-1, 3)),
        schema.CELL: floats(cell, (1, 3, 3)),
        schema.PBC: torch.as_tensor(config.pbc, dtype=torch.bool).reshape(1, 3),
        schema.ENERGY: label(schema.ENERGY, (1,)),
        schema.FORCES: label(schema.FORCES, (n, 3)),
        schema.STRESS: label(schema.STRESS, (1, 3, 3)),
        schema.VIRIALS: label(schema.VIRIALS, (1, 3, 3)),
        schema.WEIGHT: floats(config.weight, (1,)),
    }
    for name, weight_field in schema.LABEL_WEIGHT.items():
        present = config.label(name) is not None
        fields[weight_field] = floats(config.weight * config.label_weights[name] if present else 0.0, (1,))
    return Data(num_nodes=n, **fields)
