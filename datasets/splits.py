"""Random train/validation/test splits of frame indices, deterministic for a seed.

The frames are shuffled once by ``numpy.random.default_rng(seed).permutation`` (PCG64, stable across
numpy versions and platforms); the first ``floor(valid_fraction * n)`` shuffled indices are
validation, the next ``floor(test_fraction * n)`` test, the rest training. Each part is returned in
file order, so a split reads like a subset of the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Frame indices [k] int64 of each part; disjoint, together ``range(num_frames)``."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def random_split(num_frames: int, valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 123) -> Split:
    """Split ``range(num_frames)`` at random into train/validation/test by fractions of the frames.

    Fractions are in [0, 1) with a sum below 1, so training keeps at least one frame; a fraction
    above 0 gets at least one frame when there are three frames or more.
    """
    for name, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError(f"valid_fraction + test_fraction must be below 1, got {valid_fraction} + {test_fraction}")
    num_valid = _part_size(num_frames, valid_fraction)
    num_test = _part_size(num_frames, test_fraction)
    if num_frames - num_valid - num_test < 1:
        raise ValueError(f"{num_frames} frames are too few to split off {num_valid} validation and {num_test} "
                         "test frames and keep one for training")
    order = np.random.default_rng(seed).permutation(num_frames)
    valid, test, train = np.split(order, [num_valid, num_valid + num_test])
    return Split(train=np.sort(train), valid=np.sort(valid), test=np.sort(test))


def _part_size(num_frames: int, fraction: float) -> int:
    size = math.floor(fraction * num_frames + 1e-9)  # 0.29 * 100 is 28.999999999999996 in floating point
    # a requested part is never silently empty when there are three frames or more
    return max(size, 1) if fraction > 0 and num_frames >= 3 else size
