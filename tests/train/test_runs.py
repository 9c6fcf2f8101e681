"""Every config runs: one CPU training step (fast_dev_run) with tiny sizes, through the real CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from tests.train.conftest import SHARED_DATA, TINY_MODEL, read_metrics_csv, read_test_metrics, run_cli
from tests.train.test_operator_runs import is_operator_config
from train.config import available_configs
from train.optim import OPTIMIZERS, takes_loss_closure

SHARED = {"acac_mace": "acac", "acac_mace_tdn": "acac", "3bpa_mace": "3bpa", "ethanol_mace": "ethanol_rmd17"}


# potential configs; the operator configs run in test_operator_runs.py
@pytest.mark.parametrize("name", [name for name in available_configs() if not is_operator_config(name)])
def test_config_runs_one_step(name, repo_cwd, tmp_path):
    if name in SHARED and not (SHARED_DATA / SHARED[name]).is_dir():
        pytest.skip(f"shared benchmark data {SHARED_DATA / SHARED[name]} not present")
    run_dir = tmp_path / name
    run_cli(f"config={name}", *TINY_MODEL, f"run_dir={run_dir}", "trainer.fast_dev_run=true",
            "data.max_frames=4", "loader.batch_size=2", "loader.valid_batch_size=4")
    metrics = read_test_metrics(run_dir)
    assert metrics["config"] == name
    # the EMT metals carry stress (not virials); the molecules neither
    labelled = ("energy", "energy_per_atom", "forces") + (("stress",) if name == "mace_metals" else ())
    assert set(metrics["metrics"]) == set(labelled)
    for quantity in labelled:
        assert math.isfinite(metrics["metrics"][quantity]["rmse"])
        assert metrics["metrics"][quantity]["count"] > 0
    assert (run_dir / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = (run_dir / "config.yaml").read_text()
    assert "avg_num_neighbors: null" not in saved  # the statistics were filled in and saved


def test_float64_run_trains_in_float64(repo_cwd, tmp_path):
    run_dir = tmp_path / "f64"
    run_cli("config=mace", *TINY_MODEL, f"run_dir={run_dir}", "dtype=float64", "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
            "data.max_frames=4", "loader.batch_size=2", "trainer.enable_progress_bar=false")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    weights = [v for k, v in checkpoint["state_dict"].items() if v.is_floating_point()]
    assert weights and all(v.dtype == torch.float64 for v in weights)
    assert checkpoint["config"]["dtype"] == "float64"
    # the checkpoint holds the resolved config with the statistics that rebuild its model
    assert checkpoint["config"]["model"]["elements"] == [1, 6, 7, 8]
    assert json.loads((run_dir / "data.json").read_text())["sources"]["dtype"] == "float64"


def test_loss_on_labels_the_data_lacks_is_a_clear_error(repo_cwd, tmp_path, capsys):
    from train.cli import main

    status = main(["config=mace", *TINY_MODEL, f"run_dir={tmp_path}", "loss.stress_weight=1.0", "data.max_frames=4"])
    assert status == 2
    assert "loss.stress_weight=1.0 but no frame of the data has stress labels" in capsys.readouterr().err


def test_bad_data_path_is_named(repo_cwd, tmp_path, capsys):
    from train.cli import main

    missing = tmp_path / "missing.xyz"
    assert main(["config=mace", f"data.path={missing}", f"run_dir={tmp_path}"]) == 1
    assert str(missing) in capsys.readouterr().err


def test_default_run_directory_names(monkeypatch):
    from train.config import ConfigError
    from train.experiment import RUN_DIR_ENV, resolve_run_dir

    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_ID", "WORLD_SIZE", RUN_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    config = {"run_dir": None, "ckpt_path": None}
    assert resolve_run_dir(config, "mace").parent == Path("runs") / "mace"  # runs/mace/<time>
    assert resolve_run_dir({**config, "run_dir": "/x/y"}, "mace") == Path("/x/y")
    monkeypatch.setenv(RUN_DIR_ENV, "/from/rank0")  # Lightning's DDP children
    assert resolve_run_dir(config, "mace") == Path("/from/rank0")
    monkeypatch.delenv(RUN_DIR_ENV)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    assert resolve_run_dir(config, "mace") == Path("runs") / "mace" / "slurm-42.3"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("WORLD_SIZE", "4")  # torchrun without run_dir: the processes cannot agree on a name
    with pytest.raises(ConfigError, match="run_dir="):
        resolve_run_dir(config, "mace")


def test_without_a_test_set_the_validation_set_is_tested(repo_cwd, tmp_path):
    run_dir = tmp_path / "no_test"
    run_cli("config=mace", *TINY_MODEL, f"run_dir={run_dir}", "trainer.fast_dev_run=true", "data.test_fraction=0.0",
            "data.max_frames=4", "loader.batch_size=2")
    metrics = read_test_metrics(run_dir)
    assert metrics["split"] == "valid"
    assert metrics["num_frames"] == json.loads((run_dir / "data.json").read_text())["sources"]["num_frames"]["valid"]


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_trains_mace_from_its_config(optimizer, repo_cwd, tmp_path):
    """``optimizer=<name>`` on a force-trained MACE: closure optimizers under manual optimization
    (their gradient clipping moved from the trainer into the optimizer), the others automatic."""
    run_dir = tmp_path / optimizer
    run_cli("config=mace", *TINY_MODEL, f"run_dir={run_dir}", f"optimizer={optimizer}", "trainer.max_epochs=2",
            "data.max_frames=10", "loader.batch_size=2", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1", "trainer.num_sanity_val_steps=0", "scheduler.warmup_steps=3")
    rows = read_metrics_csv(run_dir)
    losses = [float(row["train/loss_step"]) for row in rows if row.get("train/loss_step")]
    rates = [float(row["lr"]) for row in rows if row.get("lr")]
    assert len(losses) >= 6 and all(math.isfinite(loss) for loss in losses)
    assert len(set(rates)) > 1  # the warm-up moved the rate under either kind of optimization
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["optimizer"]["name"] == optimizer
    if takes_loss_closure(optimizer):
        assert saved["trainer"]["gradient_clip_val"] is None and saved["optimizer"]["max_grad_norm"] == 10.0
    else:
        assert saved["trainer"]["gradient_clip_val"] == 10.0
    assert math.isfinite(read_test_metrics(run_dir)["metrics"]["forces"]["rmse"])
