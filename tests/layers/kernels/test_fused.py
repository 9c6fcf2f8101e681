"""Fused Triton kernels == reference: forward, gradients and double backward (interpreter on CPU)."""

import pytest
import torch

pytest.importorskip("triton")

from layers.tensor_product import make_tensor_product  # noqa: E402
from tests.tolerances import tolerance  # noqa: E402

# on a GPU machine the kernels run for real; elsewhere through TRITON_INTERPRET=1 (tests/conftest.py)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

CASES = [
    ("cg", "uvu", "2x0e+2x1o+2x2e", "0e+1o+2e", "2x0e+2x1o+2x1e+2x2e"),
    ("cg", "uuu", "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e"),
    ("gaunt", "uvw", "2x0e+2x1o+2x2e", "2x0e+2x1o", "3x0e+3x1o+3x2e"),
    ("gaunt", "uvu", "2x0e+2x1o", "0e+1o+2e", "2x0e+2x1o+2x2e"),
    ("gaunt", "uuu", "2x0e+2x1o+2x0o", "2x0e+2x1o+2x0o", "2x0e+2x1o+2x0o+2x1e"),
    ("grid", "uvw", "2x0e+2x1o+2x2e", "2x0e+2x1o", "3x0e+3x1o+3x2e"),
    ("grid", "uvu", "2x0e+2x1o", "0e+1o+2e", "2x0e+2x1o+2x2e"),
    ("grid", "uuu", "2x0e+2x1o+2x0o", "2x0e+2x1o+2x0o", "2x0e+2x1o+2x0o+2x1e"),
    ("cp", "uvu", "2x0e+2x1o", "0e+1o", "2x0e+2x1o+2x1e"),
    ("cp", "uvu", "2x0e+2x1o", "3x0e+3x1o", "2x0e+2x1o+2x1e"),
    ("cp", "uuu", "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e"),
]


def _pair(method, mode, irreps1, irreps2, irreps_out, per_row):
    reference = make_tensor_product(irreps1, irreps2, irreps_out, method=method, mode=mode,
                                    kernel="reference", shared_weights=not per_row)
    fused = make_tensor_product(irreps1, irreps2, irreps_out, method=method, mode=mode,
                                kernel="fused", shared_weights=not per_row)
    fused.load_state_dict(reference.state_dict())
    return reference.to(DEVICE), fused.to(DEVICE)


@pytest.mark.parametrize("method,mode,irreps1,irreps2,irreps_out", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per_row"])
def test_fused_equals_reference(dtype, method, mode, irreps1, irreps2, irreps_out, per_row):
    reference, fused = _pair(method, mode, irreps1, irreps2, irreps_out, per_row)
    x1 = torch.randn(5, reference.irreps_in1.dim, device=DEVICE, requires_grad=True)
    x2 = torch.randn(5, reference.irreps_in2.dim, device=DEVICE, requires_grad=True)
    shape = (5, reference.weight_numel) if per_row else (reference.weight_numel,)
    weight = torch.randn(shape, device=DEVICE)
    weight.requires_grad_(True)
    inputs = (x1, x2, weight)

    out_ref, out_fused = reference(*inputs), fused(*inputs)
    torch.testing.assert_close(out_fused, out_ref, **tolerance(dtype))

    probe = torch.randn_like(out_ref)
    grads_ref = torch.autograd.grad(out_ref, inputs, probe, create_graph=True)
    grads_fused = torch.autograd.grad(out_fused, inputs, probe, create_graph=True)
    for g_fused, g_ref in zip(grads_fused, grads_ref):
        torch.testing.assert_close(g_fused, g_ref, **tolerance(dtype, "gradient"))

    # double backward: differentiate a function of the gradients (as force training does)
    second_ref = torch.autograd.grad(sum(g.pow(2).sum() for g in grads_ref), inputs)
    second_fused = torch.autograd.grad(sum(g.pow(2).sum() for g in grads_fused), inputs)
    for s_fused, s_ref in zip(second_fused, second_ref):
        scale = s_ref.abs().max().clamp_min(1.0)
        torch.testing.assert_close(s_fused / scale, s_ref / scale, **tolerance(dtype, "gradient"))


def test_gradgradcheck_through_the_fused_kernel(float64):
    _, fused = _pair("gaunt", "uvu", "1x0e+1x1o", "0e+1o", "1x0e+1x1o", per_row=True)
    x1 = torch.randn(2, 4, device=DEVICE, requires_grad=True)
    x2 = torch.randn(2, 4, device=DEVICE, requires_grad=True)
    weight = torch.randn(2, fused.weight_numel, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradgradcheck(fused, (x1, x2, weight))


def test_unsupported_mode_falls_back_or_explains():
    tp = make_tensor_product("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o", method="cp", mode="uvw", kernel="fused").to(DEVICE)
    x = torch.randn(3, 8, device=DEVICE)
    with pytest.raises(RuntimeError, match="covers modes uuu and uvu"):
        tp(x, x)
    tp.set_kernel("auto")
    assert tp(x, x).shape == (3, 8)  # the reference
