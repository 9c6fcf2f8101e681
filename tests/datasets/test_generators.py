"""The dataset generators run end to end, write files that read back, label them correctly, and repeat for a seed."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import molecule

from datasets import schema
from datasets.errors import DatasetError
from datasets.generators import emt_md, xtb_md
from datasets.generators.frames import labelled_frame, write_frames

# Labels in a file against a fresh calculation on the positions read back. extxyz prints positions
# and forces to 1e-8 (Å, eV/Å); rounding the positions moves a GFN2-xTB energy by ~1e-7 eV and its
# forces by ~1e-6 eV/Å (measured on the shipped file: 4e-8 eV and 9e-7 eV/Å at most). SCF
# convergence of a fresh single point adds less than that.
RECOMPUTED = {
    schema.ENERGY: dict(rtol=0, atol=1e-6),  # eV
    schema.FORCES: dict(rtol=0, atol=1e-5),  # eV/Å
    schema.STRESS: dict(rtol=0, atol=1e-7),  # eV/Å³
}

ROOT = Path(__file__).resolve().parents[2]

TINY_XTB = dict(molecules=["CH3CH2OH"], temperatures_K=[300.0], frames_per_molecule=2, equilibration_steps=4,
                sample_every=3, progress=False)
TINY_EMT = dict(systems=["Cu3Au_L12_4", "Cu_fcc_primitive_8"], trajectories=1, frames_per_trajectory=2,
                equilibration_steps=3, sample_every=2, progress=False)


def _labels(atoms: ase.Atoms) -> dict:
    return {key: value for key, value in atoms.calc.results.items()
            if key in (schema.ENERGY, schema.FORCES, schema.STRESS)}


def assert_labels_recomputed(frames: list[ase.Atoms], single_point) -> None:
    """Every frame's labels equal ``single_point`` evaluated on the frame's positions."""
    for index, atoms in enumerate(frames):
        fresh = single_point(atoms)
        stored = _labels(atoms)
        assert stored.keys() == fresh.keys(), f"frame {index}"
        for key, value in stored.items():
            np.testing.assert_allclose(value, fresh[key], **RECOMPUTED[key], err_msg=f"frame {index}, {key}")


def assert_same_frames(first: list[ase.Atoms], second: list[ase.Atoms]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        assert a.info == b.info
        for key, value in _labels(a).items():
            np.testing.assert_array_equal(value, _labels(b)[key])


# --- GFN2-xTB organics ------------------------------------------------------------------------------------------------

needs_tblite = pytest.mark.skipif(find_spec("tblite") is None,
                                  reason="the GFN2-xTB generator needs tblite (pip install 'equizoo[generate]')")


@needs_tblite
def test_xtb_command_writes_frames_that_read_back_with_their_labels(tmp_path):
    out = tmp_path / "organics.xyz"
    xtb_md.main(["--out", str(out), "--molecules", "CH3CH2OH", "CH3CONH2", "--temperatures", "300", "600",
                 "--frames-per-molecule", "2", "--equilibration-steps", "4", "--sample-every", "3", "--no-progress"])
    frames = ase.io.read(out, index=":")

    isolated = [atoms for atoms in frames if atoms.info["config_type"] == xtb_md.ISOLATED_ATOM]
    assert [atoms.get_chemical_symbols() for atoms in isolated] == [["H"], ["C"], ["N"], ["O"]]
    for atoms in isolated:
        np.testing.assert_array_equal(atoms.get_forces(), np.zeros((1, 3)))

    md = [atoms for atoms in frames if atoms.info["config_type"] != xtb_md.ISOLATED_ATOM]
    assert [(atoms.info["molecule"], atoms.info["config_type"]) for atoms in md] == [
        ("CH3CH2OH", "md_300K"), ("CH3CH2OH", "md_600K"), ("CH3CONH2", "md_300K"), ("CH3CONH2", "md_600K")]
    for atoms in frames:
        assert not atoms.pbc.any()
        assert set(_labels(atoms)) == {schema.ENERGY, schema.FORCES}
        assert atoms.get_forces().shape == (len(atoms), 3)
    # MD moved the atoms away from the G2 geometry, so the frames are not the starting structure
    assert not np.allclose(md[0].positions, molecule("CH3CH2OH").positions, atol=1e-3)
    assert_labels_recomputed(frames, lambda atoms: xtb_md.single_point(
        atoms, 1 + int(atoms.numbers[0]) % 2 if len(atoms) == 1 else None))


@needs_tblite
def test_xtb_command_is_reproducible_bit_for_bit(tmp_path):
    """The command pins tblite to one OpenMP thread, so the same seed writes the same bytes."""
    arguments = ["--molecules", "CH3COOH", "--temperatures", "600", "--frames-per-molecule", "2",
                 "--equilibration-steps", "4", "--sample-every", "3", "--no-progress", "--no-isolated-atoms"]
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    outputs = []
    for run, seed in enumerate(("7", "7", "8")):
        out = tmp_path / f"run{run}.xyz"
        subprocess.run([sys.executable, "-m", "datasets.generators.xtb_md", "--out", str(out), "--seed", seed,
                        *arguments], cwd=ROOT, env=environment, check=True, capture_output=True, timeout=300)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


@needs_tblite
def test_xtb_seed_sets_the_trajectory():
    """In process, tblite's parallel sums may differ in the last bit, so frames agree to round-off."""
    first, again, other = (xtb_md.generate(seed=seed, **TINY_XTB) for seed in (3, 3, 4))
    for a, b in zip(first, again):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), **RECOMPUTED[schema.FORCES])
    assert not np.allclose(first[-1].positions, other[-1].positions, atol=1e-3)


def test_xtb_rejects_an_unknown_molecule():
    with pytest.raises(ValueError, match="unknown molecule 'C60H'"):
        xtb_md.generate(molecules=["C60H"], frames_per_molecule=1, progress=False)


# --- EMT metals -------------------------------------------------------------------------------------------------------

def test_emt_command_writes_periodic_frames_with_energy_forces_and_stress(tmp_path):
    out = tmp_path / "metals.xyz"
    emt_md.main(["--out", str(out), "--systems", "Cu3Au_L12_4", "Cu_fcc_primitive_8", "--trajectories", "2",
                 "--frames-per-trajectory", "2", "--equilibration-steps", "3", "--sample-every", "2", "--no-progress"])
    frames = ase.io.read(out, index=":")

    assert len(frames) == 2 * 2 * 2
    assert [atoms.info["config_type"] for atoms in frames[:4]] == ["strained_rattled", "md_300K",
                                                                   "strained_rattled", "md_600K"]
    assert {atoms.info["system"] for atoms in frames} == {"Cu3Au_L12_4", "Cu_fcc_primitive_8"}
    for atoms in frames:
        assert atoms.pbc.all()
        assert set(_labels(atoms)) == {schema.ENERGY, schema.FORCES, schema.STRESS}
    assert sorted(frames[0].get_chemical_symbols()) == ["Au", "Cu", "Cu", "Cu"]
    assert frames[0].cell.lengths().max() < 5.0  # several images of each neighbour within a usual cutoff
    assert_labels_recomputed(frames, emt_md.single_point)


def test_emt_strain_and_rattle_move_away_from_the_ideal_crystal():
    frames = emt_md.generate(seed=0, **TINY_EMT)
    static = frames[0]
    ideal = emt_md.at_equilibrium_volume(emt_md.SYSTEMS["Cu3Au_L12_4"].build(np.random.default_rng(0)))
    assert not np.allclose(static.cell.array, ideal.cell.array, atol=1e-3)
    # a perfect fcc cell has no forces and isotropic stress; the strained, rattled one has both
    assert np.abs(static.get_forces()).max() > 0.05
    assert np.ptp(static.get_stress()[:3]) > 1e-4


def test_emt_equilibrium_volume_minimises_the_energy():
    atoms = emt_md.at_equilibrium_volume(emt_md.SYSTEMS["Cu_fcc_32"].build(np.random.default_rng(0)))
    energies = []
    for scale in (0.995, 1.0, 1.005):
        trial = atoms.copy()
        trial.set_cell(atoms.cell * scale, scale_atoms=True)
        energies.append(emt_md.single_point(trial)[schema.ENERGY])
    assert energies[1] < energies[0] and energies[1] < energies[2]
    # zero pressure at the minimum
    np.testing.assert_allclose(emt_md.single_point(atoms)[schema.STRESS][:3], 0.0, atol=1e-5)


def test_emt_is_deterministic_for_a_seed():
    first = emt_md.generate(seed=5, **TINY_EMT)
    assert_same_frames(first, emt_md.generate(seed=5, **TINY_EMT))
    other = emt_md.generate(seed=6, **TINY_EMT)
    assert not np.allclose(first[0].positions, other[0].positions)


def test_emt_rejects_an_unknown_system():
    with pytest.raises(ValueError, match="unknown systems \\['Fe_bcc'\\]; available: Cu_fcc_32"):
        emt_md.generate(systems=["Fe_bcc"], progress=False)


# --- writing ----------------------------------------------------------------------------------------------------------

def _copper(forces: np.ndarray) -> ase.Atoms:
    atoms = ase.Atoms("Cu", cell=np.eye(3) * 3.0, pbc=True)
    return labelled_frame(atoms, {schema.ENERGY: -1.0, schema.FORCES: forces}, config_type="test")


def test_write_frames_refuses_labels_that_are_not_finite(tmp_path):
    with pytest.raises(DatasetError, match=r"bad\.xyz, frame 1, key 'forces': is not finite"):
        write_frames(tmp_path / "bad.xyz", [_copper(np.zeros((1, 3))), _copper(np.full((1, 3), np.nan))])


def test_write_frames_names_the_frame_and_key_that_do_not_survive_a_round_trip(tmp_path, monkeypatch):
    frames = [_copper(np.zeros((1, 3))), _copper(np.ones((1, 3)))]
    write_frames(tmp_path / "good.xyz", frames)  # round-trips: no error
    read = ase.io.read

    def corrupted(*args, **kwargs):  # a reader that loses precision in frame 1's forces
        back = read(*args, **kwargs)
        back[1].calc.results[schema.FORCES] = back[1].calc.results[schema.FORCES] + 1e-6
        return back

    monkeypatch.setattr(ase.io, "read", corrupted)
    with pytest.raises(DatasetError, match=r"lossy\.xyz, frame 1, key 'forces': differs from the value written"):
        write_frames(tmp_path / "lossy.xyz", frames)
