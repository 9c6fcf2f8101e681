"""Extended-XYZ reader: ``ase.io`` frames to ``Configuration`` records, with configurable label keys.

Where a label lives depends on the ASE version that wrote and reads the file. Since ASE 3.23,
``ase.io.read`` moves the standard calculator properties (``energy``, ``forces``, ``stress``,
``free_energy``, ...) into a ``SinglePointCalculator`` (``atoms.calc.results``, stress in Voigt
order), while any other key (``REF_energy``, ``virials``, ...) stays in ``atoms.info`` (per frame)
or ``atoms.arrays`` (per atom). A key is therefore looked up in ``info``, then ``arrays``, then the
calculator's results.

Shapes accepted: energy a scalar; forces ``[num_atoms, 3]`` (or ``3 * num_atoms`` numbers in info);
stress and virials ``3x3``, 9 numbers (row-major) or Voigt 6 ``(xx, yy, zz, yz, xz, xy)``, stored
``3x3``. ASE parses the special info keys ``stress`` and ``virial`` itself and accepts only 9
numbers there. Units as ASE: eV, Å, eV/Å, eV/Å³; nothing is converted.

Frame metadata (as MACE): ``config_weight`` (default 1), ``config_type`` (default "Default"), and
per-label weights ``config_energy_weight``, ``config_forces_weight``, ``config_stress_weight``,
``config_virials_weight`` (default 1; 0 when the label is missing).
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import ase
import ase.io
import numpy as np

from datasets import schema
from datasets.configuration import Configuration
from datasets.errors import DatasetError
from datasets.validation import MIN_DISTANCE, check_configuration

DEFAULT_KEYS = {schema.ENERGY: "energy", schema.FORCES: "forces", schema.STRESS: "stress", schema.VIRIALS: "virials"}


def _lookup(atoms: ase.Atoms, key: str | None):
    """The value stored under ``key`` in info, arrays or calculator results, else None."""
    if key is None:
        return None
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    results = getattr(atoms.calc, "results", None) or {}
    return results.get(key)


def _as_float_array(value, key: str, where: dict) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"is not numeric: {value!r}", **where, key=key) from None


def voigt_to_matrix(voigt: np.ndarray) -> np.ndarray:
    """Voigt 6 ``(xx, yy, zz, yz, xz, xy)`` (ASE's order) -> symmetric ``[3, 3]``."""
    xx, yy, zz, yz, xz, xy = voigt
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def _tensor(value, key: str, where: dict) -> np.ndarray:
    """A stress or virial label as ``[3, 3]`` from 3x3, 9 numbers or Voigt 6."""
    array = _as_float_array(value, key, where)
    if array.size == 9:
        return array.reshape(3, 3)
    if array.size == 6:
        return voigt_to_matrix(array.reshape(6))
    raise DatasetError(f"has shape {array.shape}; expected 3x3, 9 numbers or Voigt 6 (xx yy zz yz xz xy)",
                       **where, key=key)


def _info_float(atoms: ase.Atoms, key: str, default: float, where: dict) -> float:
    value = atoms.info.get(key, default)
    array = _as_float_array(value, key, where)
    if array.size != 1:
        raise DatasetError(f"has {array.size} values; expected one number", **where, key=key)
    return float(array.reshape(()))


def configuration_from_atoms(atoms: ase.Atoms, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
                             stress_key: str | None = "stress", virials_key: str | None = "virials",
                             source: str | PathLike = "", index: int = -1) -> Configuration:
    """One ``Configuration`` from an ``ase.Atoms`` (a frame of a file, or built in memory).

    A key set to None is not read (that label is missing). Shapes are checked here; values by
    ``datasets.validation``.
    """
    num_atoms = len(atoms)
    where = dict(file=str(source) or None, frame=index if index >= 0 else None)
    keys = {schema.ENERGY: energy_key, schema.FORCES: forces_key, schema.STRESS: stress_key,
            schema.VIRIALS: virials_key}

    energy = _lookup(atoms, energy_key)
    if energy is not None:
        array = _as_float_array(energy, energy_key, where)
        if array.size != 1:
            raise DatasetError(f"has {array.size} values; expected one total energy", **where, key=energy_key)
        energy = float(array.reshape(()))

    forces = _lookup(atoms, forces_key)
    if forces is not None:
        forces = _as_float_array(forces, forces_key, where)
        if forces.size != 3 * num_atoms or (forces.ndim == 2 and forces.shape != (num_atoms, 3)):
            rows = f"{forces.shape[0]} rows" if forces.ndim == 2 else f"{forces.size} numbers"
            raise DatasetError(f"has {rows} (shape {forces.shape}) but the frame has {num_atoms} atoms; "
                               f"expected [{num_atoms}, 3]", **where, key=forces_key)
        forces = forces.reshape(num_atoms, 3)

    stress = _lookup(atoms, stress_key)
    stress = None if stress is None else _tensor(stress, stress_key, where)
    virials = _lookup(atoms, virials_key)
    virials = None if virials is None else _tensor(virials, virials_key, where)

    labels = {schema.ENERGY: energy, schema.FORCES: forces, schema.STRESS: stress, schema.VIRIALS: virials}
    label_weights = {label: (_info_float(atoms, f"config_{label}_weight", 1.0, where) if value is not None else 0.0)
                     for label, value in labels.items()}
    return Configuration(
        atomic_numbers=atoms.numbers.copy(), positions=atoms.positions.copy(), cell=atoms.cell.array.copy(),
        pbc=atoms.pbc.copy(), energy=energy, forces=forces, stress=stress, virials=virials,
        weight=_info_float(atoms, "config_weight", 1.0, where), label_weights=label_weights,
        config_type=str(atoms.info.get("config_type", "Default")), source=str(source), index=index,
        keys={label: key if key is not None else DEFAULT_KEYS[label] for label, key in keys.items()},
    )


def read_extxyz(path: str | PathLike, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
                stress_key: str | None = "stress", virials_key: str | None = "virials",
                required: Iterable[str] = (), elements: Iterable[int] | None = None,
                min_distance: float | None = MIN_DISTANCE) -> list[Configuration]:
    """Every frame of an extended-XYZ file, checked.

    required: labels (``schema.ENERGY``, ``schema.FORCES``, ...) every frame must carry; the others may
        be missing (weight 0).
    elements: when given, atomic numbers outside it are an error.
    min_distance: Å; atoms closer than this are an error (None skips the check).

    Raises ``DatasetError`` for a missing or unreadable file, a file without frames, a frame ASE cannot
    parse, a label of the wrong shape, and every check of ``datasets.validation.check_configuration``.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no such file (looked in {path.resolve().parent})", file=path)
    if not path.is_file():
        raise DatasetError("is not a file", file=path)
    required = tuple(required)
    elements = None if elements is None else sorted(set(int(z) for z in elements))
    configs = []
    frames = ase.io.iread(path, index=":", format="extxyz")
    while True:
        index = len(configs)
        try:
            atoms = next(frames)
        except StopIteration:
            break
        except Exception as exc:  # ASE raises XYZError, ValueError, KeyError, IndexError... on malformed text
            raise DatasetError(f"cannot be parsed as extended XYZ: {type(exc).__name__}: {exc}",
                               file=path, frame=index) from exc
        config = configuration_from_atoms(atoms, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                                          virials_key=virials_key, source=path, index=index)
        check_configuration(config, required=required, elements=elements, min_distance=min_distance)
        configs.append(config)
    if not configs:
        raise DatasetError("contains no frames (empty file)", file=path)
    return configs
