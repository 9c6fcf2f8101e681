"""The LightningModule's validation: forces under Lightning's no_grad, metrics of the whole set."""

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Batch

import zoo
from datasets import schema
from datasets.atomistic import build_atomistic_data
from train.data_module import AtomisticDataModule
from train.potential import PotentialModule
from train.statistics import fill_model_statistics


@pytest.fixture(scope="module")
def setup():
    data = build_atomistic_data(path="organics_gfn2", valid_fraction=0.007, test_fraction=0.0, max_frames=4,
                                dtype="float64")
    model_config = fill_model_statistics(
        dict(elements=None, atomic_energies=None, avg_num_neighbors=None, scale=None, shift=None),
        data, dict(scale="rms_forces", shift="mean_energy_per_atom"))
    torch.manual_seed(0)
    model = zoo.build_model("mace", num_channels=8, max_ell=1, correlation=2, num_interactions=1, radial_mlp=[8],
                            **model_config).double()
    return data, model


def test_validation_metrics_are_those_of_the_whole_set_in_one_batch(setup):
    data, model = setup
    assert len(data.valid) == 7
    module = PotentialModule(model, loss=dict(energy_weight=1.0, forces_weight=10.0),
                             optimizer=dict(name="adamw", lr=0.01), compute_forces=True)
    datamodule = AtomisticDataModule(data.train, data.valid, data.test, batch_size=2, valid_batch_size=3)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, inference_mode=False,
                         use_distributed_sampler=False)
    trainer.validate(module, datamodule=datamodule, verbose=False)  # batches of 3, 3 and 1 frames
    results = module.validation_results

    batch = Batch.from_data_list(data.valid)
    prediction = model(batch, compute_forces=True)
    energy_error = (prediction[schema.ENERGY] - batch[schema.ENERGY]).detach()
    forces_error = (prediction[schema.FORCES] - batch[schema.FORCES]).detach()
    num_atoms = (batch[schema.PTR][1:] - batch[schema.PTR][:-1]).to(torch.float64)
    expected = {
        "energy": energy_error,
        "energy_per_atom": energy_error / num_atoms,
        "forces": forces_error.reshape(-1),
    }
    assert set(results["metrics"]) == set(expected)
    for name, error in expected.items():
        assert results["metrics"][name]["mae"] == pytest.approx(1000 * error.abs().mean().item(), rel=1e-10)
        assert results["metrics"][name]["rmse"] == pytest.approx(
            1000 * error.square().mean().sqrt().item(), rel=1e-10)
    loss = module.loss_fn(prediction, batch).item()
    assert results["loss"] == pytest.approx(loss, rel=1e-10)


def test_bad_module_arguments_are_named(setup):
    data, model = setup
    with pytest.raises(ValueError, match="stage_two: unknown keys"):
        PotentialModule(model, loss=dict(stage_two=dict(start_epoch=1, lr=0.1, energy_wieght=2.0)),
                        optimizer=dict(name="adamw"))
    with pytest.raises(ValueError, match="name"):
        PotentialModule(model, loss=dict(), optimizer=dict(lr=0.1))
