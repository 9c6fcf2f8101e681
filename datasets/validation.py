"""Checks of one configuration, each raising a ``DatasetError`` that names file, frame and key.

What is checked, and why it is an error rather than a warning:

- non-finite numbers (NaN/inf) in positions, cell, labels or weights: one NaN poisons every
  gradient step it enters;
- a periodic direction whose lattice vector is zero or dependent on the others: the images are
  undefined;
- two atoms (or an atom and an image) closer than ``min_distance`` (0.1 Å by default): no physical
  structure has that, it is a unit or duplication mistake, and the radial basis blows up;
- labels the caller requires (``energy``, ``forces``) that the frame lacks;
- elements outside the allowed list (the model has no embedding for them).

Shapes of labels are checked where they are read (``datasets.extxyz``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from ase.data import chemical_symbols

from datasets import schema
from datasets.configuration import Configuration
from datasets.errors import DatasetError
from datasets.neighbours import neighbour_list

MIN_DISTANCE = 0.1  # Å


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"


def check_finite(config: Configuration) -> None:
    """Positions, cell, every label present and every weight are finite."""
    arrays = {"pos": config.positions, "Lattice": config.cell, "config_weight": config.weight}
    for label in schema.LABELS:
        if config.label(label) is not None:
            arrays[config.keys[label]] = config.label(label)
        arrays[f"config_{label}_weight"] = config.label_weights[label]
    for key, value in arrays.items():
        value = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(value)):
            detail = f" (first at index {tuple(np.argwhere(~np.isfinite(value))[0].tolist())})" if value.ndim else ""
            raise DatasetError(f"is not finite (NaN or inf){detail}", **config.where, key=key)


def check_weights(config: Configuration) -> None:
    """The frame weight and the label weights are not negative."""
    weights = {"config_weight": config.weight}
    weights.update({f"config_{label}_weight": w for label, w in config.label_weights.items()})
    for key, value in weights.items():
        if value < 0:
            raise DatasetError(f"weight {value} is negative", **config.where, key=key)


def check_cell(config: Configuration) -> None:
    """Along periodic directions the lattice vectors are non-zero and linearly independent."""
    periodic = np.flatnonzero(config.pbc)
    if len(periodic) == 0:
        return
    vectors = config.cell[periodic]
    if np.linalg.matrix_rank(vectors, tol=1e-8) < len(periodic):
        names = "".join("abc"[d] for d in periodic)
        raise DatasetError(f"the lattice vectors along the periodic directions ({names}) are zero or linearly "
                           f"dependent: cell = {config.cell.tolist()}, pbc = {config.pbc.tolist()}",
                           **config.where, key="Lattice")


def check_distances(config: Configuration, min_distance: float = MIN_DISTANCE) -> None:
    """No two atoms (including periodic images) closer than ``min_distance`` Å; names the closest pair."""
    # a cell-list search costs about (extent / cutoff)^3 cells: a 0.1 Å cutoff over a molecule takes
    # milliseconds, a 1 Å one microseconds, so search 1 Å and keep the close pairs
    edge_index, shifts, distances = neighbour_list(config.positions, config.cell, config.pbc, max(min_distance, 1.0))
    close = distances < min_distance
    if not close.any():
        return
    edge_index, shifts, distances = edge_index[:, close], shifts[close], distances[close]
    e = int(np.argmin(distances))
    i, j = (int(k) for k in edge_index[:, e])
    image = f" (periodic image shifted by {shifts[e].tolist()} cells)" if np.any(shifts[e]) else ""
    raise DatasetError(
        f"atoms {i} ({_symbol(config.atomic_numbers[i])}) and {j} ({_symbol(config.atomic_numbers[j])}){image} "
        f"are {distances[e]:.4g} Å apart, closer than {min_distance} Å", **config.where, key="pos")


def check_required(config: Configuration, labels: Iterable[str]) -> None:
    """The frame carries every label in ``labels`` (names from ``schema.LABELS``)."""
    for label in labels:
        if config.label(label) is None:
            key = config.keys[label]
            raise DatasetError(f"no {label}: the key {key!r} is in neither the frame's info, its per-atom "
                               "arrays nor its calculator results", **config.where, key=key)


def check_elements(config: Configuration, elements: Iterable[int], why: str = "the allowed elements") -> None:
    """Every atomic number of the frame is in ``elements``."""
    allowed = set(int(z) for z in elements)
    unknown = sorted(set(config.atomic_numbers.tolist()) - allowed)
    if unknown:
        names = ", ".join(f"{_symbol(z)} (Z={z})" for z in unknown)
        listed = ", ".join(_symbol(z) for z in sorted(allowed))
        raise DatasetError(f"element {names} is not among {why}: [{listed}]", **config.where, key="species")


def check_configuration(config: Configuration, *, required: Iterable[str] = (), elements: Iterable[int] | None = None,
                        min_distance: float | None = MIN_DISTANCE) -> None:
    """All checks of this module on one frame (``min_distance=None`` skips the distance check)."""
    check_finite(config)
    check_weights(config)
    check_cell(config)
    check_required(config, required)
    if elements is not None:
        check_elements(config, elements)
    if min_distance is not None:
        check_distances(config, min_distance)
