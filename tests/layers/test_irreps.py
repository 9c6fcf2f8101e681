"""The mul_ir layout and its channel view."""

import pytest
import torch
from e3nn import o3

from layers.irreps import ChannelSignal, as_irreps, irrep_of_each_component, parity_class


def test_channel_view_round_trip():
    signal = ChannelSignal.of("3x0e+3x1o+3x2e")
    assert signal.mul == 3 and signal.base == o3.Irreps("0e+1o+2e")
    x = torch.arange(signal.irreps.dim, dtype=torch.float64)
    channels = x[signal.to_channels_index()].view(3, 9)
    # channel 1 holds the second scalar, the second vector and the second rank-2 block
    assert channels[1, 0] == 1 and channels[1, 1:4].tolist() == [6, 7, 8] and channels[1, 4:].tolist() == [17, 18, 19, 20, 21]
    torch.testing.assert_close(channels.reshape(-1)[signal.from_channels_index()], x)


def test_channel_view_refuses_mixed_multiplicities_and_repeats():
    with pytest.raises(ValueError, match="same multiplicity"):
        ChannelSignal.of("3x0e+2x1o", "irreps_in1")
    with pytest.raises(ValueError, match="appear once"):
        ChannelSignal.of("2x0e+2x0e")
    with pytest.raises(ValueError, match="cannot read"):
        as_irreps("2x0q")


def test_parity_class_and_component_index():
    assert [parity_class(ir) for _, ir in o3.Irreps("0e+1o+2e+0o+1e")] == [1, 1, 1, -1, -1]
    assert irrep_of_each_component(o3.Irreps("2x0e+1x1o")).tolist() == [0, 0, 1, 1, 1]
