"""Exponential moving average (EMA) of the weights, as MACE trains with (``--ema --ema_decay 0.99``).

After every optimizer step ``t`` (counting from 1), each trainable parameter's average moves towards it,

    avg <- d_t * avg + (1 - d_t) * param,    d_t = min(decay, (1 + t) / (10 + t)),

the warm-up of ``d_t`` being ``torch_ema``'s ``use_num_updates`` that MACE uses, so that the average
forgets the random initialisation quickly (``warmup=False`` gives ``d_t = decay``).

Where the averaged weights are used:
- validation during fit runs with them (swapped in at the start of each validation epoch, swapped
  back at its end), so the monitored validation loss and the best checkpoint are those of the EMA;
- checkpoints hold them as ``state_dict`` (what a user loads) and keep the raw training weights
  under ``"current_model_state"`` and the EMA state in this callback's state, so ``ckpt_path=``
  resumes both exactly;
- at the end of fit they are copied into the model, so testing and export see them.

Buffers (constants such as E0s and scale) are not averaged.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

RAW_WEIGHTS_KEY = "current_model_state"


class ExponentialMovingAverage(Callback):
    """EMA of the trainable parameters of the LightningModule (see the module docstring).

    Args:
        decay: the EMA decay ``d`` (MACE: 0.99), in [0, 1).
        warmup: use ``d_t = min(d, (1 + t) / (10 + t))`` (MACE) rather than ``d`` from the first step.
    """

    def __init__(self, decay: float = 0.99, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self._last_global_step = 0
        self._average: dict[str, torch.Tensor] | None = None
        self._swapped = False  # whether the module currently holds the averaged weights

    # --- state ------------------------------------------------------------------------------
    @staticmethod
    def _parameters(pl_module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in pl_module.named_parameters() if p.requires_grad}

    def _ensure_average(self, pl_module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The averages, created from the current parameters if there are none yet; kept on the
        parameters' device and dtype (a resumed average is loaded before the module is moved)."""
        params = self._parameters(pl_module)
        if self._average is None:
            self._average = {name: p.detach().clone() for name, p in params.items()}
        for name, p in params.items():
            if self._average[name].device != p.device or self._average[name].dtype != p.dtype:
                self._average[name] = self._average[name].to(device=p.device, dtype=p.dtype)
        return self._average

    def start(self, pl_module: torch.nn.Module) -> None:
        """Start averaging from the module's current weights (kept when resuming: the average is loaded)."""
        self._ensure_average(pl_module)

    def current_decay(self) -> float:
        """``d_t`` for the update being made (``num_updates`` already counts it)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, pl_module: torch.nn.Module) -> None:
        """One EMA step towards the module's current parameters."""
        average = self._ensure_average(pl_module)
        self.num_updates += 1
        decay = self.current_decay()
        for name, param in self._parameters(pl_module).items():
            average[name].lerp_(param.detach(), 1.0 - decay)

    @torch.no_grad()
    def _swap(self, pl_module: torch.nn.Module) -> None:
        average = self._ensure_average(pl_module)
        for name, param in self._parameters(pl_module).items():
            held = param.detach().clone()
            param.copy_(average[name])
            average[name].copy_(held)
        self._swapped = not self._swapped

    def averaged_state(self, pl_module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The averaged parameters by name (a copy), whichever weights the module holds now."""
        if self._swapped:
            return {name: p.detach().clone() for name, p in self._parameters(pl_module).items()}
        return {name: t.clone() for name, t in self._ensure_average(pl_module).items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "last_global_step": self._last_global_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_updates = int(state_dict["num_updates"])
        self._last_global_step = int(state_dict["last_global_step"])

    # --- hooks ------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        # only after a real optimizer step (not while accumulating gradients)
        if trainer.global_step > self._last_global_step:
            self.update(pl_module)
            self._last_global_step = trainer.global_step

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not self._swapped:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and self._swapped:
            self._swap(pl_module)

    @torch.no_grad()
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._swapped:
            self._swap(pl_module)
        for name, param in self._parameters(pl_module).items():
            param.copy_(self._ensure_average(pl_module)[name])

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING or self._average is None:
            return
        averaged = self.averaged_state(pl_module)
        state = checkpoint["state_dict"]
        raw = dict(state)
        if self._swapped:  # the module holds the average; the raw weights are in self._average
            raw.update({name: t.detach().clone() for name, t in self._average.items()})
        checkpoint[RAW_WEIGHTS_KEY] = raw
        checkpoint["state_dict"] = {**state, **averaged}

    @torch.no_grad()
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Lightning has loaded checkpoint["state_dict"] (the average) into the module already.
        if trainer.state.fn != TrainerFn.FITTING:
            return  # validating or testing a checkpoint: the averaged weights are the ones to use
        if RAW_WEIGHTS_KEY not in checkpoint:
            raise KeyError(
                f"checkpoint has no {RAW_WEIGHTS_KEY!r}: it was not written by a run with EMA, so its EMA state "
                "cannot be resumed; resume with ema.decay=null or start a new run from it"
            )
        self._average = {name: checkpoint["state_dict"][name].detach().clone()
                         for name in self._parameters(pl_module)}
        pl_module.load_state_dict(checkpoint[RAW_WEIGHTS_KEY])
        self._swapped = False
