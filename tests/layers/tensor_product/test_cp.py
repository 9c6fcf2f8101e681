"""CP factors: error against the exact coupling falls with rank; cache; agreement with tied-weight cg."""

import os

import pytest
import torch
from e3nn import o3

from layers.tensor_product import make_tensor_product
from layers.tensor_product.cp_fit import _cache_path, auto_rank_cp, cached_cp, coupling_tensor, exact_cp, fit_cp
from tests.assertions import equivariance_error, random_o3

SH2 = "0e+1o+2e"


def test_error_falls_with_rank_and_auto_rank_meets_target():
    tensor = coupling_tensor(o3.Irreps(SH2), o3.Irreps(SH2), o3.Irreps(SH2))
    errors = [cached_cp(tensor, rank).relative_error(tensor) for rank in (6, 12, 18, 24)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    auto = auto_rank_cp(tensor, target=1e-3)
    assert auto.relative_error(tensor) <= 1e-3
    assert auto.rank < 9 * 9  # well below the trivial exact rank D1 * D2


def test_exact_decomposition_is_exact():
    tensor = coupling_tensor(o3.Irreps("0e+1o"), o3.Irreps("0e+1o+1e"), o3.Irreps("0e+1o+1e+2e"))
    assert exact_cp(tensor).relative_error(tensor) < 1e-15


def test_fit_is_deterministic():
    tensor = coupling_tensor(o3.Irreps("0e+1o"), o3.Irreps("0e+1o"), o3.Irreps("0e+1o+1e"))
    first, second = fit_cp(tensor, 9, seed=1, iterations=200), fit_cp(tensor, 9, seed=1, iterations=200)
    torch.testing.assert_close(first.in1, second.in1, atol=0, rtol=0)


def test_fit_is_cached_and_a_damaged_cache_entry_is_refitted():
    tensor = coupling_tensor(o3.Irreps("0e+1o"), o3.Irreps("0e+1o"), o3.Irreps("0e+1o+1e"))
    first = cached_cp(tensor, 12)
    path = _cache_path(tensor, 12)
    assert path.exists()
    mtime = os.path.getmtime(path)
    again = cached_cp(tensor, 12)
    assert os.path.getmtime(path) == mtime  # read, not refitted
    torch.testing.assert_close(again.in1, first.in1, atol=0, rtol=0)
    path.write_bytes(b"not a safetensors file")
    refitted = cached_cp(tensor, 12)
    assert refitted.relative_error(tensor) < 1e-6  # a fresh fit of the same quality
    assert cached_cp(tensor, 12).in1.shape == (4, 12)  # and the cache entry is whole again


@pytest.mark.parametrize("mode,irreps1,irreps2,irreps_out", [
    ("uvw", "2x0e+2x1o", "3x0e+3x1o", "2x0e+2x1o+2x1e"),
    ("uvu", "3x0e+3x1o", "2x0e+2x1o", "3x0e+3x1o+3x1e"),
    ("uuu", "3x0e+3x1o", "3x0e+3x1o", "3x0e+3x1o+3x1e"),
])
def test_matches_clebsch_gordan_with_one_weight_for_all_paths(mode, irreps1, irreps2, irreps_out, float64):
    dtype = float64
    cp = make_tensor_product(irreps1, irreps2, irreps_out, method="cp", mode=mode).to(dtype)
    cg = make_tensor_product(irreps1, irreps2, irreps_out, method="cg", mode=mode).to(dtype)
    weight = torch.randn(cp.weight_numel, dtype=dtype)
    tied = torch.cat([weight] * len(cg.spec.paths))
    x1, x2 = torch.randn(20, cp.irreps_in1.dim, dtype=dtype), torch.randn(20, cp.irreps_in2.dim, dtype=dtype)
    expected = cg(x1, x2, tied)
    difference = (cp(x1, x2, weight) - expected).norm() / expected.norm()
    assert difference < 5 * cp.relative_error <= 5e-3


def test_equivariance_error_within_bound_and_bound_falls_with_rank(float64):
    dtype = float64
    irreps = o3.Irreps("4x0e+4x1o+4x2e")
    x1, x2 = torch.randn(16, irreps.dim, dtype=dtype), torch.randn(16, irreps.dim, dtype=dtype)
    measured, bounds = [], []
    for rank in (8, 16, 24):
        tp = make_tensor_product(irreps, irreps, irreps, method="cp", mode="uuu", rank=rank).to(dtype)
        element = random_o3(dtype, inversion=True, generator=torch.Generator().manual_seed(3))
        error = equivariance_error(tp, [x1, x2], [irreps, irreps], irreps, element)
        bound = tp.equivariance_bound(x1, x2)
        assert (error <= bound * (1 + 1e-9) + 1e-12).all()
        measured.append(float(error.detach().max()))
        bounds.append(float(bound.detach().max()))
    assert bounds[0] > bounds[1] > bounds[2]
    assert measured[0] > measured[2]
    assert measured[0] > 1e-4  # a low rank really breaks equivariance: the bound is not vacuous


def test_factors_are_saved_with_the_weights():
    tp = make_tensor_product("2x0e+2x1o", "0e+1o", "2x0e+2x1o", method="cp", mode="uvu", rank=6)
    state = tp.state_dict()
    assert {"weight", "factor_in1", "factor_in2", "factor_out"} <= set(state)
    other = make_tensor_product("2x0e+2x1o", "0e+1o", "2x0e+2x1o", method="cp", mode="uvu", rank=6)
    with torch.no_grad():
        other.factor_in1.mul_(2.0)
    other.load_state_dict(state)
    torch.testing.assert_close(other.factor_in1, tp.factor_in1, atol=0, rtol=0)
