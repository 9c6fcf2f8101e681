"""Transfer learning: a pretrained model extended to new elements, and parts of it frozen.

:func:`expand_elements` rebuilds a model (same name and architecture, from its ``build_arguments``)
for a new element list and new E0s and copies the pretrained weights: rows of the element tables for
the elements both know (``model.copy_weights_from``, rescaled where a normalisation counts elements,
so every shared element is computed exactly as before), fresh initial rows for new elements. Elements
the new data lacks stay in the model with their pretrained weights and E0s.

:func:`freeze` stops the gradients of named parts (``model.PARTS``: for MACE ``embedding``, ``radial``,
``interactions``, ``products``, ``readouts``).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from zoo.registry import build_model_to_load


def expand_elements(
    model: nn.Module,
    elements: Sequence[int],
    atomic_energies: Mapping[int, float],
    kernel: Optional[str] = None,
) -> nn.Module:
    """A copy of ``model`` that knows ``elements`` (a superset is usual) with E0s ``atomic_energies``.

    ``model`` must come from ``zoo.build_model`` or ``zoo.load`` (its ``build_arguments`` rebuild it)
    and implement ``copy_weights_from``. ``kernel``: tensor-product kernel of the copy (default: as
    ``model``). The copy has ``model``'s dtype and device.
    """
    build = getattr(model, "build_arguments", None)
    if build is None or not hasattr(model, "copy_weights_from"):
        raise TypeError("the model cannot be extended: build it with zoo.build_model / zoo.load (a MACE)")
    elements = sorted(int(z) for z in elements)
    missing = [z for z in elements if z not in {int(k) for k in atomic_energies}]
    if missing:
        raise ValueError(f"atomic_energies lacks element(s) {missing}")
    kwargs = dict(build["kwargs"])
    kwargs["elements"] = elements
    kwargs["atomic_energies"] = {int(z): float(atomic_energies[z]) for z in elements}
    if kernel is not None:
        kwargs["kernel"] = kernel
    reference = next(t for t in model.state_dict().values() if t.is_floating_point())
    previous = torch.get_default_dtype()
    torch.set_default_dtype(reference.dtype)
    try:
        copy = build_model_to_load(build["name"], **kwargs)  # every constant comes from model
    finally:
        torch.set_default_dtype(previous)
    copy = copy.to(device=reference.device)
    copy.copy_weights_from(model)
    return copy


def freeze(model: nn.Module, parts: Sequence[str]) -> list[str]:
    """Stop the gradients of ``parts`` of ``model`` (names of ``model.PARTS``); returns the frozen
    parameter names. An unknown part is an error listing the valid ones."""
    table: Mapping[str, Sequence[str]] = getattr(model, "PARTS", {})
    unknown = sorted(set(parts) - set(table))
    if unknown:
        raise ValueError(f"cannot freeze {unknown}: the parts of this model are {', '.join(table) or 'none'}")
    prefixes = tuple(prefix for part in parts for prefix in table[part])
    frozen = []
    for name, parameter in model.named_parameters():
        if any(name == prefix or name.startswith(prefix + ".") or _matches(name, prefix) for prefix in prefixes):
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def _matches(name: str, pattern: str) -> bool:
    """``interactions.*.radial`` matches ``interactions.0.radial.layer0.weight``."""
    pieces, parts = pattern.split("."), name.split(".")
    return len(parts) > len(pieces) and all(p == "*" or p == q for p, q in zip(pieces, parts))
