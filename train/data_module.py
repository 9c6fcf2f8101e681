"""Loaders of atomistic graphs for Lightning, correct under DDP.

Training frames are shuffled by a ``DistributedSampler`` seeded with ``seed`` and re-seeded by epoch
(Lightning calls ``set_epoch``): the order depends on (seed, epoch, process) only, so a run resumed
from a checkpoint sees the same batches as the uninterrupted run. Under DDP it pads the last round
with repeated frames so that every process runs the same number of steps (collectives stay paired).

Validation and test frames are split between processes without repetition
(``UnrepeatedDistributedSampler``, process ``r`` takes frames ``r, r + world, ...``): every frame is
seen exactly once, so metrics summed over processes are those of the whole set (the processes may
run one batch more or less; nothing collective happens per batch).

``use_distributed_sampler=False`` must be given to the Trainer (the CLI does), so that Lightning
does not replace these samplers with its own, which pad validation sets with repeated frames.
"""

from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader


class AtomisticDataModule(pl.LightningDataModule):
    """Train/validation/test loaders of lists of ``torch_geometric.data.Data`` graphs.

    Args:
        train, valid, test: graphs of each split; the test loader falls back to ``valid`` when
            ``test`` is empty (``test_split`` says which one is tested).
        batch_size: graphs per training batch, per process.
        valid_batch_size: graphs per validation/test batch, per process (default ``batch_size``).
        num_workers: loader worker processes.
        seed: seed of the training order.
        drop_last: drop the last incomplete training batch.
    """

    def __init__(
        self,
        train: Sequence[Data],
        valid: Sequence[Data],
        test: Sequence[Data],
        batch_size: int,
        valid_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not train:
            raise ValueError("no training frames")
        if not valid:
            raise ValueError("no validation frames: give valid_fraction > 0 or a valid_path")
        self.train, self.valid, self.test = list(train), list(valid), list(test)
        self.batch_size = int(batch_size)
        self.valid_batch_size = int(valid_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)

    @property
    def test_split(self) -> str:
        """``"test"``, or ``"valid"`` when there is no test set."""
        return "test" if self.test else "valid"

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, graphs: list[Data], batch_size: int, sampler, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            graphs, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers, drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def _evaluation_loader(self, graphs: list[Data], name: str) -> DataLoader:
        world, rank = self._world()
        if len(graphs) < world:
            raise ValueError(f"the {name} set has {len(graphs)} frames, fewer than the {world} processes; "
                             "every process needs at least one")
        sampler = UnrepeatedDistributedSampler(graphs, num_replicas=world, rank=rank, shuffle=False)
        return self._loader(graphs, self.valid_batch_size, sampler)

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        sampler = DistributedSampler(self.train, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        return self._loader(self.train, self.batch_size, sampler, self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.valid, "validation")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test or self.valid, self.test_split)
