"""zoo.transfer: a pretrained model extended to new elements computes the shared ones exactly as before."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule

import zoo
from tests.zoo.graphs import graph_of
from zoo.transfer import expand_elements, freeze


@pytest.mark.parametrize("method", ["cg", "cp"])
def test_new_elements_leave_shared_elements_unchanged(method):
    torch.manual_seed(1)
    model = zoo.build_model("mace", elements=[1, 6, 8], atomic_energies={1: -1.0, 6: -2.0, 8: -3.0}, num_channels=8,
                            max_ell=2, max_L=1, correlation=2, radial_mlp=[8], r_max=4.0,
                            tensor_product={"method": method}).double()
    # N and F are new (F sorts after O, N between C and O: element rows move), O is dropped by no one
    wider = expand_elements(model, [1, 6, 7, 8, 9], {1: -1.0, 6: -2.0, 7: -4.0, 8: -3.0, 9: -5.0})
    assert wider.elements == [1, 6, 7, 8, 9] and wider.atomic_energies.dtype == torch.float64
    for name in ("CH3CH2OH", "H2O", "CH4"):
        graph = graph_of(molecule(name), 4.0, torch.float64)
        before, after = model(graph), wider(graph)
        torch.testing.assert_close(after["energy"], before["energy"], rtol=0, atol=1e-10)
        torch.testing.assert_close(after["forces"], before["forces"], rtol=0, atol=1e-10)
    # the new element is usable
    assert torch.isfinite(wider(graph_of(molecule("NH3"), 4.0, torch.float64))["energy"]).all()
    with pytest.raises(ValueError, match="lacks element"):
        expand_elements(model, [1, 6, 8, 16], {1: 0.0, 6: 0.0, 8: 0.0})


def test_freeze_named_parts():
    model = zoo.build_model("mace", elements=[1, 6], num_channels=8, max_ell=1, max_L=1, radial_mlp=[8], r_max=4.0)
    frozen = freeze(model, ["embedding", "radial"])
    assert "node_embedding.weight" in frozen and "interactions.0.radial.layer0.weight" in frozen
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    assert not any(n.startswith("products") for n in frozen)
    with pytest.raises(ValueError, match="embedding, radial, interactions, products, readouts"):
        freeze(model, ["attention"])
