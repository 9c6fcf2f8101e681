"""Per-epoch learning-rate schedules of the operator training (``scheduler:`` of an operator config).

With ``lr_0`` the optimizer's configured rate and ``e`` the index of the training epoch (0, 1, ...):

- ``cosine``: cosine annealing over ``epochs`` epochs (default ``trainer.max_epochs``) down to
  ``eta_min`` (Loshchilov & Hutter, "SGDR", ICLR 2017), neuraloperator's ``CosineAnnealingLR(T_max=n_epochs)``:
  ``lr(e) = eta_min + (lr_0 - eta_min) (1 + cos(pi min(e, epochs) / epochs)) / 2``;
- ``step``: ``lr(e) = lr_0 gamma^floor(e / step_size)`` (the FNO paper: step_size 100, gamma 0.5);
- ``constant``: ``lr(e) = lr_0``.

The rate is a closed-form function of the epoch, set by :class:`train.operator.OperatorModule` at the
start of every training epoch (under automatic and manual optimization alike). It holds no state of its
own: ``lr_0`` is kept in each parameter group as ``initial_lr`` (torch's convention, saved with the
optimizer state), so a run resumed from a checkpoint continues with exactly the rates of the
uninterrupted run, whenever in the epoch the checkpoint was written.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

SCHEDULES = ("cosine", "step", "constant")
OPTIONS = {"cosine": ("eta_min", "epochs"), "step": ("step_size", "gamma"), "constant": ()}


class EpochSchedule:
    """``lr(e)`` of one of :data:`SCHEDULES` (see the module docstring).

    Args:
        name: ``"cosine"``, ``"step"`` or ``"constant"``.
        max_epochs: the run's ``trainer.max_epochs`` (cosine's default length).
        eta_min: cosine: the final rate (default 0).
        epochs: cosine: epochs to anneal over (default ``max_epochs``).
        step_size: step: epochs between reductions.
        gamma: step: the factor of each reduction (default 0.5).
    """

    def __init__(self, name: str = "constant", *, max_epochs: int | None = None, eta_min: float = 0.0,
                 epochs: int | None = None, step_size: int | None = None, gamma: float = 0.5) -> None:
        if name not in SCHEDULES:
            raise ValueError(f"scheduler.name={name!r}; valid: {', '.join(SCHEDULES)}")
        self.name = name
        self.eta_min = float(eta_min)
        self.gamma = float(gamma)
        self.epochs = None
        self.step_size = None
        if name == "cosine":
            length = epochs if epochs is not None else max_epochs
            if length is None or int(length) < 1:
                raise ValueError("scheduler cosine needs scheduler.epochs or trainer.max_epochs >= 1 (the epochs "
                                 f"to anneal over), got epochs={epochs}, max_epochs={max_epochs}")
            self.epochs = int(length)
        if name == "step":
            if step_size is None or int(step_size) < 1:
                raise ValueError(f"scheduler step needs step_size >= 1, got {step_size}")
            self.step_size = int(step_size)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, max_epochs: int | None) -> "EpochSchedule":
        """From the ``scheduler:`` node ``{"name": ..., **options}`` (``None``: constant)."""
        config = dict(config or {"name": "constant"})
        name = config.pop("name", None)
        if name not in OPTIONS:
            raise ValueError(f"scheduler.name={name!r}; valid: {', '.join(SCHEDULES)}")
        unknown = sorted(set(config) - set(OPTIONS[name]))
        if unknown:
            raise ValueError(f"scheduler {name!r} got unknown option(s) {unknown}; valid: {list(OPTIONS[name])}")
        return cls(name, max_epochs=max_epochs, **config)

    def lr(self, lr_0: float, epoch: int) -> float:
        """The rate of training epoch ``epoch`` for the configured rate ``lr_0``."""
        if self.name == "cosine":
            progress = min(int(epoch), self.epochs) / self.epochs
            return self.eta_min + (lr_0 - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.name == "step":
            return lr_0 * self.gamma ** (int(epoch) // self.step_size)
        return lr_0

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Set every parameter group's rate for ``epoch`` (``initial_lr`` holds each group's ``lr_0``)."""
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = self.lr(float(group["initial_lr"]), epoch)
