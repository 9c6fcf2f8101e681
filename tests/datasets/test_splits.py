"""Random splits: a partition of the frames, sized by the fractions, the same for the same seed."""

import numpy as np
import pytest

from datasets.splits import random_split


def test_partition_and_sizes():
    split = random_split(100, valid_fraction=0.1, test_fraction=0.25, seed=1)
    assert (len(split.train), len(split.valid), len(split.test)) == (65, 10, 25)
    everything = np.concatenate([split.train, split.valid, split.test])
    np.testing.assert_array_equal(np.sort(everything), np.arange(100))
    for part in (split.train, split.valid, split.test):
        np.testing.assert_array_equal(part, np.sort(part))  # file order within each part


def test_deterministic_for_a_seed_and_different_across_seeds():
    first, again, other = random_split(50, seed=7), random_split(50, seed=7), random_split(50, seed=8)
    for a, b in zip((first.train, first.valid, first.test), (again.train, again.valid, again.test)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.valid, other.valid)


def test_floating_point_fractions_round_as_written():
    assert len(random_split(100, valid_fraction=0.29, test_fraction=0.0).valid) == 29


def test_zero_fractions_and_small_sets():
    split = random_split(10, valid_fraction=0.0, test_fraction=0.0)
    assert len(split.train) == 10 and len(split.valid) == 0 and len(split.test) == 0
    split = random_split(5, valid_fraction=0.1, test_fraction=0.1)  # 0.5 frames each: still one each
    assert (len(split.train), len(split.valid), len(split.test)) == (3, 1, 1)


@pytest.mark.parametrize("valid, test", [(-0.1, 0.1), (1.0, 0.0), (0.6, 0.5)])
def test_bad_fractions(valid, test):
    with pytest.raises(ValueError, match="fraction"):
        random_split(10, valid_fraction=valid, test_fraction=test)


def test_too_few_frames():
    # 3 validation frames, and the test part's 0.4 frames raised to one: nothing left to train on
    with pytest.raises(ValueError, match="too few"):
        random_split(4, valid_fraction=0.75, test_fraction=0.1)
