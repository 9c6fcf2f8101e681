"""Assertions shared by every layer and model test."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from e3nn import o3

from tests.tolerances import tolerance


def random_o3(dtype: torch.dtype, inversion: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[3, 3]`` a Haar-random rotation, times ``-1`` (an improper element) when ``inversion``."""
    q = torch.randn(4, dtype=torch.float64, generator=generator)
    rotation = o3.quaternion_to_matrix(q / q.norm())
    return (rotation * (-1.0 if inversion else 1.0)).to(dtype)


def act(x: torch.Tensor, irreps: o3.Irreps | str, element: torch.Tensor) -> torch.Tensor:
    """Apply the O(3) ``element`` to ``x: [..., irreps.dim]`` (``"1o"`` irreps are plain vectors)."""
    D = o3.Irreps(irreps).D_from_matrix(element.to(torch.float64)).to(x.dtype)
    return x @ D.T


def equivariance_error(
    function: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    irreps_in: Sequence[o3.Irreps | str],
    irreps_out: o3.Irreps | str,
    element: torch.Tensor,
) -> torch.Tensor:
    """Per-row ``|f(g x) - g f(x)|`` (2-norm over the last dimension)."""
    moved = [act(x, irreps, element) for x, irreps in zip(inputs, irreps_in)]
    return (function(*moved) - act(function(*inputs), irreps_out, element)).norm(dim=-1)


def assert_equivariant(
    function: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    irreps_in: Sequence[o3.Irreps | str],
    irreps_out: o3.Irreps | str,
    *,
    seed: int = 0,
    kind: str = "equivariance",
) -> None:
    """``f(g x) == g f(x)`` for a random rotation and a random improper element (with inversion)."""
    dtype = inputs[0].dtype
    generator = torch.Generator().manual_seed(seed)
    reference = function(*inputs)
    for inversion in (False, True):
        element = random_o3(dtype, inversion, generator)
        moved = [act(x, irreps, element) for x, irreps in zip(inputs, irreps_in)]
        torch.testing.assert_close(
            function(*moved),
            act(reference, irreps_out, element),
            **tolerance(dtype, kind),
            msg=lambda m: f"not equivariant ({'with' if inversion else 'without'} inversion): {m}",
        )
