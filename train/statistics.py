"""The statistics a model is built with, filled from the training data where the config leaves them ``null``.

``model.elements``, ``model.atomic_energies`` (E0, eV), ``model.avg_num_neighbors``, ``model.scale`` and
``model.shift`` (eV) come from :class:`datasets.atomistic.AtomisticData` unless the config gives them.
How scale and shift are chosen is the ``statistics:`` node:

- ``scale: rms_forces`` (default, MACE's ``rms_forces_scaling``): RMS of the training force components;
  ``std_energy_per_atom``: standard deviation of the interaction energy per atom (MACE's ``std_scaling``);
  ``one``: no scaling.
- ``shift: zero`` (default): MACE's ``MACE`` model has ``atomic_inter_shift = 0`` (mace-torch
  ``tools/model_script_utils.py``); ``mean_energy_per_atom``: the mean interaction energy per atom
  ``(E - sum E0) / N`` over the training frames, as MACE's ``ScaleShiftMACE``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from torch_geometric.data import Data

from datasets import schema

SCALES = ("rms_forces", "std_energy_per_atom", "one")
SHIFTS = ("zero", "mean_energy_per_atom")


def labels_present(graphs: Iterable[Data]) -> set[str]:
    """The labels (``schema.LABELS``) that at least one graph carries with a positive weight."""
    present = set()
    for graph in graphs:
        for label, weight_field in schema.LABEL_WEIGHT.items():
            if label not in present and bool((graph[weight_field] > 0).any()):
                present.add(label)
    return present


def choose_scale(choice: str, data) -> float:
    """The model's energy scale (eV) for ``statistics.scale``."""
    if choice == "rms_forces":
        if data.rms_forces is None or not data.rms_forces > 0:
            raise ValueError(f"statistics.scale=rms_forces needs forces in the training data (RMS is "
                             f"{data.rms_forces}); use statistics.scale=std_energy_per_atom or one")
        return float(data.rms_forces)
    if choice == "std_energy_per_atom":
        if not data.std_energy_per_atom > 0:
            raise ValueError(f"statistics.scale=std_energy_per_atom but the std is {data.std_energy_per_atom} "
                             "(a single training frame?); use statistics.scale=rms_forces or one")
        return float(data.std_energy_per_atom)
    if choice == "one":
        return 1.0
    raise ValueError(f"statistics.scale={choice!r}; valid: {', '.join(SCALES)}")


def choose_shift(choice: str, data) -> float:
    """The model's per-atom energy shift (eV) for ``statistics.shift``."""
    if choice == "zero":
        return 0.0
    if choice == "mean_energy_per_atom":
        return float(data.mean_energy_per_atom)
    raise ValueError(f"statistics.shift={choice!r}; valid: {', '.join(SHIFTS)}")


def fill_model_statistics(model: Mapping[str, Any], data, statistics: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the ``model:`` config with its ``null`` statistics filled from ``data``.

    ``data``: an :class:`datasets.atomistic.AtomisticData`. Values the config gives are kept; E0s are
    written as ``{Z: eV}`` with int keys.
    """
    filled = dict(model)
    if filled.get("elements") is None:
        filled["elements"] = [int(z) for z in data.elements]
    if filled.get("atomic_energies") is None:
        filled["atomic_energies"] = {int(z): float(e) for z, e in data.atomic_energies.items()}
    if filled.get("avg_num_neighbors") is None:
        filled["avg_num_neighbors"] = float(data.avg_num_neighbors)
    if filled.get("scale") is None:
        filled["scale"] = choose_scale(statistics.get("scale", "rms_forces"), data)
    if filled.get("shift") is None:
        filled["shift"] = choose_shift(statistics.get("shift", "zero"), data)
    return filled

