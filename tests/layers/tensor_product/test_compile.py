"""Every method compiles as one graph: forward touches tensors and ints only."""

import pytest
import torch

from layers.tensor_product import METHODS, make_tensor_product


@pytest.mark.parametrize("method", list(METHODS))
def test_compiles_fullgraph(method):
    tp = make_tensor_product("4x0e+4x1o+4x2e", "0e+1o+2e", "4x0e+4x1o+4x2e", method=method, mode="uvu",
                             shared_weights=False, kernel="reference")
    x1 = torch.randn(8, 36, requires_grad=True)
    x2, weight = torch.randn(8, 9), torch.randn(8, tp.weight_numel)
    compiled = torch.compile(tp, backend="aot_eager", fullgraph=True)
    expected = tp(x1, x2, weight)
    got = compiled(x1, x2, weight)
    torch.testing.assert_close(got, expected)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x1)
    (grad_got,) = torch.autograd.grad(got.sum(), x1)
    torch.testing.assert_close(grad_got, grad_expected)
