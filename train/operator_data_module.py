"""Loaders of PDE operator data (``datasets.pde.operator_data.OperatorData``) for Lightning.

Every batch is a pair ``(x, y)``:

- task ``"map"``: ``x: [B, C_in, *s]``, ``y: [B, C_out, *s]``, the input and output functions;
- task ``"rollout"`` (time series ``u: [N, T, *s]``, time as channels), with ``history = h``:
  training ``"one_step"`` (teacher forcing): every window of every trajectory, ``x = u[n, t-h:t]``,
  ``y = u[n, t:t+1]`` for ``t = h, ..., T-1`` (``N (T - h)`` samples, cut lazily); training
  ``"rollout"`` and all evaluation: whole trajectories split into ``x = u[n, :h]`` (the frames given)
  and ``y = u[n, h:]`` (the ``T - h`` frames to predict autoregressively).

With per-sample PDE parameters (``data.train_parameters`` ..., for CAPE) every batch carries them third,
``(x, y, p)`` with ``p: [B, P]`` (a trajectory's parameters for each of its windows).

Test: one loader per test resolution (``test_resolutions``, in that order, Lightning's
``dataloader_idx``), the same samples on each grid; without test data the validation set is tested at
the training resolution (``test_split`` says which).

Distributed: the samplers of :mod:`train.distributed_data` (as the potentials'): the training order is
seeded by ``seed`` and the epoch (a resumed run sees the same batches); evaluation splits samples
between processes without repetition, so summed metrics are exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from train.distributed_data import DistributedDataModule

ROLLOUT_TRAINING = ("one_step", "rollout")


class TrajectoryWindows(Dataset):
    """All ``(u[n, t-h:t], u[n, t:t+1])`` of trajectories ``u: [N, T, *s]``, ``t = h, ..., T-1`` (and ``p[n]``
    third when the trajectories have parameters ``p: [N, P]``)."""

    def __init__(self, trajectories: torch.Tensor, history: int, parameters: torch.Tensor | None = None) -> None:
        self.trajectories = trajectories
        self.history = int(history)
        self.per_trajectory = trajectories.shape[1] - self.history
        self.parameters = parameters

    def __len__(self) -> int:
        return self.trajectories.shape[0] * self.per_trajectory

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        n, offset = divmod(int(index), self.per_trajectory)
        t = self.history + offset
        window = (self.trajectories[n, t - self.history:t], self.trajectories[n, t:t + 1])
        return window if self.parameters is None else (*window, self.parameters[n])


def pairs(x: torch.Tensor, y: torch.Tensor, parameters: torch.Tensor | None = None) -> TensorDataset:
    """``(x[i], y[i])``, or ``(x[i], y[i], parameters[i])`` when there are parameters."""
    return TensorDataset(x, y) if parameters is None else TensorDataset(x, y, parameters)


def split_trajectories(trajectories: torch.Tensor, history: int, parameters: torch.Tensor | None = None) -> TensorDataset:
    """``(u[:, :h], u[:, h:])`` of trajectories ``u: [N, T, *s]``: the given frames and those to predict."""
    return pairs(trajectories[:, :history], trajectories[:, history:], parameters)


class OperatorDataModule(DistributedDataModule):
    """Train/validation/test loaders of an ``OperatorData``.

    Args:
        data: the ``OperatorData`` (``task`` ``"map"`` or ``"rollout"``).
        batch_size: training samples per batch and process.
        valid_batch_size: validation/test samples per batch and process (default ``batch_size``).
        num_workers: loader worker processes.
        seed: seed of the training order.
        drop_last: drop the last incomplete training batch.
        history: rollout only: frames given to the model (its ``in_channels``); ``1 <= history < T``.
        rollout_training: rollout only: ``"one_step"`` (teacher forcing on all windows) or
            ``"rollout"`` (whole trajectories, predicted autoregressively).
    """

    def __init__(self, data: Any, batch_size: int, valid_batch_size: int | None = None, num_workers: int = 0,
                 seed: int = 0, drop_last: bool = False, history: int | None = None,
                 rollout_training: str = "one_step") -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"loader.batch_size must be >= 1, got {batch_size}")
        if data.task not in ("map", "rollout"):
            raise ValueError(f"data.task={data.task!r}; valid: map, rollout")
        self.data = data
        self.batch_size = int(batch_size)
        self.valid_batch_size = int(valid_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.test_resolutions = sorted(data.test) if data.test else [int(data.resolution)]
        train_p, valid_p, test_p = data.train_parameters, data.valid_parameters, data.test_parameters
        if data.task == "rollout":
            steps = data.train_x.shape[1]
            if history is None or not 1 <= int(history) < steps:
                raise ValueError(f"rollout.history={history}: the trajectories have {steps} frames, so history must "
                                 f"be in [1, {steps - 1}]")
            if rollout_training not in ROLLOUT_TRAINING:
                raise ValueError(f"rollout.train={rollout_training!r}; valid: {', '.join(ROLLOUT_TRAINING)}")
            self.history = int(history)
            self.rollout_training = rollout_training
            train = (TrajectoryWindows(data.train_x, self.history, train_p) if rollout_training == "one_step"
                     else split_trajectories(data.train_x, self.history, train_p))
            self.train = train
            self.valid = split_trajectories(data.valid_x, self.history, valid_p)
            self.tests = {res: split_trajectories(x, self.history, test_p.get(res))
                          for res, (x, _) in (data.test or {}).items()}
        else:
            self.history = None
            self.rollout_training = None
            self.train = pairs(data.train_x, data.train_y, train_p)
            self.valid = pairs(data.valid_x, data.valid_y, valid_p)
            self.tests = {res: pairs(x, y, test_p.get(res)) for res, (x, y) in (data.test or {}).items()}
        if len(self.train) == 0:
            raise ValueError("no training samples (data.num_train must be >= 1)")
        if len(self.valid) == 0:
            raise ValueError("no validation samples (data.num_valid must be >= 1)")

    @property
    def test_split(self) -> str:
        """``"test"``, or ``"valid"`` when the data has no test set (then tested at the training grid)."""
        return "test" if self.tests else "valid"

    def test_sets(self) -> list[tuple[int, Dataset]]:
        """``[(resolution, dataset), ...]`` in the order of the test loaders."""
        if not self.tests:
            return [(int(self.data.resolution), self.valid)]
        return [(res, self.tests[res]) for res in self.test_resolutions]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._evaluation_loader(dataset, f"test ({res})") for res, dataset in self.test_sets()]
