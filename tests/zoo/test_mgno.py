"""MgNO: shapes, admissible grids, the kernel reparametrisation, normalisers, gradients and a short training."""

import math

import pytest
import torch

from layers.spectral import VCycle
from zoo.mgno import MgNO, admissible_sizes, is_admissible


def make(**overrides):
    arguments = dict(in_channels=2, out_channels=1, width=6, num_layers=2, levels=3, domain="nodes")
    arguments.update(overrides)
    torch.manual_seed(0)
    return MgNO(**arguments)


@pytest.mark.parametrize("padding, shape", [("zeros", (7, 15)), ("periodic", (8, 12))])
def test_output_shape(padding, shape):
    model = make(padding=padding, projection_width=5)
    assert model(torch.randn(3, 2, *shape)).shape == (3, 1, *shape)
    assert model(torch.randn(1, 2, *shape), output_shape=shape).shape == (1, 1, *shape)


def test_padding_follows_the_domain():
    assert make(domain="nodes").padding == "zeros"
    assert make(domain="periodic").padding == "periodic"


def test_admissible_sizes_are_those_the_vcycle_coarsens():
    for padding, vcycle_padding in (("zeros", "zeros"), ("periodic", "circular")):
        vcycle = VCycle(1, 3, padding=vcycle_padding)
        for n in range(1, 26):
            try:
                vcycle(torch.randn(1, 1, n, n))
                coarsens = True
            except (ValueError, RuntimeError):
                coarsens = False
            assert is_admissible(n, 3, padding) == coarsens, (padding, n)
        assert all(is_admissible(n, 3, padding) for n in admissible_sizes(3, padding))


def test_bad_grids_and_arguments_give_clear_errors():
    model = make()  # zeros padding, levels 3: n + 1 divisible by 4
    with pytest.raises(ValueError, match=r"got grid \[16, 15\].*|e\.g\. 7, 11, 15, 19"):
        model(torch.randn(1, 2, 16, 15))
    with pytest.raises(ValueError, match="e.g. 4, 8, 12, 16"):
        make(padding="periodic")(torch.randn(1, 2, 10, 8))
    with pytest.raises(ValueError, match="output_shape"):
        model(torch.randn(1, 2, 7, 7), output_shape=(13, 13))
    with pytest.raises(ValueError, match="spatial_dims=2 only"):
        make(spatial_dims=1)
    with pytest.raises(ValueError, match="padding"):
        make(padding="reflect")
    with pytest.raises(ValueError, match="domain 'periodic' or 'nodes'"):
        make(domain="sphere")


def test_reparametrised_kernels_act_like_the_plain_vcycle():
    model = make(width=4, vcycle_kernel_magnitude=0.3)
    layer = model.layers[0]
    plain = VCycle(4, 3, 1, 0, padding="zeros")
    stored = [p for name, p in layer.vcycle.named_parameters() if name.endswith("original")]
    assert len(stored) == len(list(plain.parameters()))
    # stored entries lie in +-magnitude, and the kernels used are PyTorch's initialisation, +-1/sqrt(9 width)
    assert max(p.abs().max().item() for p in stored) <= 0.3
    assert max(layer.vcycle.operator[0].abs().max().item(), layer.vcycle.smoother[0].abs().max().item()) <= 1 / math.sqrt(36)
    with torch.no_grad():
        for group in ("operator", "smoother", "restriction", "prolongation"):
            for target, source in zip(getattr(plain, group), getattr(layer.vcycle, group)):
                target.copy_(source)
    u = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(layer.vcycle(u), plain(u))


def test_normalisers_wrap_the_raw_model():
    stats = dict(input_mean=[1.0, -2.0], input_std=[2.0, 0.5], output_mean=[0.3], output_std=[4.0])
    plain, normalised = make(), make(**stats)
    normalised.load_state_dict(plain.state_dict() | {k: v for k, v in normalised.state_dict().items() if "normalisation" in k})
    x = torch.randn(2, 2, 7, 7)
    encoded = (x - torch.tensor([1.0, -2.0])[None, :, None, None]) / torch.tensor([2.0, 0.5])[None, :, None, None]
    torch.testing.assert_close(normalised(x), plain(encoded) * 4.0 + 0.3)


def test_every_parameter_gets_a_gradient():
    model = make(projection_width=3, smoothing_steps=1, post_smoothing_steps=0)
    model(torch.randn(2, 2, 7, 7)).square().mean().backward()
    # one smoothing step from a zero guess on the coarsest grid is S (f - A 0): that level's operator is unused
    unused = {f"layers.{i}.vcycle.operator.parametrizations.2.original" for i in range(2)}
    for name, p in model.named_parameters():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == (name not in unused), name


def periodic_poisson(n: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random f and the mean-free solution of -Laplace(u) = f on the unit torus (spectral, exact)."""
    generator = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    f_hat = torch.complex(torch.randn(count, n, n, generator=generator, dtype=torch.float64), torch.randn(count, n, n, generator=generator, dtype=torch.float64))
    f_hat = f_hat * (1 + k2) ** -1.5
    f_hat[:, 0, 0] = 0
    f = torch.fft.ifft2(f_hat).real
    u_hat = torch.fft.fft2(f) / (4 * math.pi**2 * k2.clamp_min(1.0))
    u_hat[:, 0, 0] = 0
    u = torch.fft.ifft2(u_hat).real
    return (f / f.std())[:, None].float(), (u / u.std())[:, None].float()


def test_short_training_on_poisson_reduces_the_loss_without_diverging():
    torch.manual_seed(0)
    f, u = periodic_poisson(8, 16, seed=1)
    model = MgNO(in_channels=1, out_channels=1, width=8, num_layers=1, levels=3, domain="periodic")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def relative_error() -> torch.Tensor:
        return ((model(f) - u).flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1)).mean()

    with torch.no_grad():
        start = relative_error().item()
    losses = []
    for _ in range(150):
        loss = relative_error()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        end = relative_error().item()
    assert all(math.isfinite(value) and value < 1.5 * start for value in losses)
    assert end < start / 8, (start, end)  # about 0.98 -> 0.05
