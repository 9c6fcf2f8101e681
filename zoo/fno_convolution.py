"""The ``convolution`` argument of :class:`zoo.fno.FNO`: which integral operator every block applies.

The model takes its layer as data (neuraloperator's SFNO is its FNO with a spherical convolution passed
in); this module turns that data into layers. Two kinds:

* ``{"kind": "fourier", "modes": [m_1, ..., m_d], "weights": "dense" | "cp" | "tucker", "rank": 1.0}``:
  :class:`layers.spectral.SpectralConv` keeping ``|k_j| < m_j`` (FNO; TFNO with ``cp``/``tucker``).
* ``{"kind": "spherical", "lmax": L, "grid": "equiangular" | "gauss-legendre", "weights": ..., "rank": ...}``:
  :class:`layers.spectral.SphericalConv` keeping degrees ``l <= L`` (SFNO), on ``[batch, C, nlat, nlon]``.

Omitted keys take defaults: ``weights="dense"``, ``rank=1.0`` (neuraloperator's ``FNO(rank=1.0)``),
``grid="equiangular"``. ``rank`` only applies to ``cp``/``tucker``:

* an int ``R >= 1`` is the rank itself: the CP rank, or every Tucker rank (each capped at its dimension);
* a float in ``(0, 1]`` is a fraction ``f`` of the dense weight's entry count ``P = in * out * prod(n)``
  (tensorly's convention, which neuraloperator's ``TFNO(rank=0.42)`` uses):

  - CP: ``R = max(1, round(f P / (1 + in + out + sum(n))))`` (entries per rank-one term, ``lambda`` included);
  - Tucker: ranks proportional to the dimensions, ``r_k = clamp(round(s n_k), 1, n_k)`` with ``s`` solving
    ``prod(s n_k) + sum(n_k * s n_k) = f P`` (core plus factors), as tensorly's ``validate_tucker_rank``.

  Rounding makes the count approximate; ``f = 1`` is roughly the dense count (neuraloperator's default).

The ranks are resolved once from the *nominal* block shape ``(width, width, kept_mode_shape(modes))`` and
used by every block, the last one included even when it keeps other modes (``last_layer_modes``): the last
block then differs in its mode resolution only, which is what lets :func:`zoo.fno_refine.with_full_last_layer_modes`
zero-pad its factors.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from torch import nn

from layers.spectral import (
    CPSpectralWeights,
    DenseSpectralWeights,
    SpectralConv,
    SphericalConv,
    TuckerSpectralWeights,
    kept_mode_shape,
)
from layers.spectral.spherical_conv import GRIDS

KINDS = ("fourier", "spherical")
WEIGHTS = ("dense", "cp", "tucker")
KEYS = {
    "fourier": {"required": ("kind", "modes"), "optional": ("weights", "rank")},
    "spherical": {"required": ("kind", "lmax"), "optional": ("grid", "weights", "rank")},
}
DEFAULTS = {"weights": "dense", "rank": 1.0, "grid": "equiangular"}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_convolution(convolution: Mapping[str, Any], spatial_dims: int) -> dict[str, Any]:
    """The validated convolution spec with its defaults filled in (a new plain dict).

    Raises ValueError naming the key that is missing, unknown or wrong.
    """
    if not isinstance(convolution, Mapping):
        raise ValueError(f"convolution must be a mapping like {{'kind': 'fourier', 'modes': [16, 16]}}; got {convolution!r}")
    kind = convolution.get("kind")
    if kind not in KINDS:
        raise ValueError(f"convolution['kind'] must be one of {KINDS}; got {kind!r}")
    allowed = KEYS[kind]["required"] + KEYS[kind]["optional"]
    unknown = sorted(set(convolution) - set(allowed))
    if unknown:
        raise ValueError(f"convolution of kind {kind!r} got unknown key(s) {unknown}; valid: {list(allowed)}")
    missing = [key for key in KEYS[kind]["required"] if key not in convolution]
    if missing:
        raise ValueError(f"convolution of kind {kind!r} needs key(s) {missing}")
    spec = {key: convolution.get(key, DEFAULTS.get(key)) for key in allowed}
    if kind == "fourier":
        modes = spec["modes"]
        modes = [modes] if _positive_int(modes) else modes
        if not isinstance(modes, Sequence) or isinstance(modes, str) or not all(_positive_int(m) for m in modes):
            raise ValueError(f"convolution['modes'] must be a list of positive ints; got {spec['modes']!r}")
        if len(modes) != spatial_dims:
            raise ValueError(f"convolution['modes'] needs one entry per spatial dimension ({spatial_dims}); got {list(modes)}")
        spec["modes"] = [int(m) for m in modes]
    else:
        if spatial_dims != 2:
            raise ValueError(f"a spherical convolution works on [batch, C, nlat, nlon]: spatial_dims must be 2, got {spatial_dims}")
        lmax = spec["lmax"]
        if not isinstance(lmax, int) or isinstance(lmax, bool) or lmax < 0:
            raise ValueError(f"convolution['lmax'] must be a non-negative int; got {lmax!r}")
        if spec["grid"] not in GRIDS:
            raise ValueError(f"convolution['grid'] must be one of {GRIDS}; got {spec['grid']!r}")
    if spec["weights"] not in WEIGHTS:
        raise ValueError(f"convolution['weights'] must be one of {WEIGHTS}; got {spec['weights']!r}")
    if spec["weights"] == "dense" and "rank" in convolution:
        raise ValueError("convolution['rank'] applies to 'cp' and 'tucker' weights only, not 'dense'")
    rank = spec["rank"]
    if isinstance(rank, bool) or not (
        (isinstance(rank, int) and rank >= 1) or (isinstance(rank, float) and 0.0 < rank <= 1.0)
    ):
        raise ValueError(f"convolution['rank'] must be an int >= 1 (the rank) or a float in (0, 1] (a fraction of the dense size); got {rank!r}")
    return spec


def weight_shape(spec: Mapping[str, Any], channels: int, modes: Sequence[int] | None = None) -> tuple[int, ...]:
    """``(in, out, *block)``: the dense weight shape of a ``channels -> channels`` block of ``spec``."""
    if spec["kind"] == "fourier":
        return (channels, channels, *kept_mode_shape(tuple(modes if modes is not None else spec["modes"])))
    return (channels, channels, spec["lmax"] + 1)


def resolve_rank(spec: Mapping[str, Any], shape: Sequence[int]) -> int | tuple[int, ...] | None:
    """The CP rank (int) or Tucker ranks (tuple, one per dimension of ``shape``) of ``spec`` (module docstring)."""
    rank, weights = spec["rank"], spec["weights"]
    if weights == "dense":
        return None
    entries = math.prod(shape)
    if weights == "cp":
        if isinstance(rank, int):
            return rank
        return max(1, round(rank * entries / (1 + sum(shape))))
    if isinstance(rank, int):
        return tuple(min(rank, n) for n in shape)
    target = rank * entries
    squares = sum(n * n for n in shape)

    def count(s: float) -> float:
        return math.prod(s * n for n in shape) + s * squares

    low, high = 0.0, 1.0  # count(1) = P + sum(n^2) > f P: the root lies in (0, 1)
    for _ in range(100):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if count(middle) < target else (low, middle)
    return tuple(min(n, max(1, round(low * n))) for n in shape)


def build_convolution(spec: Mapping[str, Any], channels: int, modes: Sequence[int] | None = None) -> nn.Module:
    """A ``channels -> channels`` convolution of ``spec`` (parsed); ``modes`` overrides the Fourier modes of
    this block (the last block's ``last_layer_modes``), the factorisation ranks stay those of ``spec``'s modes."""
    rank = resolve_rank(spec, weight_shape(spec, channels))
    shape = weight_shape(spec, channels, modes)
    complex_valued = spec["kind"] == "fourier"
    if spec["weights"] == "dense":
        weights = DenseSpectralWeights(channels, channels, shape[2:], complex_valued=complex_valued)
    elif spec["weights"] == "cp":
        weights = CPSpectralWeights(channels, channels, shape[2:], rank=rank, complex_valued=complex_valued)
    else:
        weights = TuckerSpectralWeights(channels, channels, shape[2:], ranks=rank, complex_valued=complex_valued)
    if spec["kind"] == "fourier":
        return SpectralConv(channels, channels, tuple(modes if modes is not None else spec["modes"]), weights=weights)
    return SphericalConv(channels, channels, spec["lmax"], grid=spec["grid"], weights=weights)
