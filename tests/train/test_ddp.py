"""DDP: a 2-process run trains and measures exactly as a 1-process run on the same data.

Both runs go through the real CLI (Lightning's DDP on CPU, gloo), from the same seeded weights, for
one SGD step: 4 frames in one batch on one process, 2 + 2 frames on two (the distributed sampler
deals the same shuffled frames). The molecules differ in size, so the two processes hold different
numbers of atoms: the step is the same only if the loss of each process is weighted by the global
counts (as ``mace.modules.loss.reduce_loss``), not averaged per process. The training metrics (before
the step), the validation metrics (7 frames, after the step) and the test metrics (9 frames) must
then agree; the evaluation sets split unevenly between the processes, so any average of per-process
or per-batch values would differ from the 1-process numbers.
"""

import json
import subprocess
import sys

import pytest
import torch

from tests.tolerances import tolerance
from tests.train.conftest import ROOT, TINY_MODEL, read_metrics_csv, read_test_metrics

COMMON = [
    "config=mace", *TINY_MODEL, "dtype=float64", "data.max_frames=6", "data.valid_fraction=0.007",
    "data.test_fraction=0.009", "loader.valid_batch_size=2", "optimizer=sgd", "optimizer.lr=0.05",
    "optimizer.momentum=0.0", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.accelerator=cpu",
    "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
]


def run(run_dir, *extra):
    result = subprocess.run([sys.executable, "-m", "train", *COMMON, f"run_dir={run_dir}", *extra], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def epoch_metrics(run_dir, prefix):
    """The epoch-level ``prefix`` metrics (logged once, from sums reduced over processes)."""
    rows = [row for row in read_metrics_csv(run_dir) if f"{prefix}loss" in row]
    assert len(rows) == 1
    return {k: v for k, v in rows[0].items() if k.startswith(prefix)}


@pytest.mark.slow
def test_two_processes_give_the_one_process_metrics(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(one, "trainer.devices=1", "loader.batch_size=4")
    run(two, "trainer.devices=2", "trainer.strategy=ddp", "loader.batch_size=2")

    frames = json.loads((one / "data.json").read_text())["sources"]["num_frames"]
    assert (frames["valid"], frames["test"]) == (7, 9)  # uneven between 2 processes
    close = tolerance(torch.float64, "exact")
    for prefix in ("val/", "train/"):
        expected, got = epoch_metrics(one, prefix), epoch_metrics(two, prefix)
        assert set(got) == set(expected) and f"{prefix}forces_rmse" in got
        torch.testing.assert_close(got, expected, **close)
    expected, got = read_test_metrics(one), read_test_metrics(two)
    assert got["metrics"]["forces"]["count"] == expected["metrics"]["forces"]["count"]
    for quantity, values in expected["metrics"].items():
        for stat in ("mae", "rmse"):
            torch.testing.assert_close(got["metrics"][quantity][stat], values[stat], **close)
    torch.testing.assert_close(got["loss"], expected["loss"], **close)
