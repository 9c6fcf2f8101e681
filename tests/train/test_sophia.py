"""Sophia-H and Sophia-G (train.optim.sophia): convergence, clipping, refresh period, bad steps, resume."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.train.test_adahessian import quadratic, rosenbrock
from train.optim.sophia import Sophia


def least_squares(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(6, 1, generator=generator, dtype=torch.float64) + 0.01 * torch.randn(
        64, 1, generator=generator, dtype=torch.float64)
    best = torch.linalg.lstsq(x, y).solution
    return x, y, best


def test_sophia_h_converges_on_a_convex_quadratic():
    loss_of, f_min = quadratic()
    w = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    gap = float(loss_of(w).detach()) - f_min
    optimizer = Sophia([w], lr=0.05, rho=0.5, betas=(0.9, 0.99), update_every=2)
    for _ in range(400):
        optimizer.step(lambda: loss_of(w))
    assert float(loss_of(w).detach()) - f_min < 1e-3 * gap


def test_sophia_g_fits_least_squares():
    x, y, best = least_squares()
    w = torch.zeros(6, 1, dtype=torch.float64, requires_grad=True)

    def loss_of(f, labels):
        return 0.5 * ((f - labels) ** 2).sum(dim=1).mean()

    optimizer = Sophia([w], lr=0.05, rho=0.5, betas=(0.9, 0.99), estimator="gnb", update_every=5)
    for _ in range(400):
        optimizer.step(lambda: loss_of(x @ w, y), predict=lambda: x @ w, loss_of=loss_of, batch_size=len(x))
    assert (w.detach() - best).abs().max() < 1e-2
    with pytest.raises(ValueError, match="predict"):
        Sophia([w], estimator="gnb").step(lambda: loss_of(x @ w, y))


def test_decreases_the_rosenbrock_function():
    w = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    start = float(rosenbrock(w).detach())
    optimizer = Sophia([w], lr=0.02, rho=0.05, update_every=1)
    for _ in range(1000):
        optimizer.step(lambda: rosenbrock(w))
    assert float(rosenbrock(w).detach()) < 0.1 * start  # measured: 12.5 -> 0.75
    assert w.detach()[0] > 0  # crossed the valley's bend towards the minimum at (1, 1)


def test_each_coordinate_moves_at_most_lr_and_curvature_refreshes_every_k_steps():
    w = torch.tensor([3.0, -4.0, 0.5], dtype=torch.float64, requires_grad=True)
    optimizer = Sophia([w], lr=0.1, rho=1e-6, update_every=3)  # tiny rho: every ratio clips
    refreshes = []
    for step in range(7):
        before = w.detach().clone()
        hessian_before = optimizer.state[w]["hessian"].clone() if optimizer.state else None
        optimizer.step(lambda: (w ** 4).sum())
        assert ((w.detach() - before).abs() <= 0.1 + 1e-15).all()
        refreshes.append(hessian_before is None or not torch.equal(optimizer.state[w]["hessian"], hessian_before))
    assert refreshes == [True, False, False, True, False, False, True]


def test_non_finite_steps_are_skipped_and_resume_is_bit_identical():
    loss_of, _ = quadratic(seed=2)
    w = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    optimizer = Sophia([w], lr=0.05, rho=0.5, update_every=2)
    for _ in range(5):
        optimizer.step(lambda: loss_of(w))
    saved_w, saved = w.detach().clone(), copy.deepcopy(optimizer.state_dict())
    with pytest.warns(RuntimeWarning, match="step skipped"):
        optimizer.step(lambda: loss_of(w) * float("nan"))
    assert torch.equal(w.detach(), saved_w)
    for _ in range(6):
        optimizer.step(lambda: loss_of(w))
    uninterrupted = w.detach().clone()

    resumed_w = saved_w.clone().requires_grad_(True)
    resumed = Sophia([resumed_w], lr=0.05, rho=0.5, update_every=2, seed=7)
    resumed.load_state_dict(saved)
    for _ in range(6):
        resumed.step(lambda: loss_of(resumed_w))
    assert torch.equal(resumed_w.detach(), uninterrupted)
