"""Generators of equizoo's embedded atomistic datasets (the small files shipped in ``datasets/data/``).

Each generator is a command that runs molecular dynamics with a cheap but real electronic-structure
or interatomic model, labels decorrelated snapshots with energies and forces (and stress for
periodic cells), and writes extended XYZ that ``ase.io.read`` parses:

- ``python -m datasets.generators.xtb_md --out datasets/data/organics_gfn2.xyz --seed 0``:
  small organic molecules (H, C, N, O), GFN2-xTB through tblite (``pip install equizoo[generate]``).
- ``python -m datasets.generators.emt_md --out datasets/data/metals_emt.xyz --seed 0``:
  periodic Cu and Cu-Au cells, ASE's effective-medium theory.

How the shipped files were made (commands, versions, wall times, checksums) is recorded in
``datasets/data/README.md``. Nothing here runs at import time, and tblite is imported only when the
xTB generator labels a frame, so the rest of the package never needs it.
"""
