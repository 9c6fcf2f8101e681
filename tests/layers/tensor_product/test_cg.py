"""cg reproduces e3nn's TensorProduct on the same instructions, path order and flat weights."""

import pytest
import torch
from e3nn import o3

from layers.tensor_product import make_tensor_product
from tests.tolerances import tolerance

IRREPS1 = o3.Irreps("3x0e+2x1o+2x2e+1x1e")
IRREPS2 = o3.Irreps("2x0e+2x1o+2x2o")
IRREPS_OUT = o3.Irreps("2x0e+3x1o+2x1e+2x2e+2x2o+1x3o")


def test_fully_connected_matches_e3nn(dtype):
    ours = make_tensor_product(IRREPS1, IRREPS2, IRREPS_OUT, method="cg", mode="uvw").to(dtype)
    theirs = o3.FullyConnectedTensorProduct(IRREPS1, IRREPS2, IRREPS_OUT).to(dtype)
    assert ours.weight_numel == theirs.weight_numel
    x1, x2 = torch.randn(7, IRREPS1.dim), torch.randn(7, IRREPS2.dim)
    torch.testing.assert_close(ours(x1, x2, theirs.weight), theirs(x1, x2), **tolerance(dtype))


@pytest.mark.parametrize("irrep_normalization", ["component", "norm"])
@pytest.mark.parametrize("path_normalization", ["element", "path"])
def test_explicit_instructions_all_modes_match_e3nn(irrep_normalization, path_normalization, float64):
    dtype = float64
    irreps1, irreps2 = o3.Irreps("3x0e+3x1o+2x2e"), o3.Irreps("3x0e+3x1o+1x1e")
    irreps_out = o3.Irreps("3x0e+3x1o+3x1e+2x2e+1x2o")
    instructions = [
        (0, 0, 0, "uvw", True),
        (1, 1, 0, "uuu", True, 0.5),
        (1, 1, 2, "uuu", True),  # cross product
        (1, 0, 1, "uvu", True),
        (1, 1, 3, "uvw", True, 2.0),
        (0, 1, 1, "uvv", True),
        (1, 1, 2, "uuw", True),
        (2, 0, 3, "uvu", False),
        (2, 1, 4, "uvw", True),
        (1, 2, 1, "uvu", False),
    ]
    theirs = o3.TensorProduct(
        irreps1, irreps2, irreps_out, instructions, irrep_normalization=irrep_normalization,
        path_normalization=path_normalization, shared_weights=False, internal_weights=False,
    ).to(dtype)
    ours = make_tensor_product(
        irreps1, irreps2, irreps_out, method="cg", instructions=instructions, shared_weights=False,
        irrep_normalization=irrep_normalization, path_normalization=path_normalization,
    ).to(dtype)
    assert ours.weight_numel == theirs.weight_numel
    x1, x2 = torch.randn(11, irreps1.dim, dtype=dtype), torch.randn(11, irreps2.dim, dtype=dtype)
    weight = torch.randn(11, ours.weight_numel, dtype=dtype)
    torch.testing.assert_close(ours(x1, x2, weight), theirs(x1, x2, weight), **tolerance(dtype))


def test_channelwise_message_as_in_mace(dtype):
    """MACE's message: node features x edge harmonics, one weight vector per edge (uvu)."""
    node, sh = o3.Irreps("8x0e+8x1o"), o3.Irreps.spherical_harmonics(3)
    out = o3.Irreps("8x0e+8x1o+8x1e+8x2e+8x2o+8x3o+8x3e")
    ours = make_tensor_product(node, sh, out, method="cg", mode="uvu", shared_weights=False).to(dtype)
    instructions = [(p.i_in1, p.i_in2, p.i_out, "uvu", True) for p in ours.spec.paths]
    theirs = o3.TensorProduct(node, sh, out, instructions, shared_weights=False, internal_weights=False).to(dtype)
    x1, x2 = torch.randn(5, node.dim), torch.randn(5, sh.dim)
    weight = torch.randn(5, ours.weight_numel)
    torch.testing.assert_close(ours(x1, x2, weight), theirs(x1, x2, weight), **tolerance(dtype))


def test_broadcasting_of_leading_dimensions(dtype):
    tp = make_tensor_product("2x0e+2x1o", "1x1o", "2x0e+2x1e", method="cg", mode="uvu", shared_weights=False).to(dtype)
    x1 = torch.randn(4, 1, 8)
    x2 = torch.randn(1, 3, 3)
    weight = torch.randn(4, 3, tp.weight_numel)
    out = tp(x1, x2, weight)
    assert out.shape == (4, 3, 8)
    torch.testing.assert_close(out[2, 1], tp(x1[2, 0], x2[0, 1], weight[2, 1]), **tolerance(dtype))


def test_unreachable_output_is_refused():
    with pytest.raises(ValueError, match="reaches output 1x0o"):
        make_tensor_product("1o", "1o", "0e+0o", method="cg")
