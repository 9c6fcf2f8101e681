"""The shipped datasets are found by name from anywhere, parse with ASE, hold what they claim, and match their record."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from fnmatch import fnmatch
from importlib.util import find_spec
from pathlib import Path

import ase.io
import numpy as np
import pytest

from datasets import embedded, schema
from datasets.generators import emt_md, xtb_md
from tests.datasets.test_generators import assert_labels_recomputed

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "data"

EXPECTED_FRAMES = {"organics_gfn2": 4 + 4 * 250, "metals_emt": 200}
MAX_BYTES = {"organics_gfn2": 2_000_000, "metals_emt": 1_000_000}


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[ase.Atoms]]:
    return {name: ase.io.read(embedded.path(name), index=":", format="extxyz") for name in embedded.available()}


def test_available_names():
    assert embedded.available() == ["organics_gfn2", "metals_emt"]


def test_path_is_absolute_inside_the_package_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in embedded.available():
        file = Path(embedded.path(name))
        assert file.is_absolute() and file.is_file()
        assert file.parent == DATA


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown embedded dataset 'qm9'; available: organics_gfn2, metals_emt"):
        embedded.path("qm9")
    with pytest.raises(ValueError, match="available: organics_gfn2, metals_emt"):
        embedded.describe("qm9")


def test_describe_counts_frames_and_elements():
    assert embedded.describe("organics_gfn2").startswith("organics_gfn2: 1004 frames of ")
    assert "elements H C N O; GFN2-xTB" in embedded.describe("organics_gfn2")
    assert embedded.describe("metals_emt").startswith("metals_emt: 200 frames of ")
    assert "elements Cu Au; ASE EMT" in embedded.describe("metals_emt")


def test_shipped_files_have_the_expected_frames_and_labels(shipped):
    for name, frames in shipped.items():
        assert len(frames) == EXPECTED_FRAMES[name], name
        assert Path(embedded.path(name)).stat().st_size < MAX_BYTES[name], name
        for index, atoms in enumerate(frames):
            results = atoms.calc.results
            assert np.isfinite(results[schema.ENERGY]), (name, index)
            assert results[schema.FORCES].shape == (len(atoms), 3), (name, index)
            assert "config_type" in atoms.info, (name, index)


def test_organics_are_open_molecules_at_two_temperatures_with_isolated_atoms(shipped):
    frames = shipped["organics_gfn2"]
    assert all(not atoms.pbc.any() for atoms in frames)
    assert all(set(atoms.calc.results) == {schema.ENERGY, schema.FORCES} for atoms in frames)

    isolated = [atoms for atoms in frames if atoms.info["config_type"] == xtb_md.ISOLATED_ATOM]
    assert [atoms.get_chemical_symbols() for atoms in isolated] == [["H"], ["C"], ["N"], ["O"]]
    assert all(not atoms.get_forces().any() for atoms in isolated)

    md = Counter((atoms.info["molecule"], atoms.info["config_type"]) for atoms in frames if len(atoms) > 1)
    assert md == {(name, kind): 125 for name in xtb_md.DEFAULT_MOLECULES for kind in ("md_300K", "md_600K")}
    for atoms in frames:  # 6-12 atoms per molecule
        assert len(atoms) == 1 or 6 <= len(atoms) <= 12


def test_metals_are_periodic_with_stress_and_a_cell_shorter_than_five_angstrom(shipped):
    frames = shipped["metals_emt"]
    assert all(atoms.pbc.all() for atoms in frames)
    assert all(set(atoms.calc.results) == {schema.ENERGY, schema.FORCES, schema.STRESS} for atoms in frames)
    assert {atoms.info["system"] for atoms in frames} == set(emt_md.SYSTEMS)
    assert {symbol for atoms in frames for symbol in atoms.get_chemical_symbols()} == {"Cu", "Au"}
    assert min(atoms.cell.lengths().min() for atoms in frames) < 5.0
    assert {atoms.info["config_type"] for atoms in frames} == {
        emt_md.STATIC, *(f"md_{temperature:g}K" for temperature in emt_md.DEFAULT_TEMPERATURES_K)}


def test_metals_labels_are_emt_of_the_positions(shipped):
    assert_labels_recomputed(shipped["metals_emt"][::7], emt_md.single_point)


@pytest.mark.skipif(find_spec("tblite") is None, reason="recomputing GFN2-xTB labels needs tblite")
def test_organics_labels_are_gfn2_xtb_of_the_positions(shipped):
    frames = shipped["organics_gfn2"]
    isolated, md = frames[:4], frames[4::100]
    assert_labels_recomputed(isolated, lambda atoms: xtb_md.single_point(atoms, 1 + int(atoms.numbers[0]) % 2))
    assert_labels_recomputed(md, xtb_md.single_point)


def test_generation_record_matches_the_shipped_files():
    """datasets/data/README.md holds the sha256 of every shipped file (``sha256sum -c`` format)."""
    record = (DATA / "README.md").read_text()
    for name in embedded.available():
        file = Path(embedded.path(name))
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        assert re.search(rf"^{digest}  {re.escape(file.name)}$", record, flags=re.MULTILINE), \
            f"{file.name}: sha256 {digest} is not the one recorded in datasets/data/README.md; regenerate the record"


def test_shipped_files_are_package_data():
    """pyproject.toml ships datasets/data/*.xyz and the record with the package."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["datasets"]
    for file in [*(Path(embedded.path(name)) for name in embedded.available()), DATA / "README.md"]:
        assert any(fnmatch(f"data/{file.name}", pattern) for pattern in patterns), file.name
