"""At initialisation, unit-variance inputs give outputs of variance about one, for every method."""

import pytest
import torch

from layers.tensor_product import make_tensor_product

CASES = [
    ("cg", "uvw", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x1e+16x2e"),
    ("cg", "uvu", "16x0e+16x1o+16x2e", "0e+1o+2e+3o", "16x0e+16x1o+16x2e+16x3o"),
    ("gaunt", "uvw", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e"),
    ("gaunt", "uuu", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e+16x3o"),
    ("grid", "uvw", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e"),
    ("grid", "uuu", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e+16x3o"),
    ("cp", "uvw", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e"),
    ("cp", "uuu", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x2e", "16x0e+16x1o+16x1e+16x2e"),
]


@pytest.mark.parametrize("method,mode,irreps1,irreps2,irreps_out", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_output_variance_near_one(method, mode, irreps1, irreps2, irreps_out):
    tp = make_tensor_product(irreps1, irreps2, irreps_out, method=method, mode=mode)
    x1, x2 = torch.randn(4000, tp.irreps_in1.dim), torch.randn(4000, tp.irreps_in2.dim)
    with torch.no_grad():
        out = tp(x1, x2)
    per_irrep = [out[:, s].pow(2).mean().item() for s in tp.irreps_out.slices()]
    assert 0.5 < out.pow(2).mean().item() < 2.0, per_irrep
    assert all(0.25 < v < 4.0 for v in per_irrep), per_irrep
