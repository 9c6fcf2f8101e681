"""Checks of one configuration and the message of ``DatasetError``."""

import numpy as np
import pytest

from datasets import schema
from datasets.configuration import Configuration
from datasets.errors import DatasetError
from datasets.validation import (
    check_cell,
    check_configuration,
    check_distances,
    check_elements,
    check_finite,
    check_required,
    check_weights,
)


def _config(**overrides) -> Configuration:
    fields = dict(atomic_numbers=[1, 8, 1], positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [1.2, 0.93, 0.0]],
                  cell=np.zeros((3, 3)), pbc=[False] * 3, energy=-14.0, forces=np.zeros((3, 3)),
                  source="water.xyz", index=4)
    fields.update(overrides)
    return Configuration(**fields)


def test_error_message_names_file_frame_and_key():
    error = DatasetError("is wrong", file="a.xyz", frame=3, key="REF_energy")
    assert str(error) == "a.xyz, frame 3, key 'REF_energy': is wrong"
    assert isinstance(error, ValueError)
    assert str(DatasetError("is wrong", file="a.xyz")) == "a.xyz: is wrong"
    assert str(DatasetError("is wrong")) == "is wrong"


def test_a_good_frame_passes():
    check_configuration(_config(), required=(schema.ENERGY, schema.FORCES), elements=[1, 8])


def test_non_finite_position_names_its_index():
    positions = np.array(_config().positions)
    positions[2, 1] = np.nan
    with pytest.raises(DatasetError, match=r"water.xyz, frame 4, key 'pos': is not finite .*\(2, 1\)"):
        check_finite(_config(positions=positions))


def test_negative_weight():
    with pytest.raises(DatasetError, match="negative") as info:
        check_weights(_config(weight=-1.0))
    assert info.value.key == "config_weight"
    with pytest.raises(DatasetError, match="negative") as info:
        check_weights(_config(label_weights={schema.FORCES: -0.5}))
    assert info.value.key == "config_forces_weight"


def test_periodic_direction_needs_a_lattice_vector():
    check_cell(_config(cell=np.diag([10.0, 10.0, 0.0]), pbc=[True, True, False]))  # a slab without c: fine
    with pytest.raises(DatasetError, match=r"periodic directions \(abc\)") as info:
        check_cell(_config(cell=np.diag([10.0, 10.0, 0.0]), pbc=[True] * 3))
    assert info.value.key == "Lattice"
    with pytest.raises(DatasetError, match="linearly dependent"):
        check_cell(_config(cell=[[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]], pbc=[True] * 3))


def test_close_atoms_report_the_pair_and_distance():
    positions = np.array(_config().positions)
    positions[2] = positions[0] + [0.0, 0.05, 0.0]
    with pytest.raises(DatasetError, match=r"atoms 0 \(H\) and 2 \(H\) are 0.05 Å apart, closer than 0.1 Å"):
        check_distances(_config(positions=positions))
    check_distances(_config(positions=positions), min_distance=0.01)


def test_own_periodic_image_too_close():
    one_atom = _config(atomic_numbers=[29], positions=[[0.0, 0.0, 0.0]], cell=np.diag([0.05, 4.0, 4.0]),
                       pbc=[True] * 3, forces=None)
    with pytest.raises(DatasetError, match=r"atoms 0 \(Cu\) and 0 \(Cu\) \(periodic image"):
        check_distances(one_atom)


def test_required_labels():
    with pytest.raises(DatasetError, match="no forces") as info:
        check_required(_config(forces=None), [schema.ENERGY, schema.FORCES])
    assert (info.value.file, info.value.frame, info.value.key) == ("water.xyz", 4, "forces")


def test_unknown_element_lists_the_allowed_ones():
    with pytest.raises(DatasetError, match=r"element O \(Z=8\) is not among the allowed elements: \[H, C\]"):
        check_elements(_config(), [1, 6])
