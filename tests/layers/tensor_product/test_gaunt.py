"""The Fourier/FFT Gaunt product computes true Gaunt integrals and only expresses even paths."""

import json
from pathlib import Path

import pytest
import torch
from e3nn import o3

from layers.spherical import gaunt_coefficients
from layers.tensor_product import make_tensor_product, output_irreps
from layers.tensor_product.gaunt import FourierMultiplier
from layers.tensor_product.grid import GridMultiplier
from tests.tolerances import tolerance

GOLDEN = json.loads((Path(__file__).parent / "golden" / "gaunt_coefficients.json").read_text())


def multiplier_tensor(multiplier, lmax1, lmax2, lmax_out) -> torch.Tensor:
    """``[(l1+1)^2, (l2+1)^2, (l3+1)^2]`` by multiplying every pair of basis functions."""
    d1, d2 = (lmax1 + 1) ** 2, (lmax2 + 1) ** 2
    e1 = torch.eye(d1, dtype=torch.float64).repeat_interleave(d2, dim=0)
    e2 = torch.eye(d2, dtype=torch.float64).repeat(d1, 1)
    return multiplier(e1[None], e2[None])[0].reshape(d1, d2, -1)


@pytest.mark.parametrize("multiplier_class", [FourierMultiplier, GridMultiplier], ids=["fourier", "grid"])
def test_multipliers_reproduce_golden_gaunt_coefficients(multiplier_class, float64):
    lmax = GOLDEN["lmax"]
    full = multiplier_tensor(multiplier_class(lmax, lmax, lmax), lmax, lmax, lmax)
    seen = 0
    for entry in GOLDEN["entries"]:
        l1, l2, l3 = entry["l"]
        expected = torch.tensor(entry["values"], dtype=torch.float64).reshape(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        block = full[l1**2 : (l1 + 1) ** 2, l2**2 : (l2 + 1) ** 2, l3**2 : (l3 + 1) ** 2]
        torch.testing.assert_close(block, expected, atol=1e-12, rtol=0)
        seen += 1
    assert seen == len(GOLDEN["entries"]) > 10
    # and nothing else: odd paths vanish
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(lmax + 1):
                if (l1 + l2 + l3) % 2 or not abs(l1 - l2) <= l3 <= l1 + l2:
                    block = full[l1**2 : (l1 + 1) ** 2, l2**2 : (l2 + 1) ** 2, l3**2 : (l3 + 1) ** 2]
                    assert block.abs().max() < 1e-12


def test_clebsch_gordan_route_matches_golden():
    for entry in GOLDEN["entries"]:
        l1, l2, l3 = entry["l"]
        torch.testing.assert_close(
            gaunt_coefficients(l1, l2, l3).reshape(-1), torch.tensor(entry["values"], dtype=torch.float64), atol=1e-14, rtol=0
        )


def test_high_degree_product_stays_exact(float64):
    """Degrees past the golden file: compare the FFT product with the grid product at l = 6."""
    fourier = multiplier_tensor(FourierMultiplier(4, 3, 6), 4, 3, 6)
    grid = multiplier_tensor(GridMultiplier(4, 3, 6), 4, 3, 6)
    torch.testing.assert_close(fourier, grid, atol=1e-12, rtol=0)
    torch.testing.assert_close(fourier[16:25, 9:16, 36:49], gaunt_coefficients(4, 3, 6), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["gaunt", "grid"])
def test_equals_clebsch_gordan_with_gaunt_path_weights(method, float64):
    """A Gaunt product is a CG product whose path weights are the Gaunt/3j ratios (times nu and the scales)."""
    dtype = float64
    irreps = o3.Irreps("3x0e+3x1o+3x2e")
    tp = make_tensor_product(irreps, irreps, irreps, method=method, mode="uuu").to(dtype)
    weight = torch.randn(tp.weight_numel, dtype=dtype)
    a, b, c = weight[:9].view(3, 3), weight[9:18].view(3, 3), weight[18:].view(3, 3)
    instructions, cg_weights = [], []
    for path in tp.spec.paths:
        l1, l2, l3 = path.i_in1, path.i_in2, path.i_out  # here irrep index == degree
        ratio = float(gaunt_coefficients(l1, l2, l3).reshape(-1) @ o3.wigner_3j(l1, l2, l3, dtype=dtype).reshape(-1))
        instructions.append((l1, l2, l3, "uuu", True, (path.coefficient * ratio) ** 2))
        cg_weights.append(a[l1] * b[l2] * c[l3] * (1.0 if ratio > 0 else -1.0))  # the sign the sqrt drops
    cg = make_tensor_product(irreps, irreps, irreps, method="cg", instructions=instructions,
                             irrep_normalization="none", path_normalization="none").to(dtype)
    x1, x2 = torch.randn(6, irreps.dim, dtype=dtype), torch.randn(6, irreps.dim, dtype=dtype)
    torch.testing.assert_close(tp(x1, x2, weight), cg(x1, x2, torch.cat(cg_weights)), **tolerance(dtype))


def test_cross_product_is_not_expressible():
    with pytest.raises(ValueError, match="no even path"):
        make_tensor_product("1o", "1o", "1e", method="gaunt")
    assert output_irreps("gaunt", "1o", "1o") == o3.Irreps("0e+2e")
    assert output_irreps("cg", "1o", "1o") == o3.Irreps("0e+1e+2e")


def test_parity_classes_multiply(float64):
    """Pseudo-scalar x vector gives an axial vector: class -1 times class +1."""
    dtype = float64
    tp = make_tensor_product("2x0o+2x1o", "2x0e+2x1o", "2x0o+2x1e+2x0e+2x1o", method="gaunt", mode="uuu").to(dtype)
    x1, x2 = torch.randn(3, 8, dtype=dtype), torch.randn(3, 8, dtype=dtype)
    out = tp(x1, x2)
    # 0o x 0e -> 0o only through the class (-1) x (+1) product: zeroing the pseudo-scalar kills it
    x1_even = x1.clone()
    x1_even[:, :2] = 0
    assert tp(x1_even, x2)[:, :2].abs().max() < 1e-14
    assert out[:, :2].abs().max() > 1e-3
