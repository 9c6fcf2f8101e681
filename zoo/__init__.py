"""Models assembled from ``layers``: :func:`build_model` by name (``"mace"``; the neural operators ``"fno"``,
``"tfno"``, ``"sfno"``, ``"deeponet"``, ``"mgno"``), :func:`load` for a
pretrained name or a checkpoint file (:mod:`zoo.checkpoint`), and the ASE calculator
(:mod:`zoo.calculator`)."""

from zoo import pretrained
from zoo.pretrained import load
from zoo.registry import MODELS, build_model, model_keys

__all__ = ["MODELS", "build_model", "load", "model_keys", "pretrained"]
