"""Statistics for the model: E0s (isolated atoms, least squares), interaction energy, RMS forces, neighbours."""

import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list as ase_neighbor_list

from datasets.configuration import Configuration
from datasets.errors import DatasetError
from datasets.graph import to_graph
from datasets.statistics import (
    average_num_neighbors,
    element_counts,
    interaction_energy_per_atom,
    isolated_atom_energies,
    least_squares_atomic_energies,
    rms_forces,
)

E0 = {1: -13.6, 6: -1029.5, 8: -2042.0}


def _frame(numbers, energy=None, forces=None, config_type="Default", index=0) -> Configuration:
    positions = np.arange(len(numbers) * 3, dtype=float).reshape(-1, 3)
    return Configuration(atomic_numbers=numbers, positions=positions, cell=np.zeros((3, 3)), pbc=[False] * 3,
                         energy=energy, forces=forces, config_type=config_type, source="f.xyz", index=index)


def _molecules(seed=0, noise=0.0):
    """Frames of varied composition whose energies are sum E0 + 0.1 eV per atom (+ noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(12):
        numbers = rng.choice([1, 6, 8], size=rng.integers(3, 9))
        energy = sum(E0[int(z)] for z in numbers) + 0.1 * len(numbers) + noise * rng.normal()
        frames.append(_frame(numbers, energy, rng.normal(size=(len(numbers), 3)), index=index))
    return frames


def test_isolated_atoms():
    frames = [_frame([z], energy=e, config_type="IsolatedAtom") for z, e in E0.items()]
    assert all(f.is_isolated_atom for f in frames)
    assert _frame([1], energy=-1.0, config_type="ISOLATED_ATOM").is_isolated_atom
    assert not _frame([1, 1], energy=-1.0, config_type="IsolatedAtom").is_isolated_atom
    assert not _frame([1], energy=-1.0).is_isolated_atom
    assert isolated_atom_energies(frames) == E0


def test_isolated_atoms_must_agree_and_be_single():
    with pytest.raises(DatasetError, match="disagrees"):
        isolated_atom_energies([_frame([1], energy=-13.6), _frame([1], energy=-13.0, index=1)])
    with pytest.raises(DatasetError, match="one atom") as info:
        isolated_atom_energies([_frame([1, 1], energy=-27.0, index=3)])
    assert info.value.frame == 3
    with pytest.raises(DatasetError, match="needs an energy"):
        isolated_atom_energies([_frame([1])])


def test_element_counts():
    counts = element_counts([_frame([1, 1, 8]), _frame([6, 1])], [1, 6, 8])
    np.testing.assert_array_equal(counts, [[2, 0, 1], [1, 1, 0]])


def test_least_squares_recovers_known_energies():
    frames = _molecules()
    fitted = least_squares_atomic_energies(frames, [1, 6, 8])
    # energies are exactly linear in the counts (E0 + 0.1 eV per atom), so the fit is exact
    np.testing.assert_allclose([fitted[z] for z in (1, 6, 8)], [E0[z] + 0.1 for z in (1, 6, 8)], rtol=0, atol=1e-9)


def test_least_squares_warns_when_compositions_do_not_determine_e0s():
    frames = [_frame([1, 1, 8], energy=-2069.2 + 0.01 * k, index=k) for k in range(5)]
    with pytest.warns(UserWarning, match="determine only 1 of 2"):
        fitted = least_squares_atomic_energies(frames, [1, 8])
    np.testing.assert_allclose(2 * fitted[1] + fitted[8], np.mean([f.energy for f in frames]), rtol=1e-12)


def test_least_squares_needs_energies():
    with pytest.raises(DatasetError, match="no training frame has an energy"):
        least_squares_atomic_energies([_frame([1, 8])], [1, 8])


def test_interaction_energy_per_atom():
    frames = _molecules(noise=0.5)
    per_atom = [(f.energy - sum(E0[int(z)] for z in f.atomic_numbers)) / f.num_atoms for f in frames]
    mean, std = interaction_energy_per_atom(frames + [_frame([1, 8])], E0)  # a frame without energy is skipped
    np.testing.assert_allclose(mean, np.mean(per_atom), rtol=1e-12)
    np.testing.assert_allclose(std, np.std(per_atom), rtol=1e-12)
    assert std > 0


def test_rms_forces():
    frames = [_frame([1, 8], forces=np.array([[3.0, 0, 0], [0, 4.0, 0]])), _frame([1], forces=np.array([[0, 0, 5.0]])),
              _frame([6])]
    np.testing.assert_allclose(rms_forces(frames), np.sqrt((9 + 16 + 25) / 9), rtol=1e-12)
    assert rms_forces([_frame([6])]) is None


def test_average_num_neighbors_counts_incoming_edges_per_atom():
    bulk = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    molecule = ase.build.molecule("CH3CH2OH")
    graphs = [to_graph(atoms, r_max=3.0) for atoms in (bulk, molecule)]
    receivers = [ase_neighbor_list("j", atoms, 3.0) for atoms in (bulk, molecule)]
    expected = (len(receivers[0]) + len(receivers[1])) / (len(bulk) + len(molecule))
    assert average_num_neighbors(graphs) == pytest.approx(expected, rel=1e-12)
    assert average_num_neighbors(graphs[:1]) == 12.0  # fcc: 12 nearest neighbours within 3 Å
