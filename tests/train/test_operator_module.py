"""The operator training's parts without the CLI: grids, schedule, windows, rollout, model config filling."""

import math
from dataclasses import dataclass, field

import pytest
import torch

import zoo
from train.config import ConfigError
from train.operator import OperatorModule, subsample_grid
from train.operator_data_module import OperatorDataModule, TrajectoryWindows
from train.operator_experiment import _refine_options, fill_model_config
from train.operator_schedule import EpochSchedule


@dataclass
class Data:
    """The fields of ``datasets.pde.operator_data.OperatorData`` that training reads."""

    task: str
    domain: str
    spatial_dims: int
    resolution: int
    train_x: torch.Tensor
    train_y: torch.Tensor | None
    valid_x: torch.Tensor
    valid_y: torch.Tensor | None
    test: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    pde_parameter_names: list = field(default_factory=list)
    train_parameters: torch.Tensor | None = None
    valid_parameters: torch.Tensor | None = None
    test_parameters: dict = field(default_factory=dict)


class NextFrame(torch.nn.Module):
    """A stand-in operator with a known rollout: the next frame is ``2 * latest - previous``."""

    def forward(self, x, output_shape=None):
        return (2 * x[:, -1:] - x[:, -2:-1]) if x.shape[1] > 1 else x[:, -1:]


def test_subsample_grid_nodes_and_periodic():
    x = torch.arange(9.0).reshape(1, 1, 9)
    assert subsample_grid(x, [5], "nodes").flatten().tolist() == [0, 2, 4, 6, 8]  # x_j = j / 8 -> j / 4
    y = torch.arange(8.0).reshape(1, 1, 8)
    assert subsample_grid(y, [4], "periodic").flatten().tolist() == [0, 2, 4, 6]
    z = torch.randn(2, 3, 17, 17)
    assert torch.equal(subsample_grid(z, [9, 9], "nodes"), z[:, :, ::2, ::2])
    with pytest.raises(ValueError, match="cannot be subsampled"):
        subsample_grid(torch.zeros(1, 1, 10), [5], "nodes")


def test_epoch_schedules():
    cosine = EpochSchedule.from_config({"name": "cosine", "eta_min": 0.1, "epochs": None}, max_epochs=4)
    assert [cosine.lr(1.1, e) for e in (0, 2, 4, 9)] == pytest.approx([1.1, 0.6, 0.1, 0.1])
    step = EpochSchedule.from_config({"name": "step", "step_size": 2, "gamma": 0.5}, max_epochs=None)
    assert [step.lr(1.0, e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    for epoch in (0, 3, 1):  # a function of the epoch alone: any order gives the same rates
        step.apply(optimizer, epoch)
    assert optimizer.param_groups[0]["lr"] == 2.0 and optimizer.param_groups[0]["initial_lr"] == 2.0
    with pytest.raises(ValueError, match="max_epochs"):
        EpochSchedule.from_config({"name": "cosine"}, max_epochs=None)
    with pytest.raises(ValueError, match="unknown option"):
        EpochSchedule.from_config({"name": "step", "step_size": 2, "eta_min": 0.0}, max_epochs=3)


def test_trajectory_windows_and_rollout_batches():
    u = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # 2 trajectories, 6 frames, 3 points
    windows = TrajectoryWindows(u, history=4)
    assert len(windows) == 2 * 2
    x, y = windows[3]  # trajectory 1, second window: frames 1..4 -> 5
    assert torch.equal(x, u[1, 1:5]) and torch.equal(y, u[1, 5:6])
    data = Data("rollout", "periodic", 1, 3, u, None, u[:1], None, test={3: (u, None)})
    module = OperatorDataModule(data, batch_size=2, history=4, rollout_training="rollout")
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (2, 4, 3) and y.shape == (2, 2, 3)
    assert [res for res, _ in module.test_sets()] == [3]
    with pytest.raises(ValueError, match="history"):
        OperatorDataModule(data, batch_size=2, history=6)


def test_rollout_prediction_is_autoregressive():
    module = OperatorModule(NextFrame(), loss={"name": "relative_l2"}, optimizer={"name": "adamw", "lr": 1e-3},
                            task="rollout")
    t = torch.arange(8, dtype=torch.float32)
    u = (1.0 + t[None, :, None] * torch.ones(1, 8, 5))  # linear in time: extrapolated exactly
    prediction = module.predict(u[:, :3], u[:, 3:])
    assert torch.allclose(prediction, u[:, 3:])
    noisy = u[:, :3].clone()
    noisy[:, -1] += 1.0  # an error in the latest frame is carried forward: 1, 2, 3, ... more per step
    drift = (module.predict(noisy, u[:, 3:]) - u[:, 3:])[0, :, 0]
    assert torch.allclose(drift, torch.arange(2.0, 7.0))


def test_deeponet_gets_its_sensor_grid_and_the_target_grid():
    model = zoo.build_model("deeponet", in_channels=1, out_channels=1, spatial_dims=1, sensor_shape=[9],
                            branch_layers=[8], trunk_layers=[8], basis_size=4, domain="nodes")
    module = OperatorModule(model, loss={"name": "relative_l2"}, optimizer={"name": "adamw", "lr": 1e-3},
                            domain="nodes")
    fine = torch.randn(3, 1, 17)
    out = module(fine, [17])
    assert out.shape == (3, 1, 17)
    assert torch.allclose(out, model(fine[..., ::2], output_shape=[17]))
    assert torch.allclose(out[..., ::2], module(fine[..., ::2], [9]), atol=1e-6)  # the trunk at the shared points


def test_fill_model_config_from_the_training_set():
    x = torch.randn(6, 2, 9, 9) * 3 + 1
    y = torch.randn(6, 1, 9, 9)
    data = Data("map", "nodes", 2, 9, x, y, x[:2], y[:2])
    filled = fill_model_config({"name": "fno", "in_channels": None, "out_channels": None, "spatial_dims": None,
                                "domain": None, "input_mean": None, "input_std": None, "output_mean": None,
                                "output_std": [2.0], "convolution": {"kind": "fourier", "modes": [3, 3]}}, data, None)
    filled_shape = (filled["in_channels"], filled["out_channels"], filled["spatial_dims"], filled["domain"])
    assert filled_shape == (2, 1, 2, "nodes")
    assert filled["input_mean"][0] == pytest.approx(float(x[:, 0].double().mean()), rel=1e-6)
    assert filled["input_std"][1] == pytest.approx(float(x[:, 1].double().std(unbiased=False)), rel=1e-6)
    assert filled["output_std"] == [2.0]  # given values are kept
    assert "sensor_shape" not in filled  # not an FNO argument
    deeponet = fill_model_config({"name": "deeponet", "sensor_shape": None}, data, None)
    assert deeponet["sensor_shape"] == [9, 9]
    with pytest.raises(ConfigError, match="model.domain='periodic' but the data needs 'nodes'"):
        fill_model_config({"name": "fno", "domain": "periodic"}, data, None)
    # CAPE: channel attention takes its width from the data's per-sample parameters, and needs them
    assert fill_model_config({"name": "fno", "channel_attention_parameters": None}, data, None)[
        "channel_attention_parameters"] == 0
    with pytest.raises(ConfigError, match="channel_attention_parameters=1 but the data carry 0 PDE parameter"):
        fill_model_config({"name": "fno", "channel_attention_parameters": 1}, data, None)
    with_nu = Data("map", "nodes", 2, 9, x, y, x[:2], y[:2], pde_parameter_names=["nu"],
                   train_parameters=torch.rand(6, 1), valid_parameters=torch.rand(2, 1))
    assert fill_model_config({"name": "fno", "channel_attention_parameters": None}, with_nu, None)[
        "channel_attention_parameters"] == 1
    assert fill_model_config({"name": "fno", "channel_attention_parameters": 0}, with_nu, None)[
        "channel_attention_parameters"] == 0  # an FNO that ignores the parameters

    u = torch.randn(4, 7, 8, 8) * 2 + 5
    rollout = fill_model_config({"name": "fno"}, Data("rollout", "periodic", 2, 8, u, None, u[:1], None), 3)
    assert (rollout["in_channels"], rollout["out_channels"]) == (3, 1)
    assert len(rollout["input_mean"]) == 3 and len(set(rollout["input_mean"])) == 1
    assert rollout["output_mean"][0] == pytest.approx(float(u.double().mean()), rel=1e-6)
    assert math.isclose(rollout["input_std"][0], rollout["output_std"][0])


def test_refine_applies_to_fourier_fno_only():
    config = {"refine": {"epochs": 2, "lr": 1e-3, "loss": "negative_sobolev", "order": 1.0}}
    assert _refine_options({**config, "model": {"name": "fno", "convolution": {"kind": "fourier"}}})["epochs"] == 2
    for model in ({"name": "mgno"}, {"name": "sfno", "convolution": {"kind": "spherical"}}):
        with pytest.raises(ConfigError, match="Spectral-Refiner"):
            _refine_options({**config, "model": model})
    with pytest.raises(ConfigError, match="unknown key"):
        _refine_options({"refine": {"epochs": 1, "steps": 3}, "model": {"name": "fno"}})
