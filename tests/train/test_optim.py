"""Optimizers by name."""

import pytest
import torch

from train.optim import build_optimizer


def test_adamw_and_sgd_with_their_hyper_parameters():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adamw = build_optimizer("adamw", params, lr=0.01, amsgrad=True, weight_decay=5e-7)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["amsgrad"] is True
    assert isinstance(build_optimizer("sgd", params, lr=0.1, momentum=0.9), torch.optim.SGD)


def test_unknown_names_and_keywords_are_named():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="available: adamw, sgd"):
        build_optimizer("lamb", params)
    with pytest.raises(ValueError, match="'sgd'.*momentun"):
        build_optimizer("sgd", params, lr=0.1, momentun=0.9)
