"""The LightningModule that trains a neural operator (``zoo`` FNO, TFNO, SFNO, DeepONet, MgNO, U-Net).

A batch is a pair ``(x, y)`` of functions sampled on a grid (:mod:`train.operator_data_module`), or a
triple ``(x, y, p)`` whose ``p: [B, P]`` are the PDE parameters of each sample; a model with channel
attention (``channel_attention_parameters = P``, CAPE) gets them as ``pde_parameters`` at every
application, other models ignore them:

- task ``"map"``: ``prediction = model(x)`` on ``y``'s grid, ``x: [B, C_in, *s]``, ``y: [B, C_out, *s]``;
- task ``"rollout"``: ``x = u[:, t-h:t]`` holds the ``h = history`` latest frames of a time series
  (time as channels; the model maps ``h`` channels to 1) and ``y`` the ``S`` frames that follow. The
  prediction is autoregressive,
  ``u_hat_{t} = model(u_hat_{t-h}, ..., u_hat_{t-1})`` (given frames where ``t-j < h``),
  ``prediction = [u_hat_h, ..., u_hat_{h+S-1}]: [B, S, *s]``, backpropagated through all steps (the
  FNO paper's 2-D+time Navier-Stokes training). One-step teacher forcing is ``S = 1`` on every window.

Loss and metrics (:mod:`train.operator_losses`, quadrature of the data's ``domain``): the training loss
is ``OperatorLoss(loss.name)`` (batch mean of per-sample values; over a rollout, of the whole predicted
trajectory, its steps as channels). Every epoch logs exact means over samples (sums reduced over
processes once): ``train/loss``, ``val/l2``, ``val/h1`` (relative L2 / H1; for rollout of the
autoregressive prediction from the first ``h`` frames), and ``lr``; with ``log_prefix="refine/"``
the same keys under ``refine/``. Test: one loader per test resolution (zero-shot super-resolution for
grid-independent models): relative L2 and H1 per resolution in :attr:`OperatorModule.test_results`, for
rollout also the relative L2 of every step, and the first sample for a plot.

Grids: a model with ``sensor_shape`` (DeepONet) is fed its input subsampled to that grid and asked for
``output_shape`` = the target's grid; every other model gets its input on the target's grid (FNO: the
input of the higher resolution itself, as the FNO paper's super-resolution test; MgNO and U-Net work
on any admissible grid but only map a grid to itself).

Optimizers (:mod:`train.optim`): those reading ``.grad`` under Lightning's automatic optimization;
closure optimizers (AdaHessian, Sophia, K-FAC, ...) under manual optimization, as
:class:`train.potential.PotentialModule`: the closure is the forward and the loss, and Sophia also gets
``predict`` (the prediction flattened) and ``loss_of(outputs, labels)`` (the loss of reshaped outputs
against reshaped labels). Learning rate: :class:`train.operator_schedule.EpochSchedule`, set at the
start of every training epoch from the epoch index (exact on resume).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import torch

from train.operator_losses import OperatorLoss, relative_h1, relative_l2
from train.operator_schedule import EpochSchedule
from train.optim import build_optimizer, takes_loss_closure

TASKS = ("map", "rollout")


def subsample_grid(x: torch.Tensor, shape: Sequence[int], domain: str) -> torch.Tensor:
    """``x: [B, C, *n]`` at every ``r``-th point of each spatial axis so that it lies on grid ``shape``:
    ``r = n / s`` (periodic, ``x_j = j / n``) or ``(n - 1) / (s - 1)`` (nodes, boundary included)."""
    index: list[Any] = [slice(None), slice(None)]
    for n, s in zip(x.shape[2:], shape):
        n, s = int(n), int(s)
        if domain == "nodes":
            stride, exact = divmod(n - 1, s - 1) if s > 1 else (0, 1)
        else:
            stride, exact = divmod(n, s)
        if s > n or exact != 0 or stride == 0:
            raise ValueError(f"a grid of {list(x.shape[2:])} points ({domain}) cannot be subsampled to the model's "
                             f"sensor grid {list(shape)}")
        index.append(slice(None, None, stride))
    return x[tuple(index)]


def unpack(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x, y, p)`` of a batch ``(x, y)`` (``p`` None) or ``(x, y, p)``."""
    x, y, *rest = batch
    return x, y, (rest[0] if rest else None)


class OperatorModule(pl.LightningModule):
    """Train ``model`` (``model(x, output_shape=None)``, the zoo's operator contract) on ``(x, y)`` batches.

    Args:
        model: an operator model built by ``zoo.build_model``.
        loss: ``{"name": one of train.operator_losses.LOSSES, "order": ...}`` (OperatorLoss arguments
            without the domain).
        optimizer: ``{"name": <train.optim name>, **hyper}``.
        scheduler: ``{"name": "cosine" | "step" | "constant", **options}`` (EpochSchedule), or None.
        domain: ``"periodic"`` or ``"nodes"``: the data's grid (quadrature of losses and metrics).
        task: ``"map"`` or ``"rollout"``.
        config: the resolved run configuration, stored in every checkpoint.
        max_epochs: the cosine schedule's default length.
        log_prefix: prefix of every logged key (``"refine/"`` for Spectral-Refiner's stage).
        test_resolutions: the resolution of each test loader, in order.
    """

    def __init__(self, model: torch.nn.Module, loss: Mapping[str, Any], optimizer: Mapping[str, Any],
                 scheduler: Mapping[str, Any] | None = None, domain: str = "periodic", task: str = "map",
                 config: Mapping[str, Any] | None = None, max_epochs: int | None = None, log_prefix: str = "",
                 test_resolutions: Sequence[int] = ()) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task={task!r}; valid: {', '.join(TASKS)}")
        if "name" not in optimizer:
            raise ValueError(f"optimizer config needs a 'name', got {dict(optimizer)}")
        self.model = model
        self.domain = domain
        self.task = task
        self.loss_fn = OperatorLoss(domain=domain, **dict(loss))
        self.optimizer_config = dict(optimizer)
        self.automatic_optimization = not takes_loss_closure(self.optimizer_config["name"])
        self.schedule = EpochSchedule.from_config(scheduler, max_epochs)
        self.run_config = dict(config) if config is not None else None
        self.log_prefix = log_prefix
        self.test_resolutions = [int(r) for r in test_resolutions]
        self._sums: dict[str, dict[str, torch.Tensor]] = {}
        self.validation_results: dict[str, float] | None = None
        self.test_results: dict[int, dict[str, Any]] = {}
        self.test_examples: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # --- what is computed ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, output_shape: Sequence[int], p: torch.Tensor | None = None) -> torch.Tensor:
        """One application of the model: ``x: [B, C_in, *n]`` to ``[B, C_out, *output_shape]`` (``p: [B, P]``
        the samples' PDE parameters, passed on to a model with channel attention)."""
        options: dict[str, Any] = {}
        if getattr(self.model, "channel_attention_parameters", 0):
            if p is None:
                raise ValueError("the model has channel attention (CAPE) but the data carry no PDE parameters")
            options["pde_parameters"] = p
        sensors = getattr(self.model, "sensor_shape", None)
        if sensors is not None:
            x = subsample_grid(x, sensors, self.domain)
            return self.model(x, output_shape=list(output_shape), **options)
        if tuple(x.shape[2:]) == tuple(output_shape):
            return self.model(x, **options)
        return self.model(x, output_shape=list(output_shape), **options)

    def predict(self, x: torch.Tensor, y: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction of ``y`` from ``x`` (one map, or an autoregressive rollout of ``y.shape[1]`` steps)."""
        shape = tuple(y.shape[2:])
        if self.task == "map":
            return self(x, shape, p)
        window, frames = x, []
        for _ in range(y.shape[1]):
            frame = self(window, shape, p)
            frames.append(frame)
            window = torch.cat([window[:, 1:], frame], dim=1)
        return torch.cat(frames, dim=1)

    # --- sums of per-sample values, reduced over processes at the end of an epoch ---------------
    def _add(self, split: str, **values: torch.Tensor) -> None:
        sums = self._sums.setdefault(split, {})
        for key, value in values.items():
            value = value.detach().to(torch.float64)
            total = value.sum(dim=0)
            sums[key] = sums[key] + total if key in sums else total
        count = torch.tensor(float(next(iter(values.values())).shape[0]), dtype=torch.float64, device=self.device)
        sums["count"] = sums["count"] + count if "count" in sums else count

    def _means(self, split: str) -> dict[str, Any]:
        """Means over the samples of every process (every process must call this)."""
        sums = self._sums.pop(split, {})
        if not sums:
            return {}
        reduced = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in sums.items()}
        count = reduced.pop("count")
        means = {k: (v / count).tolist() for k, v in reduced.items()}
        means["num_samples"] = int(count.item())
        return means

    def _log(self, values: Mapping[str, float]) -> None:
        tensors = {f"{self.log_prefix}{k}": torch.tensor(float(v), dtype=torch.float64, device=self.device)
                   for k, v in values.items()}
        self.log_dict(tensors, on_step=False, on_epoch=True, sync_dist=True)

    def _metrics(self, prediction: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        metrics = {"l2": relative_l2(prediction, y, self.domain)}
        if self.domain != "sphere":  # H1 needs flat-grid derivatives (train.operator_losses)
            metrics["h1"] = relative_h1(prediction, y, self.domain)
        return metrics

    # --- training -----------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.schedule.apply(self.trainer.optimizers[0], self.current_epoch)

    def _training_loss(self, x: torch.Tensor, y: torch.Tensor,
                       p: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        per_sample = self.loss_fn.per_sample(self.predict(x, y, p), y)
        return per_sample.mean(), per_sample

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, p = unpack(batch)
        if self.automatic_optimization:
            loss, per_sample = self._training_loss(x, y, p)
        else:
            loss, per_sample = self._closure_step(x, y, p)
        self._add("train", loss=per_sample)
        self.log(f"{self.log_prefix}train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True,
                 batch_size=x.shape[0])
        return loss

    def _closure_step(self, x: torch.Tensor, y: torch.Tensor,
                      p: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of a closure optimizer; the metrics count the closure's first evaluation."""
        if self.trainer.world_size > 1:
            raise RuntimeError(f"optimizer {self.optimizer_config['name']!r} differentiates the loss itself, "
                               "which bypasses DDP's gradient averaging: train it on one process (trainer.devices=1)")
        first: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            loss, per_sample = self._training_loss(x, y, p)
            first.setdefault("per_sample", per_sample.detach())
            return loss

        options: dict[str, Any] = {}
        if self.optimizer_config["name"] == "sophia":
            def predict() -> torch.Tensor:
                return self.predict(x, y, p).reshape(-1)

            def loss_of(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
                return self.loss_fn(outputs.reshape(y.shape), labels.reshape(y.shape))

            options = dict(predict=predict, loss_of=loss_of, batch_size=x.shape[0])
        loss = self.optimizers().step(closure=closure, **options)
        return loss, first["per_sample"]

    def on_train_epoch_end(self) -> None:
        means = self._means("train")
        if means:
            self._log({"train/loss": means["loss"], "lr": self.trainer.optimizers[0].param_groups[0]["lr"]})

    # --- validation and test ------------------------------------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, p = unpack(batch)
        self._add("val", **self._metrics(self.predict(x, y, p), y))

    def on_validation_epoch_end(self) -> None:
        means = self._means("val")
        if self.trainer.sanity_checking or not means:
            return
        self.validation_results = dict(means)
        self._log({f"val/{name}": means[name] for name in ("l2", "h1") if name in means})

    def on_test_epoch_start(self) -> None:
        self.test_results, self.test_examples = {}, {}

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y, p = unpack(batch)
        prediction = self.predict(x, y, p)
        metrics = self._metrics(prediction, y)
        if self.task == "rollout":  # the relative L2 of every predicted step
            metrics["l2_per_step"] = torch.stack([relative_l2(prediction[:, t:t + 1], y[:, t:t + 1], self.domain)
                                                  for t in range(y.shape[1])], dim=1)
        self._add(f"test{dataloader_idx}", **metrics)
        if dataloader_idx not in self.test_examples:
            self.test_examples[dataloader_idx] = (x[0].detach().cpu(), y[0].detach().cpu(),
                                                  prediction[0].detach().cpu())

    def on_test_epoch_end(self) -> None:
        keys = sorted((int(k[4:]) for k in list(self._sums) if k.startswith("test")))
        resolutions = self.test_resolutions or keys
        results, examples = {}, {}
        for index in keys:
            resolution = resolutions[index]
            means = self._means(f"test{index}")
            results[resolution] = means
            self._log({f"test/{name}_{resolution}": means[name] for name in ("l2", "h1") if name in means})
            if index in self.test_examples:
                examples[resolution] = self.test_examples[index]
        self.test_results, self.test_examples = results, examples

    # --- optimizer and checkpoints ------------------------------------------------------------
    def configure_optimizers(self):
        name = self.optimizer_config["name"]
        hyper = {k: v for k, v in self.optimizer_config.items() if k != "name"}
        return build_optimizer(name, self.model, **hyper)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["config"] = self.run_config
