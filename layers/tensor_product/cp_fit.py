r"""Rank-R CP factors of a Clebsch-Gordan coupling tensor: fitted once, deterministically, cached on disk.

The coupling tensor :math:`M \in \mathbb{R}^{D_1 \times D_2 \times D_3}` of irreps ``S1 x S2 -> S3``
(one copy of each irrep) holds every parity- and triangle-allowed path,

.. math:: M[\text{block}(i_1, i_2, i_3)] = \sqrt{\tfrac{2 l_3 + 1}{n_{i_3}}}\; \mathrm{wigner\_3j}(l_1, l_2, l_3),

with :math:`n_{i_3}` the number of paths into output irrep :math:`i_3` (e3nn's "component"
normalisation, shared by the paths). A CP decomposition :math:`M \approx \sum_{r<R} a_r \otimes b_r
\otimes c_r` is fitted by alternating least squares (ALS): each factor in turn solves a linear
least-squares problem given the other two,

.. math:: A \leftarrow M_{(1)} (C \odot B) \big( (B^\top B) * (C^\top C) + \lambda I \big)^{-1},

(:math:`\odot` Khatri-Rao, :math:`*` Hadamard, :math:`\lambda` a vanishing ridge), from a seeded
Gaussian start in float64; several seeds are tried and the best kept, so the result depends
only on ``(M, rank)``. No library offers ALS on torch tensors with these guarantees in a few lines
(tensorly would be a new dependency for 30 lines of linear algebra), so it is written here.

Rank auto-selection (``rank=None``) tries increasing ranks from ``max(D1, D2, D3)`` until the
relative error :math:`\|M - M_R\|_F / \|M\|_F` is at most ``target`` (default 1e-3). Every fit
is stored as safetensors under ``$EQUIZOO_CACHE_DIR`` (default ``~/.cache/equizoo``)``/cp``,
keyed by a hash of :math:`M` and the rank; files are written atomically and read without pickle.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from math import sqrt
from pathlib import Path
from typing import Iterator

import torch
from e3nn import o3
from safetensors.torch import load_file, save_file

FIT_VERSION = 1  # bump when the fitting procedure changes: old cache entries are then ignored
SEEDS = (0, 1, 2)
MAX_ITERATIONS = 3000
GOOD_ENOUGH = 1e-6  # a fit this close needs no further seeds (a constant: results depend on (M, rank) alone)


def coupling_paths(base1: o3.Irreps, base2: o3.Irreps, base_out: o3.Irreps) -> list[tuple[int, int, int]]:
    """Every allowed ``(i1, i2, i_out)`` of one-copy irreps, in e3nn's order."""
    return [
        (i1, i2, i3)
        for i1, (_, ir1) in enumerate(base1)
        for i2, (_, ir2) in enumerate(base2)
        for i3, (_, ir3) in enumerate(base_out)
        if ir3 in ir1 * ir2
    ]


def path_coefficient(base_out: o3.Irreps, paths: list[tuple[int, int, int]], i_out: int) -> float:
    """``sqrt((2 l3 + 1) / n_out)``: the factor of every path into output irrep ``i_out``."""
    fan_in = sum(1 for p in paths if p[2] == i_out)
    return sqrt((2 * base_out[i_out].ir.l + 1) / fan_in)


@lru_cache(maxsize=64)
def coupling_tensor(base1: o3.Irreps, base2: o3.Irreps, base_out: o3.Irreps) -> torch.Tensor:
    """``[D1, D2, D3]`` float64 coupling tensor of the module docstring (do not modify in place)."""
    paths = coupling_paths(base1, base2, base_out)
    tensor = torch.zeros(base1.dim, base2.dim, base_out.dim, dtype=torch.float64)
    s1, s2, s3 = base1.slices(), base2.slices(), base_out.slices()
    for i1, i2, i3 in paths:
        l1, l2, l3 = base1[i1].ir.l, base2[i2].ir.l, base_out[i3].ir.l
        tensor[s1[i1], s2[i2], s3[i3]] = path_coefficient(base_out, paths, i3) * o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    return tensor


@dataclass(frozen=True)
class CPFactors:
    """``M ~ einsum('ir,jr,kr->ijk', in1, in2, out)``, float64."""

    in1: torch.Tensor  # [D1, R]
    in2: torch.Tensor  # [D2, R]
    out: torch.Tensor  # [D3, R]

    @property
    def rank(self) -> int:
        return self.in1.shape[1]

    def reconstruct(self) -> torch.Tensor:
        return torch.einsum("ir,jr,kr->ijk", self.in1, self.in2, self.out)

    def relative_error(self, tensor: torch.Tensor) -> float:
        return float((self.reconstruct() - tensor).norm() / tensor.norm())


def _solve(unfolded: torch.Tensor, left: torch.Tensor, right: torch.Tensor, ridge: float) -> torch.Tensor:
    """Least-squares update of one factor: ``unfolded [D, D'D''] ~ X @ khatri_rao(left, right).T``."""
    rank = left.shape[1]
    khatri_rao = torch.einsum("ir,jr->ijr", left, right).reshape(-1, rank)
    gram = (left.T @ left) * (right.T @ right) + ridge * torch.eye(rank, dtype=left.dtype)
    return torch.linalg.solve(gram, (unfolded @ khatri_rao).T).T


def _balance(factors: CPFactors) -> CPFactors:
    """Give the three vectors of each rank-one term the same norm (better conditioned in float32)."""
    norms = torch.stack([factors.in1.norm(dim=0), factors.in2.norm(dim=0), factors.out.norm(dim=0)])
    scale = norms.prod(dim=0).clamp_min(1e-300) ** (1 / 3)
    return CPFactors(*(f * (scale / n.clamp_min(1e-300)) for f, n in zip((factors.in1, factors.in2, factors.out), norms)))


def fit_cp(
    tensor: torch.Tensor, rank: int, seed: int = 0, iterations: int = MAX_ITERATIONS, stop_below: float = 1e-10
) -> CPFactors:
    """One deterministic ALS run from a seeded Gaussian start (module docstring).

    Stops after ``iterations``, when the relative error falls below ``stop_below``, or when it
    stagnates (less than 1e-7 relative progress over 25 sweeps).
    """
    d1, d2, d3 = tensor.shape
    generator = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(d, rank, dtype=torch.float64, generator=generator) for d in (d1, d2, d3))
    m1 = tensor.reshape(d1, d2 * d3)
    m2 = tensor.permute(1, 0, 2).reshape(d2, d1 * d3)
    m3 = tensor.permute(2, 0, 1).reshape(d3, d1 * d2)
    norm = tensor.norm()
    previous = float("inf")
    for iteration in range(iterations):
        ridge = 1e-6 * 0.5 ** (iteration / 50) + 1e-13
        a = _solve(m1, b, c, ridge)
        b = _solve(m2, a, c, ridge)
        c = _solve(m3, a, b, ridge)
        if iteration % 25 == 24:
            error = float((m3 - c @ torch.einsum("ir,jr->ijr", a, b).reshape(-1, rank).T).norm() / norm)
            if error < stop_below or previous - error < 1e-7 * previous:
                break
            previous = error
    return _balance(CPFactors(a, b, c))


_FITTING_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar("equizoo_cp_fitting_deferred", default=False)


@contextlib.contextmanager
def deferred_fitting() -> Iterator[None]:
    """Within this context CP products are built with placeholder factors instead of fitted ones.

    For models whose factors are loaded next from a checkpoint (``zoo.load``): fitting them (up to
    minutes on an empty cache) would be thrown away. A product then takes the rank of the factors it
    loads (:meth:`layers.tensor_product.cp.CPTensorProduct._load_from_state_dict`).
    """
    token = _FITTING_DEFERRED.set(True)
    try:
        yield
    finally:
        _FITTING_DEFERRED.reset(token)


def fitting_deferred() -> bool:
    """Whether :func:`deferred_fitting` is active."""
    return _FITTING_DEFERRED.get()


def placeholder_factors(shape: tuple[int, int, int], rank: int = 1) -> CPFactors:
    """Factors of NaN (never usable by mistake) with the shapes of a rank-``rank`` fit of a tensor of ``shape``."""
    return CPFactors(*(torch.full((d, rank), float("nan"), dtype=torch.float64) for d in shape))


def cache_dir() -> Path:
    root = os.environ.get("EQUIZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "equizoo")
    return Path(root) / "cp"


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes() + repr(tuple(tensor.shape)).encode()).hexdigest()[:20]


def _cache_path(tensor: torch.Tensor, rank: int) -> Path:
    return cache_dir() / f"cp-v{FIT_VERSION}-{_digest(tensor)}-r{rank}.safetensors"


def _atomic_write(path: Path, write) -> None:
    """``write(temporary_path)``, then rename over ``path``: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _store(path: Path, factors: CPFactors, description: str, error: float) -> None:
    metadata = {"description": description, "relative_error": repr(error), "fit_version": str(FIT_VERSION)}
    tensors = {"in1": factors.in1, "in2": factors.in2, "out": factors.out}
    _atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def _load(path: Path, tensor: torch.Tensor, rank: int) -> CPFactors | None:
    if not path.exists():
        return None
    try:
        data = load_file(str(path))
        factors = CPFactors(data["in1"], data["in2"], data["out"])
    except Exception:  # a damaged cache entry is refitted, never trusted
        return None
    if factors.in1.shape != (tensor.shape[0], rank) or factors.out.shape != (tensor.shape[2], rank):
        return None
    return factors


def cached_cp(tensor: torch.Tensor, rank: int, description: str = "") -> CPFactors:
    """The best ALS fit of ``tensor`` at ``rank`` over the seeds, from the disk cache when present.

    Seeds are tried in order, stopping at the first fit with error <= GOOD_ENOUGH, so the result
    depends on ``(tensor, rank)`` alone.
    """
    path = _cache_path(tensor, rank)
    factors = _load(path, tensor, rank)
    if factors is None:
        best = None
        for seed in SEEDS:
            fit = fit_cp(tensor, rank, seed)
            if best is None or fit.relative_error(tensor) < best.relative_error(tensor):
                best = fit
            if best.relative_error(tensor) <= GOOD_ENOUGH:
                break
        factors = best
        _store(path, factors, description, factors.relative_error(tensor))
    return factors


def exact_cp(tensor: torch.Tensor) -> CPFactors:
    """The trivial exact decomposition of rank ``D1 * D2``: ``M = sum_ij e_i (x) e_j (x) M[i, j, :]``."""
    d1, d2, d3 = tensor.shape
    eye1, eye2 = torch.eye(d1, dtype=torch.float64), torch.eye(d2, dtype=torch.float64)
    return CPFactors(eye1.repeat_interleave(d2, dim=1), eye2.repeat(1, d1), tensor.reshape(d1 * d2, d3).T.contiguous())


def auto_rank_cp(tensor: torch.Tensor, target: float = 1e-3, description: str = "") -> CPFactors:
    """The smallest rank on the ladder ``max(D) * 1.25^k`` whose fit reaches ``target`` relative error.

    The ladder stops at ``D1 * D2``, where the exact decomposition of :func:`exact_cp` exists;
    that one is returned if no smaller rank fits. The chosen rank is remembered on disk too.
    """
    d1, d2, d3 = tensor.shape
    memo = cache_dir() / f"auto-v{FIT_VERSION}-{_digest(tensor)}-{target:g}.json"
    if memo.exists():
        try:
            rank = int(json.loads(memo.read_text())["rank"])
            factors = _load(_cache_path(tensor, rank), tensor, rank)
            if factors is not None:
                return factors
        except (ValueError, KeyError, json.JSONDecodeError):
            pass
    # probe each rank with one seed, stopping as soon as the target is met; only the chosen rank gets
    # the full multi-seed fit of cached_cp (which includes this seed, run longer: never worse)
    rank = max(d1, d2, d3)
    while rank < d1 * d2:
        if fit_cp(tensor, rank, seed=SEEDS[0], stop_below=target).relative_error(tensor) <= target:
            break
        rank = max(rank + 1, int(rank * 1.25))
    if rank >= d1 * d2:
        rank, factors = d1 * d2, exact_cp(tensor)
        _store(_cache_path(tensor, rank), factors, description, factors.relative_error(tensor))
    else:
        factors = cached_cp(tensor, rank, description)
    _atomic_write(memo, lambda temporary: Path(temporary).write_text(json.dumps({"rank": rank, "description": description})))
    return factors
