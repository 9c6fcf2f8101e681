"""Checkpoint files: written atomically; the best (lowest validation loss) and the last of a run.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file is made by
``tempfile.mkstemp()`` in the system temporary directory and then ``shutil.move``d onto the target.
When that directory is on another filesystem (a tmpfs ``/tmp``, a node-local disk) the move is a copy
into the target file, so a crash during it leaves a truncated checkpoint in place of the old one, and
nothing is fsynced. :class:`AtomicCheckpointIO` writes local files the safe way instead: a temporary
file in the target's own directory, flushed and fsynced, then ``os.replace``d onto the target (atomic
on POSIX and Windows), then the directory fsynced. A reader sees the old file or the new one, never
a part. Remote paths (``s3://`` ...) keep Lightning's writer.

Layout of a run directory's ``checkpoints/``: ``best.ckpt`` (lowest ``val/loss``) and ``last.ckpt``
(end of the latest validated epoch, what ``ckpt_path=`` resumes from).
"""

from __future__ import annotations

import io
import os
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.atomic_file import atomic_write_bytes

BEST = "best"
LAST = ModelCheckpoint.CHECKPOINT_NAME_LAST  # "last"
MONITOR = "val/loss"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic (temporary file in place, fsync, rename), and
    whose reads never unpickle code (``torch.load(weights_only=True)``: tensors, containers, numbers
    and strings only), so resuming from a checkpoint someone sent cannot run anything."""

    def load_checkpoint(self, path, map_location=None, weights_only: Optional[bool] = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"{path}: equizoo reads training checkpoints with weights_only=True only")
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"storage_options are not supported by {type(self).__name__} for local files")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(str(path).removeprefix("file://"), buffer.getvalue())


class BestAndLastCheckpoint(ModelCheckpoint):
    """``best.ckpt`` on the lowest ``val/loss`` and ``last.ckpt`` after every validation.

    When the loss changes its definition during a run (the second stage of MACE's schedule gives the
    energy a larger weight, see ``PotentialModule.loss_stage``), losses of different stages are not
    comparable: at the first validation of a new stage the best so far is forgotten, so ``best.ckpt``
    is the best model of the latest stage (MACE keeps a separate checkpoint for its SWA stage too).
    """

    def __init__(self, dirpath: str | os.PathLike) -> None:
        super().__init__(dirpath=dirpath, filename=BEST, monitor=MONITOR, mode="min", save_top_k=1, save_last=True,
                         auto_insert_metric_name=False)
        self.best_stage: int | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stage = int(getattr(pl_module, "loss_stage", 1))
        if trainer.sanity_checking:
            return
        if self.best_stage is not None and stage != self.best_stage and self.best_k_models:
            worst = torch.tensor(float("inf"))
            self.best_k_models = {path: worst for path in self.best_k_models}
            self.kth_value = worst
            self.best_model_score = worst
        self.best_stage = stage

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_stage": self.best_stage}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_stage = state_dict.get("best_stage")
