"""plot_predictions writes PNGs for 1-D and 2-D samples and rejects bad shapes."""

from __future__ import annotations

import pytest
import torch

from train.operator_plots import plot_predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_one_dimensional_png(tmp_path):
    x = torch.linspace(0, 1, 16).sin()[None]
    truth = x.cos()
    path = tmp_path / "sub" / "burgers.png"
    plot_predictions(path, x, truth, truth + 0.01, "periodic", "burgers sample 0")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_two_dimensional_multichannel_png_with_another_output_grid(tmp_path):
    x = torch.rand(1, 8, 8)
    truth = torch.rand(3, 16, 16)  # e.g. three snapshots, evaluated on a finer grid
    path = tmp_path / "ns.png"
    plot_predictions(path, x, truth, truth * 1.1, "nodes", "navier-stokes")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_sphere_png(tmp_path):
    state = torch.rand(3, 9, 16)  # height, vorticity, divergence on nlat x 2 (nlat - 1)
    plot_predictions(tmp_path / "sw.png", state, state, state + 0.1, "sphere", "shallow water")
    assert (tmp_path / "sw.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="sphere"):
        plot_predictions(tmp_path / "sw1d.png", state[:, 0], state[:, 0], state[:, 0], "sphere", "bad")


@pytest.mark.parametrize("x, truth, prediction, domain, match", [
    (torch.rand(8), torch.rand(1, 8), torch.rand(1, 8), "periodic", "x must be one sample"),
    (torch.rand(1, 2, 4, 4), torch.rand(1, 8), torch.rand(1, 8), "periodic", "x must be one sample"),
    (torch.rand(1, 8), torch.rand(1, 8), torch.rand(1, 9), "periodic", "truth shape"),
    (torch.rand(1, 8), torch.rand(1, 8, 8), torch.rand(1, 8, 8), "periodic", "spatial axes"),
    (torch.rand(1, 8), torch.rand(1, 8), torch.rand(1, 8), "torus", "domain"),
])
def test_bad_input(tmp_path, x, truth, prediction, domain, match):
    with pytest.raises(ValueError, match=match):
        plot_predictions(tmp_path / "bad.png", x, truth, prediction, domain, "bad")
    assert not (tmp_path / "bad.png").exists()
