"""The grid product equals the Gaunt product with the same weights, to round-off."""

import pytest
import torch

from layers.tensor_product import make_tensor_product
from tests.tolerances import tolerance

CASES = [
    ("uuu", "4x0e+4x1o+4x2e", "4x0e+4x1o+4x2e", "4x0e+4x1o+4x2e+4x3o"),
    ("uvu", "4x0e+4x1o+4x2e+4x3o", "0e+1o+2e+3o", "4x0e+4x1o+4x2e+4x3o"),
    ("uvw", "3x0e+3x1o+3x1e", "2x0e+2x1o+2x2e", "5x0e+5x1o+5x1e+5x2e+5x2o"),
    ("uuu", "2x0o+2x1e+2x2o", "2x0e+2x1o", "2x0o+2x1e+2x2o+2x3e"),
]


@pytest.mark.parametrize("mode,irreps1,irreps2,irreps_out", CASES)
@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per_row"])
def test_grid_equals_gaunt(dtype, mode, irreps1, irreps2, irreps_out, per_row):
    gaunt = make_tensor_product(irreps1, irreps2, irreps_out, method="gaunt", mode=mode, shared_weights=not per_row).to(dtype)
    grid = make_tensor_product(irreps1, irreps2, irreps_out, method="grid", mode=mode, shared_weights=not per_row).to(dtype)
    assert gaunt.weight_numel == grid.weight_numel
    x1, x2 = torch.randn(9, gaunt.irreps_in1.dim), torch.randn(9, gaunt.irreps_in2.dim)
    weight = torch.randn(9, gaunt.weight_numel) if per_row else torch.randn(gaunt.weight_numel)
    torch.testing.assert_close(grid(x1, x2, weight), gaunt(x1, x2, weight), **tolerance(dtype))


def test_finer_grid_changes_nothing_coarser_is_refused(float64):
    irreps = "2x0e+2x1o+2x2e"
    exact = make_tensor_product(irreps, irreps, irreps, method="grid", mode="uuu").double()
    finer = make_tensor_product(irreps, irreps, irreps, method="grid", mode="uuu", resolution=(9, 17)).double()
    x1, x2 = torch.randn(4, 18, dtype=torch.float64), torch.randn(4, 18, dtype=torch.float64)
    torch.testing.assert_close(finer(x1, x2), exact(x1, x2), **tolerance(torch.float64))
    with pytest.raises(ValueError, match="too coarse"):
        make_tensor_product(irreps, irreps, irreps, method="grid", mode="uuu", resolution=(3, 5))
