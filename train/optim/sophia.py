r"""Sophia (Liu et al., ICLR 2024): a clipped, diagonal-Hessian-preconditioned momentum step.

With gradient :math:`g_t`, every ``update_every`` (:math:`k`) steps a fresh estimate :math:`\hat h`
of the Hessian diagonal, and

.. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad
    h_t = \beta_2 h_{t-k} + (1-\beta_2)\hat h \ \text{(on refresh steps; else } h_t = h_{t-1}),\\
    \theta_t = \theta_{t-1} - \eta\lambda\theta_{t-1}
      - \eta\,\mathrm{sign}(m_t)\min\!\left(\frac{|m_t|}{\max(\rho\, h_t, \epsilon)},\ 1\right),

so no coordinate moves more than :math:`\eta` per step (element-wise clipping guards against
negative or tiny curvature), with decoupled weight decay :math:`\lambda`. Two estimators
(:mod:`train.optim.curvature`):

- ``estimator="hutchinson"`` (Sophia-H): :math:`z \odot Hz` for one Rademacher probe :math:`z`; the
  closure's loss is differentiated twice on refresh steps (a third derivative of the energy for a
  force-trained potential).
- ``estimator="gnb"`` (Sophia-G): Gauss–Newton–Bartlett, :math:`B\,\hat g\odot\hat g` with the gradient
  :math:`\hat g` of the batch loss at labels sampled from the model. ``step`` then also needs
  ``predict`` (the model's outputs on the batch), ``loss_of(outputs, labels)`` and ``batch_size``;
  for a regression loss the labels are ``outputs + gnb_sigma * N(0, 1)`` (``gnb_sigma = 1/sqrt(2c)``
  for a loss ``c |f - y|^2``; see :func:`~train.optim.curvature.gauss_newton_bartlett_diagonal`).
  Only first derivatives: it works for any model.

``step(closure)``: the closure returns the loss and must not call ``backward``. Non-finite
gradients or curvature skip the step with a warning, state untouched; the probe/label generator
is saved in ``state_dict``, so a resumed run continues identically.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch

from train.optim.curvature import gauss_newton_bartlett_diagonal, gradients_with_graph, hutchinson_diagonal
from train.optim.diagonal_curvature import DiagonalCurvatureOptimizer

ESTIMATORS = ("hutchinson", "gnb")


class Sophia(DiagonalCurvatureOptimizer):
    """Sophia-H / Sophia-G (see the module docstring).

    Args:
        params: parameters or parameter groups.
        lr: :math:`\\eta`, also the largest move of a coordinate per step.
        betas: :math:`(\\beta_1, \\beta_2)` (paper: 0.965, 0.99).
        rho: :math:`\\rho`, scales the curvature in the denominator (paper: 0.04 with their batch scaling).
        eps: :math:`\\epsilon`, the smallest denominator.
        weight_decay: decoupled :math:`\\lambda`.
        estimator: ``"hutchinson"`` or ``"gnb"``.
        update_every: :math:`k`, steps between curvature refreshes (paper: 10).
        gnb_sigma: standard deviation of the sampled labels (Sophia-G).
        seed: seed of the probes or sampled labels.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.965, 0.99),
                 rho: float = 0.04, eps: float = 1e-12, weight_decay: float = 0.0, estimator: str = "hutchinson",
                 update_every: int = 10, gnb_sigma: float = 1.0, seed: int = 0) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"Sophia: estimator={estimator!r}; valid: {', '.join(ESTIMATORS)}")
        if not lr > 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not rho > 0 or update_every < 1:
            raise ValueError(f"Sophia needs lr > 0, 0 <= betas < 1, rho > 0, update_every >= 1; got lr={lr}, "
                             f"betas={betas}, rho={rho}, update_every={update_every}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho, eps=eps, weight_decay=weight_decay), seed)
        self.estimator, self.update_every, self.gnb_sigma = estimator, int(update_every), float(gnb_sigma)

    def _estimate(self, loss, params, predict=None, loss_of=None, batch_size=None):
        """Gradients and, on refresh steps, the curvature estimate (else a list of None)."""
        refresh = self.num_steps % self.update_every == 0
        if refresh and self.estimator == "hutchinson":
            grads = gradients_with_graph(loss, params)
            return [g.detach() for g in grads], hutchinson_diagonal(grads, params, 1, self.generator)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        if not refresh:
            return grads, [None] * len(params)
        if predict is None or loss_of is None or batch_size is None:
            raise ValueError("Sophia-G (estimator='gnb') needs step(closure, predict=..., loss_of=..., batch_size=...)")
        return grads, gauss_newton_bartlett_diagonal(predict, loss_of, params, batch_size, self.gnb_sigma, self.generator)

    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None,
             predict: Optional[Callable[[], torch.Tensor]] = None,
             loss_of: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
             batch_size: Optional[int] = None) -> torch.Tensor:
        """One step; Sophia-G's refresh steps also need ``predict``, ``loss_of`` and ``batch_size``."""
        return super().step(closure, predict=predict, loss_of=loss_of, batch_size=batch_size)

    def _update(self, p, group, grad, estimate):
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
        if estimate is not None:
            state["hessian"].mul_(beta2).add_(estimate, alpha=1 - beta2)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        momentum = state["exp_avg"]
        ratio = (momentum.abs() / (group["rho"] * state["hessian"]).clamp(min=group["eps"])).clamp(max=1.0)
        p.addcmul_(momentum.sign(), ratio, value=-group["lr"])
