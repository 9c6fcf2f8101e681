"""Gradients and double gradients (forces are gradients, training differentiates through them)."""

import pytest
import torch

from layers.tensor_product import make_tensor_product

CASES = [
    ("cg", "uvw", "1x0e+1x1o+1x2e", "1x0e+2x1o", "2x0e+1x1o+1x1e+1x2e"),
    ("cg", "uvu", "2x0e+2x1o", "0e+1o+2e", "2x0e+2x1o+2x1e+2x2e"),
    ("cg", "uuu", "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1e"),
    ("gaunt", "uvw", "1x0e+1x1o+1x2e", "2x0e+2x1o", "2x0e+2x1o+2x2e"),
    ("gaunt", "uvu", "2x0e+2x1o", "0e+1o+2e", "2x0e+2x1o+2x2e"),
    ("gaunt", "uuu", "2x0e+2x1o+2x0o", "2x0e+2x1o", "2x0e+2x1o+2x0o+2x1e"),
    ("grid", "uvw", "1x0e+1x1o+1x2e", "2x0e+2x1o", "2x0e+2x1o+2x2e"),
    ("grid", "uvu", "2x0e+2x1o", "0e+1o+2e", "2x0e+2x1o+2x2e"),
    ("grid", "uuu", "2x0e+2x1o+2x0o", "2x0e+2x1o", "2x0e+2x1o+2x0o+2x1e"),
    ("cp", "uvw", "1x0e+1x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e"),
    ("cp", "uvu", "2x0e+2x1o", "0e+1o", "2x0e+2x1o+2x1e"),
    ("cp", "uuu", "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1e"),
]


@pytest.mark.parametrize("method,mode,irreps1,irreps2,irreps_out", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_gradcheck_and_gradgradcheck(method, mode, irreps1, irreps2, irreps_out, float64):
    dtype = float64
    tp = make_tensor_product(irreps1, irreps2, irreps_out, method=method, mode=mode, shared_weights=False).to(dtype)
    x1 = torch.randn(3, tp.irreps_in1.dim, dtype=dtype, requires_grad=True)
    x2 = torch.randn(3, tp.irreps_in2.dim, dtype=dtype, requires_grad=True)
    weight = torch.randn(3, tp.weight_numel, dtype=dtype, requires_grad=True)
    assert torch.autograd.gradcheck(tp, (x1, x2, weight))
    assert torch.autograd.gradgradcheck(tp, (x1, x2, weight))
