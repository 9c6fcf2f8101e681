"""The exponential moving average of the weights."""

import pytest
import torch

from train.ema import ExponentialMovingAverage


class Holder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.frozen = torch.nn.Parameter(torch.tensor([5.0], dtype=torch.float64), requires_grad=False)
        self.register_buffer("constant", torch.tensor([7.0], dtype=torch.float64))


@pytest.mark.parametrize("warmup", [True, False])
def test_average_follows_the_formula(warmup):
    module = Holder()
    ema = ExponentialMovingAverage(decay=0.9, warmup=warmup)
    ema.start(module)
    expected = module.weight.detach().clone()
    for t, value in enumerate([1.0, 3.0, -2.0], start=1):
        with torch.no_grad():
            module.weight.fill_(value)
        ema.update(module)
        decay = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        expected = decay * expected + (1 - decay) * value
    torch.testing.assert_close(ema.averaged_state(module)["weight"], expected)
    assert set(ema.averaged_state(module)) == {"weight"}  # frozen parameters and buffers are not averaged


def test_swap_twice_restores_the_training_weights():
    module = Holder()
    ema = ExponentialMovingAverage(decay=0.5, warmup=False)
    ema.start(module)
    with torch.no_grad():
        module.weight.fill_(4.0)
    ema.update(module)  # average: 0.5 * [0, 1] + 0.5 * 4 = [2, 2.5]
    ema._swap(module)
    torch.testing.assert_close(module.weight.detach(), torch.tensor([2.0, 2.5], dtype=torch.float64))
    torch.testing.assert_close(ema.averaged_state(module)["weight"], torch.tensor([2.0, 2.5], dtype=torch.float64))
    ema._swap(module)
    torch.testing.assert_close(module.weight.detach(), torch.tensor([4.0, 4.0], dtype=torch.float64))


def test_decay_must_be_below_one():
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(decay=1.0)
