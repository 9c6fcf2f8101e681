"""Models by name: :func:`build_model` is how training, checkpoints and users construct a model.

A model's constructor takes typed keyword arguments only, and those are its config schema
(``configs/model/<name>.yaml``): ``build_model("mace", elements=[1, 6, 8], r_max=5.0,
tensor_product={"method": "cp", "rank": 8})``. Unknown keys fail with the list of valid ones.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from zoo.mace import MACE

MODELS: dict[str, type[nn.Module]] = {
    "mace": MACE,
}


def model_keys(name: str) -> tuple[str, ...]:
    """The keyword arguments that configure model ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    parameters = inspect.signature(MODELS[name].__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Construct model ``name`` from its keyword arguments (see each model's docstring)."""
    valid = model_keys(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return MODELS[name](**kwargs)
