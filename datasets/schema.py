"""Field names, shapes and units of an atomistic graph, declared once.

Every reader, graph builder, model and loss spells a field through these constants, never as a
string literal. A batch of graphs is a ``torch_geometric.data.Batch`` (or any mapping with these
keys); per-graph tensors are stacked along the first dimension, per-atom and per-edge tensors are
concatenated.

Units: Å, eV, eV/Å, eV/Å³ (as in ASE).

Edge convention (as MACE): an edge ``(sender, receiver) = edge_index[:, e]`` carries a message from
``sender`` to ``receiver`` along the vector

    r_e = positions[receiver] - positions[sender] + unit_shifts[e] @ cell[graph_of(sender)]

where ``unit_shifts`` are the integer lattice translations of the periodic image (zero for open
boundaries). Keeping integer shifts and the cell apart (not Cartesian shifts) lets a model take
derivatives with respect to a strain of the cell, which gives stress and virials.

Stress and virials (as ASE and MACE): ``virials = -dE/dε`` and ``stress = dE/dε / volume`` for a
symmetric strain ``ε`` applied to positions and cell, so a compressed crystal that pushes outwards
has negative stress.
"""

from __future__ import annotations

# --- inputs: per atom -------------------------------------------------------------------------
POSITIONS = "positions"  # [num_atoms, 3] float, Å
ATOMIC_NUMBERS = "atomic_numbers"  # [num_atoms] int64
BATCH = "batch"  # [num_atoms] int64, index of each atom's graph (torch_geometric)

# --- inputs: per edge -------------------------------------------------------------------------
EDGE_INDEX = "edge_index"  # [2, num_edges] int64, rows (sender, receiver)
UNIT_SHIFTS = "unit_shifts"  # [num_edges, 3] float, integer lattice translations of the image

# --- inputs: per graph ------------------------------------------------------------------------
CELL = "cell"  # [num_graphs, 3, 3] float, Å, rows are lattice vectors; zeros when not periodic
PBC = "pbc"  # [num_graphs, 3] bool
PTR = "ptr"  # [num_graphs + 1] int64, first atom of each graph (torch_geometric)

# --- labels: per graph and per atom -----------------------------------------------------------
ENERGY = "energy"  # [num_graphs] float, eV (total energy)
FORCES = "forces"  # [num_atoms, 3] float, eV/Å
STRESS = "stress"  # [num_graphs, 3, 3] float, eV/Å³
VIRIALS = "virials"  # [num_graphs, 3, 3] float, eV

# Per-graph loss weights. A label that a frame does not have is stored as zeros with weight 0, so
# batches of mixed frames stay rectangular. The frame's own weight (extxyz ``config_weight``) is
# folded into each.
WEIGHT = "weight"  # [num_graphs] float, the frame's weight
ENERGY_WEIGHT = "energy_weight"  # [num_graphs] float
FORCES_WEIGHT = "forces_weight"  # [num_graphs] float
STRESS_WEIGHT = "stress_weight"  # [num_graphs] float
VIRIALS_WEIGHT = "virials_weight"  # [num_graphs] float

# --- model outputs (besides ENERGY, FORCES, STRESS, VIRIALS) ----------------------------------
NODE_ENERGY = "node_energy"  # [num_atoms] float, eV, per-atom energies (including E0)

# the labels a model can predict, and the weight field that masks each
LABELS = (ENERGY, FORCES, STRESS, VIRIALS)
LABEL_WEIGHT = {
    ENERGY: ENERGY_WEIGHT,
    FORCES: FORCES_WEIGHT,
    STRESS: STRESS_WEIGHT,
    VIRIALS: VIRIALS_WEIGHT,
}
