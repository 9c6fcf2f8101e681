"""Function-space losses for neural operators: relative L2, relative H1, a negative Sobolev norm, MSE.

Every loss takes ``prediction, target: [batch, channels, *spatial]`` (1 to 3 spatial dimensions) and
returns one value per sample, ``[batch]``; all channels of a sample are measured together (one
function with ``channels`` components). The grid is described by ``domain``:

- ``"periodic"``: ``x_j = j / N`` on the unit torus; uniform quadrature weights ``h = 1 / N``; the
  derivative is the central difference with periodic wrap, ``(f_{j+1} - f_{j-1}) / (2 h)``.
- ``"nodes"``: ``x_j = j / (N - 1)``, boundary included; trapezoid weights (``h``, ``h / 2`` at the two
  ends, ``h = 1 / (N - 1)``); the derivative is the central difference inside and the second-order
  one-sided difference at the boundary, ``(-3 f_0 + 4 f_1 - f_2) / (2 h)`` (``numpy.gradient`` with
  ``edge_order=2``).
- ``"sphere"`` (2-D only, ``[..., nlat, nlon]``): the equiangular grid with both poles, colatitude
  ``pi i / (nlat - 1)`` and longitude ``2 pi j / nlon`` (``datasets.pde.shallow_water``, SFNO);
  Clenshaw-Curtis weights in ``cos(colatitude)`` times uniform weights in longitude, i.e. the surface
  measure. Only ``relative_l2`` and ``mse`` are defined there (a finite-difference gradient or an FFT
  multiplier would ignore the metric of the sphere).

With ``e = prediction - target``, ``w`` the (tensor-product) quadrature weights and ``D_d`` the
difference operator along dimension ``d``:

    relative_l2  = sqrt(sum_x w |e|^2) / sqrt(sum_x w |t|^2)
    relative_h1  = sqrt(sum_x w (|e|^2 + sum_d |D_d e|^2)) / (the same for t)
    negative_sobolev (order s) = ||(1 - Delta / 4 pi^2)^(-s/2) e|| / ||(...) t||
                 = sqrt(sum_k (1 + |k|^2)^(-s) |e_hat(k)|^2) / (the same for t)
    mse          = mean over channels and points of |e|^2

where ``sum_x`` runs over the points and channels and ``k`` over the integer wavenumbers of the
discrete Fourier transform (``e_hat(k)``).

neuraloperator's losses (Kossaifi et al., ``neuralop.losses.LpLoss(d, p=2)`` and ``H1Loss(d)``, default
``measure = 1``): they flatten the last ``d`` axes, use uniform quadrature with ``h = 1 / N`` per axis
(a constant ``h^d`` that cancels in the ratio), ``torch.roll`` central differences, and

    LpLoss.rel  = ||x - y||_2 / ||y||_2,
    H1Loss.rel  = sqrt(||e||^2 + sum_d ||D_d e||^2) / sqrt(||y||^2 + sum_d ||D_d y||^2),

per ``[batch, channel]`` entry, then summed (``reduction="sum"``) or averaged. With
``domain="periodic"`` and one channel, ``relative_l2`` and ``relative_h1`` equal their per-sample values
(to rounding; ``tests/train/test_operator_losses.py`` checks a transcription of their formulas).
With several channels neuraloperator keeps one ratio per channel, while here the channels of a sample
share one ratio (the relative error of the vector-valued function), so a channel with a small norm
is not inflated. The one reduction over the batch is ``OperatorLoss``'s mean (neuraloperator's
training default is the batch sum, i.e. ``batch_size`` times this loss; the difference is a constant
factor on the learning rate).

The negative Sobolev norm ``H^{-s}`` weights the Fourier mode ``k`` of the error by
``(1 + |k|^2)^{-s}``, so small-scale errors count less than large-scale ones. Spectral-Refiner
(Cao, Brarda, Li, ..., "Spectral-Refiner: Accurate Fine-Tuning of Spatiotemporal Fourier Neural
Operator for Turbulent Flows", 2024) fine-tunes FNOs with such a negative Sobolev loss. On the
torus it is exact (up to aliasing). For ``"nodes"`` the ``N`` samples are taken as one period of length
``N h`` (``h = 1 / (N - 1)``), so the physical wavenumber of DFT index ``k`` is ``k / (N h)``: this is the
periodic-extension approximation, in which the jump between the two ends shows up as high-frequency
content (which this norm damps).

A target whose norm is zero makes the relative losses infinite or NaN (as neuraloperator's).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from layers.spectral.spherical_conv import clenshaw_curtis

DOMAINS = ("periodic", "nodes", "sphere")
LOSSES = ("relative_l2", "relative_h1", "negative_sobolev", "mse")


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> int:
    """Validate ``[batch, channels, *spatial]`` pairs; return the number of spatial dimensions."""
    for name, tensor in (("prediction", prediction), ("target", target)):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        if tensor.dim() not in (3, 4, 5):
            raise ValueError(f"{name} must be [batch, channels, *spatial] with 1 to 3 spatial dimensions, "
                             f"got shape {tuple(tensor.shape)}")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
    return prediction.dim() - 2


@functools.lru_cache(maxsize=16)
def _clenshaw_curtis_weights(points: int) -> tuple[float, ...]:
    """Clenshaw-Curtis weights on ``[-1, 1]`` (cached: a training step asks for the same grid every time)."""
    return tuple(clenshaw_curtis(points)[1].tolist())


def _check_flat(domain: str, what: str) -> None:
    _check_domain(domain)
    if domain == "sphere":
        raise ValueError(f"{what} is not defined on the 'sphere' domain (only relative_l2 and mse are); "
                         "use relative_l2")


def grid_spacing(points: int, domain: str) -> float:
    """``h = 1 / N`` (periodic) or ``1 / (N - 1)`` (nodes)."""
    _check_flat(domain, "a grid spacing")
    if domain == "nodes":
        if points < 2:
            raise ValueError(f"a 'nodes' grid needs at least 2 points per dimension, got {points}")
        return 1.0 / (points - 1)
    if points < 1:
        raise ValueError(f"a grid needs at least 1 point per dimension, got {points}")
    return 1.0 / points


def quadrature_weights(shape: Sequence[int], domain: str, dtype: torch.dtype = torch.float32,
                       device=None) -> torch.Tensor:
    """``[*shape]`` tensor-product quadrature weights on the unit cube or the sphere (they sum to 1).

    Periodic: ``h`` everywhere (the rectangle rule, exact for trigonometric polynomials below the
    Nyquist frequency). Nodes: trapezoid, ``h`` inside and ``h / 2`` at the two ends (exact for
    linear functions). Sphere (``shape = (nlat, nlon)``): Clenshaw-Curtis in ``cos(colatitude)``
    times ``1 / nlon``, divided by the area ``4 pi``.
    """
    _check_domain(domain)
    if domain == "sphere":
        if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
            raise ValueError(f"the 'sphere' domain needs a [nlat >= 2, nlon] grid, got {tuple(shape)}")
        latitude = torch.as_tensor(_clenshaw_curtis_weights(shape[0]), dtype=dtype, device=device) / 2.0
        return latitude[:, None].expand(shape[0], shape[1]) / shape[1]
    weights = torch.ones((), dtype=dtype, device=device)
    for points in shape:
        h = grid_spacing(points, domain)
        axis = torch.full((points,), h, dtype=dtype, device=device)
        if domain == "nodes":
            axis[0] = axis[-1] = h / 2
        weights = weights.unsqueeze(-1) * axis
    return weights


def derivative(x: torch.Tensor, dim: int, domain: str) -> torch.Tensor:
    """Finite-difference ``d x / d x_dim`` on the unit interval, second order everywhere (same shape).

    Periodic: ``(x_{j+1} - x_{j-1}) / (2h)`` with wrap-around (neuraloperator's ``central_diff``).
    Nodes: the same inside; ``(-3 x_0 + 4 x_1 - x_2) / (2h)`` and ``(3 x_{N-1} - 4 x_{N-2} + x_{N-3}) / (2h)``
    at the ends (``numpy.gradient(edge_order=2)``), which needs ``N >= 3``.
    """
    points = x.shape[dim]
    h = grid_spacing(points, domain)
    if domain == "periodic":
        return (torch.roll(x, -1, dims=dim) - torch.roll(x, 1, dims=dim)) / (2.0 * h)
    if points < 3:
        raise ValueError(f"derivatives on a 'nodes' grid need at least 3 points per dimension, got {points}")
    inner = (x.narrow(dim, 2, points - 2) - x.narrow(dim, 0, points - 2)) / (2.0 * h)
    first = (-3.0 * x.narrow(dim, 0, 1) + 4.0 * x.narrow(dim, 1, 1) - x.narrow(dim, 2, 1)) / (2.0 * h)
    last = (3.0 * x.narrow(dim, points - 1, 1) - 4.0 * x.narrow(dim, points - 2, 1)
            + x.narrow(dim, points - 3, 1)) / (2.0 * h)
    return torch.cat([first, inner, last], dim=dim)


def _weighted_norm(x: torch.Tensor, sqrt_weights: torch.Tensor) -> torch.Tensor:
    """``[batch]`` ``sqrt(sum_{c, x} w(x) |x_c|^2)`` as a vector norm (whose gradient at 0 is 0, not NaN)."""
    return torch.linalg.vector_norm((x * sqrt_weights).flatten(1), dim=1)


def _sobolev_norm(x: torch.Tensor, spatial_dims: int, domain: str, with_gradient: bool) -> torch.Tensor:
    """``[batch]`` discrete L2 norm (``with_gradient=False``) or H1 norm of ``x: [batch, channels, *spatial]``."""
    shape = x.shape[2:]
    sqrt_weights = quadrature_weights(shape, domain, dtype=x.dtype, device=x.device).sqrt()
    norms = [_weighted_norm(x, sqrt_weights)]
    if with_gradient:
        norms += [_weighted_norm(derivative(x, 2 + d, domain), sqrt_weights) for d in range(spatial_dims)]
    # the norm of the vector of norms: sqrt(||x||^2 + sum_d ||D_d x||^2), with a safe gradient at 0
    return torch.linalg.vector_norm(torch.stack(norms, dim=1), dim=1) if len(norms) > 1 else norms[0]


def relative_l2(prediction: torch.Tensor, target: torch.Tensor, domain: str = "periodic") -> torch.Tensor:
    """``[batch]`` relative L2 error ``||p - t|| / ||t||`` (quadrature-weighted, all channels together)."""
    dims = _check_pair(prediction, target)
    _check_domain(domain)
    return (_sobolev_norm(prediction - target, dims, domain, False)
            / _sobolev_norm(target, dims, domain, False))


def relative_h1(prediction: torch.Tensor, target: torch.Tensor, domain: str = "periodic") -> torch.Tensor:
    """``[batch]`` relative H1 error ``sqrt(||e||^2 + sum_d ||D_d e||^2) / (same for t)``, ``e = p - t``."""
    dims = _check_pair(prediction, target)
    _check_flat(domain, "relative_h1")
    return (_sobolev_norm(prediction - target, dims, domain, True)
            / _sobolev_norm(target, dims, domain, True))


def _negative_sobolev_norm(x: torch.Tensor, spatial_dims: int, domain: str, order: float) -> torch.Tensor:
    """``[batch]`` ``sqrt(sum_k (1 + |k|^2)^(-order) |x_hat(k)|^2)`` (unnormalised DFT; the scale cancels)."""
    shape = x.shape[2:]
    axes = tuple(range(2, 2 + spatial_dims))
    coefficients = torch.fft.rfftn(x, dim=axes)
    # |k|^2 with k in cycles per unit length: DFT index / period, period = N h (1 on the torus)
    real_dtype = x.dtype
    squared = torch.zeros((), dtype=real_dtype, device=x.device)
    for d, points in enumerate(shape):
        period = points * grid_spacing(points, domain)
        last = d == spatial_dims - 1
        index = (torch.fft.rfftfreq(points, d=1.0 / points, dtype=real_dtype, device=x.device) if last
                 else torch.fft.fftfreq(points, d=1.0 / points, dtype=real_dtype, device=x.device))
        squared = squared.unsqueeze(-1) + (index / period) ** 2
    multiplier = (1.0 + squared) ** (-order)
    # rfft keeps half of the last axis: every mode but 0 (and N/2 for even N) stands for two
    count = torch.full((coefficients.shape[-1],), 2.0, dtype=real_dtype, device=x.device)
    count[0] = 1.0
    if shape[-1] % 2 == 0:
        count[-1] = 1.0
    weights = (multiplier * count).sqrt()
    return torch.linalg.vector_norm((coefficients * weights).flatten(1), dim=1)


def relative_negative_sobolev(prediction: torch.Tensor, target: torch.Tensor, domain: str = "periodic",
                              order: float = 1.0) -> torch.Tensor:
    """``[batch]`` ``||(1 - Delta / 4 pi^2)^(-order/2) e|| / (same for t)`` via FFT multipliers
    ``(1 + |k|^2)^(-order)`` on ``|e_hat(k)|^2``; periodic extension on a ``"nodes"`` grid."""
    dims = _check_pair(prediction, target)
    _check_flat(domain, "relative_negative_sobolev")
    if not (isinstance(order, (int, float)) and math.isfinite(order) and order >= 0):
        raise ValueError(f"order must be a finite number >= 0, got {order!r}")
    return (_negative_sobolev_norm(prediction - target, dims, domain, float(order))
            / _negative_sobolev_norm(target, dims, domain, float(order)))


def mse(prediction: torch.Tensor, target: torch.Tensor, domain: str = "periodic") -> torch.Tensor:
    """``[batch]`` mean squared error over channels and points (``domain`` is checked, not used: the plain
    mean of neural-network practice, not a quadrature)."""
    _check_pair(prediction, target)
    _check_domain(domain)
    return (prediction - target).square().flatten(1).mean(dim=1)


class OperatorLoss:
    """A named operator loss on one grid: ``loss(prediction, target)`` is the batch mean of the
    per-sample values.

    Args:
        name: one of ``LOSSES``: ``"relative_l2"`` (default choice of the FNO papers),
            ``"relative_h1"``, ``"negative_sobolev"`` (``relative_negative_sobolev``) or ``"mse"``.
        domain: ``"periodic"``, ``"nodes"`` or ``"sphere"`` (see the module docstring).
        order: the Sobolev order ``s`` of ``"negative_sobolev"`` (``H^{-s}``); default 1.0. Only
            used by that loss.
    """

    def __init__(self, name: str, domain: str, order: float = 1.0) -> None:
        if name not in LOSSES:
            raise ValueError(f"unknown operator loss {name!r}; choose one of {LOSSES}")
        _check_domain(domain)
        if domain == "sphere" and name in ("relative_h1", "negative_sobolev"):
            _check_flat(domain, name)
        if not (isinstance(order, (int, float)) and math.isfinite(order) and order >= 0):
            raise ValueError(f"order must be a finite number >= 0, got {order!r}")
        self.name = name
        self.domain = domain
        self.order = float(order)

    def per_sample(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[batch]`` the loss of each sample."""
        if self.name == "relative_l2":
            return relative_l2(prediction, target, self.domain)
        if self.name == "relative_h1":
            return relative_h1(prediction, target, self.domain)
        if self.name == "negative_sobolev":
            return relative_negative_sobolev(prediction, target, self.domain, self.order)
        return mse(prediction, target, self.domain)

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar: the mean over the batch of ``per_sample``."""
        return self.per_sample(prediction, target).mean()

    def __repr__(self) -> str:
        order = f", order={self.order}" if self.name == "negative_sobolev" else ""
        return f"OperatorLoss({self.name!r}, domain={self.domain!r}{order})"
