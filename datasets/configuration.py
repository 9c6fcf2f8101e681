"""One labelled atomic structure, as read from a file and before it becomes a graph.

A ``Configuration`` holds numpy arrays in float64 (whatever precision the model later uses) and
remembers where it came from (file, frame, and the file's key for each label) so every later check
can name the place of a bad value. Labels a frame does not carry are ``None``; their weights are 0.

Units: Å, eV, eV/Å, eV/Å³ (as in ASE). Stress and virials follow ``datasets.schema``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datasets import schema

ISOLATED_ATOM_TYPES = ("isolatedatom", "isolated_atom")  # config_type of E0 frames, compared in lower case


@dataclass
class Configuration:
    """An atomic structure with its reference labels.

    atomic_numbers: [num_atoms] int64
    positions: [num_atoms, 3] float64, Å
    cell: [3, 3] float64, Å, rows are lattice vectors (may be a dummy box when nothing is periodic)
    pbc: [3] bool
    energy: total energy, eV, or None
    forces: [num_atoms, 3] eV/Å, or None
    stress: [3, 3] eV/Å³, or None
    virials: [3, 3] eV, or None
    weight: the frame's weight (extxyz ``config_weight``), folded into every label weight of its graph
    label_weights: per label (schema.ENERGY, ...): extxyz ``config_<label>_weight`` (default 1), 0 when
        the label is missing
    config_type: extxyz ``config_type`` (default "Default")
    source, index: the file and the 0-based frame in it ("" and -1 when built in memory)
    keys: per label, the key it was read from (for error messages)
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    virials: np.ndarray | None = None
    weight: float = 1.0
    label_weights: dict[str, float] = field(default_factory=dict)
    config_type: str = "Default"
    source: str = ""
    index: int = -1
    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.cell = np.asarray(self.cell, dtype=np.float64)
        self.pbc = np.asarray(self.pbc, dtype=bool)
        for label in schema.LABELS:
            self.label_weights.setdefault(label, 1.0 if self.label(label) is not None else 0.0)
            self.keys.setdefault(label, label)

    @property
    def num_atoms(self) -> int:
        return len(self.atomic_numbers)

    def label(self, name: str):
        """The label ``name`` (one of ``schema.LABELS``), or None when the frame lacks it."""
        return {schema.ENERGY: self.energy, schema.FORCES: self.forces, schema.STRESS: self.stress,
                schema.VIRIALS: self.virials}[name]

    @property
    def is_isolated_atom(self) -> bool:
        """A one-atom frame marked ``config_type=IsolatedAtom`` (or ``isolated_atom``, any case): an E0 reference."""
        return self.num_atoms == 1 and self.config_type.lower() in ISOLATED_ATOM_TYPES

    @property
    def where(self) -> dict:
        """``file=`` and ``frame=`` keyword arguments of ``DatasetError`` for this frame."""
        return dict(file=self.source or None, frame=self.index if self.index >= 0 else None)
