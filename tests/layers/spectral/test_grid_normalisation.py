"""grid_coordinates and ChannelNormalisation / channel_statistics: the helpers every operator model shares."""

import pytest
import torch

from layers.spectral import ChannelNormalisation, channel_statistics, grid_coordinates


def test_periodic_grid_is_j_over_n():
    grid = grid_coordinates((4, 3), "periodic")
    assert grid.shape == (2, 4, 3)
    assert torch.equal(grid[0, :, 0], torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert torch.equal(grid[1, 2, :], torch.tensor([0.0, 1 / 3, 2 / 3]))
    # each channel is constant along the other dimension
    assert torch.equal(grid[0], grid[0, :, :1].expand(4, 3))


def test_nodes_grid_includes_both_ends():
    grid = grid_coordinates((5,), "nodes", dtype=torch.float64)
    assert grid.shape == (1, 5) and grid.dtype == torch.float64
    assert torch.allclose(grid[0], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    grid3 = grid_coordinates((2, 3, 4), "nodes")
    assert grid3.shape == (3, 2, 3, 4)
    assert grid3[2, 0, 0, -1] == 1.0 and grid3[1, 1, -1, 2] == 1.0


def test_grid_errors():
    with pytest.raises(ValueError, match="domain"):
        grid_coordinates((4,), "torus")
    with pytest.raises(ValueError, match=">= 2"):
        grid_coordinates((1,), "nodes")
    with pytest.raises(ValueError, match="at least one"):
        grid_coordinates((), "periodic")


def test_encode_decode_round_trip_and_values():
    norm = ChannelNormalisation(2, mean=[1.0, -2.0], std=[2.0, 0.5])
    x = torch.randn(3, 2, 5, 4)
    encoded = norm.encode(x)
    assert torch.allclose(encoded[:, 0], (x[:, 0] - 1.0) / 2.0)
    assert torch.allclose(encoded[:, 1], (x[:, 1] + 2.0) / 0.5)
    assert torch.allclose(norm.decode(encoded), x, atol=1e-6)
    # buffers are persistent, so they are saved with a model
    assert set(norm.state_dict()) == {"mean", "std"}


def test_identity_by_default_and_dtype_follows_input():
    norm = ChannelNormalisation(3)
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    assert torch.equal(norm.encode(x), x) and norm.encode(x).dtype == torch.float64


def test_normalisation_errors():
    with pytest.raises(ValueError, match="one value per channel"):
        ChannelNormalisation(2, mean=[0.0])
    with pytest.raises(ValueError, match="positive"):
        ChannelNormalisation(1, std=[0.0])
    with pytest.raises(ValueError, match=r"\[batch, 2"):
        ChannelNormalisation(2).encode(torch.zeros(1, 3, 4))


def test_channel_statistics_matches_definition():
    torch.manual_seed(0)
    x = torch.randn(10, 2, 6, 5) * torch.tensor([3.0, 0.1]).view(1, 2, 1, 1) + torch.tensor([5.0, -1.0]).view(1, 2, 1, 1)
    mean, std = channel_statistics(x)
    assert isinstance(mean, list) and len(std) == 2
    for c in range(2):
        values = x[:, c].double().flatten()
        assert mean[c] == pytest.approx(values.mean().item(), rel=1e-12)
        assert std[c] == pytest.approx(values.std(unbiased=False).item(), rel=1e-12)
    normalised = ChannelNormalisation(2, mean, std).encode(x)
    assert torch.allclose(normalised.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(normalised.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-5)


def test_channel_statistics_constant_channel_and_non_finite():
    x = torch.zeros(4, 1, 3)
    mean, std = channel_statistics(x)
    assert mean == [0.0] and 0 < std[0] <= 1e-12
    ChannelNormalisation(1, mean, std)  # usable: no division by zero
    bad = torch.ones(2, 2, 3)
    bad[1, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"channel\(s\) \[1\]"):
        channel_statistics(bad)


def test_sphere_coordinates_are_colatitude_nodes_and_longitude_periodic():
    from layers.spectral.grid import grid_coordinates

    grid = grid_coordinates((5, 8), "sphere", dtype=torch.float64)
    assert torch.equal(grid[0, :, 0], torch.arange(5, dtype=torch.float64) / 4)  # poles at 0 and 1
    assert torch.equal(grid[1, 0, :], torch.arange(8, dtype=torch.float64) / 8)  # 2 pi not repeated
    with pytest.raises(ValueError, match="nlat, nlon"):
        grid_coordinates((5, 8, 2), "sphere")
