"""Models assembled from ``layers``: :func:`build_model` by name (``"mace"``)."""

from zoo.registry import MODELS, build_model, model_keys

__all__ = ["MODELS", "build_model", "model_keys"]
