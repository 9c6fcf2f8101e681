"""AdaHessian (train.optim.adahessian): convergence, spatial averaging, bad steps skipped, exact resume."""

from __future__ import annotations

import copy

import pytest
import torch

from train.optim.adahessian import AdaHessian


def quadratic(dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))[0]
    a = q @ torch.diag(torch.linspace(0.5, 5.0, dim, dtype=torch.float64)) @ q.T
    b = torch.randn(dim, generator=generator, dtype=torch.float64)
    minimum = 0.5 * b @ torch.linalg.solve(a, b)
    return (lambda w: 0.5 * w @ a @ w - b @ w), -minimum


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def run(loss_of, w, steps, **hyper):
    optimizer = AdaHessian([w], **hyper)
    for _ in range(steps):
        optimizer.step(lambda: loss_of(w))
    return optimizer


def test_converges_on_a_convex_quadratic():
    loss_of, f_min = quadratic()
    w = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    gap = float(loss_of(w).detach()) - f_min
    run(loss_of, w, 300, lr=0.1)
    assert float(loss_of(w).detach()) - f_min < 1e-3 * gap


def test_decreases_the_rosenbrock_function():
    w = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    start = float(rosenbrock(w).detach())
    run(rosenbrock, w, 1000, lr=1.0, num_samples=4)  # measured: 12.5 -> 0.37, through the curved valley
    assert float(rosenbrock(w).detach()) < 0.05 * start
    assert w.detach()[0] > 0  # crossed the valley's bend towards the minimum at (1, 1)


def test_convolution_kernels_average_their_curvature_spatially():
    conv = torch.nn.Conv2d(2, 3, kernel_size=3).double()
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    optimizer = AdaHessian(conv.parameters(), lr=0.01)
    optimizer.step(lambda: (conv(x) ** 2).mean() + (conv(x) ** 3).mean())
    curvature = optimizer.state[conv.weight]["exp_hessian_diag_sq"]
    assert torch.equal(curvature, curvature[:, :, :1, :1].expand_as(curvature))  # one value per kernel
    assert curvature.abs().sum() > 0
    bias = optimizer.state[conv.bias]["exp_hessian_diag_sq"]
    assert bias.shape == (3,)


def test_non_finite_steps_are_skipped_without_touching_state():
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    optimizer = run(rosenbrock, w, 3, lr=0.01)
    before_w, before_state = w.detach().clone(), copy.deepcopy(optimizer.state_dict())
    with pytest.warns(RuntimeWarning, match="step skipped"):
        optimizer.step(lambda: rosenbrock(w) * torch.tensor(float("nan"), dtype=torch.float64))
    assert torch.equal(w.detach(), before_w)
    after = optimizer.state_dict()
    assert after["curvature"]["num_steps"] == before_state["curvature"]["num_steps"]
    for key in ("exp_avg", "exp_hessian_diag_sq"):
        assert torch.equal(after["state"][0][key], before_state["state"][0][key])
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()


def test_resume_from_state_dict_continues_bit_identically():
    loss_of, _ = quadratic(seed=1)
    w = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    optimizer = run(loss_of, w, 5, lr=0.05, update_each=2)
    saved_w, saved_state = w.detach().clone(), copy.deepcopy(optimizer.state_dict())
    for _ in range(6):
        optimizer.step(lambda: loss_of(w))
    uninterrupted = w.detach().clone()

    resumed_w = saved_w.clone().requires_grad_(True)
    resumed = AdaHessian([resumed_w], lr=0.05, update_each=2, seed=99)  # another seed: the saved one wins
    resumed.load_state_dict(saved_state)
    for _ in range(6):
        resumed.step(lambda: loss_of(resumed_w))
    assert torch.equal(resumed_w.detach(), uninterrupted)
