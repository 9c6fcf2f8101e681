"""The ASE calculator: forces and stress against ASE's finite differences, periodic images, isolated
atoms, the neighbour-list skin, batched prediction, bad input, symmetries and use in an optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc100, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.optimize import BFGS

import zoo
from tests.assertions import random_o3
from tests.tolerances import tolerance
from zoo.calculator import Calculator
from zoo.checkpoint import CheckpointError

R_MAX = 4.0
EXACT = tolerance(torch.float64, "exact")
EQUIVARIANCE = tolerance(torch.float64, "equivariance")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A tiny float64 MACE for H, C, O and Cu (built once per module; the calculators only evaluate it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        return zoo.build_model(
            "mace", elements=[1, 6, 8, 29], atomic_energies={1: -0.5, 6: -1.5, 8: -2.0, 29: -3.0},
            avg_num_neighbors=8.0, scale=1.3, shift=0.1, num_channels=8, max_ell=2, max_L=1, correlation=2,
            radial_mlp=[8], r_max=R_MAX, tensor_product={"method": "cg"},
        )
    finally:
        torch.set_default_dtype(previous)


def calculator(model, skin: float = 0.5) -> Calculator:
    return Calculator(model, dtype="float64", skin=skin)


def ethanol(seed: int = 0) -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(seed).normal(scale=0.1, size=atoms.positions.shape)
    return atoms


def copper_cell(seed: int = 1) -> Atoms:
    """Two Cu atoms in a sheared, strained cell with lattice vectors of about 2.6 Å (below the cutoff), rattled."""
    atoms = bulk("Cu", "fcc", a=3.7).repeat((2, 1, 1))
    strain = np.eye(3) + 0.02 * np.array([[1, 0.3, 0], [0.3, -1, 0.2], [0, 0.2, 0.5]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def copper_slab(vacuum: bool = True) -> Atoms:
    """A rattled Cu(100) slab, 2x1 in-plane (one in-plane vector of 2.55 Å), pbc=(True, True, False).

    ``vacuum=False``: the third cell vector is zero (no volume)."""
    atoms = fcc100("Cu", size=(2, 1, 2), a=3.6, vacuum=5.0)
    if not vacuum:
        atoms.cell[2] = 0.0
    atoms.positions += np.random.default_rng(2).normal(scale=0.05, size=atoms.positions.shape)
    assert tuple(atoms.pbc) == (True, True, False)
    return atoms


def reference_energy(model, z: int) -> float:
    """The energy of an atom of element ``z`` without neighbours: E0 + shift."""
    return float(model.atomic_energies[model.elements.index(z)] + model.shift)


def evaluate(calc: Calculator, atoms: Atoms) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
            "energies": atoms.get_potential_energies()}


def assert_same_results(result: dict, expected: dict, tol: dict = EXACT) -> None:
    for key in expected:
        np.testing.assert_allclose(result[key], expected[key], rtol=tol["rtol"], atol=tol["atol"], err_msg=key)


# -- derivatives -------------------------------------------------------------------------------

@pytest.mark.parametrize("structure", ["ethanol", "copper"])
def test_forces_equal_finite_differences(model, structure):
    atoms = ethanol() if structure == "ethanol" else copper_cell()
    atoms.calc = calculator(model)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-3  # a real check, not zero against zero
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(forces, numerical, rtol=0, atol=1e-6)


@pytest.mark.parametrize("structure", ["copper", "slab"])
def test_stress_equals_finite_strain(model, structure):
    atoms = copper_cell() if structure == "copper" else copper_slab()
    atoms.calc = calculator(model)
    stress = atoms.get_stress()
    assert stress.shape == (6,) and np.abs(stress).max() > 1e-4
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(stress, numerical, rtol=0, atol=1e-8)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), atoms.get_stress(voigt=False).T, rtol=0, atol=1e-14)


@pytest.mark.parametrize("atoms", [ethanol(), copper_slab(vacuum=False)], ids=["molecule", "slab_without_volume"])
def test_stress_without_volume_is_not_implemented(model, atoms):
    atoms.calc = calculator(model)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    assert np.isfinite(atoms.get_forces()).all()  # the calculator still works for the rest


@pytest.mark.parametrize("structure", ["ethanol", "slab"])
def test_per_atom_energies_sum_to_energy(model, structure):
    # (not the two-atom copper cell: its atoms' environments are mirror images, hence of equal energy)
    atoms = ethanol() if structure == "ethanol" else copper_slab()
    atoms.calc = calculator(model)
    energy = atoms.get_potential_energy()
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert len(set(np.round(energies, 8))) > 1  # per-atom, not the total spread evenly
    assert energies.sum() == pytest.approx(energy, rel=1e-12, abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == energy


# -- periodic images and isolated atoms --------------------------------------------------------

def test_cell_smaller_than_cutoff_counts_every_image(model):
    """One Cu atom in the primitive fcc cell (vectors of 2.55 Å < r_max) is the crystal of its 3x3x3 supercell."""
    atoms = bulk("Cu", "fcc", a=3.6)
    supercell = atoms.repeat((3, 3, 3))
    calc = calculator(model)
    small, large = evaluate(calc, atoms), evaluate(calc, supercell)
    assert small["energy"] == pytest.approx(large["energy"] / 27, rel=1e-12)
    assert abs(small["energy"] - reference_energy(model, 29)) > 1e-4  # the images interact
    np.testing.assert_allclose(small["forces"], 0.0, atol=1e-12)
    np.testing.assert_allclose(large["forces"], 0.0, atol=1e-10)


SMALL_CELLS = {"copper": copper_cell, "slab": copper_slab, "slab_without_volume": lambda: copper_slab(vacuum=False)}


@pytest.mark.parametrize("structure, repeat", [("copper", (2, 2, 3)), ("slab", (2, 3, 1)),
                                               ("slab_without_volume", (3, 2, 1))])
def test_small_cell_equals_its_supercell(model, structure, repeat):
    """A rattled cell smaller than the cutoff: the supercell has the energy per atom and the tiled forces."""
    atoms = SMALL_CELLS[structure]()
    supercell = atoms.repeat(repeat)
    copies = int(np.prod(repeat))
    calc = calculator(model)
    small, large = evaluate(calc, atoms), evaluate(calc, supercell)
    assert large["energy"] == pytest.approx(copies * small["energy"], rel=1e-12)
    np.testing.assert_allclose(large["forces"], np.tile(small["forces"], (copies, 1)), rtol=0, atol=1e-10)
    np.testing.assert_allclose(large["energies"], np.tile(small["energies"], copies), rtol=0, atol=1e-10)
    assert np.abs(small["forces"]).max() > 1e-3


@pytest.mark.parametrize("skin", [0.0, 0.5])
def test_atoms_without_neighbours_have_reference_energy_and_no_force(model, skin):
    calc = calculator(model, skin=skin)
    pair = Atoms("CO", positions=[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    result = evaluate(calc, pair)
    np.testing.assert_allclose(result["energies"], [reference_energy(model, 6), reference_energy(model, 8)], rtol=1e-14)
    assert result["energy"] == pytest.approx(reference_energy(model, 6) + reference_energy(model, 8), rel=1e-14)
    np.testing.assert_array_equal(result["forces"], 0.0)

    # a single atom in a periodic box wider than the cutoff (and the skin): no image reaches it
    atom = Atoms("Cu", positions=[[1.0, 2.0, 3.0]], cell=np.diag([9.0, 9.5, 10.0]), pbc=True)
    atom.calc = calc
    assert atom.get_potential_energy() == pytest.approx(reference_energy(model, 29), rel=1e-14)
    np.testing.assert_array_equal(atom.get_forces(), 0.0)
    np.testing.assert_allclose(atom.get_stress(), 0.0, atol=1e-14)

    # the same atom alone, no cell
    single = evaluate(calc, Atoms("H", positions=[[0.3, 0.0, -1.0]]))
    assert single["energy"] == pytest.approx(reference_energy(model, 1), rel=1e-14)
    np.testing.assert_array_equal(single["forces"], 0.0)


# -- neighbour-list skin -----------------------------------------------------------------------

def test_small_moves_reuse_the_neighbour_list(model):
    skinned, fresh = calculator(model, skin=1.0), calculator(model, skin=0.0)
    atoms = ethanol()
    rng = np.random.default_rng(4)
    for step in range(6):
        if step:  # every atom moves 0.05 Å in a random direction: at most 0.25 Å in all, below skin / 2
            directions = rng.normal(size=atoms.positions.shape)
            atoms.positions += 0.05 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
        assert_same_results(evaluate(skinned, atoms), evaluate(fresh, atoms))
    assert skinned.neighbours.num_builds == 1
    assert fresh.neighbours.num_builds == 6

    atoms.positions[3] += [0.0, 0.6, 0.0]  # now 0.6 Å or more from where it was at the build: > skin / 2
    assert_same_results(evaluate(skinned, atoms), evaluate(fresh, atoms))
    assert skinned.neighbours.num_builds == 2


def test_changes_of_cell_pbc_or_numbers_rebuild_the_list(model):
    skinned, fresh = calculator(model, skin=1.0), calculator(model, skin=0.0)
    atoms = copper_cell()
    assert_same_results(evaluate(skinned, atoms), evaluate(fresh, atoms))
    atoms.positions[0] += 0.01
    assert_same_results(evaluate(skinned, atoms), evaluate(fresh, atoms))
    assert skinned.neighbours.num_builds == 1

    builds = 1
    changes = [
        lambda a: a.set_cell(a.cell.array * 1.02, scale_atoms=False),  # atoms stay, images move
        lambda a: a.set_pbc((True, False, True)),
        lambda a: a.set_atomic_numbers([29, 1]),
    ]
    for change in changes:
        before = evaluate(fresh, atoms)["energy"]
        change(atoms)
        result = evaluate(skinned, atoms)
        builds += 1
        assert skinned.neighbours.num_builds == builds
        assert_same_results(result, evaluate(fresh, atoms))
        assert abs(result["energy"] - before) > 1e-6  # the change mattered


@pytest.mark.parametrize("approach", [True, False], ids=["pair_enters", "pair_leaves"])
def test_pair_crossing_the_cutoff_within_the_skin(model, approach):
    """Two atoms 4.5 Å apart (beyond r_max = 4) each move 0.45 Å (< skin / 2) toward each other: the kept list
    must hold the pair (and drop it again when they move back)."""
    skinned, fresh = calculator(model, skin=1.0), calculator(model, skin=0.0)
    far = Atoms("CO", positions=[[0.0, 0.0, 0.0], [4.5, 0.0, 0.0]])
    near = Atoms("CO", positions=[[0.45, 0.0, 0.0], [4.05, 0.0, 0.0]])  # 3.6 Å apart
    first, second = (far, near) if approach else (near, far)
    for atoms in (first, second):
        result = evaluate(skinned, atoms)
        assert_same_results(result, evaluate(fresh, atoms))
        edge_index, unit_shifts = skinned.neighbours.edges(atoms)  # the pairs within r_max now, both directions
        assert edge_index.shape == (2, 2 if atoms is near else 0) and unit_shifts.shape == (edge_index.shape[1], 3)
    assert skinned.neighbours.num_builds == 1
    isolated = reference_energy(model, 6) + reference_energy(model, 8)
    near_result = evaluate(fresh, near)
    assert abs(near_result["energy"] - isolated) > 1e-6 and np.abs(near_result["forces"]).max() > 1e-6
    assert evaluate(skinned, far)["energy"] == pytest.approx(isolated, rel=1e-14)


def test_moves_beyond_half_the_skin_find_new_pairs(model):
    """Two atoms 5.2 Å apart (beyond r_max + skin = 5, so not listed) each move 0.85 Å (> skin / 2) toward each
    other: the list must be rebuilt to see them interact at 3.5 Å."""
    skinned, fresh = calculator(model, skin=1.0), calculator(model, skin=0.0)
    atoms = Atoms("CO", positions=[[0.0, 0.0, 0.0], [5.2, 0.0, 0.0]])
    isolated = reference_energy(model, 6) + reference_energy(model, 8)
    assert evaluate(skinned, atoms)["energy"] == pytest.approx(isolated, rel=1e-14)
    atoms.positions = [[0.85, 0.0, 0.0], [4.35, 0.0, 0.0]]
    result = evaluate(skinned, atoms)
    assert skinned.neighbours.num_builds == 2
    assert_same_results(result, evaluate(fresh, atoms))
    assert abs(result["energy"] - isolated) > 1e-6


# -- batched prediction ------------------------------------------------------------------------

def test_predict_equals_one_structure_at_a_time(model):
    calc = calculator(model)
    single = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    structures = [ethanol(0), copper_cell(), single, molecule("CH3OH")]
    predicted = calc.predict(structures, batch_size=2)
    assert len(predicted) == len(structures)
    for result, atoms in zip(predicted, structures):
        assert_same_results(result, evaluate(calculator(model), atoms))
        assert result["free_energy"] == result["energy"]
        assert "stress" not in result  # each batch holds a structure without a cell

    periodic = [copper_cell(), copper_slab(), copper_cell(seed=5)]
    for result, atoms in zip(calc.predict(periodic, batch_size=2), periodic):
        atoms.calc = calculator(model)
        assert_same_results(result, {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                                     "energies": atoms.get_potential_energies(), "stress": atoms.get_stress()})
    assert calc.predict([], batch_size=2) == []


# -- bad input ---------------------------------------------------------------------------------

def test_unknown_element_is_named(model):
    atoms = molecule("CH3Cl")
    atoms.calc = calculator(model)
    with pytest.raises(ValueError, match=r"Cl \(Z=17\)"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match=r"structure 1: .*Cl \(Z=17\)"):
        calculator(model).predict([ethanol(), atoms])


def test_non_finite_position_names_the_atom(model):
    atoms = ethanol()
    atoms.positions[3, 1] = np.nan
    atoms.calc = calculator(model)
    with pytest.raises(ValueError, match=r"atom 3 \("):
        atoms.get_forces()
    cell = copper_cell()
    cell.cell[1, 1] = np.inf
    cell.calc = calculator(model)
    with pytest.raises(ValueError, match="cell"):
        cell.get_potential_energy()


def test_missing_checkpoint_is_named():
    with pytest.raises(CheckpointError, match="/nonexistent/model.safetensors"):
        Calculator("/nonexistent/model.safetensors")


def test_unknown_model_name_lists_the_available_ones(monkeypatch):
    for names in (zoo.pretrained.available(), ["mace_a", "mace_b"]):  # what is shipped, and a stand-in list
        monkeypatch.setattr(zoo.pretrained, "available", lambda: names)
        with pytest.raises(FileNotFoundError, match="not_a_model_name") as error:
            Calculator("not_a_model_name")
        assert "pretrained" in str(error.value)
        for name in names:
            assert name in str(error.value)


# -- symmetries and use --------------------------------------------------------------------------

def test_rotated_and_translated_molecule(model):
    atoms = ethanol()
    reference = evaluate(calculator(model), atoms)
    generator = torch.Generator().manual_seed(3)
    for inversion in (False, True):
        rotation = random_o3(torch.float64, inversion, generator).numpy()
        moved = atoms.copy()
        moved.positions = atoms.positions @ rotation.T + np.array([0.4, -1.0, 2.0])
        result = evaluate(calculator(model), moved)
        assert result["energy"] == pytest.approx(reference["energy"], rel=EQUIVARIANCE["rtol"])
        np.testing.assert_allclose(result["forces"], reference["forces"] @ rotation.T, **EQUIVARIANCE)
        np.testing.assert_allclose(result["energies"], reference["energies"], **EQUIVARIANCE)


def test_rotated_crystal_rotates_forces_and_stress(model):
    atoms = copper_cell()
    atoms.calc = calculator(model)
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    rotation = random_o3(torch.float64, False, torch.Generator().manual_seed(7)).numpy()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    moved.positions = atoms.positions @ rotation.T + np.array([1.0, 0.5, -0.2])
    moved.calc = calculator(model)
    assert moved.get_potential_energy() == pytest.approx(energy, rel=EQUIVARIANCE["rtol"])
    np.testing.assert_allclose(moved.get_forces(), forces @ rotation.T, **EQUIVARIANCE)
    np.testing.assert_allclose(moved.get_stress(voigt=False), rotation @ stress @ rotation.T, **EQUIVARIANCE)


def test_bfgs_lowers_the_energy(model):
    atoms = ethanol(seed=3)
    atoms.calc = calculator(model)
    initial = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=1e-4, steps=5)
    assert atoms.get_potential_energy() < initial - 1e-4
