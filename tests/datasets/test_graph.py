"""Graphs of configurations: schema fields and shapes, missing labels, and batching by torch_geometric."""

import ase.build
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list as ase_neighbor_list
from torch_geometric.loader import DataLoader

from datasets import schema
from datasets.configuration import Configuration
from datasets.graph import to_graph


def _bulk(seed=0) -> Configuration:
    atoms = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 1, 1)  # cell vectors below r_max
    atoms.rattle(0.05, seed=seed)
    rng = np.random.default_rng(seed)
    return Configuration(atomic_numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                         pbc=atoms.pbc, energy=-7.5, forces=rng.normal(size=(2, 3)),
                         stress=np.diag([0.1, 0.2, 0.3]), weight=2.0, label_weights={schema.STRESS: 0.5})


def _molecule() -> Configuration:
    atoms = ase.build.molecule("CH3CH2OH")
    return Configuration(atomic_numbers=atoms.numbers, positions=atoms.positions, cell=np.eye(3) * 50.0,
                         pbc=[False] * 3, energy=-100.0)  # no forces: zeros with weight 0


def test_fields_shapes_and_dtypes(dtype):
    config = _bulk()
    graph = to_graph(config, r_max=5.0)
    num_edges = len(ase_neighbor_list("i", ase.Atoms(numbers=config.atomic_numbers, positions=config.positions,
                                                          cell=config.cell, pbc=True), 5.0))
    shapes = {
        schema.POSITIONS: (2, 3), schema.ATOMIC_NUMBERS: (2,), schema.EDGE_INDEX: (2, num_edges),
        schema.UNIT_SHIFTS: (num_edges, 3), schema.CELL: (1, 3, 3), schema.PBC: (1, 3), schema.ENERGY: (1,),
        schema.FORCES: (2, 3), schema.STRESS: (1, 3, 3), schema.VIRIALS: (1, 3, 3), schema.WEIGHT: (1,),
        **{weight: (1,) for weight in schema.LABEL_WEIGHT.values()},
    }
    assert set(graph.keys()) - {"num_nodes"} == set(shapes)
    for key, shape in shapes.items():
        assert tuple(graph[key].shape) == shape, key
    assert graph.num_nodes == 2
    for key in (schema.ATOMIC_NUMBERS, schema.EDGE_INDEX):
        assert graph[key].dtype == torch.int64
    assert graph[schema.PBC].dtype == torch.bool
    for key in set(shapes) - {schema.ATOMIC_NUMBERS, schema.EDGE_INDEX, schema.PBC}:
        assert graph[key].dtype == dtype, key


def test_values_and_weights(float64):
    config = _bulk()
    graph = to_graph(config, r_max=5.0)
    torch.testing.assert_close(graph[schema.POSITIONS], torch.tensor(config.positions))
    torch.testing.assert_close(graph[schema.CELL][0], torch.tensor(config.cell))
    torch.testing.assert_close(graph[schema.FORCES], torch.tensor(config.forces))
    torch.testing.assert_close(graph[schema.STRESS][0], torch.tensor(config.stress))
    assert graph[schema.ENERGY].item() == -7.5
    # the frame weight is folded into each label weight; a missing label has weight 0
    assert graph[schema.WEIGHT].item() == 2.0
    assert graph[schema.ENERGY_WEIGHT].item() == 2.0 and graph[schema.FORCES_WEIGHT].item() == 2.0
    assert graph[schema.STRESS_WEIGHT].item() == 1.0
    assert graph[schema.VIRIALS_WEIGHT].item() == 0.0 and not graph[schema.VIRIALS].any()


def test_edge_vectors_follow_the_schema_convention(float64):
    """r_e = positions[receiver] - positions[sender] + unit_shifts @ cell, all shorter than r_max."""
    graph = to_graph(_bulk(), r_max=5.0)
    sender, receiver = graph[schema.EDGE_INDEX]
    vectors = (graph[schema.POSITIONS][receiver] - graph[schema.POSITIONS][sender]
               + graph[schema.UNIT_SHIFTS] @ graph[schema.CELL][0])
    lengths = vectors.norm(dim=1)
    assert lengths.max() < 5.0 and lengths.min() > 2.0
    assert (graph[schema.UNIT_SHIFTS] != 0).any(dim=1).sum() > 0  # images of a cell smaller than r_max


def test_open_frame_has_zero_cell_and_missing_forces_are_zero():
    graph = to_graph(_molecule(), r_max=5.0)
    assert not graph[schema.CELL].any() and not graph[schema.PBC].any()
    assert not graph[schema.UNIT_SHIFTS].any()
    assert not graph[schema.FORCES].any() and graph[schema.FORCES_WEIGHT].item() == 0.0
    assert graph[schema.ENERGY_WEIGHT].item() == 1.0


def test_mixed_boundaries_keep_the_cell():
    slab = ase.build.fcc111("Cu", size=(2, 2, 2), vacuum=4.0)
    graph = to_graph(slab, r_max=4.0)
    assert graph[schema.PBC].tolist() == [[True, True, False]]
    torch.testing.assert_close(graph[schema.CELL][0], torch.tensor(slab.cell.array, dtype=torch.get_default_dtype()))
    assert not graph[schema.UNIT_SHIFTS][:, 2].any()


def test_from_ase_atoms_reads_calculator_labels(float64):
    atoms = ase.build.molecule("H2O")
    atoms.calc = SinglePointCalculator(atoms, energy=-3.0, forces=np.arange(9.0).reshape(3, 3))
    graph = to_graph(atoms, r_max=3.0, dtype=torch.float32)
    assert graph[schema.POSITIONS].dtype == torch.float32  # an explicit dtype wins over the default
    assert graph[schema.ENERGY].item() == -3.0 and graph[schema.FORCES][2, 2].item() == 8.0
    assert graph[schema.EDGE_INDEX].shape == (2, 6)


def test_batching_gives_the_schema_shapes(dtype):
    configs = [_bulk(0), _molecule(), _bulk(1)]
    graphs = [to_graph(c, r_max=5.0) for c in configs]
    batch = next(iter(DataLoader(graphs, batch_size=3, shuffle=False)))
    num_atoms = sum(c.num_atoms for c in configs)
    num_edges = sum(g[schema.EDGE_INDEX].shape[1] for g in graphs)
    assert batch.num_graphs == 3
    assert batch[schema.POSITIONS].shape == (num_atoms, 3)
    assert batch[schema.FORCES].shape == (num_atoms, 3)
    assert batch[schema.EDGE_INDEX].shape == (2, num_edges)
    assert batch[schema.UNIT_SHIFTS].shape == (num_edges, 3)
    assert batch[schema.CELL].shape == (3, 3, 3) and batch[schema.PBC].shape == (3, 3)
    assert batch[schema.ENERGY].shape == (3,)
    assert batch[schema.STRESS].shape == (3, 3, 3) and batch[schema.VIRIALS].shape == (3, 3, 3)
    for weight in (schema.WEIGHT, *schema.LABEL_WEIGHT.values()):
        assert batch[weight].shape == (3,)
    assert batch[schema.BATCH].tolist() == [0, 0] + [1] * 9 + [2, 2]
    assert batch[schema.PTR].tolist() == [0, 2, 11, 13]
    # edge indices point into each graph's own atoms
    graph_of_sender = batch[schema.BATCH][batch[schema.EDGE_INDEX][0]]
    graph_of_receiver = batch[schema.BATCH][batch[schema.EDGE_INDEX][1]]
    assert torch.equal(graph_of_sender, graph_of_receiver)
    start = graphs[0][schema.EDGE_INDEX].shape[1]
    torch.testing.assert_close(batch[schema.EDGE_INDEX][:, start:start + 4], graphs[1][schema.EDGE_INDEX][:, :4] + 2)
    assert batch[schema.FORCES_WEIGHT].tolist() == [2.0, 0.0, 2.0]


@pytest.mark.parametrize("r_max", [2.0, 6.0])
def test_edges_depend_on_r_max(r_max):
    graph = to_graph(_molecule(), r_max=r_max)
    expected = len(ase_neighbor_list("i", ase.build.molecule("CH3CH2OH"), r_max))
    assert graph[schema.EDGE_INDEX].shape[1] == expected
