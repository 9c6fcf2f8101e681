"""FNO / TFNO / SFNO (zoo/fno.py): shapes, super-resolution, discretisation invariance, normalisers, padding,
factorised weights, spherical equivariance, last-layer refinement, checkpoints, CAPE, bad arguments."""

import math

import pytest
import torch

import zoo
from layers.spectral.grid import fourier_resample
from zoo import checkpoint
from zoo.fno import full_modes, with_full_last_layer_modes


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def fno(spatial_dims=1, modes=3, name="fno", **kwargs):
    convolution = kwargs.pop("convolution", {"kind": "fourier", "modes": [modes] * spatial_dims})
    arguments = dict(in_channels=1, out_channels=1, spatial_dims=spatial_dims, convolution=convolution, width=6, num_layers=2)
    arguments.update(kwargs)
    return zoo.build_model(name, **arguments)


def perturb(model, scale=0.1):
    """Move every parameter off its initial value (zero-initialised parts would hide bugs)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return model


def smooth_input(n, batch=2):
    x = torch.arange(n) / n
    return torch.stack([torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x + b) for b in range(batch)])[:, None]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_shapes_and_attributes(spatial_dims):
    model = fno(spatial_dims, in_channels=2, out_channels=3)
    assert (model.in_channels, model.out_channels, model.spatial_dims, model.domain) == (2, 3, spatial_dims, "periodic")
    x = torch.randn(2, 2, *([6] * spatial_dims))
    assert model(x).shape == (2, 3, *([6] * spatial_dims))
    assert model(x, output_shape=[12] * spatial_dims).shape == (2, 3, *([12] * spatial_dims))


def test_float32_model_and_input():
    torch.set_default_dtype(torch.float32)
    for name, convolution in (("fno", {"kind": "fourier", "modes": [3, 3]}), ("sfno", {"lmax": 3})):
        model = zoo.build_model(name, in_channels=1, out_channels=1, spatial_dims=2, convolution=convolution, width=4,
                                input_mean=[0.5], input_std=[2.0])
        y = model(torch.randn(1, 1, 9, 8, dtype=torch.float32), output_shape=[11, 12])
        assert y.dtype == torch.float32 and y.shape == (1, 1, 11, 12)


def test_super_resolution_is_interpolation_of_the_last_block():
    # channel_mlp=False: the last block's output is u = K v + b + S v, band-limited plus pointwise-linear,
    # so on 2N points it is exactly the trigonometric interpolant of the N-point one
    model = perturb(fno(1, modes=4, channel_mlp=False, num_layers=3))
    outputs = []
    model.blocks[-1].register_forward_hook(lambda module, args, output: outputs.append(output))
    x = smooth_input(16)
    model(x)
    model(x, output_shape=[32])
    assert torch.allclose(outputs[1], fourier_resample(outputs[0], [32]), atol=1e-10)


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_super_resolution_agrees_on_shared_points(spatial_dims):
    model = perturb(fno(spatial_dims, modes=3))  # default blocks (channel MLP, soft gating)
    x = torch.randn(2, 1, *([8] * spatial_dims))
    fine = model(x, output_shape=[16] * spatial_dims)
    shared = fine[..., ::2] if spatial_dims == 1 else fine[..., ::2, ::2]
    assert torch.allclose(shared, model(x), atol=1e-10)
    assert not torch.allclose(fine[..., 1::2], fine[..., ::2])  # the new points are new values


def test_discretisation_invariance():
    # a smooth input sampled on 32 and 64 points: the same function, up to aliasing of the
    # pointwise nonlinearities, which is small for smooth fields
    model = perturb(fno(1, modes=4, num_layers=3))
    coarse, fine = model(smooth_input(32)), model(smooth_input(64))
    assert (fine[..., ::2] - coarse).norm() / coarse.norm() < 1e-3


def test_normalisers():
    raw = perturb(fno(2, in_channels=2, out_channels=2))
    stats = dict(input_mean=[1.0, -2.0], input_std=[3.0, 0.5], output_mean=[10.0, 0.0], output_std=[2.0, 4.0])
    normalised = fno(2, in_channels=2, out_channels=2, **stats)
    state = raw.state_dict()
    for key in ("input_normalisation.mean", "input_normalisation.std", "output_normalisation.mean", "output_normalisation.std"):
        state[key] = normalised.state_dict()[key]
    normalised.load_state_dict(state)
    x = torch.randn(3, 2, 7, 6)
    view = lambda values: torch.tensor(values).view(1, 2, 1, 1)
    expected = raw((x - view(stats["input_mean"])) / view(stats["input_std"])) * view(stats["output_std"]) + view(stats["output_mean"])
    assert torch.allclose(normalised(x), expected, atol=1e-12)


def test_domain_padding_pads_and_crops():
    model = fno(2, domain="nodes", domain_padding=0.25)
    seen = []
    model.blocks[0].register_forward_hook(lambda module, args, output: seen.append(tuple(args[0].shape[2:])))
    x = torch.randn(1, 1, 8, 12)
    assert model(x).shape == (1, 1, 8, 12)
    assert seen == [(10, 15)]
    assert model(x, output_shape=[16, 24]).shape == (1, 1, 16, 24)
    unpadded = fno(2, domain="nodes")
    unpadded.load_state_dict(model.state_dict())
    assert not torch.allclose(unpadded(x), model(x))


def test_positional_embedding_follows_domain():
    periodic, nodes = fno(1, domain="periodic"), fno(1, domain="nodes")
    nodes.load_state_dict(periodic.state_dict())
    x = torch.randn(1, 1, 8)
    assert not torch.allclose(periodic(x), nodes(x))
    no_embedding = fno(1, positional_embedding=False)
    assert no_embedding.lifting.layers[0].in_features == 1 and periodic.lifting.layers[0].in_features == 2


@pytest.mark.parametrize("weights", ["dense", "cp", "tucker"])
def test_weights_kinds_run(weights):
    convolution = {"kind": "fourier", "modes": [4, 4], "weights": weights}
    if weights != "dense":
        convolution["rank"] = 0.3
    model = fno(2, convolution=convolution, width=8)
    assert model(torch.randn(2, 1, 9, 8)).shape == (2, 1, 9, 8)


def test_factorised_weights_have_fewer_parameters():
    count = lambda model: sum(p.numel() for p in model.parameters())
    dense = fno(2, convolution={"kind": "fourier", "modes": [6, 6]}, width=12)
    for weights in ("cp", "tucker"):
        factorised = fno(2, convolution={"kind": "fourier", "modes": [6, 6], "weights": weights, "rank": 0.1}, width=12)
        assert count(factorised) < count(dense)
    # the tfno preset is Tucker by default, and a partial convolution keeps that
    tfno = fno(2, name="tfno", convolution={"modes": [6, 6]}, width=12)
    assert type(tfno.blocks[0].convolution.weights).__name__ == "TuckerSpectralWeights"
    assert count(tfno) < count(dense)
    # a convolution of another kind replaces the preset's whole
    spherical = zoo.build_model("tfno", in_channels=1, out_channels=1, spatial_dims=2, convolution={"kind": "spherical", "lmax": 3})
    assert spherical.spec["weights"] == "dense" and spherical.kind == "spherical"


@pytest.mark.parametrize("grid, shape", [("equiangular", (9, 16)), ("gauss-legendre", (5, 12))])
def test_sfno_equivariant_to_rotations_about_the_pole(grid, shape):
    model = perturb(zoo.build_model("sfno", in_channels=2, out_channels=1, convolution={"lmax": 4, "grid": grid},
                                    width=6, num_layers=2))
    assert model.kind == "spherical"
    x = torch.randn(2, 2, *shape)
    shift = 3
    assert torch.allclose(model(torch.roll(x, shift, -1)), torch.roll(model(x), shift, -1), atol=1e-12)
    # on a grid twice as fine in longitude the same rotation is twice as many cells
    output_shape = (shape[0], 2 * shape[1])
    fine = model(x, output_shape=output_shape)
    assert fine.shape == (2, 1, *output_shape)
    assert torch.allclose(model(torch.roll(x, shift, -1), output_shape=output_shape), torch.roll(fine, 2 * shift, -1), atol=1e-12)


@pytest.mark.parametrize("weights", ["dense", "cp", "tucker"])
def test_with_full_last_layer_modes_computes_the_same_function(weights):
    convolution = {"kind": "fourier", "modes": [3, 2], "weights": weights}
    if weights != "dense":
        convolution["rank"] = 0.5
    model = perturb(fno(2, convolution=convolution))
    grid = (10, 9)
    refined = with_full_last_layer_modes(model, grid)
    assert full_modes(grid) == [5, 5]
    assert refined.blocks[-1].convolution.modes == (5, 5) and refined.blocks[0].convolution.modes == (3, 2)
    assert refined.build_arguments["kwargs"]["last_layer_modes"] == [5, 5]
    x = torch.randn(2, 1, *grid)
    assert torch.allclose(refined(x), model(x), atol=1e-10)
    # the dense view of the padded weights holds the old block at the old frequencies, zeros elsewhere
    old, new = model.blocks[-1].convolution.weights.to_dense(), refined.blocks[-1].convolution.weights.to_dense()
    rows = [0, 1, 2, 7, 8]  # frequencies 0, 1, 2, -2, -1 in FFT order on 2 * 5 - 1 = 9 rows
    assert torch.allclose(new[:, :, rows, :2], old, atol=1e-12)
    assert new[:, :, 3:7].abs().max() == 0 and new[:, :, :, 2:].abs().max() == 0
    # its last-layer parameters are live: moving them changes the output
    parameters = refined.last_layer_parameters()
    assert parameters and all(p.requires_grad for p in parameters)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(0.1 * torch.randn_like(parameter))
    assert not torch.allclose(refined(x), model(x))


def test_with_full_last_layer_modes_errors():
    model = fno(1, modes=4)
    with pytest.raises(ValueError, match="fewer than"):
        with_full_last_layer_modes(model, (5,))
    sfno = zoo.build_model("sfno", in_channels=1, out_channels=1, convolution={"lmax": 3}, width=4, num_layers=1)
    with pytest.raises(ValueError, match="Fourier"):
        with_full_last_layer_modes(sfno, (9, 16))


@pytest.mark.parametrize("name, convolution", [
    ("fno", {"kind": "fourier", "modes": [3, 3]}),
    ("tfno", {"modes": [3, 3], "rank": 0.5}),
    ("sfno", {"lmax": 3}),
])
def test_checkpoint_round_trip(tmp_path, name, convolution):
    model = perturb(zoo.build_model(name, in_channels=1, out_channels=2, spatial_dims=2, convolution=convolution, width=6,
                                    num_layers=2, input_mean=[0.5], input_std=[2.0], output_mean=[1.0, -1.0], output_std=[3.0, 0.1]))
    path = checkpoint.save(model, tmp_path / f"{name}.safetensors")
    loaded = checkpoint.load_model(path)
    x = torch.randn(2, 1, 9, 8)
    assert torch.equal(loaded(x), model(x))


def test_channel_attention():
    model = fno(1, channel_attention_parameters=2)
    x, p = torch.randn(2, 1, 8), torch.tensor([[0.1, 2.0], [1.0, 0.5]])
    plain = fno(1)
    plain.load_state_dict(model.state_dict(), strict=False)
    # the attention starts as the identity, so the model starts as the one without it
    assert torch.allclose(model(x, pde_parameters=p), plain(x), atol=1e-12)
    perturb(model)
    assert not torch.allclose(model(x, pde_parameters=p), model(x, pde_parameters=2 * p))
    with pytest.raises(ValueError, match="required"):
        model(x)
    with pytest.raises(ValueError, match="no channel attention"):
        plain(x, pde_parameters=p)


@pytest.mark.parametrize("change, message", [
    ({"convolution": {"kind": "wavelet", "modes": [3]}}, "kind"),
    ({"convolution": {"kind": "fourier"}}, "modes"),
    ({"convolution": {"kind": "fourier", "modes": [3, 3]}}, "one entry per spatial dimension"),
    ({"convolution": {"kind": "fourier", "modes": [3], "lmax": 2}}, "unknown key"),
    ({"convolution": {"kind": "fourier", "modes": [3], "rank": 0.5}}, "dense"),
    ({"convolution": {"kind": "fourier", "modes": [3], "weights": "cp", "rank": 1.5}}, "rank"),
    ({"convolution": {"kind": "fourier", "modes": [3], "weights": "svd"}}, "weights"),
    ({"convolution": {"kind": "spherical", "lmax": 3}}, "spatial_dims must be 2"),
    ({"domain": "torus"}, "domain"),
    ({"domain_padding": 1.5}, "domain_padding"),
    ({"width": 0}, "width"),
    ({"last_layer_modes": [2, 2]}, "last_layer_modes"),
])
def test_bad_arguments(change, message):
    with pytest.raises(ValueError, match=message):
        fno(1, **change)


def test_bad_calls():
    model = fno(1)
    with pytest.raises(ValueError, match=r"x must be \[batch, 1"):
        model(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="output_shape"):
        model(torch.randn(2, 1, 8), output_shape=[8, 8])
    with pytest.raises(ValueError, match="unknown argument"):
        zoo.build_model("fno", in_channels=1, out_channels=1, spatial_dims=1, convolution={"kind": "fourier", "modes": [2]}, depth=3)
    with pytest.raises(ValueError, match="spherical"):
        zoo.build_model("sfno", in_channels=1, out_channels=1, convolution={"lmax": 3}, domain_padding=0.1)
    with pytest.raises(ValueError, match="Fourier convolution only"):
        zoo.build_model("sfno", in_channels=1, out_channels=1, convolution={"lmax": 3}, last_layer_modes=[4, 4])
