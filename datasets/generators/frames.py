"""Labelled frames: building them, writing them as extended XYZ that reads back intact, summarising them.

A frame is an ``ase.Atoms`` holding only what the file should contain: species, positions, cell and
periodic boundaries, the labels in a ``SinglePointCalculator`` (energy ``[]`` eV, forces
``[num_atoms, 3]`` eV/Å, stress Voigt ``[6]`` eV/Å³ in ASE's order xx yy zz yz xz xy) and a few
``info`` keys (``config_type``, the molecule or system name). Since ASE 3.23 the extxyz writer
stores calculator results under their property names (``energy=...`` in the comment line,
``forces`` as columns, ``stress`` as 9 numbers) and the reader puts them back into a
``SinglePointCalculator``. The label names of ``datasets.schema`` are ASE's property names, so the
file's keys are the schema's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from os import PathLike

import ase
import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from datasets import schema
from datasets.errors import DatasetError

# extxyz prints per-atom floats (positions, forces) as "%16.8f"; per-frame floats at full precision
WRITTEN_ATOL = 1e-8


def labelled_frame(atoms: ase.Atoms, labels: dict[str, np.ndarray | float], **info: str) -> ase.Atoms:
    """A clean copy of ``atoms`` (no momenta, constraints or calculator state) carrying ``labels``.

    ``labels`` maps schema names (``schema.ENERGY``, ``schema.FORCES``, ``schema.STRESS``) to values;
    ``info`` goes to ``atoms.info`` (e.g. ``config_type="md_300K"``).
    """
    frame = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    values = {key: float(value) if np.ndim(value) == 0 else np.array(value, dtype=np.float64)
              for key, value in labels.items()}
    frame.calc = SinglePointCalculator(frame, **values)
    frame.info.update(info)
    return frame


def _labels(atoms: ase.Atoms) -> dict:
    results = getattr(atoms.calc, "results", None) or {}
    return {key: results[key] for key in (schema.ENERGY, schema.FORCES, schema.STRESS) if key in results}


def write_frames(path: str | PathLike, frames: Sequence[ase.Atoms]) -> None:
    """Write ``frames`` to ``path`` (extxyz), read the file back and check every frame survived.

    Raises ``DatasetError`` naming the file, frame and key when a label is not finite (before
    writing), or when a value read back differs from the one written by more than the printed
    precision (``WRITTEN_ATOL``).
    """
    for index, frame in enumerate(frames):
        for key, value in _labels(frame).items():
            if not np.isfinite(value).all():
                raise DatasetError("is not finite; refusing to write it", file=path, frame=index, key=key)
    ase.io.write(path, list(frames), format="extxyz")
    read = ase.io.read(path, index=":", format="extxyz")
    if len(read) != len(frames):
        raise DatasetError(f"{len(read)} frames read back, {len(frames)} written", file=path)
    for index, (written, back) in enumerate(zip(frames, read)):
        where = dict(file=path, frame=index)
        if not np.array_equal(written.numbers, back.numbers) or not np.array_equal(written.pbc, back.pbc):
            raise DatasetError("species or periodic boundaries changed on reading back", **where)
        if not np.allclose(written.positions, back.positions, rtol=0, atol=WRITTEN_ATOL):
            raise DatasetError("positions changed on reading back", **where, key=schema.POSITIONS)
        if not np.allclose(written.cell.array, back.cell.array, rtol=0, atol=WRITTEN_ATOL):
            raise DatasetError("cell changed on reading back", **where, key="Lattice")
        expected, found = _labels(written), _labels(back)
        if expected.keys() != found.keys():
            raise DatasetError(f"labels {sorted(found)} read back, {sorted(expected)} written", **where)
        for key, value in expected.items():
            if not np.allclose(value, found[key], rtol=0, atol=WRITTEN_ATOL):
                raise DatasetError(f"differs from the value written by {np.abs(value - found[key]).max():.3g}",
                                   **where, key=key)
        for key, value in written.info.items():
            if back.info.get(key) != value:
                raise DatasetError(f"read back as {back.info.get(key)!r}, written {value!r}", **where, key=key)


def summary(frames: Sequence[ase.Atoms]) -> str:
    """Frame counts by ``config_type``, elements, and the ranges of energy, forces and stress (text)."""
    types = Counter(frame.info.get("config_type", "Default") for frame in frames)
    elements = sorted({symbol for frame in frames for symbol in frame.get_chemical_symbols()},
                      key=atomic_numbers.get)
    energies = np.array([frame.get_potential_energy() for frame in frames])
    per_atom = energies / np.array([len(frame) for frame in frames])
    forces = np.concatenate([frame.get_forces() for frame in frames])
    lines = [
        f"frames: {len(frames)} ({', '.join(f'{name} {count}' for name, count in sorted(types.items()))})",
        f"atoms: {sum(len(frame) for frame in frames)}; sizes {sorted({len(frame) for frame in frames})}",
        f"elements: {' '.join(elements)}",
        f"energy [eV]: {energies.min():.4f} .. {energies.max():.4f}; "
        f"per atom {per_atom.min():.4f} .. {per_atom.max():.4f}",
        f"forces [eV/Å]: |F| max {np.linalg.norm(forces, axis=1).max():.3f}, component std {forces.std():.3f}",
    ]
    stresses = [frame.calc.results[schema.STRESS] for frame in frames if schema.STRESS in frame.calc.results]
    if stresses:
        stresses = np.array(stresses)
        lines.append(f"stress [eV/Å³] (Voigt): {stresses.min():.4f} .. {stresses.max():.4f} "
                     f"({len(stresses)} frames)")
    return "\n".join(lines)
