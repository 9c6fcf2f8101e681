"""The weighted and Huber losses against values computed by hand."""

import pytest
import torch

from datasets import schema
from train.losses import PotentialLoss, conditional_force_delta, huber


def two_graph_batch() -> dict:
    """Graph 0: two atoms; graph 1: one atom whose forces are unlabelled (weight 0)."""
    return {
        schema.PTR: torch.tensor([0, 2, 3]),
        schema.BATCH: torch.tensor([0, 0, 1]),
        schema.ENERGY: torch.tensor([1.0, 2.0], dtype=torch.float64),
        schema.FORCES: torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 2]], dtype=torch.float64),
        schema.STRESS: torch.zeros(2, 3, 3, dtype=torch.float64),
        schema.VIRIALS: torch.zeros(2, 3, 3, dtype=torch.float64),
        schema.ENERGY_WEIGHT: torch.tensor([1.0, 0.5], dtype=torch.float64),
        schema.FORCES_WEIGHT: torch.tensor([1.0, 0.0], dtype=torch.float64),
        schema.STRESS_WEIGHT: torch.tensor([1.0, 1.0], dtype=torch.float64),
        schema.VIRIALS_WEIGHT: torch.tensor([1.0, 1.0], dtype=torch.float64),
    }


def prediction() -> dict:
    return {
        schema.ENERGY: torch.tensor([1.4, 1.0], dtype=torch.float64),
        schema.FORCES: torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.float64),
        schema.STRESS: torch.ones(2, 3, 3, dtype=torch.float64),
        schema.VIRIALS: torch.ones(2, 3, 3, dtype=torch.float64),
    }


def test_weighted_mse_by_hand():
    # energy per atom residuals -0.2 (w 1) and 1.0 (w 0.5): (0.04 + 0.5) / 2 graphs = 0.27
    # forces: one residual of 1 on a labelled atom, the unlabelled atom's 2 has weight 0: 1 / 9 components
    loss = PotentialLoss("mse", energy_weight=1.0, forces_weight=100.0)
    terms = loss.terms(prediction(), two_graph_batch())
    assert terms[schema.ENERGY][0].item() == pytest.approx(0.54)
    assert terms[schema.ENERGY][1].item() == 2
    assert terms[schema.FORCES][0].item() == pytest.approx(1.0)
    assert terms[schema.FORCES][1].item() == 9
    assert loss(prediction(), two_graph_batch()).item() == pytest.approx(0.27 + 100.0 / 9)


def test_stress_and_virials_by_hand():
    # stress: 18 unit residuals / 18 components = 1; virials per atom: 9 (1/2)^2 + 9 (1/1)^2 = 11.25 over 18
    loss = PotentialLoss("mse", energy_weight=0.0, forces_weight=0.0, stress_weight=2.0, virials_weight=3.0)
    assert set(loss.terms(prediction(), two_graph_batch())) == {schema.STRESS, schema.VIRIALS}
    assert loss(prediction(), two_graph_batch()).item() == pytest.approx(2.0 * 1.0 + 3.0 * 11.25 / 18)


def test_huber_by_hand():
    # delta 0.5: energy 0.5 * 0.2^2 = 0.02 (quadratic) and 0.5 * (1 - 0.25) * 0.5 weight = 0.1875 (linear);
    # forces: the residual 1 is linear, 0.5 * (1 - 0.25) = 0.375, over 9 components
    loss = PotentialLoss("huber", energy_weight=1.0, forces_weight=10.0, huber_delta=0.5)
    expected = (0.02 + 0.1875) / 2 + 10.0 * 0.375 / 9
    assert loss(prediction(), two_graph_batch()).item() == pytest.approx(expected)


def test_huber_matches_torch():
    residual = torch.linspace(-3, 3, 61, dtype=torch.float64)
    torch.testing.assert_close(huber(residual, 0.7), torch.nn.functional.huber_loss(
        residual, torch.zeros_like(residual), reduction="none", delta=0.7))


def test_conditional_force_delta_shrinks_with_the_reference_force():
    forces = torch.tensor([[50.0, 0, 0], [0, 150.0, 0], [0, 0, 250.0], [350.0, 0, 0]])
    delta = conditional_force_delta(forces, 0.01)
    torch.testing.assert_close(delta.squeeze(-1), 0.01 * torch.tensor([1.0, 0.7, 0.4, 0.1]))


def test_global_counts_make_the_ddp_gradient_that_of_the_whole_batch():
    """Two 'processes' with their own sums, the summed counts and scale 2 average to the whole-batch loss."""
    loss = PotentialLoss("mse", energy_weight=1.0, forces_weight=100.0)
    batch, pred = two_graph_batch(), prediction()
    whole = loss(pred, batch)

    def part(graph):  # the batch of one graph
        atoms = batch[schema.BATCH] == graph
        sub = {k: v[[graph]] for k, v in batch.items() if k not in (schema.PTR, schema.BATCH, schema.FORCES)}
        sub[schema.FORCES] = batch[schema.FORCES][atoms]
        sub[schema.PTR] = torch.tensor([0, int(atoms.sum())])
        sub[schema.BATCH] = torch.zeros(int(atoms.sum()), dtype=torch.long)
        sub_pred = {schema.ENERGY: pred[schema.ENERGY][[graph]], schema.FORCES: pred[schema.FORCES][atoms]}
        return loss.terms(sub_pred, sub)

    parts = [part(0), part(1)]
    counts = {label: parts[0][label][1] + parts[1][label][1] for label in parts[0]}
    per_process = [loss.combine(terms, counts, scale=2) for terms in parts]
    torch.testing.assert_close(sum(per_process) / 2, whole)
    # whereas averaging per-process losses (each over its own entries) is not the loss of the batch
    assert not torch.isclose(sum(loss.combine(t) for t in parts) / 2, whole)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="l1"), "kind"),
    (dict(energy_weight=-1.0), ">= 0"),
    (dict(energy_weight=0.0, forces_weight=0.0), "every loss weight is 0"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PotentialLoss(**kwargs)
