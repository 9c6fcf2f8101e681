"""Helpers of the training tests: tiny model sizes, the shared benchmark data, in-process CLI runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"

# a MACE small enough that a training step takes well under a second on one CPU core
TINY_MODEL = [
    "model.num_channels=8",
    "model.max_ell=1",
    "model.max_L=1",
    "model.correlation=2",
    "model.num_interactions=1",
    "model.radial_mlp=[8]",
    "model.readout_mlp=4",
]


@pytest.fixture
def repo_cwd(monkeypatch):
    """Run from the repository root, where the configs' ``../shared/data/...`` paths resolve."""
    monkeypatch.chdir(ROOT)
    return ROOT


def run_cli(*arguments: str) -> None:
    """``python -m train *arguments`` in this process; fails the test on a non-zero exit status."""
    from train.cli import main

    status = main(list(arguments))
    assert status == 0, f"python -m train {' '.join(arguments)} exited with {status}"


def read_metrics_csv(run_dir: Path, version: int = 0) -> list[dict[str, float]]:
    """Rows of ``csv/version_<version>/metrics.csv``, empty cells dropped, values as floats."""
    with open(run_dir / "csv" / f"version_{version}" / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def read_test_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "test_metrics.json").read_text())
