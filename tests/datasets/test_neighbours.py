"""Neighbour lists against ASE's reference implementation, periodic cases and cells below the cutoff included."""

import ase
import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list as ase_neighbor_list

from datasets.neighbours import neighbour_list


def _triples(sender, receiver, shifts) -> np.ndarray:
    """(sender, receiver, shift) rows in a canonical order."""
    rows = np.concatenate([np.asarray(sender)[:, None], np.asarray(receiver)[:, None],
                           np.asarray(shifts).astype(np.int64)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def _molecule(cell=None):
    atoms = ase.build.molecule("CH3CH2OH")
    if cell is not None:
        atoms.cell = cell
    atoms.pbc = False
    return atoms


def _systems():
    rattled_small = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    rattled_small.rattle(0.1, seed=1)
    triclinic = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    triclinic.rattle(0.2, seed=2)
    slab = ase.build.fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    slab.rattle(0.05, seed=3)
    slab.positions[0, 2] += 30.0  # an atom far outside the cell along the open direction
    outside = ase.build.bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    outside.positions -= 17.3  # every atom outside the periodic cell
    return {
        "molecule in a dummy 50 Å box": _molecule(np.eye(3) * 50.0),
        "molecule without cell": _molecule(),
        "fcc bulk 32 atoms": ase.build.bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2),
        "one-atom cell (own images)": ase.build.bulk("Cu", "fcc", a=3.6),
        "cell smaller than r_max, rattled": rattled_small,
        "triclinic two-atom cell": triclinic,
        "slab T T F": slab,
        "atoms outside the periodic cell": outside,
    }


@pytest.mark.parametrize("name", list(_systems()))
@pytest.mark.parametrize("r_max", [3.0, 5.0])
def test_matches_ase(name, r_max):
    atoms = _systems()[name]
    expected = _triples(*ase_neighbor_list("ijS", atoms, r_max))
    edge_index, shifts, distances = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    assert edge_index.dtype == np.int64 and shifts.dtype == np.int64
    np.testing.assert_array_equal(_triples(edge_index[0], edge_index[1], shifts), expected)
    # the schema's edge vector reproduces the returned distances, all within r_max
    vectors = atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]] + shifts @ atoms.cell.array
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), distances, rtol=1e-12, atol=1e-12)
    assert np.all(distances < r_max)


def test_cell_smaller_than_cutoff_lists_own_images_and_repeated_neighbours():
    atoms = ase.build.bulk("Cu", "fcc", a=3.6)  # nearest neighbour 2.55 Å, cell vectors 2.55 Å
    edge_index, shifts, distances = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, 3.0)
    # one atom: every edge is the atom to one of its 12 nearest images
    assert edge_index.shape == (2, 12)
    assert np.all(edge_index == 0)
    assert len({tuple(s) for s in shifts}) == 12
    np.testing.assert_allclose(distances, 3.6 / np.sqrt(2), rtol=1e-12)


def test_open_frame_ignores_its_dummy_cell():
    atoms = _molecule(np.eye(3) * 3.0)  # a dummy cell far smaller than the molecule; pbc F F F
    edge_index, shifts, _ = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, 5.0)
    assert not shifts.any()
    assert edge_index.shape[1] == len(atoms) * (len(atoms) - 1)  # ethanol spans less than 5 Å: all pairs


def test_no_atoms_and_bad_cutoff():
    edge_index, shifts, distances = neighbour_list(np.zeros((0, 3)), np.eye(3), [True] * 3, 5.0)
    assert edge_index.shape == (2, 0) and shifts.shape == (0, 3) and distances.shape == (0,)
    with pytest.raises(ValueError, match="r_max"):
        neighbour_list(np.zeros((2, 3)), np.eye(3), [False] * 3, 0.0)
