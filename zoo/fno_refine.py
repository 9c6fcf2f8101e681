"""Give a trained FNO's last block every Fourier mode a grid resolves, without changing what it computes.

Spectral-Refiner (Cao, Liu, Zhang, Wu, Xu, "Spectral-Refiner: Accurate Fine-Tuning of Spatiotemporal Fourier
Neural Operator for Turbulent Flows", ICLR 2025) fine-tunes only the last spectral convolution of a trained
FNO, with all the modes of the target grid switched on. :func:`with_full_last_layer_modes` builds that model:
the same arguments with ``last_layer_modes`` = every mode of ``grid_shape``, and the old state with the last
convolution's weights zero-padded in the new modes (the dense block, or the mode factors of CP and Tucker
weights, whose ranks do not depend on ``last_layer_modes``), so on ``grid_shape`` it computes the same
function; :meth:`zoo.fno.FNO.last_layer_parameters` are then the ones to train.

Mode layout (:mod:`layers.spectral.spectral_conv`): along every dimension but the last the kept block is in
FFT order, ``0 .. m-1, -(m-1) .. -1``, so padding ``m -> m'`` inserts ``2 (m' - m)`` zero rows in the middle;
along the last dimension (frequencies ``0 .. m-1``) it appends ``m' - m`` zero rows.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def full_modes(grid_shape: Sequence[int]) -> list[int]:
    """Every mode ``SpectralConv`` resolves on ``grid_shape``: the largest ``m`` with ``2 m - 1 <= N`` per dimension."""
    if not grid_shape or any(int(n) < 1 for n in grid_shape):
        raise ValueError(f"grid_shape must be positive ints; got {grid_shape!r}")
    return [(int(n) + 1) // 2 for n in grid_shape]


def pad_kept_modes(tensor: Tensor, axis: int, new_size: int, last_dimension: bool) -> Tensor:
    """``tensor`` with its kept-mode ``axis`` zero-padded to ``new_size`` entries (module docstring layout)."""
    old_size = tensor.shape[axis]
    if new_size == old_size:
        return tensor
    gap = list(tensor.shape)
    gap[axis] = new_size - old_size
    zeros = tensor.new_zeros(gap)
    if last_dimension:
        return torch.cat([tensor, zeros], dim=axis)
    m = (old_size + 1) // 2  # old_size = 2 m - 1
    return torch.cat([tensor.narrow(axis, 0, m), zeros, tensor.narrow(axis, m, m - 1)], dim=axis)


def with_full_last_layer_modes(model: nn.Module, grid_shape: Sequence[int]) -> nn.Module:
    """A new FNO equal to ``model`` on ``grid_shape`` whose last block keeps every mode of that grid.

    Also importable as ``zoo.fno.with_full_last_layer_modes``. ``model`` must come from ``zoo.build_model`` (its ``build_arguments`` rebuild it) with a Fourier
    convolution. The new model has the same name and arguments, ``last_layer_modes = full_modes(grid_shape)``,
    and ``model``'s state (dtype and device included) with the last convolution padded by zeros.
    """
    # imported here: the registry imports zoo.fno, which re-exports this function
    from zoo.registry import build_model

    build = getattr(model, "build_arguments", None)
    if not hasattr(model, "last_layer_parameters") or build is None:
        raise ValueError("with_full_last_layer_modes needs an FNO built by zoo.build_model (its build_arguments rebuild it)")
    if model.kind != "fourier":
        raise ValueError(f"with_full_last_layer_modes needs a Fourier convolution; this model's is {model.kind!r}")
    grid_shape = tuple(int(n) for n in grid_shape)
    if len(grid_shape) != model.spatial_dims:
        raise ValueError(f"grid_shape must have {model.spatial_dims} entries; got {grid_shape}")
    modes = full_modes(grid_shape)
    old_modes = list(model.blocks[-1].convolution.modes)
    if any(new < old for new, old in zip(modes, old_modes)):
        raise ValueError(f"grid {grid_shape} resolves modes {modes}, fewer than the last block already keeps ({old_modes})")
    kwargs = dict(build["kwargs"], last_layer_modes=modes)
    parameter = next(model.parameters())
    refined = build_model(build["name"], **kwargs).to(dtype=parameter.dtype, device=parameter.device)

    prefix = f"blocks.{len(model.blocks) - 1}.convolution.weights."
    state = {}
    d = model.spatial_dims
    kept = [2 * m - 1 for m in modes[:-1]] + [modes[-1]]
    for key, value in model.state_dict().items():
        if key == prefix + "weight":  # dense [in, out, *kept, 2]
            for j in range(d):
                value = pad_kept_modes(value, 2 + j, kept[j], last_dimension=j == d - 1)
        elif key.startswith(prefix + "mode_factors."):  # CP / Tucker [kept_j, rank, 2]
            j = int(key.rsplit(".", 1)[1])
            value = pad_kept_modes(value, 0, kept[j], last_dimension=j == d - 1)
        state[key] = value
    refined.load_state_dict(state)
    return refined
