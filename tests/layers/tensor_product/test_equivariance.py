"""Every method and mode is O(3)-equivariant (cp within its declared bound), up to l = 4."""

import pytest
import torch
from e3nn import o3

from layers.tensor_product import make_tensor_product
from tests.assertions import assert_equivariant, equivariance_error, random_o3

# (method, mode): irreps in1, in2, out -- up to l = 4, both parity classes where the method allows
CASES = {
    ("cg", "uvw"): ("2x0e+2x1o+1x2e+1x3o+1x4e", "1x0e+1x1e+1x2o", "2x0e+2x1o+2x1e+1x2e+1x3o+1x4e"),
    ("cg", "uvu"): ("3x0e+3x1o+3x2e", "1x0e+1x1o+1x2e+1x3o+1x4e", "3x0e+3x1o+3x1e+3x2e+3x3o+3x4e"),
    ("cg", "uvv"): ("2x0e+2x1o", "3x0e+3x1o", "3x0e+3x1e"),
    ("cg", "uuw"): ("2x0e+2x1o", "2x0e+2x1o", "3x0e+3x1e+3x2e"),
    ("cg", "uuu"): ("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", "3x0e+3x1e+3x4e"),
    ("gaunt", "uvw"): ("2x0e+2x1o+2x2e+2x3o+2x4e", "2x0e+2x1o", "3x0e+3x1o+3x2e+3x3o+3x4e"),
    ("gaunt", "uvu"): ("3x0e+3x1o+3x2e", "0e+1o+2e+3o+4e", "3x0e+3x1o+3x2e+3x3o+3x4e"),
    ("gaunt", "uuu"): ("2x0o+2x1e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x0o+2x1o+2x1e+2x2e+2x3o+2x4e"),
    ("grid", "uvw"): ("2x0e+2x1o+2x2e+2x3o+2x4e", "2x0e+2x1o", "3x0e+3x1o+3x2e+3x3o+3x4e"),
    ("grid", "uvu"): ("3x0e+3x1o+3x2e", "0e+1o+2e+3o+4e", "3x0e+3x1o+3x2e+3x3o+3x4e"),
    ("grid", "uuu"): ("2x0o+2x1e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x0o+2x1o+2x1e+2x2e+2x3o+2x4e"),
}


@pytest.mark.parametrize("method,mode", list(CASES), ids=[f"{m}-{c}" for m, c in CASES])
@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per_row"])
def test_exact_methods_are_equivariant(dtype, method, mode, per_row):
    irreps1, irreps2, irreps_out = (o3.Irreps(i) for i in CASES[(method, mode)])
    tp = make_tensor_product(irreps1, irreps2, irreps_out, method=method, mode=mode, shared_weights=not per_row).to(dtype)
    weight = torch.randn(6, tp.weight_numel) if per_row else None
    x1, x2 = torch.randn(6, irreps1.dim), torch.randn(6, irreps2.dim)
    assert_equivariant(lambda a, b: tp(a, b, weight), [x1, x2], [irreps1, irreps2], irreps_out)


CP_CASES = {
    "uvw": ("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x1e+2x2e+2x2o+2x3o"),
    "uvu": ("2x0e+2x1o+2x2e+2x3o+2x4e", "0e+1o", "2x0e+2x1o+2x1e+2x2e+2x2o+2x3o+2x3e+2x4e+2x4o"),
    "uuu": ("2x0e+2x1o+2x1e", "2x0e+2x1o+2x1e", "2x0e+2x0o+2x1o+2x1e+2x2e+2x2o"),
}


@pytest.mark.parametrize("mode", list(CP_CASES))
def test_cp_is_equivariant_within_its_bound(dtype, mode):
    irreps1, irreps2, irreps_out = (o3.Irreps(i) for i in CP_CASES[mode])
    tp = make_tensor_product(irreps1, irreps2, irreps_out, method="cp", mode=mode).to(dtype)
    x1, x2 = torch.randn(8, irreps1.dim), torch.randn(8, irreps2.dim)
    for inversion in (False, True):
        element = random_o3(dtype, inversion, torch.Generator().manual_seed(int(inversion)))
        error = equivariance_error(tp, [x1, x2], [irreps1, irreps2], irreps_out, element)
        bound = tp.equivariance_bound(x1, x2)
        slack = 1e-4 * tp(x1, x2).norm(dim=-1) if dtype == torch.float32 else 1e-10
        assert (error <= bound + slack).all(), (error, bound)
