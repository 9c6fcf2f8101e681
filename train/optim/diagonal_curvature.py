"""What AdaHessian and Sophia share: a closure-driven step preconditioned by a diagonal curvature estimate.

:class:`DiagonalCurvatureOptimizer.step` evaluates the closure (the loss, with its graph; the closure
must not call ``backward``), asks the subclass for the gradients and, on refresh steps, a diagonal
curvature estimate per parameter (:meth:`_estimate`), skips the whole step with a warning when any of
them is not finite (parameters and state untouched), and otherwise hands each parameter to the
subclass's update (:meth:`_update`). The probes or sampled labels come from a seeded generator that
``state_dict`` saves with the step count, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Optional

import torch

Estimates = tuple[list[torch.Tensor], list[Optional[torch.Tensor]]]


class DiagonalCurvatureOptimizer(torch.optim.Optimizer):
    """Base of the diagonal second-order optimizers (see the module docstring); ``seed`` seeds the probes."""

    def __init__(self, params: Iterable, defaults: dict[str, Any], seed: int) -> None:
        super().__init__(params, defaults)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.num_steps = 0

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["curvature"] = {"generator": self.generator.get_state(), "num_steps": self.num_steps}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("curvature")
        super().load_state_dict(state_dict)
        self.generator.set_state(extra["generator"])
        self.num_steps = int(extra["num_steps"])

    def _estimate(self, loss: torch.Tensor, params: list[torch.Tensor], **options: Any) -> Estimates:
        """Detached gradients and, on refresh steps, curvature diagonals (``None`` where not refreshed)."""
        raise NotImplementedError

    def _update(self, p: torch.Tensor, group: dict, grad: torch.Tensor, estimate: Optional[torch.Tensor]) -> None:
        """Move parameter ``p`` in place (under ``no_grad``) and update its state."""
        raise NotImplementedError

    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None, **options: Any) -> torch.Tensor:
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss "
                             "(without calling backward)")
        params = [p for group in self.param_groups for p in group["params"] if p.requires_grad]
        with torch.enable_grad():
            loss = closure()
            grads, curvature = self._estimate(loss, params, **options)
        if not all(torch.isfinite(g).all() for g in grads) or \
                not all(c is None or torch.isfinite(c).all() for c in curvature):
            warnings.warn(f"{type(self).__name__}: non-finite gradient or curvature; step skipped", RuntimeWarning,
                          stacklevel=2)
            return loss.detach()
        self.num_steps += 1
        by_param = {id(p): (g, c) for p, g, c in zip(params, grads, curvature)}
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if id(p) in by_param:
                        self._update(p, group, *by_param[id(p)])
        return loss.detach()
