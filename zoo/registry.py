"""Models by name: :func:`build_model` is how training, checkpoints and users construct a model.

A model's constructor takes typed keyword arguments only, and those are its config schema
(``configs/model/<name>.yaml``): ``build_model("mace", elements=[1, 6, 8], r_max=5.0,
tensor_product={"method": "cp", "rank": 8})``. Unknown keys fail with the list of valid ones. The
model keeps its name and arguments as ``model.build_arguments``, which :mod:`zoo.checkpoint` saves.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import nn

from layers.tensor_product.cp_fit import deferred_fitting
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
    model = MODELS[name](**kwargs)
    # what rebuilds this model: saved by zoo.checkpoint (JSON-plain, so a checkpoint can hold it)
    model.build_arguments = {"name": name, "kwargs": json_plain(kwargs)}
    return model


def build_model_to_load(name: str, **kwargs: Any) -> nn.Module:
    """:func:`build_model` for a model whose state is loaded next (a checkpoint, a pretrained model):
    constants that are fitted at construction (CP factors) get placeholders instead, which the loaded
    state replaces, so loading never spends minutes on a fit it throws away."""
    with deferred_fitting():
        return build_model(name, **kwargs)


def json_plain(value: Any) -> Any:
    """``value`` with tuples as lists, numpy/torch scalars as numbers and mapping keys as strings."""
    if isinstance(value, Mapping):
        return {str(key): json_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(item) for item in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
