"""The extended-XYZ reader: label keys in info, arrays or calculator results; shapes; metadata; bad files."""

from pathlib import Path

import ase
import ase.build
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from datasets import schema
from datasets.errors import DatasetError
from datasets.extxyz import configuration_from_atoms, read_extxyz, voigt_to_matrix

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

HEADER = 'Lattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties=species:S:1:pos:R:3{props} {info} pbc="T T T"'


def _write(path: Path, frames: list[tuple[str, str, list[str]]]) -> Path:
    """frames: (extra Properties columns, info text, atom lines)."""
    lines = []
    for props, info, atoms in frames:
        lines += [str(len(atoms)), HEADER.format(props=props, info=info), *atoms]
    path.write_text("\n".join(lines) + "\n")
    return path


CU2 = ["Cu 0.0 0.0 0.0", "Cu 1.8 1.8 0.0"]
CU2_FORCES = ["Cu 0.0 0.0 0.0 0.1 0.2 0.3", "Cu 1.8 1.8 0.0 -0.1 -0.2 -0.3"]


def test_standard_keys_land_in_the_calculator_and_are_read(tmp_path):
    path = _write(tmp_path / "a.xyz", [(":forces:R:3", 'energy=-1.5 stress="1 2 3 2 5 6 3 6 9"', CU2_FORCES)])
    atoms = ase.io.read(path)
    assert "energy" not in atoms.info and "energy" in atoms.calc.results  # the ASE >= 3.23 behaviour handled here
    (config,) = read_extxyz(path)
    assert config.energy == -1.5
    np.testing.assert_array_equal(config.forces, [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    np.testing.assert_array_equal(config.stress, [[1, 2, 3], [2, 5, 6], [3, 6, 9]])
    assert config.virials is None
    assert config.label_weights == {schema.ENERGY: 1.0, schema.FORCES: 1.0, schema.STRESS: 1.0, schema.VIRIALS: 0.0}
    assert config.weight == 1.0 and config.config_type == "Default"
    assert (config.source, config.index) == (str(path), 0)
    np.testing.assert_array_equal(config.cell, np.eye(3) * 3.6)
    assert config.pbc.tolist() == [True] * 3


def test_custom_keys_in_info_and_arrays(tmp_path):
    info = 'REF_energy=-2.0 REF_stress="1 2 3 4 5 6" REF_virials="1 2 3 4 5 6 7 8 9"'
    path = _write(tmp_path / "a.xyz", [(":REF_forces:R:3", info, CU2_FORCES)])
    (config,) = read_extxyz(path, energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress",
                            virials_key="REF_virials")
    assert config.energy == -2.0
    np.testing.assert_array_equal(config.forces[1], [-0.1, -0.2, -0.3])
    # Voigt (xx yy zz yz xz xy) -> 3x3; nine numbers row-major
    np.testing.assert_array_equal(config.stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])
    np.testing.assert_array_equal(config.virials, np.arange(1, 10).reshape(3, 3))
    assert config.keys[schema.ENERGY] == "REF_energy"
    # with the default keys nothing is found: labels missing, weights 0
    (plain,) = read_extxyz(path)
    assert plain.energy is None and plain.forces is None and plain.stress is None
    assert set(plain.label_weights.values()) == {0.0}


def test_voigt_order_matches_ase():
    from ase.stress import voigt_6_to_full_3x3_stress

    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(voigt_to_matrix(voigt), voigt_6_to_full_3x3_stress(voigt))


def test_weights_and_config_type(tmp_path):
    info = "energy=-1.0 config_weight=2.5 config_type=bulk config_forces_weight=0.5"
    path = _write(tmp_path / "a.xyz", [(":forces:R:3", info, CU2_FORCES)])
    (config,) = read_extxyz(path)
    assert config.weight == 2.5 and config.config_type == "bulk"
    assert config.label_weights[schema.ENERGY] == 1.0 and config.label_weights[schema.FORCES] == 0.5
    assert config.label_weights[schema.STRESS] == 0.0


def test_round_trip_of_a_file_written_by_ase(tmp_path):
    """Calculator results written by ase.io.write (as the generators do) read back unchanged."""
    from ase.calculators.emt import EMT

    frames = []
    for seed in range(3):
        atoms = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    path = tmp_path / "emt.xyz"
    ase.io.write(path, frames, format="extxyz")
    configs = read_extxyz(path, required=(schema.ENERGY, schema.FORCES, schema.STRESS))
    for atoms, config in zip(frames, configs):
        np.testing.assert_allclose(config.energy, atoms.get_potential_energy(), rtol=1e-12)
        # ASE prints per-atom columns with 8 decimals
        np.testing.assert_allclose(config.forces, atoms.get_forces(), rtol=0, atol=5e-9)
        np.testing.assert_allclose(config.stress, atoms.get_stress(voigt=False), rtol=1e-10, atol=1e-12)


def test_configuration_from_atoms_with_calculator():
    atoms = ase.build.molecule("H2O")
    atoms.calc = SinglePointCalculator(atoms, energy=-3.0, forces=np.ones((3, 3)))
    config = configuration_from_atoms(atoms)
    assert config.energy == -3.0 and config.forces.shape == (3, 3) and config.num_atoms == 3
    assert config.where == dict(file=None, frame=None)


@pytest.mark.skipif(not (SHARED_DATA / "acac").is_dir(), reason="the shared benchmark data is not beside this checkout")
def test_acac_values_equal_the_numbers_in_the_file():
    """Energies and forces of every frame equal the decimal numbers written in the file."""
    path = SHARED_DATA / "acac" / "train_300K.xyz"
    lines = path.read_text().splitlines()
    energies, forces, row = [], [], 0
    while row < len(lines):
        n = int(lines[row])
        comment = lines[row + 1]
        energies.append(float(comment.split("energy=")[1].split()[0]))
        forces.append([[float(v) for v in line.split()[4:7]] for line in lines[row + 2:row + 2 + n]])
        row += n + 2
    configs = read_extxyz(path, required=(schema.ENERGY, schema.FORCES))
    assert len(configs) == len(energies) == 500
    np.testing.assert_array_equal([c.energy for c in configs], energies)
    np.testing.assert_array_equal(np.stack([c.forces for c in configs]), np.array(forces))
    assert configs[0].energy == -9391.45554428476
    np.testing.assert_array_equal(configs[0].forces[0], [1.47339228, 1.13796366, 0.06391102])
    assert configs[0].config_type == "300K_MD" and not configs[0].pbc.any()


# --- bad input: each names the file, the frame and the key -------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file") as info:
        read_extxyz(tmp_path / "nothing.xyz")
    assert info.value.file == str(tmp_path / "nothing.xyz") and info.value.frame is None


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DatasetError, match="is not a file"):
        read_extxyz(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(DatasetError, match="no frames"):
        read_extxyz(tmp_path / "empty.xyz")


def test_binary_file_is_unreadable(tmp_path):
    path = tmp_path / "model.xyz"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="cannot be parsed as extended XYZ") as info:
        read_extxyz(path)
    assert info.value.frame == 0


def test_unparsable_frame_names_its_index(tmp_path):
    path = _write(tmp_path / "a.xyz", [(":forces:R:3", "energy=-1.0", CU2_FORCES)] * 2)
    path.write_text(path.read_text() + "2\nbroken comment\nCu 0 0\n")
    with pytest.raises(DatasetError, match="cannot be parsed") as info:
        read_extxyz(path)
    assert info.value.frame == 2


def test_unknown_chemical_symbol_cannot_be_parsed(tmp_path):
    path = _write(tmp_path / "a.xyz", [("", "energy=-1.0", ["Cu 0 0 0", "Xq 1.8 1.8 0"])])
    with pytest.raises(DatasetError, match="frame 0") as info:
        read_extxyz(path)
    assert "Xq" in str(info.value)


def test_missing_required_energy_and_forces(tmp_path):
    path = _write(tmp_path / "a.xyz", [(":forces:R:3", "energy=-1.0", CU2_FORCES), ("", "energy=-1.0", CU2)])
    with pytest.raises(DatasetError, match="no forces") as info:
        read_extxyz(path, required=(schema.ENERGY, schema.FORCES))
    assert (info.value.frame, info.value.key) == (1, "forces")
    with pytest.raises(DatasetError, match="no energy") as info:
        read_extxyz(path, energy_key="REF_energy", required=(schema.ENERGY,))
    assert (info.value.frame, info.value.key) == (0, "REF_energy")
    assert "frame 0" in str(info.value) and "'REF_energy'" in str(info.value) and str(path) in str(info.value)


def test_forces_rows_must_match_atoms(tmp_path):
    path = _write(tmp_path / "a.xyz", [("", 'energy=-1.0 REF_forces="1 2 3 4 5 6 7 8 9"', CU2)])
    with pytest.raises(DatasetError, match="9 numbers .* 2 atoms") as info:
        read_extxyz(path, forces_key="REF_forces")
    assert info.value.key == "REF_forces"
    atoms = ase.build.molecule("H2O")
    atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((2, 3)))
    with pytest.raises(DatasetError, match="has 2 rows .* 3 atoms"):
        configuration_from_atoms(atoms)


def test_stress_of_wrong_size(tmp_path):
    path = _write(tmp_path / "a.xyz", [("", 'energy=-1.0 REF_stress="1 2 3 4"', CU2)])
    with pytest.raises(DatasetError, match="Voigt 6") as info:
        read_extxyz(path, stress_key="REF_stress")
    assert info.value.key == "REF_stress"


@pytest.mark.parametrize("props, info, atoms, key", [
    ("", "energy=-1.0", ["Cu nan 0.0 0.0", "Cu 1.8 1.8 0.0"], "pos"),
    ("", "energy=nan", CU2, "energy"),
    (":forces:R:3", "energy=-1.0", ["Cu 0.0 0.0 0.0 0.1 inf 0.3", "Cu 1.8 1.8 0.0 0.0 0.0 0.0"], "forces"),
    ("", 'energy=-1.0 stress="1 2 3 2 nan 6 3 6 9"', CU2, "stress"),
    ("", 'energy=-1.0 REF_virials="1 2 3 4 5 inf"', CU2, "REF_virials"),
    ("", "energy=-1.0 config_weight=nan", CU2, "config_weight"),
])
def test_non_finite_values(tmp_path, props, info, atoms, key):
    path = _write(tmp_path / "a.xyz", [(":forces:R:3", "energy=-1.0", CU2_FORCES), (props, info, atoms)])
    with pytest.raises(DatasetError, match="not finite") as error:
        read_extxyz(path, virials_key="REF_virials")
    assert (error.value.file, error.value.frame, error.value.key) == (str(path), 1, key)


def test_atoms_too_close(tmp_path):
    path = _write(tmp_path / "a.xyz", [("", "energy=-1.0", ["Cu 0 0 0", "Cu 1.8 1.8 0", "Cu 1.8 1.8 0.05"])])
    with pytest.raises(DatasetError, match=r"atoms 1 \(Cu\) and 2 \(Cu\) are 0.05 Å apart") as info:
        read_extxyz(path)
    assert info.value.frame == 0
    assert len(read_extxyz(path, min_distance=None)) == 1  # the check can be switched off


def test_atom_too_close_to_a_periodic_image(tmp_path):
    # 0.02 Å and 3.58 Å along x: 0.04 Å apart through the boundary
    path = _write(tmp_path / "a.xyz", [("", "energy=-1.0", ["Cu 0.02 0 0", "Cu 3.58 0 0"])])
    with pytest.raises(DatasetError, match="periodic image .* 0.04 Å apart"):
        read_extxyz(path)


def test_unknown_element(tmp_path):
    path = _write(tmp_path / "a.xyz", [("", "energy=-1.0", ["Cu 0 0 0", "Au 1.8 1.8 0"])])
    assert len(read_extxyz(path, elements=[29, 79])) == 1
    with pytest.raises(DatasetError, match=r"Au \(Z=79\) is not among") as info:
        read_extxyz(path, elements=[29])
    assert (info.value.frame, info.value.key) == (0, "species")
