"""Warm-up then plateau: the learning rates step by step, and a state that resumes exactly."""

import pytest
import torch

from train.schedule import WarmupPlateauSchedule


def schedule(lr=1.0, **kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return optimizer, WarmupPlateauSchedule(optimizer, **kwargs)


def test_linear_warmup_reaches_the_base_rate_and_stays():
    optimizer, sched = schedule(lr=0.4, warmup_steps=4)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        sched.after_optimizer_step()
    assert rates == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_no_warmup_keeps_the_rate():
    optimizer, sched = schedule(lr=0.3, warmup_steps=0)
    sched.after_optimizer_step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3)


def test_a_plateau_reduction_during_warmup_is_kept():
    optimizer, sched = schedule(lr=1.0, warmup_steps=4, factor=0.5, patience=0)
    sched.after_optimizer_step()           # step 1: 0.5
    sched.after_validation(1.0)
    sched.after_validation(2.0)            # worse, patience 0: halve -> 0.25
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)
    for _ in range(5):
        sched.after_optimizer_step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)  # warm-up done: base 1.0 halved once


def test_state_dict_resumes_the_same_rates():
    optimizer, sched = schedule(lr=1.0, warmup_steps=5, factor=0.5, patience=1)
    for loss in (3.0, 2.0, 2.5):
        sched.after_optimizer_step()
        sched.after_validation(loss)
    saved_optimizer, saved_schedule = optimizer.state_dict(), sched.state_dict()

    resumed_optimizer, resumed = schedule(lr=1.0, warmup_steps=5, factor=0.5, patience=1)
    resumed.load_state_dict(saved_schedule)
    resumed_optimizer.load_state_dict(saved_optimizer)
    for loss in (2.6, 2.7, 1.0, 1.1, 1.2):
        for opt, s in ((optimizer, sched), (resumed_optimizer, resumed)):
            s.after_optimizer_step()
            s.after_validation(loss)
        assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert optimizer.param_groups[0]["lr"] < 1.0  # the plateau did act
