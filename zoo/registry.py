"""Models by name: :func:`build_model` is how training, checkpoints and users construct a model.

A model's constructor takes typed keyword arguments only, and those are its config schema
(``configs/model/<name>.yaml``): ``build_model("mace", elements=[1, 6, 8], r_max=5.0,
tensor_product={"method": "cp", "rank": 8})``. Unknown keys fail with the list of valid ones. The
model keeps its name and arguments as ``model.build_arguments``, which :mod:`zoo.checkpoint` saves.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from torch import nn

from layers.tensor_product.cp_fit import deferred_fitting
from zoo.deeponet import DeepONet
from zoo.fno import FNO
from zoo.mace import MACE
from zoo.mgno import MgNO
from zoo.unet import UNet


class Preset:
    """``cls`` with other defaults for some keyword arguments: ``Preset(FNO, convolution={...})(**kwargs)``.

    A mapping-valued default is a default per key: a mapping the caller passes for that argument is
    laid over it (``tfno`` with ``convolution={"modes": [8, 8]}`` keeps its Tucker weights), unless the
    two name different ``"kind"`` s, when the caller's mapping replaces it whole. Its signature (what
    :func:`model_keys` reads) is ``cls``'s keyword-only arguments with the preset defaults.
    """

    def __init__(self, cls: type[nn.Module], **defaults: Any):
        parameters = inspect.signature(cls).parameters
        unknown = sorted(set(defaults) - {n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY})
        if unknown:
            raise ValueError(f"Preset of {cls.__name__}: no keyword-only argument(s) {unknown}")
        self.cls, self.defaults = cls, defaults
        self.__signature__ = inspect.Signature([
            p.replace(default=defaults[n]) if n in defaults else p for n, p in parameters.items()
        ])

    def __call__(self, **kwargs: Any) -> nn.Module:
        merged = dict(self.defaults)
        for name, value in kwargs.items():
            default = self.defaults.get(name)
            if isinstance(default, Mapping) and isinstance(value, Mapping) and value.get("kind", default.get("kind")) == default.get("kind"):
                value = {**default, **value}
            merged[name] = value
        return self.cls(**merged)

    def __repr__(self) -> str:
        return f"Preset({self.cls.__name__}, {', '.join(f'{k}={v!r}' for k, v in self.defaults.items())})"


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mace": MACE,
    # the Fourier neural operator family: one assembly (zoo/fno.py), the convolution by configuration
    "fno": FNO,
    # neuraloperator's TFNO is FNO with Tucker weights; rank 0.42 as their Darcy example
    "tfno": Preset(FNO, convolution={"kind": "fourier", "weights": "tucker", "rank": 0.42}),
    # neuraloperator's SFNO is FNO with a spherical convolution
    "sfno": Preset(FNO, spatial_dims=2, convolution={"kind": "spherical", "grid": "equiangular"}),
    "deeponet": DeepONet,
    "mgno": MgNO,
    "unet": UNet,
}


def model_keys(name: str) -> tuple[str, ...]:
    """The keyword arguments that configure model ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    parameters = inspect.signature(MODELS[name]).parameters.values()
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
