"""MACE with each tensor-product method: symmetries, derivatives, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

import zoo
from datasets import schema
from tests.assertions import random_o3
from tests.tolerances import tolerance
from tests.zoo.graphs import batch_of, graph_of

METHODS = ["cg", "gaunt", "grid", "cp"]
EXACT = ["cg", "gaunt", "grid"]
R_MAX = 4.0


def small_mace(method: str = "cg", elements=(1, 6, 8), **overrides) -> torch.nn.Module:
    options = dict(
        elements=list(elements),
        atomic_energies=[-1.0 * z for z in elements],
        avg_num_neighbors=6.0,
        scale=1.3,
        shift=0.1,
        r_max=R_MAX,
        num_bessel=6,
        max_ell=2,
        num_channels=4,
        max_L=1,
        num_interactions=2,
        correlation=3,
        radial_mlp=[8],
        readout_mlp=4,
        tensor_product={"method": method},
        kernel="reference",
    )
    if method == "cp":
        options["max_ell"] = 1  # CP factors are fitted once per run; l <= 1 keeps those fits to seconds
    options.update(overrides)
    return zoo.build_model("mace", **options)


def ethanol(seed: int = 0) -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(seed).normal(scale=0.1, size=atoms.positions.shape)
    return atoms


def copper_cell() -> Atoms:
    """A two-atom cell (lattice vectors of 2.6 Å, smaller than the cutoff), strained and rattled."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=False).repeat((2, 1, 1))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * np.array([[1, 0.3, 0], [0.3, -1, 0.2], [0, 0.2, 0.5]])),
                   scale_atoms=True)
    atoms.positions += np.random.default_rng(1).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


@pytest.mark.parametrize("method", EXACT)
def test_energy_invariant_and_forces_equivariant(method, float64):
    model = small_mace(method)
    atoms = ethanol()
    reference = model(graph_of(atoms, R_MAX))
    generator = torch.Generator().manual_seed(3)
    for inversion in (False, True):
        rotation = random_o3(torch.float64, inversion, generator).numpy()
        moved = atoms.copy()
        moved.positions = atoms.positions @ rotation.T + np.array([0.4, -1.0, 2.0])  # rotate, invert, translate
        out = model(graph_of(moved, R_MAX))
        torch.testing.assert_close(out[schema.ENERGY], reference[schema.ENERGY], **tolerance(torch.float64, "equivariance"))
        torch.testing.assert_close(
            out[schema.FORCES], reference[schema.FORCES] @ torch.from_numpy(rotation).T,
            **tolerance(torch.float64, "equivariance"),
        )


@pytest.mark.parametrize("method", METHODS)
def test_permuting_atoms_permutes_forces(method, float64):
    model = small_mace(method)
    atoms = ethanol()
    order = np.random.default_rng(0).permutation(len(atoms))
    reference = model(graph_of(atoms, R_MAX))
    out = model(graph_of(atoms[order], R_MAX))
    torch.testing.assert_close(out[schema.ENERGY], reference[schema.ENERGY], **tolerance(torch.float64, "exact"))
    torch.testing.assert_close(out[schema.FORCES], reference[schema.FORCES][order], **tolerance(torch.float64, "exact"))


def _invariance_error(model, atoms) -> float:
    reference = model(graph_of(atoms, R_MAX))[schema.ENERGY]
    generator = torch.Generator().manual_seed(5)
    worst = 0.0
    for inversion in (False, True):
        rotation = random_o3(torch.float64, inversion, generator).numpy()
        moved = atoms.copy()
        moved.positions = atoms.positions @ rotation.T
        energy = model(graph_of(moved, R_MAX))[schema.ENERGY]
        worst = max(worst, float((energy - reference).abs().detach() / reference.abs().detach()))
    return worst


def test_cp_model_is_nearly_invariant_and_improves_with_rank(float64):
    """CP is approximate: the default fit (factors within 1e-3) keeps the energy invariant to about
    that relative accuracy, and a tighter fit of the same model shrinks the error."""
    atoms = ethanol()
    torch.manual_seed(0)
    coarse = small_mace("cp", atomic_energies=[0.0, 0.0, 0.0], shift=0.0, max_ell=1)
    torch.manual_seed(0)
    fine = small_mace("cp", atomic_energies=[0.0, 0.0, 0.0], shift=0.0, max_ell=1,
                      tensor_product={"method": "cp", "target_error": 1e-7})
    coarse_error, fine_error = _invariance_error(coarse, atoms), _invariance_error(fine, atoms)
    assert coarse_error < 3e-2
    assert fine_error < 1e-5
    assert fine_error < coarse_error


@pytest.mark.parametrize("method", ["cg", "grid"])
def test_forces_are_minus_energy_gradient(method, float64):
    model = small_mace(method)
    atoms = ethanol(seed=2)
    forces = model(graph_of(atoms, R_MAX))[schema.FORCES]
    step = 1e-4
    rng = np.random.default_rng(0)
    for atom, axis in zip(rng.choice(len(atoms), 4, replace=False), rng.integers(0, 3, 4)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * step
            energies.append(float(model(graph_of(moved, R_MAX), compute_forces=False)[schema.ENERGY].detach()))
        finite_difference = -(energies[0] - energies[1]) / (2 * step)
        assert forces[atom, axis].item() == pytest.approx(finite_difference, rel=1e-6, abs=1e-8)


def test_stress_matches_finite_strain(float64):
    model = small_mace("cg", elements=[29], num_channels=4)
    atoms = copper_cell()
    out = model(graph_of(atoms, R_MAX), compute_stress=True)
    volume = atoms.get_volume()
    step = 1e-5
    for i, j in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * step / (2 if i != j else 1)
            strain[j, i] += sign * step / 2 if i != j else 0.0
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(float(model(graph_of(moved, R_MAX), compute_forces=False)[schema.ENERGY].detach()))
        expected = (energies[0] - energies[1]) / (2 * step) / volume
        assert out[schema.STRESS][0, i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-9)
    torch.testing.assert_close(out[schema.VIRIALS], -out[schema.STRESS] * volume)
    torch.testing.assert_close(out[schema.STRESS][0], out[schema.STRESS][0].T)


def test_small_periodic_cell_sees_all_images(float64):
    """A cell smaller than the cutoff is the same crystal as its 2x2x2 supercell: 8x the energy."""
    model = small_mace("cg", elements=[29])
    atoms = copper_cell()
    energy = model(graph_of(atoms, R_MAX), compute_forces=False)[schema.ENERGY]
    supercell = model(graph_of(atoms.repeat((2, 2, 2)), R_MAX), compute_forces=False)[schema.ENERGY]
    torch.testing.assert_close(supercell, 8 * energy, **tolerance(torch.float64, "exact"))


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_each_structure_alone(method, dtype):
    model = small_mace(method, elements=[1, 6, 8, 29])
    structures = [ethanol(0), copper_cell(), ethanol(1)]
    graphs = [graph_of(a, R_MAX) for a in structures]
    together = model(batch_of(graphs), compute_stress=True)
    alone = [model(g, compute_stress=True) for g in graphs]
    torch.testing.assert_close(together[schema.ENERGY], torch.cat([o[schema.ENERGY] for o in alone]), **tolerance(dtype))
    torch.testing.assert_close(together[schema.FORCES], torch.cat([o[schema.FORCES] for o in alone]), **tolerance(dtype))
    torch.testing.assert_close(together[schema.STRESS], torch.cat([o[schema.STRESS] for o in alone]), **tolerance(dtype))
    assert together[schema.ENERGY].dtype == dtype


def test_gaunt_and_grid_models_are_the_same_function(float64):
    """The method is only how the product is computed: grid with gaunt's weights gives gaunt's energies."""
    gaunt = small_mace("gaunt")
    grid = small_mace("grid")
    grid.load_state_dict(gaunt.state_dict())
    graph = graph_of(ethanol(), R_MAX)
    torch.testing.assert_close(grid(graph)[schema.FORCES], gaunt(graph)[schema.FORCES], **tolerance(torch.float64))


def test_training_forces_can_be_backpropagated(float64):
    model = small_mace("cg")
    out = model(graph_of(ethanol(), R_MAX), training=True)
    out[schema.FORCES].pow(2).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_isolated_atom_energy_is_reference_plus_shift():
    """An atom without neighbours gets no messages: its energy is E0 + shift (readouts of zero are zero)."""
    model = small_mace("cg")
    out = model(graph_of(Atoms("O", positions=[[0.0, 0.0, 0.0]]), R_MAX))
    torch.testing.assert_close(out[schema.ENERGY], torch.tensor([-8.0 + 0.1]))
    torch.testing.assert_close(out[schema.FORCES], torch.zeros(1, 3))


def test_unknown_element_is_named():
    model = small_mace("cg", elements=[1, 6])
    with pytest.raises(ValueError, match=r"\[8\].*elements \[1, 6\]"):
        model(graph_of(ethanol(), R_MAX))


def test_build_model_rejects_unknown_keys_and_methods():
    with pytest.raises(ValueError, match="unknown argument.*num_chanels.*valid:.*num_channels"):
        zoo.build_model("mace", elements=[1], num_chanels=8)
    with pytest.raises(ValueError, match="unknown model 'nequip'"):
        zoo.build_model("nequip", elements=[1])
    with pytest.raises(ValueError, match="method='fft'"):
        zoo.build_model("mace", elements=[1], tensor_product={"method": "fft"})
    with pytest.raises(ValueError, match="atomic_energies has no entry for element"):
        zoo.build_model("mace", elements=[1, 8], atomic_energies={1: -13.6})
