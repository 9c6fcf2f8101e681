"""What the potential and operator data modules share: loaders that stay correct under DDP.

Training items are shuffled by a ``DistributedSampler`` seeded with ``seed`` and re-seeded by epoch
(Lightning calls ``set_epoch``): the order depends on (seed, epoch, process) only, so a run resumed
from a checkpoint sees the same batches as the uninterrupted run. Under DDP it pads the last round
with repeated items so that every process runs the same number of steps (collectives stay paired).

Validation and test items are split between processes without repetition
(``UnrepeatedDistributedSampler``, process ``r`` takes items ``r, r + world, ...``): every item is
seen exactly once, so metrics summed over processes are those of the whole set (the processes may
run one batch more or less; nothing collective happens per batch).

``use_distributed_sampler=False`` must be given to the Trainer (the CLI does), so that Lightning
does not replace these samplers with its own, which pad validation sets with repeated items.
"""

from __future__ import annotations

from typing import Any, Sized

import lightning.pytorch as pl
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler


class DistributedDataModule(pl.LightningDataModule):
    """Training and validation loaders of ``self.train`` / ``self.valid`` with the samplers above.

    A subclass sets ``train`` and ``valid`` (sized datasets), ``batch_size``, ``valid_batch_size``,
    ``num_workers``, ``seed`` and ``drop_last``, and may change ``loader_class`` (torch-geometric's
    ``DataLoader`` for graphs) and ``item_name`` (the word its errors use for one item).
    """

    loader_class: Any = DataLoader
    item_name = "samples"
    train: Sized
    valid: Sized

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, dataset: Sized, batch_size: int, sampler, drop_last: bool = False):
        return self.loader_class(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                                 drop_last=drop_last, persistent_workers=self.num_workers > 0)

    def _evaluation_loader(self, dataset: Sized, name: str):
        world, rank = self._world()
        if len(dataset) < world:
            raise ValueError(f"the {name} set has {len(dataset)} {self.item_name}, fewer than the {world} processes; "
                             "every process needs at least one")
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return self._loader(dataset, self.valid_batch_size, sampler)

    def train_dataloader(self):
        world, rank = self._world()
        sampler = DistributedSampler(self.train, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        return self._loader(self.train, self.batch_size, sampler, self.drop_last)

    def val_dataloader(self):
        return self._evaluation_loader(self.valid, "validation")
