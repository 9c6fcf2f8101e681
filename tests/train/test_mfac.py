"""M-FAC (train.optim.mfac): exact inverse-Fisher products through the sliding window, steps, resume."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.train.test_adahessian import quadratic, rosenbrock
from train.optim.mfac import MFAC


def backward_closure(optimizer, loss_of, w):
    """The usual closure: zero the gradients, evaluate, backpropagate, return the loss."""
    def closure():
        optimizer.zero_grad()
        loss = loss_of(w)
        loss.backward()
        return loss
    return closure


def dense_inverse_product(gradients, damping, vector):
    m, d = gradients.shape
    fisher = damping * torch.eye(d, dtype=gradients.dtype) + gradients.T @ gradients / m
    return torch.linalg.solve(fisher, vector)


@pytest.mark.parametrize("refresh_every", [1000, 4])
def test_inverse_fisher_product_equals_the_dense_solve_as_the_window_slides(refresh_every):
    generator = torch.Generator().manual_seed(0)
    w = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    optimizer = MFAC([w], window=5, damping=0.1, refresh_every=refresh_every)
    history = []
    for step in range(13):  # fills the window, then wraps around it twice
        gradient = torch.randn(12, generator=generator, dtype=torch.float64)
        history.append(gradient)
        optimizer.add_gradient(gradient)
        window = torch.stack(history[-5:])
        vector = torch.randn(12, generator=generator, dtype=torch.float64)
        padded = torch.cat([window, torch.zeros(5 - len(window), 12, dtype=torch.float64)])
        torch.testing.assert_close(optimizer.inverse_fisher_product(vector),
                                   dense_inverse_product(padded, 0.1, vector), rtol=1e-9, atol=1e-10)


def test_decreases_a_quadratic_and_the_rosenbrock_function():
    loss_of, f_min = quadratic()
    w = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    gap = float(loss_of(w).detach()) - f_min
    optimizer = MFAC([w], lr=0.05, momentum=0.5, window=8, damping=1.0)
    for _ in range(300):
        optimizer.zero_grad()
        loss_of(w).backward()
        optimizer.step()
    assert float(loss_of(w).detach()) - f_min < 1e-3 * gap

    w = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    start = float(rosenbrock(w).detach())
    optimizer = MFAC([w], lr=0.01, momentum=0.9, window=8, damping=0.1)
    closure = backward_closure(optimizer, rosenbrock, w)
    for _ in range(1000):
        optimizer.step(closure)
    assert float(rosenbrock(w).detach()) < 1e-3 * start  # measured: 12.5 -> 0.0002


def test_non_finite_gradient_is_skipped_and_resume_is_bit_identical():
    loss_of, _ = quadratic(seed=3)
    w = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    optimizer = MFAC([w], lr=0.05, momentum=0.9, window=4, damping=0.5, refresh_every=3)
    closure = backward_closure(optimizer, loss_of, w)
    for _ in range(6):
        optimizer.step(closure)
    saved_w, saved = w.detach().clone(), copy.deepcopy(optimizer.state_dict())
    w.grad = torch.full_like(w, float("nan"))
    with pytest.warns(RuntimeWarning, match="step skipped"):
        optimizer.step()
    assert torch.equal(w.detach(), saved_w) and torch.equal(optimizer.gradients, saved["mfac"]["gradients"])
    for _ in range(7):
        optimizer.step(closure)
    uninterrupted = w.detach().clone()

    resumed_w = saved_w.clone().requires_grad_(True)
    resumed = MFAC([resumed_w], lr=0.05, momentum=0.9, window=4, damping=0.5, refresh_every=3)
    resumed.load_state_dict(saved)
    resumed_closure = backward_closure(resumed, loss_of, resumed_w)
    for _ in range(7):
        resumed.step(resumed_closure)
    assert torch.equal(resumed_w.detach(), uninterrupted)
    with pytest.raises(ValueError, match="window size"):
        MFAC([resumed_w], window=3).load_state_dict(saved)
