"""Learning-rate schedule: linear warm-up over optimizer steps, then ReduceLROnPlateau on the validation loss.

The two act multiplicatively on the learning rate of each parameter group,

    lr = lr_0 * w(t) * factor^(number of plateau reductions),   w(t) = min(1, (t + 1) / warmup_steps),

where ``t`` counts optimizer steps. The warm-up multiplies the current rate by ``w(t) / w(t-1)`` after
each step, so a plateau reduction during the warm-up is kept rather than overwritten (``min_lr``
clips the plateau's reductions as in torch).

The plateau is stepped with the exact validation loss at the end of each validation epoch, before
checkpoints are written, so a checkpoint holds the schedule as the uninterrupted run will continue it.
(Lightning steps plateau schedulers after the checkpoint of that validation and skips that step on
resume, which would make a resumed run differ; that is why this schedule is stepped by the module.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau


class LinearWarmup(LRScheduler):
    """Multiply the learning rate by ``w(t) = min(1, (t + 1) / warmup_steps)`` at optimizer step ``t``.

    Construction sets ``lr = lr_0 * w(0)``; each :meth:`step` after an optimizer step moves to the
    next factor. ``warmup_steps = 0`` leaves the rate untouched.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """``w(step)``."""
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, (step + 1) / self.warmup_steps)

    def get_lr(self) -> list[float]:
        step = self.last_epoch  # LRScheduler counts its own step() calls in last_epoch
        if step == 0:
            return [group["lr"] * self.factor(0) for group in self.optimizer.param_groups]
        ratio = self.factor(step) / self.factor(step - 1)
        return [group["lr"] * ratio for group in self.optimizer.param_groups]


class WarmupPlateauSchedule:
    """Linear warm-up, then ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode ``min``) on the validation loss.

    Args:
        optimizer: the optimizer whose rates are scheduled (its ``lr`` is ``lr_0``).
        warmup_steps: optimizer steps of the linear warm-up (0: none).
        factor, patience, threshold, cooldown, min_lr: of ``ReduceLROnPlateau``; ``patience`` counts
            validations without improvement.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 0,
        factor: float = 0.8,
        patience: int = 50,
        threshold: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        self.warmup = LinearWarmup(optimizer, warmup_steps)
        self.plateau = ReduceLROnPlateau(
            optimizer, mode="min", factor=factor, patience=patience, threshold=threshold, cooldown=cooldown,
            min_lr=min_lr,
        )

    def after_optimizer_step(self) -> None:
        """Advance the warm-up by one optimizer step."""
        self.warmup.step()

    def after_validation(self, validation_loss: float) -> None:
        """Let the plateau see one validation loss (may reduce the rates)."""
        self.plateau.step(validation_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"warmup": self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])
