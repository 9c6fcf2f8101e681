r"""M-FAC (Frantar, Kurtic and Alistarh, NeurIPS 2021): inverse empirical-Fisher-vector products from a
sliding window of gradients, without ever forming a :math:`d \times d` matrix.

The curvature is the damped empirical Fisher of the last :math:`m` gradients :math:`g_1..g_m`
(rows of :math:`G \in \mathbb R^{m\times d}`; slots not yet filled count as zero gradients):

.. math::  F = \lambda I + \tfrac1m G^\top G,\qquad
           F^{-1} v = \tfrac1\lambda\left(v - G^\top K^{-1} G v\right),\quad K = m\lambda I + G G^\top

(Woodbury). The optimizer keeps :math:`G` and :math:`K^{-1}` (:math:`m\times m`). A new gradient
replaces the oldest row :math:`s`: :math:`K` changes in row and column :math:`s` only, a symmetric
rank-2 update :math:`U C U^\top` with :math:`U = [a, e_s]`, :math:`C = [[0, 1], [1, -a_s]]`,
:math:`a = K_\text{new} e_s - K_\text{old} e_s`, applied to :math:`K^{-1}` by Woodbury with a 2×2
inner inverse. Per step: :math:`Gg_s` and :math:`Gv`, :math:`G^\top(\cdot)` in :math:`O(dm)`, the
update and the solve in :math:`O(m^2)` — the :math:`O(dm + m^2)` of the paper. :math:`K^{-1}` is
recomputed exactly (Cholesky, :math:`O(m^3)`) every ``refresh_every`` steps (default :math:`m`), so
round-off of the rank-2 updates cannot accumulate; amortised that is :math:`O(m^2)` too.

The step preconditions the gradient and applies momentum and decoupled weight decay, as the paper's
optimizer does: :math:`u_t = \mu u_{t-1} + F^{-1} g_t`, :math:`\theta \leftarrow \theta(1-\eta\lambda_{wd}) - \eta u_t`.
All trainable parameters form one vector (one :math:`F` across layers). ``step()`` reads ``.grad``
(an optional closure computes it); non-finite gradients skip the step with a warning, window and
state untouched; ``state_dict`` holds the window, :math:`K^{-1}` and the counters, so a resumed run
continues identically.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Optional

import torch


class MFAC(torch.optim.Optimizer):
    """M-FAC (see the module docstring).

    Args:
        params: parameters or parameter groups (one shared window across all of them).
        lr: learning rate :math:`\\eta`.
        momentum: :math:`\\mu` of the preconditioned direction.
        weight_decay: decoupled :math:`\\lambda_{wd}`.
        window: :math:`m`, gradients kept.
        damping: :math:`\\lambda`.
        refresh_every: steps between exact recomputations of :math:`K^{-1}` (default ``window``).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0,
                 window: int = 32, damping: float = 1e-4, refresh_every: Optional[int] = None) -> None:
        if not lr > 0 or not 0 <= momentum < 1 or window < 1 or not damping > 0:
            raise ValueError(f"M-FAC needs lr > 0, 0 <= momentum < 1, window >= 1, damping > 0; got lr={lr}, "
                             f"momentum={momentum}, window={window}, damping={damping}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.window, self.damping = int(window), float(damping)
        self.refresh_every = int(refresh_every or window)
        params = self._params()
        dtype, device = params[0].dtype, params[0].device
        dimension = sum(p.numel() for p in params)
        self.gradients = torch.zeros(self.window, dimension, dtype=dtype, device=device)  # G, oldest row next
        self.k_inverse = torch.eye(self.window, dtype=dtype, device=device) / (self.window * self.damping)
        self.slot, self.updates_since_refresh = 0, 0

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["mfac"] = {"gradients": self.gradients.clone(), "k_inverse": self.k_inverse.clone(),
                         "slot": self.slot, "updates_since_refresh": self.updates_since_refresh}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("mfac")
        if extra["gradients"].shape != self.gradients.shape:
            raise ValueError(f"M-FAC state for a window {tuple(extra['gradients'].shape)} loaded into "
                             f"{tuple(self.gradients.shape)}: window size or parameters differ")
        super().load_state_dict(state_dict)
        self.gradients.copy_(extra["gradients"])
        self.k_inverse.copy_(extra["k_inverse"])
        self.slot, self.updates_since_refresh = int(extra["slot"]), int(extra["updates_since_refresh"])

    # -- the window ---------------------------------------------------------------------------
    def _k(self) -> torch.Tensor:
        eye = torch.eye(self.window, dtype=self.gradients.dtype, device=self.gradients.device)
        return self.window * self.damping * eye + self.gradients @ self.gradients.T

    def add_gradient(self, gradient: torch.Tensor) -> None:
        """Put ``gradient`` ([d]) in place of the oldest one and update :math:`K^{-1}` (rank 2)."""
        s = self.slot
        old_column = self.gradients @ self.gradients[s]
        old_column[s] += self.window * self.damping
        self.gradients[s] = gradient
        new_column = self.gradients @ gradient
        new_column[s] += self.window * self.damping
        self.slot = (s + 1) % self.window
        self.updates_since_refresh += 1
        if self.updates_since_refresh >= self.refresh_every:
            self.k_inverse = torch.cholesky_inverse(torch.linalg.cholesky(self._k()))
            self.updates_since_refresh = 0
            return
        a = new_column - old_column
        u = torch.stack([a, torch.zeros_like(a)], dim=1)  # U = [a, e_s]
        u[s, 1] = 1.0
        c_inverse = torch.tensor([[a[s], 1.0], [1.0, 0.0]], dtype=a.dtype, device=a.device)
        k_inv_u = self.k_inverse @ u  # [m, 2]
        inner = c_inverse + u.T @ k_inv_u
        self.k_inverse = self.k_inverse - k_inv_u @ torch.linalg.solve(inner, k_inv_u.T)
        self.k_inverse = 0.5 * (self.k_inverse + self.k_inverse.T)

    def inverse_fisher_product(self, vector: torch.Tensor) -> torch.Tensor:
        """:math:`F^{-1} v` for ``vector`` [d], in :math:`O(dm + m^2)`."""
        return (vector - self.gradients.T @ (self.k_inverse @ (self.gradients @ vector))) / self.damping

    # -- the step -------------------------------------------------------------------------------
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        gradient = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        if not torch.isfinite(gradient).all():
            warnings.warn("M-FAC: non-finite gradient; step skipped", RuntimeWarning, stacklevel=2)
            return loss
        with torch.no_grad():
            self.add_gradient(gradient.to(self.gradients.dtype))
            direction = self.inverse_fisher_product(gradient.to(self.gradients.dtype))
            start = 0
            for group in self.param_groups:
                for p in group["params"]:
                    if not p.requires_grad:
                        continue
                    piece = direction[start:start + p.numel()].view_as(p).to(p.dtype)
                    start += p.numel()
                    if group["momentum"]:
                        state = self.state[p]
                        if "momentum_buffer" not in state:
                            state["momentum_buffer"] = piece.clone()
                        else:
                            state["momentum_buffer"].mul_(group["momentum"]).add_(piece)
                        piece = state["momentum_buffer"]
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(piece, alpha=-group["lr"])
        return loss
