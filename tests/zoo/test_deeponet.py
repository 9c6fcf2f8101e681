"""DeepONet: shapes, stacked vs unstacked branch, the trunk at other grids, sensors, normalisers, gradients."""

import pytest
import torch

from layers.spectral import grid_coordinates
from zoo.deeponet import DeepONet


def make(**overrides):
    arguments = dict(in_channels=2, out_channels=3, spatial_dims=2, sensor_shape=[5, 4], branch_layers=[16, 16],
                     trunk_layers=[12], basis_size=6, activation="tanh", domain="nodes")
    arguments.update(overrides)
    torch.manual_seed(0)
    return DeepONet(**arguments)


def test_output_shape_on_sensor_grid_and_on_another_grid():
    model = make()
    x = torch.randn(4, 2, 5, 4)
    assert model(x).shape == (4, 3, 5, 4)
    assert model(x, output_shape=[9, 3]).shape == (4, 3, 9, 3)
    assert (model.in_channels, model.out_channels, model.spatial_dims, model.domain) == (2, 3, 2, "nodes")


@pytest.mark.parametrize("stacked", [False, True])
def test_finer_output_restricted_to_every_other_node_equals_the_coarse_output(stacked):
    # on the nodes grid, the 2N-1 grid's even points are the N grid: j / (N-1) = 2j / (2N-2)
    model = make(stacked=stacked).double()
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64)
    coarse = model(x, output_shape=[5, 4])
    fine = model(x, output_shape=[9, 7])
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=0, atol=1e-14)


def test_output_is_branch_coefficients_times_trunk_basis_plus_bias():
    model = make()
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(2, 2, 5, 4)
    y = model(x, output_shape=[3, 3])
    coefficients = model.branch(x.reshape(2, -1)).reshape(2, 3, 6)
    points = grid_coordinates([3, 3], "nodes").reshape(2, -1).T
    basis = model.trunk(points)
    expected = torch.einsum("bcp,np->bcn", coefficients, basis) + model.bias[None, :, None]
    torch.testing.assert_close(y.reshape(2, 3, 9), expected)
    assert (basis > -1).all() and (basis < 1).all()  # tanh on the trunk's last layer (Lu et al.)


def test_stacked_and_unstacked_parameter_counts():
    sensors, hidden, p, out = 2 * 5 * 4, [16, 16], 6, 3
    unstacked = make(stacked=False)
    stacked = make(stacked=True)
    trunk = (2 * 12 + 12) + (12 * 6 + 6)
    one_branch = lambda last: (sensors * 16 + 16) + (16 * 16 + 16) + (16 * last + last)  # noqa: E731
    count = lambda m: sum(q.numel() for q in m.parameters())  # noqa: E731
    assert count(unstacked) == one_branch(p * out) + trunk + out
    assert count(stacked) == p * one_branch(out) + trunk + out


def test_stacked_branch_nets_are_independent_networks():
    model = make(stacked=True, branch_layers=[8])
    x = torch.randn(3, 40)
    batched = model.branch(x)  # [batch, p, out]
    for k in range(model.basis_size):
        w0, b0 = model.branch.weights[0][k], model.branch.biases[0][k]
        w1, b1 = model.branch.weights[1][k], model.branch.biases[1][k]
        torch.testing.assert_close(batched[:, k], torch.tanh(x @ w0 + b0) @ w1 + b1)


def test_input_off_the_sensor_grid_is_refused():
    model = make()
    with pytest.raises(ValueError, match="sensor"):
        model(torch.randn(1, 2, 10, 8))
    with pytest.raises(ValueError, match="sensor"):
        model(torch.randn(1, 3, 5, 4))
    with pytest.raises(ValueError, match="sensor_shape"):
        make(sensor_shape=[5])
    with pytest.raises(ValueError, match="activation"):
        make(activation="sigmoid")


def test_normalisers_wrap_the_raw_model():
    stats = dict(input_mean=[1.0, -2.0], input_std=[2.0, 0.5], output_mean=[0.1, 0.2, 0.3], output_std=[3.0, 4.0, 5.0])
    plain, normalised = make(), make(**stats)
    normalised.load_state_dict(plain.state_dict() | {k: v for k, v in normalised.state_dict().items() if "normalisation" in k})
    x = torch.randn(2, 2, 5, 4)
    encoded = (x - torch.tensor([1.0, -2.0])[None, :, None, None]) / torch.tensor([2.0, 0.5])[None, :, None, None]
    expected = plain(encoded) * torch.tensor([3.0, 4.0, 5.0])[None, :, None, None] + torch.tensor([0.1, 0.2, 0.3])[None, :, None, None]
    torch.testing.assert_close(normalised(x), expected)


@pytest.mark.parametrize("stacked", [False, True])
def test_every_parameter_gets_a_gradient(stacked):
    model = make(stacked=stacked, spatial_dims=1, sensor_shape=[7], activation="relu", domain="periodic")
    model(torch.randn(2, 2, 7), output_shape=[11]).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
