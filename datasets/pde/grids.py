"""Sample grids of the PDE data and their subsampling, shared by the generator and the data builder.

Three grids, per spatial axis of ``n`` points (``domain``):

- ``"periodic"``: ``x_j = j / n`` on the unit torus; a coarser grid of ``s`` points is every ``n / s``-th point;
- ``"nodes"``: ``x_j = j / (n - 1)``, both ends included (Darcy); every ``(n - 1) / (s - 1)``-th point, so both
  grids keep the boundary;
- ``"sphere"``: ``[..., nlat, 2 (nlat - 1)]``, colatitude ``pi i / (nlat - 1)`` with both poles and
  ``2 (nlat - 1)`` longitudes (shallow water); every ``(nlat - 1) / (s - 1)``-th latitude and longitude.
"""

from __future__ import annotations

import torch

__all__ = ["reachable", "admissible_resolutions", "grid_resolution", "subsample_grid"]


def reachable(points: int, resolution: int, domain: str) -> bool:
    """Whether a grid of ``resolution`` points is every ``r``-th point of one of ``points`` (for
    ``"sphere"``: latitudes, both poles kept; the longitudes follow)."""
    if domain == "sphere":
        return resolution >= 3 and (points - 1) % (resolution - 1) == 0
    if domain == "nodes":
        return resolution >= 2 and (points - 1) % (resolution - 1) == 0
    return resolution >= 1 and points % resolution == 0


def admissible_resolutions(points: int, domain: str) -> list[int]:
    """Every resolution a grid of ``points`` subsamples to."""
    return [s for s in range(1, points + 1) if reachable(points, s, domain)]


def grid_resolution(field_: torch.Tensor, domain: str) -> int:
    """Points per dimension of ``[..., *grid]``: the last axis, or the latitudes ``[..., nlat, nlon]`` on a sphere."""
    return field_.shape[-2] if domain == "sphere" else field_.shape[-1]


def subsample_grid(field_: torch.Tensor, resolution: int, domain: str, spatial_dims: int) -> torch.Tensor:
    """Every ``r``-th point along the last ``spatial_dims`` axes; ValueError naming the admissible
    resolutions when ``resolution`` is not reachable.

    ``"periodic"``: ``r = n / s``; ``"nodes"``: ``r = (n - 1) / (s - 1)`` (all axes of ``n`` points);
    ``"sphere"``: ``[..., n, 2 (n - 1)]`` (latitudes with both poles, longitudes), ``r = (n - 1) / (s - 1)``
    on both axes.
    """
    points = grid_resolution(field_, domain)
    if domain == "sphere":
        if spatial_dims != 2 or field_.shape[-1] != 2 * (points - 1):
            raise ValueError(f"a 'sphere' grid is [..., nlat, 2 (nlat - 1)], got {list(field_.shape)}")
    elif any(size != points for size in field_.shape[field_.ndim - spatial_dims:]):
        raise ValueError(f"expected a grid with the same number of points per axis, got {list(field_.shape)}")
    if resolution == points:
        return field_
    if not reachable(points, resolution, domain):
        raise ValueError(f"resolution {resolution} is not a subsample of a {domain!r} grid of {points} points; "
                         f"admissible: {admissible_resolutions(points, domain)}")
    stride = points // resolution if domain == "periodic" else (points - 1) // (resolution - 1)
    return field_[(Ellipsis,) + (slice(None, None, stride),) * spatial_dims].contiguous()
