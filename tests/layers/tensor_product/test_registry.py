"""make_tensor_product: names, options, capabilities and clear errors."""

from pathlib import Path

import pytest
import torch
import yaml

from layers.tensor_product import METHODS, capabilities, make_tensor_product, method_options

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "tp"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid: cg, gaunt, grid, cp"):
        make_tensor_product("0e", "0e", "0e", method="clebsch")
    with pytest.raises(ValueError, match="valid: uuu, uvu, uvw"):
        make_tensor_product("0e", "0e", "0e", method="gaunt", mode="uvv")
    with pytest.raises(ValueError, match="unknown option.*rnak.*valid: rank, target_error"):
        make_tensor_product("0e", "0e", "0e", method="cp", rnak=4)
    with pytest.raises(ValueError, match="valid: reference, fused, cueq, auto"):
        make_tensor_product("0e", "0e", "0e", kernel="fast")
    with pytest.raises(ValueError, match="no kernel 'cueq'"):
        make_tensor_product("0e", "0e", "0e", method="gaunt", kernel="cueq")
    with pytest.raises(ValueError, match="irreps_in1: cannot read"):
        make_tensor_product("8y0e", "0e", "0e")


def test_every_method_declares_its_capabilities():
    for name in METHODS:
        caps = capabilities(name)
        assert caps.equivariance in ("exact", "approximate")
        assert caps.modes and "reference" in caps.kernels
        assert torch.float32 in caps.dtypes and torch.float64 in caps.dtypes
        assert caps.describe()
    assert capabilities("cp").equivariance == "approximate"
    assert method_options("grid") == ("resolution",)


def test_wrong_weight_shapes_are_explained():
    tp = make_tensor_product("2x0e", "2x0e", "2x0e", method="cg")
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 8\]"):
        tp(torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 7))
    with pytest.raises(ValueError, match="shared_weights=False"):
        tp(torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 8))
    with pytest.raises(ValueError, match="x2 has last dimension 3"):
        tp(torch.randn(3, 2), torch.randn(3, 3))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_tp_config_group_builds(path):
    choice = yaml.safe_load(path.read_text())
    tp = make_tensor_product("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o", mode="uvu", shared_weights=False, **choice)
    assert tp.method == choice["method"] == path.stem
    out = tp(torch.randn(2, 16), torch.randn(2, 9), torch.randn(2, tp.weight_numel))
    assert out.shape == (2, 16) and torch.isfinite(out).all()


def test_kernel_choice_keeps_the_state_dict():
    tp = make_tensor_product("2x0e+2x1o", "0e+1o", "2x0e+2x1o", method="cg", mode="uvu", kernel="reference")
    state = tp.state_dict()
    tp.set_kernel("auto")
    assert tp.state_dict().keys() == state.keys()
    out_auto = tp(torch.randn(2, 8), torch.randn(2, 4))
    assert out_auto.shape == (2, 8)


def test_coefficients_stay_exact_when_built_in_float32_and_moved_to_float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        built32 = make_tensor_product("2x0e+2x1o+2x2e", "0e+1o+2e", "2x0e+2x1o+2x2e", method="gaunt", mode="uvu")
        built32 = built32.double()
        torch.set_default_dtype(torch.float64)
        built64 = make_tensor_product("2x0e+2x1o+2x2e", "0e+1o+2e", "2x0e+2x1o+2x2e", method="gaunt", mode="uvu")
    finally:
        torch.set_default_dtype(previous)
    built64.load_state_dict(built32.state_dict())
    x1, x2 = torch.randn(5, 18, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    torch.testing.assert_close(built32(x1, x2), built64(x1, x2), atol=1e-14, rtol=0)
