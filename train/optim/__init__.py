"""Optimizers by name: ``build_optimizer(name, params, **hyper)``.

Only torch's own for now: ``"adamw"`` (``torch.optim.AdamW``; ``amsgrad=True`` gives MACE's AMSGrad
variant) and ``"sgd"`` (``torch.optim.SGD``). The keyword arguments are the optimizer's own (``lr``,
``weight_decay``, ``betas``, ``momentum``, ...), the ``optimizer:`` config node minus ``name``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

OPTIMIZERS = {
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter] | Iterable[dict], **hyper: Any
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params`` with hyper-parameters ``hyper`` (e.g. ``lr=0.01``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}")
    try:
        return OPTIMIZERS[name](params, **hyper)
    except TypeError as error:  # an unknown keyword: name the optimizer and what it accepts
        raise ValueError(f"optimizer {name!r} ({OPTIMIZERS[name].__name__}): {error}") from None
