"""Pretrained models shipped with equizoo, and :func:`load` for a name or a checkpoint file.

Every shipped checkpoint (``zoo/pretrained/<name>.safetensors``) was trained by this project's own
``python -m train`` on data the project made, then converted with ``python -m train.export``; its
header records the training config, the data, the test metrics and the git commit
(``python -m zoo.info <name>`` prints them, and
``zoo/pretrained/README.md`` lists them with the commands that made them).

    >>> import zoo
    >>> zoo.pretrained.available()
    ['mace_organics', 'mace_tdn_organics']
    >>> model = zoo.load("mace_tdn_organics", dtype="float64")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from zoo.checkpoint import SUFFIX, load_model, read

DIRECTORY = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped pretrained models."""
    return sorted(path.name[: -len(SUFFIX)] for path in DIRECTORY.glob(f"*{SUFFIX}"))


def path(name: str) -> Path:
    """The file of the shipped model ``name``."""
    if name not in available():
        raise KeyError(f"no pretrained model named {name!r}; available: {', '.join(available()) or 'none'}")
    return DIRECTORY / f"{name}{SUFFIX}"


def describe(name: str) -> dict[str, Any]:
    """What the checkpoint of ``name`` says about itself (model arguments, training config, metrics ...)."""
    document, _ = read(path(name))
    return document


def resolve(name_or_path: Union[str, os.PathLike]) -> Path:
    """A shipped model's file for a name; a path as it is. Neither: an error listing the names."""
    if isinstance(name_or_path, str) and name_or_path in available():
        return path(name_or_path)
    candidate = Path(name_or_path)
    if candidate.exists() or isinstance(name_or_path, os.PathLike) or os.sep in str(name_or_path) \
            or str(name_or_path).endswith((SUFFIX, ".ckpt", ".pt", ".pth", ".model")):
        return candidate  # zoo.checkpoint names a missing or unreadable file in its error
    raise FileNotFoundError(f"{name_or_path!r} is neither a pretrained model ({', '.join(available()) or 'none shipped'}) "
                            "nor an existing checkpoint file")


def load(
    name_or_path: Union[str, os.PathLike],
    device: Union[str, torch.device, None] = None,
    dtype: Union[str, torch.dtype, None] = None,
    kernel: Union[str, None] = None,
) -> nn.Module:
    """A shipped pretrained model by name, or any equizoo checkpoint by path, ready to evaluate.

    device: default CPU. dtype: ``"float32"``/``"float64"`` (default: as trained). kernel: the
    tensor-product kernel (``reference``, ``fused``, ``cueq``, ``auto``; default: as saved), which never
    changes the weights. See :func:`zoo.checkpoint.load_model`.
    """
    return load_model(resolve(name_or_path), device=device, dtype=dtype, kernel=kernel)
