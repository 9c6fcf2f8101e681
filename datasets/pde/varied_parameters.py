"""PDE parameters that vary from sample to sample: the data of parameter-conditioned operators (CAPE).

Takamoto, Alesiani, Niepert, "Learning Neural PDE Solvers with Parameter-Guided Channel Attention"
(ICML 2023) train one operator on solutions of one equation at several parameter values (PDEBench's
Burgers at several viscosities, ...) and give the operator the parameter of each sample. Here an
equation parameter that ``datasets.pde.generate`` accepts as a list (``nu: [0.05, 0.1, 0.2]``) is drawn
per sample, uniformly from the list, with the sample's own generator *after* its initial condition,
so a sample's initial condition is the same whether its parameter is fixed or drawn. Samples are
solved in groups of equal value (one solver call per distinct value in a batch) and the drawn values
are returned beside the solution as ``pde_parameters: [N, P]`` (columns in the order of
``VARIABLE[equation]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# the parameters each equation can vary per sample
VARIABLE: dict[str, tuple[str, ...]] = {"burgers": ("nu",), "navier_stokes": ("nu",)}


def is_list(value) -> bool:
    """Whether ``value`` asks for a per-sample draw (a list or tuple of values, not a single number)."""
    return isinstance(value, (list, tuple))


def check_values(name: str, value) -> None:
    """ValueError unless ``value`` is a finite positive number or a non-empty list of them."""
    values = list(value) if is_list(value) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                             for v in values):
        raise ValueError(f"{name} must be a finite positive number or a non-empty list of them, got {value!r}")


def varied_names(equation: str, parameters: dict) -> tuple[str, ...]:
    """The parameters of ``equation`` given as lists in ``parameters`` (ValueError for one that cannot vary)."""
    names = tuple(name for name, value in parameters.items() if is_list(value))
    allowed = VARIABLE.get(equation, ())
    fixed = [name for name in names if name not in allowed]
    if fixed:
        raise ValueError(f"{', '.join(fixed)} of {equation} cannot vary per sample (give one number); "
                         f"per-sample lists: {', '.join(allowed) or 'none'}")
    return names


def draw(generators: Sequence[torch.Generator], values: Sequence[float]) -> torch.Tensor:
    """``[len(generators)]`` float64: one of ``values`` per sample, uniformly, from that sample's generator."""
    choices = [int(torch.randint(len(values), (1,), generator=g)) for g in generators]
    return torch.tensor([float(values[c]) for c in choices], dtype=torch.float64)


def solve_grouped(drawn: torch.Tensor, solve: Callable[[torch.Tensor, float], torch.Tensor],
                  x: torch.Tensor) -> torch.Tensor:
    """``solve(x[group], value)`` for each distinct value of ``drawn: [B]``, reassembled in sample order."""
    out: torch.Tensor | None = None
    for value in torch.unique(drawn).tolist():
        index = torch.nonzero(drawn == value).flatten()
        part = solve(x[index.to(x.device)], float(value))
        if out is None:
            out = part.new_empty((x.shape[0], *part.shape[1:]))
        out[index.to(out.device)] = part
    return out
