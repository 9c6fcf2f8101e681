"""U-Net: shapes at any size (pad and crop), 1-D and 2-D, periodic shifts, normalisers, gradients, errors."""

import pytest
import torch

from zoo.unet import UNet


def make(**overrides):
    arguments = dict(in_channels=2, out_channels=3, spatial_dims=2, width=4, levels=2)
    arguments.update(overrides)
    torch.manual_seed(0)
    return UNet(**arguments)


@pytest.mark.parametrize("domain", ["periodic", "nodes"])
@pytest.mark.parametrize("shape", [(8, 12), (7, 13), (3, 5), (1, 6)])
def test_any_2d_size_round_trips(domain, shape):
    model = make(domain=domain)
    assert model(torch.randn(2, 2, *shape)).shape == (2, 3, *shape)


@pytest.mark.parametrize("length", [16, 11, 2])
def test_1d(length):
    model = make(spatial_dims=1, levels=3)
    assert model(torch.randn(2, 2, length), output_shape=[length]).shape == (2, 3, length)


def test_padded_input_is_cropped_back_to_the_same_field():
    # an odd-sized field gives, on its own points, what the model gives on the field padded as documented
    model = make(domain="nodes").eval()
    x = torch.randn(1, 2, 7, 5)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 1), mode="replicate")
    torch.testing.assert_close(model(x), model(padded)[..., :7, :5])


def test_periodic_unet_commutes_with_shifts_by_the_coarsest_spacing():
    model = make(domain="periodic").eval()
    x = torch.randn(1, 2, 8, 12)
    shift = (4, 8)  # multiples of 2^levels: pooling windows stay aligned
    torch.testing.assert_close(model(torch.roll(x, shift, dims=(2, 3))), torch.roll(model(x), shift, dims=(2, 3)), atol=1e-5, rtol=1e-5)


def test_normalisers_wrap_the_raw_model():
    stats = dict(input_mean=[1.0, -2.0], input_std=[2.0, 0.5], output_mean=[0.1, 0.2, 0.3], output_std=[3.0, 4.0, 5.0])
    plain, normalised = make(), make(**stats)
    normalised.load_state_dict(plain.state_dict() | {k: v for k, v in normalised.state_dict().items() if "normalisation" in k})
    x = torch.randn(2, 2, 6, 6)
    encoded = (x - torch.tensor([1.0, -2.0])[None, :, None, None]) / torch.tensor([2.0, 0.5])[None, :, None, None]
    expected = plain(encoded) * torch.tensor([3.0, 4.0, 5.0])[None, :, None, None] + torch.tensor([0.1, 0.2, 0.3])[None, :, None, None]
    torch.testing.assert_close(normalised(x), expected)


def test_channels_double_per_level_and_every_parameter_gets_a_gradient():
    model = make(levels=3)
    assert [stage.blocks[0].out_channels for stage in model.encoder] == [4, 8, 16, 32]
    model(torch.randn(2, 2, 9, 10)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_bad_input_gives_clear_errors():
    model = make()
    with pytest.raises(ValueError, match="output_shape"):
        model(torch.randn(1, 2, 8, 8), output_shape=(16, 16))
    with pytest.raises(ValueError, match=r"\[batch, 2, 2 spatial sizes\]"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="spatial_dims 1 or 2"):
        make(spatial_dims=3)
    for domain in ("sphere", "torus"):
        with pytest.raises(ValueError, match="domain 'periodic' or 'nodes'"):
            make(domain=domain)
