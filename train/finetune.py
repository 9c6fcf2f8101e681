"""Fine-tuning: start a run from a pretrained model (``finetune.from=<name|path>``).

The ``finetune:`` config node::

    finetune:
      from: null              # a pretrained name (zoo.pretrained.available()) or a checkpoint path
      atomic_energies: refit  # refit | data | pretrained: the E0s of the elements in the new data
      freeze: []              # parts kept fixed: embedding, radial, interactions, products, readouts
      lr_scale: 1.0           # multiplies optimizer.lr (e.g. 0.1 to stay near the pretrained minimum)

The model is the pretrained one: its architecture, tensor-product method, average neighbour count,
scale and shift (the weights were trained with them), extended to the union of its elements and the
new data's (:func:`zoo.transfer.expand_elements`: new elements get fresh embeddings and E0s; elements
the new data lacks keep theirs). The E0s of the data's elements:

- ``refit`` (default, as MACE's ``E0s="estimated"``): least squares of the residual between the new
  reference energies and the pretrained model's predictions over the training frames, added to the
  pretrained E0s; this absorbs a change of reference (another functional, another code) into the E0s
  instead of the weights. With one composition only (one molecule) only the sum over its atoms is
  determined, and the minimum-norm solution is taken;
- ``data``: the E0s the data config gives (``data.atomic_energies``);
- ``pretrained``: keep the pretrained E0s (same reference); new elements take the data's.

The resolved config records the pretrained model's arguments as ``model:``, so the run's checkpoints
rebuild without the pretrained file.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch_geometric.loader import DataLoader

import zoo
from datasets import schema
from zoo.transfer import expand_elements, freeze

E0_CHOICES = ("refit", "data", "pretrained")


@torch.no_grad()
def _residual_e0s(model: torch.nn.Module, graphs: list, elements: list[int], batch_size: int = 32) -> dict[int, float]:
    """Least-squares E0 corrections so that ``model`` matches the reference energies of ``graphs``."""
    counts, residuals = [], []
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
        with torch.enable_grad():
            out = model(batch, compute_forces=False)
        has_energy = batch[schema.ENERGY_WEIGHT] > 0
        numbers = batch[schema.ATOMIC_NUMBERS]
        one_hot = (numbers[:, None] == torch.tensor(elements)[None, :]).double()
        per_graph = torch.zeros(int(batch.num_graphs), len(elements), dtype=torch.float64).index_add(
            0, batch[schema.BATCH], one_hot)
        counts.append(per_graph[has_energy])
        residuals.append((batch[schema.ENERGY] - out[schema.ENERGY]).double()[has_energy])
    counts_matrix, residual = torch.cat(counts).numpy(), torch.cat(residuals).numpy()
    if len(residual) == 0:
        raise ValueError("finetune.atomic_energies=refit needs training frames with energies")
    correction, *_ = np.linalg.lstsq(counts_matrix, residual, rcond=None)
    return {z: float(c) for z, c in zip(elements, correction)}


def build_finetune_model(finetune: Mapping[str, Any], model_config: Mapping[str, Any], data, dtype: torch.dtype
                         ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """The model to fine-tune, the resolved ``model:`` config that rebuilds it, and a record of what
    was done (for ``config.yaml``'s ``finetune.resolved``)."""
    choice = finetune.get("atomic_energies", "refit")
    if choice not in E0_CHOICES:
        raise ValueError(f"finetune.atomic_energies={choice!r}; valid: {', '.join(E0_CHOICES)}")
    pretrained = zoo.load(finetune["from"], dtype=dtype)
    if abs(float(pretrained.r_max) - float(model_config.get("r_max", pretrained.r_max))) > 1e-12:
        raise ValueError(f"finetune.from={finetune['from']!r} has r_max={pretrained.r_max} but the data graphs are "
                         f"built with model.r_max={model_config.get('r_max')}; set model.r_max={pretrained.r_max}")
    old_elements = [int(z) for z in pretrained.elements]
    old_e0 = dict(zip(old_elements, pretrained.atomic_energies.tolist()))
    data_elements = [int(z) for z in data.elements]
    elements = sorted(set(old_elements) | set(data_elements))
    new_elements = sorted(set(data_elements) - set(old_elements))
    start = {z: old_e0[z] if z in old_e0 else float(data.atomic_energies[z]) for z in elements}
    if choice == "data":
        start.update({z: float(data.atomic_energies[z]) for z in data_elements})
    kernel = model_config.get("kernel")
    model = expand_elements(pretrained, elements, start, kernel=kernel)
    if choice == "refit":
        correction = _residual_e0s(model, data.train, data_elements)
        start.update({z: start[z] + correction[z] for z in data_elements})
        model.atomic_energies.copy_(torch.tensor([start[z] for z in model.elements], dtype=model.atomic_energies.dtype))
    frozen = freeze(model, list(finetune.get("freeze") or []))
    resolved_model = {"name": model.build_arguments["name"], **model.build_arguments["kwargs"]}
    resolved_model["atomic_energies"] = {int(z): e for z, e in start.items()}
    model.build_arguments["kwargs"]["atomic_energies"] = {str(z): e for z, e in start.items()}
    record = {
        "pretrained": str(finetune["from"]),
        "pretrained_commit": (pretrained.checkpoint.get("provenance") or {}).get("commit"),
        "pretrained_elements": old_elements,
        "new_elements": new_elements,
        "elements_not_in_data": sorted(set(old_elements) - set(data_elements)),
        "atomic_energies": choice,
        "frozen_parameters": len(frozen),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    return model, resolved_model, record
