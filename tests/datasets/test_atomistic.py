"""The data builder: public benchmark files, splits, E0s, statistics, periodic frames and bad input."""

import inspect
import sys
import types
from pathlib import Path

import ase
import ase.build
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from torch_geometric.loader import DataLoader

from datasets import schema
from datasets.atomistic import AtomisticData, build_atomistic_data
from datasets.errors import DatasetError
from datasets.extxyz import read_extxyz
from datasets.splits import random_split

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared benchmark data is not beside "
                                                                        "this checkout")


WATER_E0 = {"H": -13.6, "O": -2042.0}  # given where the test is not about E0s: water alone cannot determine them


def _emt_frames(count: int, seed: int = 0, elements=("Cu", "Au", "Ni")) -> list[ase.Atoms]:
    """Small periodic alloy cells (some shorter than 5 Å) labelled by EMT: energy, forces, stress."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        atoms = ase.build.bulk("Cu", "fcc", a=3.7) * ((2, 2, 2) if k % 2 else (2, 1, 1))
        atoms.symbols = rng.choice(elements, size=len(atoms))
        atoms.rattle(0.05, seed=seed * 1000 + k)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    return frames


def _write(path: Path, frames) -> str:
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def _water(tmp_path: Path, name: str, count: int, forces: bool = True, config_type: str = "md") -> str:
    """``count`` distorted water molecules (open boundaries, dummy 50 Å cell) with energies (and forces)."""
    lines = []
    rng = np.random.default_rng(len(name) + count)
    for k in range(count):
        positions = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + 0.05 * rng.normal(size=(3, 3))
        props = ":forces:R:3" if forces else ""
        lines += ["3", f'Lattice="50 0 0 0 50 0 0 0 50" Properties=species:S:1:pos:R:3{props} '
                       f'energy={-2080.0 + 0.1 * rng.normal()} config_type={config_type} pbc="F F F"']
        for z, p in zip("OHH", positions):
            f = " ".join(f"{v:.6f}" for v in rng.normal(size=3)) if forces else ""
            lines.append(f"{z} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {f}")
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return str(tmp_path / name)


def _iso(tmp_path: Path, energies: dict) -> str:
    frames = []
    for symbol, energy in energies.items():
        frames += ["1", f'Properties=species:S:1:pos:R:3 config_type=IsolatedAtom energy={energy} pbc="F F F"',
                   f"{symbol} 0 0 0"]
    (tmp_path / "iso.xyz").write_text("\n".join(frames) + "\n")
    return str(tmp_path / "iso.xyz")


# --- the public benchmark data -------------------------------------------------------------------

@needs_shared_data
def test_acac_with_isolated_atoms_in_the_training_files():
    acac = SHARED_DATA / "acac"
    data = build_atomistic_data(train_path=[str(acac / "train_300K.xyz"), str(acac / "isolated_atoms.xyz")])
    isolated = {int(c.atomic_numbers[0]): c.energy for c in read_extxyz(acac / "isolated_atoms.xyz")}
    assert data.elements == [1, 6, 8]
    assert data.atomic_energies == isolated  # exactly the isolated-atom energies
    assert data.atomic_energies[1] == -13.568422178253735
    # the isolated-atom frames are references, not training data: 500 molecules split 400/50/50
    assert (len(data.train), len(data.valid), len(data.test)) == (400, 50, 50)
    assert data.sources["num_frames"]["isolated_atoms"] == 3
    assert all(g.num_nodes == 15 for g in data.train + data.valid + data.test)
    assert data.sources["atomic_energies"] == "isolated-atom frames of the training files"

    # statistics against a direct computation on the training frames (the split is documented: random_split)
    frames = read_extxyz(acac / "train_300K.xyz")
    train = [frames[i] for i in random_split(500, valid_fraction=0.1, test_fraction=0.1, seed=123).train]
    np.testing.assert_array_equal([g[schema.ENERGY].item() for g in data.train],
                                  np.array([c.energy for c in train], dtype=np.float32))
    per_atom = [(c.energy - sum(isolated[int(z)] for z in c.atomic_numbers)) / 15 for c in train]
    assert data.mean_energy_per_atom == pytest.approx(np.mean(per_atom), rel=1e-12)
    assert data.std_energy_per_atom == pytest.approx(np.std(per_atom), rel=1e-9)
    assert data.rms_forces == pytest.approx(np.sqrt(np.mean(np.concatenate([c.forces for c in train]) ** 2)), rel=1e-12)
    assert data.avg_num_neighbors == pytest.approx(sum(g[schema.EDGE_INDEX].shape[1] for g in data.train) / 6000)
    assert 5 < data.avg_num_neighbors < 14  # a 15-atom molecule at r_max 5 Å


@needs_shared_data
def test_3bpa_with_isolated_atoms_given_as_a_file():
    bpa = SHARED_DATA / "3bpa"
    data = build_atomistic_data(path=str(bpa / "train_300K.xyz"), atomic_energies=str(bpa / "iso_atoms.xyz"),
                                valid_fraction=0.05, test_fraction=0.0, max_frames=40)
    # the values recorded in 3bpa/SOURCE.md
    assert data.atomic_energies == {1: -13.587222780835477, 6: -1029.4889999855063, 7: -1484.9814568572233,
                                    8: -2041.9816003861047}
    assert data.elements == [1, 6, 7, 8]
    assert (len(data.train), len(data.valid), len(data.test)) == (40, 25, 0)
    assert data.sources["num_train_before_cap"] == 475
    assert data.sources["atomic_energies"] == str((bpa / "iso_atoms.xyz").resolve())


# --- splits ---------------------------------------------------------------------------------------

def test_split_is_deterministic_for_a_seed(tmp_path):
    path = _water(tmp_path, "w.xyz", 30)

    def energies(data):
        return [[g[schema.ENERGY].item() for g in part] for part in (data.train, data.valid, data.test)]

    first = build_atomistic_data(path=path, seed=5, atomic_energies=WATER_E0)
    again = build_atomistic_data(path=path, seed=5, atomic_energies=WATER_E0)
    assert energies(first) == energies(again)
    assert energies(build_atomistic_data(path=path, seed=6, atomic_energies=WATER_E0)) != energies(first)
    assert [len(p) for p in energies(first)] == [24, 3, 3]
    assert first.sources["seed"] == 5


def test_given_validation_and_test_files(tmp_path):
    train = _water(tmp_path, "train.xyz", 10)
    valid = _water(tmp_path, "valid.xyz", 4)
    test = _water(tmp_path, "test.xyz", 3, forces=False)  # test sets may carry energies only
    data = build_atomistic_data(train_path=[train], valid_path=valid, test_path=[test], valid_fraction=0.5,
                                atomic_energies=WATER_E0)
    assert (len(data.train), len(data.valid), len(data.test)) == (10, 4, 3)  # fractions unused: nothing split off
    assert all(g[schema.FORCES_WEIGHT].item() == 0.0 for g in data.test)
    assert all(g[schema.ENERGY_WEIGHT].item() == 1.0 for g in data.test)
    assert data.sources["valid"] == [str(Path(valid).resolve())]

    without_forces = _water(tmp_path, "valid_no_forces.xyz", 4, forces=False)
    with pytest.raises(DatasetError, match="no forces") as info:
        build_atomistic_data(train_path=train, valid_path=without_forces, atomic_energies=WATER_E0)
    assert info.value.file == without_forces and info.value.frame == 0
    with pytest.raises(DatasetError, match="no forces"):
        build_atomistic_data(train_path=without_forces, atomic_energies=WATER_E0)
    energies_only = build_atomistic_data(train_path=without_forces, forces_key=None, atomic_energies=WATER_E0,
                                         valid_fraction=0.25, test_fraction=0.0)
    assert energies_only.rms_forces is None
    assert all(g[schema.FORCES_WEIGHT].item() == 0.0 for g in energies_only.train)


def test_max_frames_keeps_a_seeded_subset(tmp_path):
    path = _water(tmp_path, "w.xyz", 30)
    data = build_atomistic_data(path=path, max_frames=5, test_fraction=0.0, atomic_energies=WATER_E0)
    assert len(data.train) == 5 and len(data.valid) == 3
    again = build_atomistic_data(path=path, max_frames=5, test_fraction=0.0, atomic_energies=WATER_E0)
    assert [g[schema.ENERGY].item() for g in data.train] == [g[schema.ENERGY].item() for g in again.train]


def test_relative_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    _water(tmp_path, "w.xyz", 5)
    monkeypatch.chdir(tmp_path)
    data = build_atomistic_data(path="w.xyz", valid_fraction=0.2, test_fraction=0.0, atomic_energies=WATER_E0)
    assert data.sources["train"] == [str(tmp_path.resolve() / "w.xyz")]


def test_embedded_dataset_name(tmp_path, monkeypatch):
    path = _water(tmp_path, "embedded.xyz", 6)
    fake = types.ModuleType("datasets.embedded")
    fake.available = lambda: ["tiny_water"]
    fake.path = lambda name: path
    monkeypatch.setitem(sys.modules, "datasets.embedded", fake)
    data = build_atomistic_data(path="tiny_water", valid_fraction=0.2, test_fraction=0.0, atomic_energies=WATER_E0)
    assert data.sources["train"] == [str(Path(path).resolve())] and len(data.train) == 5


# --- E0s and elements -----------------------------------------------------------------------------

def test_periodic_alloy_with_least_squares_e0s(tmp_path):
    frames = _emt_frames(16)
    path = _write(tmp_path / "emt.xyz", frames)
    data = build_atomistic_data(path=path, atomic_energies="least_squares", valid_fraction=0.25, test_fraction=0.0,
                                dtype="float64")
    assert isinstance(data, AtomisticData)
    assert data.elements == [28, 29, 79]
    # the fit on the training frames leaves residuals of mean about zero
    assert abs(data.mean_energy_per_atom) < 0.05
    graph = data.train[0]
    assert graph[schema.POSITIONS].dtype == torch.float64
    assert graph[schema.STRESS_WEIGHT].item() == 1.0 and graph[schema.PBC].all()
    batch = next(iter(DataLoader(data.train, batch_size=4)))
    assert batch[schema.STRESS].shape == (4, 3, 3) and batch[schema.CELL].shape == (4, 3, 3)
    # images of the 2x1x1 cells (lattice vectors of 2.6 Å) are edges
    assert data.avg_num_neighbors > 40


def test_e0s_as_a_dict_by_number_or_symbol(tmp_path):
    path = _water(tmp_path, "w.xyz", 10)
    data = build_atomistic_data(path=path, atomic_energies={"H": -13.6, 8: -2042.0, "6": -1029.0})
    assert data.atomic_energies == {1: -13.6, 8: -2042.0}  # one per element of the model
    assert data.sources["atomic_energies"] == "given"
    expected = np.mean([(g[schema.ENERGY].double().item() - (2 * -13.6 - 2042.0)) / 3 for g in data.train])
    assert data.mean_energy_per_atom == pytest.approx(expected, abs=1e-4)  # float32 graphs vs float64 frames


def test_isolated_atoms_auto_and_isolated(tmp_path):
    train = _water(tmp_path, "w.xyz", 10)
    iso = _iso(tmp_path, {"H": -13.6, "O": -2042.0, "N": -1485.0})
    data = build_atomistic_data(train_path=[train, iso])
    assert data.atomic_energies == {1: -13.6, 7: -1485.0, 8: -2042.0}
    assert data.elements == [1, 7, 8]  # the isolated atoms' elements are part of the model by default
    data = build_atomistic_data(train_path=[train, iso], elements=[1, 8], atomic_energies="isolated")
    assert data.atomic_energies == {1: -13.6, 8: -2042.0}
    with pytest.raises(DatasetError, match="no isolated-atom frame"):
        build_atomistic_data(path=train, atomic_energies="isolated")


def test_missing_e0_names_a_frame_with_that_element(tmp_path):
    train = _water(tmp_path, "w.xyz", 10)
    with pytest.raises(DatasetError, match=r"O \(Z=8\) is not among the elements with an E0") as info:
        build_atomistic_data(path=train, atomic_energies={"H": -13.6})
    assert info.value.file == train and info.value.key == "species"
    iso = _iso(tmp_path, {"H": -13.6})
    with pytest.raises(DatasetError, match="elements with an E0 .*isolated-atom frames"):
        build_atomistic_data(train_path=[train, iso])


def test_unknown_element_with_an_elements_list(tmp_path):
    train = _water(tmp_path, "w.xyz", 10)
    with pytest.raises(DatasetError, match=r"O \(Z=8\) is not among the given elements") as info:
        build_atomistic_data(path=train, elements=[1, 6])
    assert info.value.file == train and info.value.frame == 0


def test_validation_element_unseen_in_training(tmp_path):
    train = _water(tmp_path, "w.xyz", 10)
    other = tmp_path / "methane.xyz"
    methane = ase.build.molecule("CH4")
    methane.info["energy"] = -1083.0
    methane.arrays["forces"] = np.zeros((5, 3))
    ase.io.write(other, [methane], format="extxyz")
    with pytest.raises(DatasetError, match=r"C \(Z=6\) is not among the elements of the training files"):
        build_atomistic_data(train_path=train, test_path=str(other))


# --- arguments ------------------------------------------------------------------------------------

def test_bad_arguments(tmp_path):
    path = _water(tmp_path, "w.xyz", 10)
    with pytest.raises(ValueError, match="exactly one of"):
        build_atomistic_data(path=path, train_path=path)
    with pytest.raises(ValueError, match="exactly one of"):
        build_atomistic_data()
    with pytest.raises(ValueError, match="dtype"):
        build_atomistic_data(path=path, dtype="float16")
    with pytest.raises(ValueError, match="max_frames"):
        build_atomistic_data(path=path, max_frames=0)
    with pytest.raises(ValueError, match="neither one of"):
        build_atomistic_data(path=path, atomic_energies="least-squares")
    with pytest.raises(DatasetError, match="no such file"):
        build_atomistic_data(path=str(tmp_path / "missing.xyz"))


def test_signature_is_the_config_schema():
    """Typed keyword arguments with defaults, no **kwargs: the `data:` config node maps onto it."""
    parameters = inspect.signature(build_atomistic_data).parameters
    assert list(parameters)[:4] == ["path", "train_path", "valid_path", "test_path"]
    for parameter in parameters.values():
        assert parameter.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert parameter.default is not inspect.Parameter.empty and parameter.annotation is not inspect.Parameter.empty
    assert parameters["seed"].default == 123 and parameters["r_max"].default == 5.0
    assert parameters["dtype"].default == "float32" and parameters["atomic_energies"].default == "auto"
