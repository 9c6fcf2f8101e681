"""The small datasets shipped inside the package (``datasets/data/``), found by name from any directory.

``organics_gfn2``: Langevin MD of ethanol, acetic acid, acetamide and ethylamine at 300 K and 600 K,
GFN2-xTB energies and forces, open boundaries, plus one ``IsolatedAtom`` frame per element (H, C, N, O).
``metals_emt``: strained, rattled and MD-sampled periodic Cu and Cu-Au cells (4-32 atoms), EMT
energies, forces and stress.

Both are extended XYZ with the labels under ``energy``, ``forces`` (and ``stress``) and a
``config_type`` per frame. They were made by ``datasets.generators`` (``xtb_md`` and ``emt_md``);
``datasets/data/README.md`` records the commands, versions and checksums. Units: Å, eV, eV/Å, eV/Å³.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ase.data import atomic_numbers

_DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class _Embedded:
    filename: str
    content: str  # what the frames are
    theory: str  # how they are labelled
    generator: str  # the command that made the file


_EMBEDDED = {
    "organics_gfn2": _Embedded(
        "organics_gfn2.xyz",
        "Langevin MD of CH3CH2OH, CH3COOH, CH3CONH2, CH3CH2NH2 at 300/600 K + IsolatedAtom frames, open boundaries",
        "GFN2-xTB (tblite) energies and forces",
        "python -m datasets.generators.xtb_md --out datasets/data/organics_gfn2.xyz --seed 0",
    ),
    "metals_emt": _Embedded(
        "metals_emt.xyz",
        "strained, rattled and Langevin-MD (300-1200 K) periodic fcc Cu, Cu3Au and random Cu-Au cells of 4-32 atoms",
        "ASE EMT energies, forces and stress",
        "python -m datasets.generators.emt_md --out datasets/data/metals_emt.xyz --seed 0",
    ),
}


def available() -> list[str]:
    """Names of the embedded datasets, e.g. ``["organics_gfn2", "metals_emt"]``."""
    return list(_EMBEDDED)


def _entry(name: str) -> _Embedded:
    if name not in _EMBEDDED:
        raise ValueError(f"unknown embedded dataset {name!r}; available: {', '.join(available())}")
    return _EMBEDDED[name]


def path(name: str) -> str:
    """Absolute path of the shipped extxyz file of dataset ``name`` (ValueError for an unknown name)."""
    file = _DATA / _entry(name).filename
    if not file.is_file():
        raise FileNotFoundError(f"embedded dataset {name!r}: {file} is missing from this installation; "
                                f"regenerate it with `{_entry(name).generator}`")
    return str(file)


def _frames_and_elements(file: str) -> tuple[int, list[str]]:
    """Frame count and elements (by atomic number) of an extxyz file, from its layout alone.

    An extxyz frame is an atom count line, a comment line, then one line per atom that starts with
    the species.
    """
    with open(file) as handle:
        lines = handle.read().splitlines()
    frames, symbols, line = 0, set(), 0
    while line < len(lines) and lines[line].strip():
        num_atoms = int(lines[line])
        symbols.update(row.split(maxsplit=1)[0] for row in lines[line + 2:line + 2 + num_atoms])
        frames += 1
        line += num_atoms + 2
    return frames, sorted(symbols, key=atomic_numbers.get)


def describe(name: str) -> str:
    """One line: the frames (counted in the file), their elements, and the level of theory."""
    entry = _entry(name)
    frames, elements = _frames_and_elements(path(name))
    return f"{name}: {frames} frames of {entry.content}; elements {' '.join(elements)}; {entry.theory}"
