"""Metrics are those of the whole set, whatever the batching and the number of processes."""

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from datasets import schema
from train.metrics import ErrorSums, LossSums, flatten_metrics, quantities_for
from train.losses import PotentialLoss


def make_graphs(count: int, seed: int = 0) -> list[Data]:
    """Graphs of 1-5 atoms with labels, a second set of 'predicted' labels, some labels missing."""
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for i in range(count):
        n = int(torch.randint(1, 6, (1,), generator=generator))
        graphs.append(Data(
            num_nodes=n,
            **{
                schema.ENERGY: torch.randn(1, generator=generator, dtype=torch.float64),
                schema.FORCES: torch.randn(n, 3, generator=generator, dtype=torch.float64),
                schema.STRESS: torch.randn(1, 3, 3, generator=generator, dtype=torch.float64),
                schema.ENERGY_WEIGHT: torch.tensor([1.0 if i % 5 else 0.0], dtype=torch.float64),
                schema.FORCES_WEIGHT: torch.tensor([0.0 if i % 4 == 1 else 2.0], dtype=torch.float64),
                schema.STRESS_WEIGHT: torch.tensor([1.0 if i % 3 == 0 else 0.0], dtype=torch.float64),
                "pred_energy": torch.randn(1, generator=generator, dtype=torch.float64),
                "pred_forces": torch.randn(n, 3, generator=generator, dtype=torch.float64),
                "pred_stress": torch.randn(1, 3, 3, generator=generator, dtype=torch.float64),
            },
        ))
    return graphs


def as_batch(graphs):
    batch = Batch.from_data_list(graphs)
    prediction = {schema.ENERGY: batch.pred_energy, schema.FORCES: batch.pred_forces, schema.STRESS: batch.pred_stress}
    return prediction, batch


def by_hand(graphs) -> dict:
    """MAE and RMSE (meV) over the labelled entries, computed on the concatenated set."""
    def stats(errors):
        errors = torch.cat(errors) if errors else torch.zeros(0)
        return 1000 * errors.abs().mean().item(), 1000 * errors.square().mean().sqrt().item(), errors.numel()

    energy = [(g.pred_energy - g[schema.ENERGY]) for g in graphs if g[schema.ENERGY_WEIGHT] > 0]
    per_atom = [(g.pred_energy - g[schema.ENERGY]) / g.num_nodes for g in graphs if g[schema.ENERGY_WEIGHT] > 0]
    forces = [(g.pred_forces - g[schema.FORCES]).reshape(-1) for g in graphs if g[schema.FORCES_WEIGHT] > 0]
    stress = [(g.pred_stress - g[schema.STRESS]).reshape(-1) for g in graphs if g[schema.STRESS_WEIGHT] > 0]
    return {"energy": stats(energy), "energy_per_atom": stats(per_atom), "forces": stats(forces),
            "stress": stats(stress)}


QUANTITIES = ("energy", "energy_per_atom", "forces", "stress")


def test_uneven_batches_give_the_whole_set_metrics():
    graphs = make_graphs(17)
    sums = ErrorSums(QUANTITIES)
    start = 0
    for size in (1, 4, 2, 7, 3):  # uneven batches covering all 17 graphs
        sums.update(*as_batch(graphs[start:start + size]))
        start += size
    result = sums.compute()
    for name, (mae, rmse, count) in by_hand(graphs).items():
        assert result[name]["count"] == count
        assert result[name]["mae"] == pytest.approx(mae, rel=1e-12)
        assert result[name]["rmse"] == pytest.approx(rmse, rel=1e-12)


def test_summing_processes_is_exact_and_averaging_them_is_not():
    """Two 'processes' with uneven shares (9 and 8 graphs, interleaved as the validation sampler deals)."""
    graphs = make_graphs(17, seed=1)
    processes = [ErrorSums(QUANTITIES), ErrorSums(QUANTITIES)]
    for rank, sums in enumerate(processes):
        share = graphs[rank::2]
        for start in range(0, len(share), 3):
            sums.update(*as_batch(share[start:start + 3]))
    reduced = processes[0].reduced(lambda t: t + processes[1].sums).compute()
    whole = by_hand(graphs)
    for name in QUANTITIES:
        assert reduced[name]["rmse"] == pytest.approx(whole[name][1], rel=1e-12)
    # the average of per-process RMSEs differs: the reason metrics are reduced as sums
    per_process = [s.compute()["forces"]["rmse"] for s in processes]
    assert not math.isclose(sum(per_process) / 2, whole["forces"][1], rel_tol=1e-6)


def test_missing_labels_leave_a_quantity_out_and_units_are_mev():
    graph = make_graphs(1)[0]
    graph[schema.STRESS_WEIGHT] = torch.zeros(1, dtype=torch.float64)
    graph[schema.ENERGY_WEIGHT] = torch.ones(1, dtype=torch.float64)
    graph.pred_energy = graph[schema.ENERGY] + 0.002  # 2 meV
    sums = ErrorSums(QUANTITIES)
    sums.update(*as_batch([graph]))
    result = sums.compute()
    assert "stress" not in result
    assert result["energy"]["mae"] == pytest.approx(2.0)
    assert result["energy"]["unit"] == "meV"
    assert set(flatten_metrics(result, "val")) >= {"val/energy_mae", "val/forces_rmse"}


def test_quantities_follow_the_predicted_labels():
    assert quantities_for({schema.ENERGY, schema.FORCES}) == ("energy", "energy_per_atom", "forces")
    with pytest.raises(ValueError, match="unknown metric"):
        ErrorSums(("dipole",))


def test_loss_sums_give_the_loss_of_the_set_as_one_batch():
    graphs = make_graphs(9, seed=2)
    loss = PotentialLoss("mse", energy_weight=1.0, forces_weight=10.0, stress_weight=3.0)
    sums = LossSums(tuple(loss.weights))
    for start, stop in ((0, 2), (2, 7), (7, 9)):
        prediction, batch = as_batch(graphs[start:stop])
        sums.update(loss.terms(prediction, batch))
    prediction, batch = as_batch(graphs)
    torch.testing.assert_close(loss.combine(sums.terms()), loss(prediction, batch).to(torch.float64))
