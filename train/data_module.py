"""Loaders of atomistic graphs for Lightning, correct under DDP (the samplers of :mod:`train.distributed_data`)."""

from __future__ import annotations

from typing import Sequence

from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from train.distributed_data import DistributedDataModule


class AtomisticDataModule(DistributedDataModule):
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

    loader_class = DataLoader  # torch-geometric's: batches graphs
    item_name = "frames"

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

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test or self.valid, self.test_split)
