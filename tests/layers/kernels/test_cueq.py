"""The cueq kernel (cuEquivariance) == our CG reference, same weights, on cuEquivariance's CPU path."""

import pytest
import torch

pytest.importorskip("cuequivariance_torch")

from layers.tensor_product import make_tensor_product  # noqa: E402
from tests.tolerances import tolerance  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # on CPU: cuEquivariance's reference path

CASES = [
    ("uvw", "2x0e+3x1o+1x2e", "2x0e+1x1o+1x1e", "2x0e+2x1o+3x1e+1x2e+1x2o"),
    ("uvu", "3x0e+3x1o+3x2e", "0e+1o+2e+3o", "3x0e+3x1o+3x1e+3x2e+3x3o"),
    ("uuu", "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e"),
]


@pytest.mark.parametrize("mode,irreps1,irreps2,irreps_out", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per_row"])
def test_cueq_equals_reference(dtype, mode, irreps1, irreps2, irreps_out, per_row):
    tp = make_tensor_product(irreps1, irreps2, irreps_out, method="cg", mode=mode,
                             kernel="reference", shared_weights=not per_row).to(DEVICE)
    x1 = torch.randn(4, tp.irreps_in1.dim, device=DEVICE, requires_grad=True)
    x2 = torch.randn(4, tp.irreps_in2.dim, device=DEVICE, requires_grad=True)
    shape = (4, tp.weight_numel) if per_row else (tp.weight_numel,)
    weight = torch.randn(shape, device=DEVICE, requires_grad=True)
    expected = tp(x1, x2, weight)
    grads_expected = torch.autograd.grad(expected.pow(2).sum(), (x1, x2, weight))
    tp.set_kernel("cueq")
    got = tp(x1, x2, weight)
    grads_got = torch.autograd.grad(got.pow(2).sum(), (x1, x2, weight))
    torch.testing.assert_close(got, expected, **tolerance(dtype))
    for g_got, g_expected in zip(grads_got, grads_expected):
        torch.testing.assert_close(g_got, g_expected, **tolerance(dtype, "gradient"))
