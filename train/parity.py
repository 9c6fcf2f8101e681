"""Parity plot of a trained potential: predicted against reference energy per atom and force components.

Drawn with matplotlib's object API on an Agg canvas (``matplotlib.figure.Figure``), so it never
needs a display and never touches pyplot's global state.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _panel(axes, reference: np.ndarray, predicted: np.ndarray, quantity: str, unit: str, error_unit: str,
           error_scale: float) -> None:
    if reference.size == 0:
        axes.text(0.5, 0.5, f"no {quantity} labels", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    low, high = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
    margin = 0.05 * (high - low or 1.0)
    axes.plot([low - margin, high + margin], [low - margin, high + margin], color="0.5", lw=1, zorder=0)
    axes.scatter(reference, predicted, s=4, alpha=0.5, linewidths=0)
    error = predicted - reference
    mae, rmse = error_scale * np.abs(error).mean(), error_scale * np.sqrt(np.square(error).mean())
    axes.text(0.96, 0.04, f"MAE {mae:.3g} {error_unit}\nRMSE {rmse:.3g} {error_unit}\nn = {reference.size}",
              transform=axes.transAxes, ha="right", va="bottom", fontsize=9)
    axes.set_xlim(low - margin, high + margin)
    axes.set_ylim(low - margin, high + margin)
    axes.set_aspect("equal")
    axes.set_xlabel(f"reference {quantity} ({unit})")
    axes.set_ylabel(f"predicted {quantity} ({unit})")


def plot_parity(
    path: str | os.PathLike,
    energy_per_atom_ref: np.ndarray,
    energy_per_atom_pred: np.ndarray,
    forces_ref: np.ndarray | None = None,
    forces_pred: np.ndarray | None = None,
    title: str = "",
    energy_label: str = "energy per atom",
) -> Path:
    """Write a two-panel parity plot (PNG) to ``path`` and return the path.

    energy_per_atom_ref, energy_per_atom_pred: ``[num_graphs]`` eV/atom (what they are, e.g. energies
        minus the E0s, is ``energy_label``).
    forces_ref, forces_pred: ``[3 num_atoms]`` force components, eV/Å (``None``: no force panel data).
    Each panel shows y = x and the MAE/RMSE in meV/atom and meV/Å.
    """
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    energy_axes, force_axes = figure.subplots(1, 2)
    _panel(energy_axes, np.asarray(energy_per_atom_ref, dtype=float), np.asarray(energy_per_atom_pred, dtype=float),
           energy_label, "eV/atom", "meV/atom", 1000.0)
    forces_ref = np.zeros(0) if forces_ref is None else np.asarray(forces_ref, dtype=float)
    forces_pred = np.zeros(0) if forces_pred is None else np.asarray(forces_pred, dtype=float)
    _panel(force_axes, forces_ref, forces_pred, "force component", "eV/Å", "meV/Å", 1000.0)
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
