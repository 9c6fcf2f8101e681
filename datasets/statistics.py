"""Statistics of a training set that a MACE model is built with (MACE's scale/shift and E0s).

- atomic reference energies E0 (eV per element): from isolated-atom frames, or by least squares
  of total energies on element counts,
      min_{E0} sum_frames (E_f - sum_Z n_{f,Z} E0_Z)^2,
  (Batatia et al., MACE, NeurIPS 2022; ``mace.data.utils.compute_average_E0s``);
- the interaction energy per atom, ``(E_f - sum_i E0_{Z_i}) / N_f``: its mean over frames (MACE's
  ``shift`` under ``rms_forces_scaling``) and its standard deviation;
- the root mean square of force components, ``sqrt(mean F_{i,a}^2)`` (MACE's ``scale``);
- the average number of neighbours, mean over atoms of incoming edges within ``r_max`` (MACE's
  ``avg_num_neighbors``, which normalises the sum of messages).

Frames lacking a label are left out of the statistics of that label.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from datasets import schema
from datasets.configuration import Configuration
from datasets.errors import DatasetError


def isolated_atom_energies(configs: Iterable[Configuration]) -> dict[int, float]:
    """E0 per element from one-atom frames: ``{Z: energy in eV}``.

    Every frame must hold one atom and an energy; two frames of one element must agree.
    """
    energies: dict[int, tuple[float, Configuration]] = {}
    for config in configs:
        if config.num_atoms != 1:
            raise DatasetError(f"an isolated-atom frame must hold one atom, this one has {config.num_atoms}",
                               **config.where)
        if config.energy is None:
            raise DatasetError("an isolated-atom frame needs an energy", **config.where, key=config.keys[schema.ENERGY])
        z = int(config.atomic_numbers[0])
        if z in energies and not np.isclose(energies[z][0], config.energy, rtol=0, atol=1e-8):
            first = energies[z][1]
            raise DatasetError(f"isolated-atom energy {config.energy} eV of Z={z} disagrees with {energies[z][0]} eV "
                               f"of frame {first.index} of {first.source}", **config.where,
                               key=config.keys[schema.ENERGY])
        energies.setdefault(z, (config.energy, config))
    return {z: energy for z, (energy, _) in sorted(energies.items())}


def element_counts(configs: Sequence[Configuration], elements: Sequence[int]) -> np.ndarray:
    """[num_frames, num_elements]: how many atoms of each element each frame holds."""
    column = {int(z): k for k, z in enumerate(elements)}
    counts = np.zeros((len(configs), len(elements)))
    for f, config in enumerate(configs):
        for z, n in zip(*np.unique(config.atomic_numbers, return_counts=True)):
            counts[f, column[int(z)]] = n
    return counts


def least_squares_atomic_energies(configs: Sequence[Configuration], elements: Sequence[int]) -> dict[int, float]:
    """E0 per element fitting total energies to element counts (least squares), ``{Z: eV}``.

    When the counts do not determine every E0 (e.g. every frame has the same composition), the
    minimum-norm solution is returned with a warning: interaction energies then still average to
    about zero, but the split of energy among elements is arbitrary.
    """
    labelled = [c for c in configs if c.energy is not None]
    if not labelled:
        raise DatasetError("no training frame has an energy, so E0s cannot be fitted by least squares")
    counts = element_counts(labelled, elements)
    energies = np.array([c.energy for c in labelled])
    solution, _, rank, _ = np.linalg.lstsq(counts, energies, rcond=None)
    if rank < len(elements):
        warnings.warn(f"least-squares E0s: the element counts of {len(labelled)} frames determine only {rank} of "
                      f"{len(elements)} E0s (elements {list(elements)}); using the minimum-norm solution. Give "
                      "isolated-atom energies for physically meaningful E0s.", stacklevel=2)
    return {int(z): float(e) for z, e in zip(elements, solution)}


def interaction_energy_per_atom(configs: Iterable[Configuration], atomic_energies: dict[int, float]
                                ) -> tuple[float, float]:
    """Mean and standard deviation over frames of ``(E - sum_i E0_{Z_i}) / N``, eV per atom."""
    values = [(c.energy - sum(atomic_energies[int(z)] for z in c.atomic_numbers)) / c.num_atoms
              for c in configs if c.energy is not None]
    if not values:
        raise DatasetError("no training frame has an energy, so the interaction energy per atom is undefined")
    return float(np.mean(values)), float(np.std(values))


def rms_forces(configs: Iterable[Configuration]) -> float | None:
    """``sqrt(mean F^2)`` over every force component of the frames with forces, eV/Å; None when none has forces."""
    forces = [c.forces.reshape(-1) for c in configs if c.forces is not None]
    if not forces:
        return None
    return float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))


def average_num_neighbors(graphs: Iterable) -> float:
    """Edges per atom over graphs with ``schema.EDGE_INDEX`` ([2, E]) and ``num_nodes``: total edges / total atoms."""
    edges = atoms = 0
    for graph in graphs:
        edges += graph[schema.EDGE_INDEX].shape[1]
        atoms += graph.num_nodes
    if atoms == 0:
        raise ValueError("no atoms: the average number of neighbours is undefined")
    return edges / atoms
