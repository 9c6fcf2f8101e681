"""The builder of atomistic training data: files -> checked frames -> splits -> E0s -> graphs -> statistics.

``build_atomistic_data(**data_config)`` is what ``python -m train`` calls with the ``data:`` node
of a config; its keyword arguments are that node's schema. It composes the other modules:
``extxyz`` (reading), ``validation`` (checks), ``splits``, ``statistics`` and ``graph``.

Order of work:
1. read the training file(s) (``path``, an embedded dataset name, or ``train_path``), and the
   validation/test files when given; one-atom frames with ``config_type`` IsolatedAtom /
   isolated_atom are E0 references and are taken out of every set;
2. split what the files do not: validation and test frames are drawn from the training frames
   by ``valid_fraction``/``test_fraction`` with ``seed`` (``datasets.splits.random_split``);
   ``max_frames`` then keeps a seeded random subset of the training frames;
3. E0s (``atomic_energies``), then the training statistics (``datasets.statistics``) and the graphs.

Required labels: frames of training and validation files must carry an energy and forces (set
``forces_key`` to None to train on energies alone); frames of test files must carry an energy and
may lack forces (public test sets such as AcAc's H-transfer path have energies only). Stress and
virials are optional everywhere (weight 0 where missing).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols
from torch_geometric.data import Data

from datasets import schema
from datasets.configuration import Configuration
from datasets.errors import DatasetError
from datasets.extxyz import read_extxyz
from datasets.graph import to_graph
from datasets.splits import random_split
from datasets.statistics import (
    average_num_neighbors,
    interaction_energy_per_atom,
    isolated_atom_energies,
    least_squares_atomic_energies,
    rms_forces,
)
from datasets.validation import check_elements, check_required

E0_CHOICES = ("auto", "isolated", "least_squares")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class AtomisticData:
    """Graphs of each split and the statistics a model is built with.

    train, valid, test: lists of ``torch_geometric.data.Data`` (fields of ``datasets.schema``).
    elements: sorted atomic numbers the model must know.
    atomic_energies: E0 in eV, one per element.
    avg_num_neighbors: mean incoming edges per atom within r_max over the training graphs.
    mean_energy_per_atom, std_energy_per_atom: of the interaction energy ``(E - sum E0) / N``, eV/atom,
        over the training frames.
    rms_forces: root mean square of the training force components, eV/Å (None without forces).
    sources: what was read and how it was split (files, seed, fractions, counts, E0 source), for the run record.
    """

    train: list[Data]
    valid: list[Data]
    test: list[Data]
    elements: list[int]
    atomic_energies: dict[int, float]
    avg_num_neighbors: float
    mean_energy_per_atom: float
    std_energy_per_atom: float
    rms_forces: float | None
    sources: dict = field(default_factory=dict)


def resolve_path(name_or_path: str | PathLike) -> Path:
    """An embedded dataset's file when ``name_or_path`` names one (``datasets.embedded``), else the path itself."""
    try:
        embedded = importlib.import_module("datasets.embedded")
    except ModuleNotFoundError as exc:  # only its absence is tolerated, not a broken import inside it
        if exc.name != "datasets.embedded":
            raise
        return Path(name_or_path)
    if str(name_or_path) in embedded.available():
        return Path(embedded.path(str(name_or_path)))
    return Path(name_or_path)


def _as_list(paths: str | PathLike | list | tuple | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    return [resolve_path(p) for p in paths]


def _atomic_number(element: int | str) -> int:
    """An element given as atomic number (or its string, as JSON keys are) or chemical symbol."""
    try:
        z = SYMBOL_TO_Z[element] if isinstance(element, str) and element in SYMBOL_TO_Z else int(element)
    except (TypeError, ValueError):
        raise ValueError(f"unknown element {element!r}: give an atomic number or a chemical symbol") from None
    if not 0 < z < len(chemical_symbols):
        raise ValueError(f"unknown element {element!r}: atomic numbers run from 1 to {len(chemical_symbols) - 1}")
    return z


def _split_off_isolated(configs: list[Configuration]) -> tuple[list[Configuration], list[Configuration]]:
    isolated = [c for c in configs if c.is_isolated_atom]
    return [c for c in configs if not c.is_isolated_atom], isolated


def _atomic_energies(choice, isolated: list[Configuration], train: list[Configuration], elements: list[int],
                     keys: dict) -> tuple[dict[int, float], str]:
    """E0 per element and a description of where they came from."""
    if isinstance(choice, dict):
        given = {_atomic_number(z): float(e) for z, e in choice.items()}
        if not all(np.isfinite(list(given.values()))):
            raise ValueError(f"atomic_energies holds a non-finite energy: {choice}")
        return given, "given"
    if not isinstance(choice, (str, PathLike)):
        raise ValueError(f"atomic_energies must be one of {E0_CHOICES}, a dict {{Z: eV}} or a path, got {choice!r}")
    if choice == "auto":
        choice = "isolated" if isolated else "least_squares"
    if choice == "isolated":
        if not isolated:
            raise DatasetError("atomic_energies='isolated' but the training files hold no isolated-atom frame "
                               "(one atom, config_type IsolatedAtom or isolated_atom)")
        return isolated_atom_energies(isolated), "isolated-atom frames of the training files"
    if choice == "least_squares":
        return least_squares_atomic_energies(train, elements), "least squares on the training frames"
    path = resolve_path(choice)
    if not path.exists() and not str(choice).endswith((".xyz", ".extxyz")):
        raise ValueError(f"atomic_energies={choice!r} is neither one of {E0_CHOICES}, nor an existing file")
    e0_frames = read_extxyz(path, energy_key=keys["energy_key"], forces_key=None, stress_key=None, virials_key=None,
                            required=(schema.ENERGY,))
    return isolated_atom_energies(e0_frames), str(path.resolve())


def build_atomistic_data(
    path: str | None = None,
    train_path: str | list[str] | None = None,
    valid_path: str | list[str] | None = None,
    test_path: str | list[str] | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 123,
    r_max: float = 5.0,
    energy_key: str = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    virials_key: str | None = "virials",
    atomic_energies: str | dict = "auto",
    elements: list[int] | None = None,
    max_frames: int | None = None,
    dtype: str = "float32",
) -> AtomisticData:
    """Read, check, split and graph an atomistic dataset; compute the statistics its model needs.

    path: one extxyz file, or the name of an embedded dataset (``datasets.embedded.available()``).
    train_path: instead of ``path``, a file or list of files of training frames.
    valid_path, test_path: file(s) of validation / test frames; when absent, that part is drawn
        from the training frames by ``valid_fraction`` / ``test_fraction`` (0 for none) with ``seed``.
    r_max: neighbour cutoff, Å.
    energy_key, forces_key, stress_key, virials_key: keys of the labels in the files (None: not read;
        the energy is always read).
    atomic_energies: E0s. "auto" (isolated-atom frames of the training files if any, else least
        squares), "isolated", "least_squares", ``{Z or symbol: eV}``, or the path of an extxyz of
        one-atom frames (read with ``energy_key``).
    elements: atomic numbers of the model; default: every element of the training files (isolated
        atoms included). A frame with another element is an error.
    max_frames: keep at most this many training frames (a seeded random subset, after the split).
    dtype: "float32" or "float64" (or that torch.dtype), of every float tensor of the graphs.

    Relative paths are relative to the current directory. Raises ``DatasetError`` for bad data and
    ``ValueError`` for bad arguments.
    """
    torch_dtype = dtype if dtype in DTYPES.values() else DTYPES.get(dtype)
    if torch_dtype is None:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if not r_max > 0:
        raise ValueError(f"r_max must be positive, got {r_max}")
    if (path is None) == (train_path is None):
        raise ValueError("give the training data as exactly one of `path` (a file or embedded dataset name) or "
                         f"`train_path` (a file or list of files); got path={path!r}, train_path={train_path!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1 (or None for all), got {max_frames}")
    if not energy_key:
        raise ValueError("energy_key is required: a potential is fitted to energies")
    keys = dict(energy_key=energy_key, forces_key=forces_key, stress_key=stress_key, virials_key=virials_key)
    required = (schema.ENERGY, schema.FORCES) if forces_key else (schema.ENERGY,)
    model_elements = None if elements is None else sorted(set(_atomic_number(z) for z in elements))

    def read(paths: list[Path]) -> tuple[list[Configuration], list[Configuration]]:
        frames, isolated = _split_off_isolated([c for p in paths for c in read_extxyz(p, **keys)])
        if model_elements is not None:  # isolated atoms of other elements are harmless references
            for config in frames:
                check_elements(config, model_elements, why="the given elements")
        return frames, isolated

    train_files = _as_list(path if path is not None else train_path)
    valid_files, test_files = _as_list(valid_path), _as_list(test_path)
    frames, isolated = read(train_files)
    if not frames:
        raise DatasetError(f"the training files {[str(p) for p in train_files]} hold only isolated-atom frames")
    valid_frames, _ = read(valid_files)
    test_frames, _ = read(test_files)

    split = random_split(len(frames), 0.0 if valid_files else valid_fraction, 0.0 if test_files else test_fraction,
                         seed)
    train = [frames[i] for i in split.train]
    valid = valid_frames if valid_files else [frames[i] for i in split.valid]
    test = test_frames if test_files else [frames[i] for i in split.test]
    num_train_before_cap = len(train)
    if max_frames is not None and max_frames < len(train):
        keep = np.sort(np.random.default_rng(seed).choice(len(train), size=max_frames, replace=False))
        train = [train[i] for i in keep]

    for config in frames + valid_frames:  # every frame of a training file, whichever part the seed puts it in
        check_required(config, required)
    for config in test_frames:
        check_required(config, (schema.ENERGY,))

    if model_elements is None:
        model_elements = sorted(set(np.concatenate([c.atomic_numbers for c in frames + isolated]).tolist()))
        for config in valid + test:
            check_elements(config, model_elements, why="the elements of the training files")

    e0, e0_source = _atomic_energies(atomic_energies, isolated, train, model_elements, keys)
    missing = [z for z in model_elements if z not in e0]
    if missing:
        for config in train + valid + test:  # name a frame that holds the element, where there is one
            check_elements(config, e0, why=f"the elements with an E0 (from {e0_source})")
        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in missing)
        raise DatasetError(f"no atomic energy E0 for element {names} (E0s from {e0_source} cover "
                           f"{[chemical_symbols[z] for z in sorted(e0)]})")
    e0 = {z: e0[z] for z in model_elements}

    dtype_name = str(torch_dtype).removeprefix("torch.")
    graphs = {name: [to_graph(c, r_max, torch_dtype) for c in configs]
              for name, configs in (("train", train), ("valid", valid), ("test", test))}
    mean_energy, std_energy = interaction_energy_per_atom(train, e0)
    sources = dict(
        train=[str(p.resolve()) for p in train_files],
        valid=[str(p.resolve()) for p in valid_files] or f"split from train (valid_fraction={valid_fraction})",
        test=[str(p.resolve()) for p in test_files] or f"split from train (test_fraction={test_fraction})",
        seed=seed, valid_fraction=None if valid_files else valid_fraction,
        test_fraction=None if test_files else test_fraction,
        num_frames=dict(train=len(train), valid=len(valid), test=len(test), isolated_atoms=len(isolated)),
        max_frames=max_frames, num_train_before_cap=num_train_before_cap,
        atomic_energies=e0_source, keys=keys, r_max=r_max, dtype=dtype_name,
    )
    return AtomisticData(
        train=graphs["train"], valid=graphs["valid"], test=graphs["test"], elements=model_elements,
        atomic_energies=e0, avg_num_neighbors=average_num_neighbors(graphs["train"]),
        mean_energy_per_atom=mean_energy, std_energy_per_atom=std_energy, rms_forces=rms_forces(train),
        sources=sources,
    )
