"""One figure per sample of a PDE surrogate: input, truth, prediction and |error| (``plot_predictions``).

- 1-D fields ``[channels, s]``: three line panels, the input; truth and prediction on the same axes;
  the absolute error ``|prediction - truth|``.
- 2-D fields ``[channels, s, s]``: four ``imshow`` panels with colour bars; truth and prediction share
  one colour scale so they can be compared by eye. On the ``"sphere"`` (``[channels, nlat, nlon]``,
  colatitude ``pi i / (nlat - 1)``, longitude ``2 pi j / nlon``) the panels are latitude-longitude maps.

Multi-channel fields show their first channel (the title says so). Points are placed on the grid of
``domain``: ``x_j = j / N`` (``"periodic"``) or ``j / (N - 1)`` (``"nodes"``), so input and output
grids of different sizes line up. The PNG is rendered by matplotlib's Agg (a bare ``Figure``, no pyplot
state and no display), whatever backend the caller selected.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DOMAINS = ("periodic", "nodes", "sphere")


def _coordinates(points: int, domain: str):
    denominator = points - 1 if domain == "nodes" else points
    return [j / max(denominator, 1) for j in range(points)]


def _as_field(name: str, value) -> torch.Tensor:
    """``[channels, *spatial]`` float CPU tensor with 1 or 2 spatial axes (a lone ``[*spatial]`` gets a channel)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in (2, 3):
        raise ValueError(f"{name} must be one sample [channels, s] or [channels, s, s], got shape {tuple(value.shape)}")
    return value.detach().to("cpu", torch.float64)


def plot_predictions(path: str | os.PathLike, x: torch.Tensor, truth: torch.Tensor, prediction: torch.Tensor,
                     domain: str, title: str) -> None:
    """Write a PNG of one sample to ``path``.

    Args:
        path: the PNG to write (its folder is created).
        x: the input ``[C_in, *spatial_in]`` (1 or 2 spatial axes).
        truth, prediction: ``[C_out, *spatial]``, the same shape; the spatial rank must be ``x``'s.
        domain: ``"periodic"`` or ``"nodes"`` (where the points lie).
        title: the figure title.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    x, truth, prediction = _as_field("x", x), _as_field("truth", truth), _as_field("prediction", prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth shape {tuple(truth.shape)} != prediction shape {tuple(prediction.shape)}")
    if x.dim() != truth.dim():
        raise ValueError(f"x has {x.dim() - 1} spatial axes but truth has {truth.dim() - 1}")
    if domain == "sphere" and truth.dim() != 3:
        raise ValueError(f"a 'sphere' sample is [channels, nlat, nlon], got truth shape {tuple(truth.shape)}")

    # a bare Figure (no pyplot): no global state, no display, and savefig renders PNG with Agg
    # whatever backend the user has selected
    from matplotlib.figure import Figure

    notes = []
    if x.shape[0] > 1:
        notes.append(f"input channel 0 of {x.shape[0]}")
    if truth.shape[0] > 1:
        notes.append(f"output channel 0 of {truth.shape[0]}")
    full_title = title + (f"  ({'; '.join(notes)})" if notes else "")
    x, truth, prediction = x[0], truth[0], prediction[0]
    error = (prediction - truth).abs()

    if x.dim() == 1:
        figure = Figure(figsize=(12, 3.4), layout="constrained")
        axes = figure.subplots(1, 3)
        axes[0].plot(_coordinates(x.shape[0], domain), x.numpy(), color="tab:gray")
        axes[0].set_title("input")
        grid = _coordinates(truth.shape[0], domain)
        axes[1].plot(grid, truth.numpy(), label="truth", color="black")
        axes[1].plot(grid, prediction.numpy(), label="prediction", color="tab:red", linestyle="--")
        axes[1].legend()
        axes[1].set_title("truth vs prediction")
        axes[2].plot(grid, error.numpy(), color="tab:blue")
        axes[2].set_title("|prediction - truth|")
        for axis in axes:
            axis.set_xlabel("x")
    else:
        figure = Figure(figsize=(15, 3.6), layout="constrained")
        axes = figure.subplots(1, 4)
        low = min(truth.min().item(), prediction.min().item())
        high = max(truth.max().item(), prediction.max().item())
        panels = [("input", x, {}), ("truth", truth, {"vmin": low, "vmax": high}),
                  ("prediction", prediction, {"vmin": low, "vmax": high}), ("|prediction - truth|", error, {})]
        for axis, (name, values, scale) in zip(axes, panels):
            if domain == "sphere":  # rows are colatitudes pi i / (nlat - 1), columns longitudes 2 pi j / nlon
                nlat, nlon = values.shape
                half_lat, half_lon = 90.0 / max(nlat - 1, 1), 180.0 / nlon
                image = axis.imshow(values.numpy(), origin="upper", cmap="viridis", aspect="auto",
                                    extent=(-half_lon, 360.0 - half_lon, -90.0 - half_lat, 90.0 + half_lat), **scale)
                axis.set_xlabel("longitude (deg)")
                axis.set_ylabel("latitude (deg)")
            else:
                # the first array axis is x: transpose so x runs to the right, y upwards; pixels centred on
                # the grid points of ``domain``
                extent = []
                for size in values.shape:
                    points = _coordinates(size, domain)
                    half = 0.5 * (points[1] - points[0]) if size > 1 else 0.5
                    extent += [points[0] - half, points[-1] + half]
                image = axis.imshow(values.numpy().T, origin="lower", extent=extent, cmap="viridis", **scale)
                axis.set_xlabel("x")
                axis.set_ylabel("y")
            figure.colorbar(image, ax=axis, shrink=0.85)
            axis.set_title(name)
    relative = (error.norm() / truth.norm().clamp_min(1e-300)).item()
    figure.suptitle(f"{full_title}\nrelative L2 error (unweighted) {relative:.3e}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
