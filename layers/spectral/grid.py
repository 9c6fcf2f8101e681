r"""Sample coordinates of the regular grids neural operators see, and moving sampled functions between grids.

Two conventions, named by ``domain``:

* ``"periodic"``: the unit torus sampled at :math:`x_j = j / N`, :math:`j = 0, \\dots, N-1` (the point
  :math:`x = 1` is the same as :math:`x = 0`, so it is not stored). Burgers and Navier-Stokes data.
* ``"nodes"``: the closed unit interval with both boundary nodes, :math:`x_j = j / (N - 1)`. Darcy data.
* ``"sphere"``: an equiangular ``[nlat, nlon]`` latitude-longitude grid with both poles, colatitude
  :math:`\theta_i / \pi = i / (n_{lat} - 1)` (nodes) and longitude :math:`\phi_j / 2\pi = j / n_{lon}` (periodic).
  Shallow-water data.

:func:`grid_coordinates` returns the coordinates as channels, ``[len(shape), *shape]``, which is what a
positional embedding concatenates to ``x: [batch, channels, *spatial]``.

Resampling (what the skip path of a neural operator needs to evaluate on another grid, zero-shot
super-resolution):

* :func:`fourier_resample`: the samples on the periodic box are read as the trigonometric interpolant
  (per dimension :math:`u(x) = \sum_{|k| < N/2} \hat u_k e^{2\pi i k x} + \hat u_{N/2}\cos(\pi N x)`, the
  Nyquist term, present for even ``N``, split evenly between :math:`\pm N/2` so it stays real), which is
  then evaluated on ``M`` points. Upsampling is exact: the new grid holds the old values at the old points
  (``M`` a multiple of ``N``) and any band-limited function (``|k| < N/2``) is reproduced at every new point.
  Downsampling keeps the frequencies the coarse grid resolves, ``|k| <= M/2`` (a band-limited projection,
  not a subsampling).
* :func:`spherical_resample`: spherical harmonic analysis at the largest degree both grids resolve,
  synthesis on the other grid (exact for functions of that band limit).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from layers.spectral.spherical_conv import GRIDS, SphericalHarmonicTransform

DOMAINS = ("periodic", "nodes", "sphere")


def check_domain(domain: str) -> str:
    """``domain`` itself, or a ValueError naming the valid choices."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(map(repr, DOMAINS))}; got {domain!r}")
    return domain


def grid_coordinates(
    shape: Sequence[int],
    domain: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The coordinates of a regular grid on the unit cube, one channel per dimension.

    Args:
        shape: the number of samples per spatial dimension, ``(N_1, ..., N_d)``, each >= 1
            (>= 2 for ``"nodes"``, which needs both ends).
        domain: ``"periodic"`` (``x_j = j / N``), ``"nodes"`` (``x_j = j / (N - 1)``) or ``"sphere"``
            (nodes in colatitude, periodic in longitude).
        dtype, device: of the returned tensor.

    Returns:
        ``[d, N_1, ..., N_d]``: channel ``k`` holds the coordinate along dimension ``k``, constant along
        the others.
    """
    check_domain(domain)
    shape = tuple(int(n) for n in shape)
    if not shape:
        raise ValueError("grid_coordinates needs at least one spatial dimension; got shape ()")
    if domain == "sphere" and len(shape) != 2:
        raise ValueError(f"the 'sphere' domain is a [nlat, nlon] grid; got shape {shape}")
    # per dimension: "nodes" includes both ends (needs 2 points), "periodic" does not
    kinds = ("nodes", "periodic") if domain == "sphere" else (domain,) * len(shape)
    if any(n < (2 if kind == "nodes" else 1) for n, kind in zip(shape, kinds)):
        raise ValueError(f"grid shape {shape} is too small for the {domain!r} domain (a nodes axis needs >= 2 points)")
    axes = []
    for n, kind in zip(shape, kinds):
        denominator = n if kind == "periodic" else n - 1
        # computed in float64 and cast once, so float32 grids are the correctly rounded j / N
        axes.append(torch.arange(n, dtype=torch.float64, device=device) / denominator)
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=0).to(dtype)


def _resample_axis(x: Tensor, axis: int, size: int) -> Tensor:
    """The trigonometric interpolant of ``x`` along ``axis`` evaluated on ``size`` points (module docstring)."""
    n = x.shape[axis]
    if size == n:
        return x
    spectrum = torch.fft.rfft(x, dim=axis, norm="forward")  # n // 2 + 1 bins
    bins = size // 2 + 1
    if size > n:
        if n % 2 == 0:
            # the Nyquist cosine of the coarse grid becomes the pair +-n/2 on the fine grid: half each
            # (irfft adds the conjugate of every bin below the fine grid's Nyquist)
            nyquist = spectrum.narrow(axis, n // 2, 1) * 0.5
            spectrum = torch.cat([spectrum.narrow(axis, 0, n // 2), nyquist], dim=axis)
        gap = list(spectrum.shape)
        gap[axis] = bins - spectrum.shape[axis]
        spectrum = torch.cat([spectrum, spectrum.new_zeros(gap)], dim=axis)
    else:
        spectrum = spectrum.narrow(axis, 0, bins)
        if size % 2 == 0:
            # on the coarse grid the pair +-size/2 is one real cosine, stored once in the Nyquist bin
            nyquist = 2 * spectrum.narrow(axis, bins - 1, 1).real.to(spectrum.dtype)
            spectrum = torch.cat([spectrum.narrow(axis, 0, bins - 1), nyquist], dim=axis)
    return torch.fft.irfft(spectrum, n=size, dim=axis, norm="forward")


def fourier_resample(x: Tensor, output_shape: Sequence[int]) -> Tensor:
    """Band-limited (trigonometric) interpolation of periodic samples onto another equispaced grid.

    Args:
        x: ``[..., N_1, ..., N_d]`` real samples at ``x_j = j / N`` on the unit torus (the last
            ``d = len(output_shape)`` dimensions are spatial).
        output_shape: ``(M_1, ..., M_d)``, each >= 1.

    Returns:
        ``[..., M_1, ..., M_d]``; ``x`` itself when the shapes agree. Dimension by dimension (the
        interpolant is a tensor product), see the module docstring for the rule.
    """
    output_shape = tuple(int(m) for m in output_shape)
    d = len(output_shape)
    if d == 0 or x.dim() < d or any(m < 1 for m in output_shape):
        raise ValueError(f"fourier_resample: output_shape {output_shape} must have 1..{x.dim()} positive entries for x of shape {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError("fourier_resample expects real samples")
    for axis, size in zip(range(x.dim() - d, x.dim()), output_shape):
        x = _resample_axis(x, axis, size)
    return x


def largest_band_limit(nlat: int, nlon: int, grid: str) -> int:
    """The largest degree ``L`` a ``(nlat, nlon)`` latitude-longitude grid of kind ``grid`` transforms exactly."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    from_lat = nlat - 1 if grid == "gauss-legendre" else (nlat - 1) // 2
    return min(from_lat, (nlon - 1) // 2)


def spherical_resample(x: Tensor, output_shape: Sequence[int], grid: str = "equiangular") -> Tensor:
    """Spectral interpolation on the sphere: ``x: [..., nlat, nlon]`` -> ``[..., *output_shape]``.

    Analysis at the largest degree ``L`` both grids resolve (:func:`largest_band_limit`), synthesis on
    the output grid of the same kind; ``x`` itself when the shapes agree. Exact for band limit ``L``;
    higher degrees in ``x`` are projected away (the quadrature of a grid resolves only degree ``L``).
    The transforms commute with rotations about the polar axis by whole input grid cells.
    """
    output_shape = tuple(int(n) for n in output_shape)
    if len(output_shape) != 2 or x.dim() < 2:
        raise ValueError(f"spherical_resample: x must be [..., nlat, nlon] and output_shape (nlat, nlon); got {tuple(x.shape)}, {output_shape}")
    nlat, nlon = x.shape[-2:]
    if (nlat, nlon) == output_shape:
        return x
    lmax = min(largest_band_limit(nlat, nlon, grid), largest_band_limit(*output_shape, grid))
    if lmax < 0:
        raise ValueError(f"spherical_resample: grids {(nlat, nlon)} -> {output_shape} resolve no degree on a {grid} grid")
    analysis = SphericalHarmonicTransform(nlat, nlon, lmax, grid).to(device=x.device, dtype=x.dtype)
    synthesis = SphericalHarmonicTransform(*output_shape, lmax, grid).to(device=x.device, dtype=x.dtype)
    return synthesis.inverse(analysis(x))
