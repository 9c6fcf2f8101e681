"""Fine-tuning (``finetune.from=``) and the export of training checkpoints (``python -m train.export``)."""

from __future__ import annotations

import pytest
import torch
import yaml

import zoo
from datasets.atomistic import build_atomistic_data
from tests.train.conftest import TINY_MODEL, read_test_metrics, run_cli
from train.export import main as export_main
from train.finetune import _residual_e0s, build_finetune_model
from zoo import checkpoint
from zoo.checkpoint import CheckpointError

SIZES = dict(num_channels=8, max_ell=1, max_L=1, correlation=2, num_interactions=1, radial_mlp=[8], readout_mlp=4)
QUICK = ["data.max_frames=12", "data.valid_fraction=0.05", "data.test_fraction=0.05", "loader.batch_size=4",
         "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A small "pretrained" model without nitrogen (the data has it) and with fluorine (the data lacks it)."""
    torch.manual_seed(3)
    model = zoo.build_model("mace", elements=[1, 6, 8, 9], atomic_energies={1: -10.0, 6: -40.0, 8: -70.0, 9: -90.0},
                            avg_num_neighbors=7.0, scale=0.5, shift=0.05, r_max=5.0, **SIZES)
    return model, checkpoint.save(model, tmp_path_factory.mktemp("pretrained") / "p.safetensors")


def test_refit_e0s_leave_no_residual_per_element(pretrained):
    _, path = pretrained
    data = build_atomistic_data("organics_gfn2", r_max=5.0, max_frames=40, dtype="float64", seed=1,
                                atomic_energies="least_squares")
    model, resolved, record = build_finetune_model({"from": str(path), "atomic_energies": "refit"}, {"r_max": 5.0},
                                                   data, torch.float64)
    assert model.elements == [1, 6, 7, 8, 9] and record["new_elements"] == [7]
    assert record["elements_not_in_data"] == [9]
    assert resolved["atomic_energies"][9] == pytest.approx(-90.0)  # an element the data lacks keeps its E0
    assert resolved["scale"] == 0.5 and resolved["avg_num_neighbors"] == 7.0  # the pretrained model's own
    # least squares: the residuals are orthogonal to every element count, so a second refit moves nothing
    again = _residual_e0s(model, data.train, [int(z) for z in data.elements])
    assert max(abs(v) for v in again.values()) < 1e-6
    with pytest.raises(ValueError, match="r_max"):
        build_finetune_model({"from": str(path)}, {"r_max": 4.0}, data, torch.float64)


def test_finetune_run_freezes_scales_the_rate_and_keeps_every_element(repo_cwd, tmp_path, pretrained):
    original, path = pretrained
    run = tmp_path / "run"
    run_cli("config=mace", *QUICK, f"finetune.from={path}", "finetune.freeze=[interactions]",
            "finetune.lr_scale=0.1", "finetune.atomic_energies=pretrained", f"run_dir={run}")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["elements"] == [1, 6, 7, 8, 9] and config["model"]["num_channels"] == 8
    assert config["optimizer"]["lr"] == pytest.approx(0.001)
    assert config["finetune"]["resolved"]["new_elements"] == [7]
    tuned = zoo.load(run / "model.safetensors", dtype="float32")
    assert tuned.elements == [1, 6, 7, 8, 9]
    energies = dict(zip(tuned.elements, tuned.atomic_energies.tolist()))
    assert energies[6] == pytest.approx(-40.0) and energies[9] == pytest.approx(-90.0)  # kept as asked
    before, after = original.state_dict(), tuned.state_dict()
    frozen = [k for k in before if k.startswith("interactions.") and ".skip." not in k and k.endswith("weight")]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert not torch.equal(after["readouts.0.linear_1.weight"], before["readouts.0.linear_1.weight"])
    document = checkpoint.read(run / "model.safetensors")[0]
    assert document["training"]["config"]["finetune"]["from"] == str(path)


def test_every_run_exports_its_best_weights_and_export_converts_checkpoints(repo_cwd, tmp_path):
    run = tmp_path / "run"
    run_cli("config=mace", *TINY_MODEL, *QUICK, "trainer.max_epochs=2", f"run_dir={run}")
    exported = zoo.load(run / "model.safetensors")
    document = exported.checkpoint
    assert document["training"]["test_metrics"] == read_test_metrics(run)
    assert document["training"]["provenance"]["commit"] == document["provenance"]["commit"]
    assert document["training"]["checkpoint"]["weights"] == "ema"
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    for name, tensor in exported.state_dict().items():
        assert torch.equal(tensor, best[f"model.{name}"]), name

    raw_path = tmp_path / "raw.safetensors"
    assert export_main([str(run / "checkpoints" / "last.ckpt"), "--out", str(raw_path), "--weights", "raw"]) == 0
    raw = zoo.load(raw_path)
    assert any(not torch.equal(raw.state_dict()[n], t) for n, t in exported.state_dict().items())
    assert raw.checkpoint["training"]["test_metrics"] is None  # measured with other weights


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_export_refuses_a_checkpoint_with_code(tmp_path, capsys):
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "config": {}, "callbacks": _Payload(marker)}, path)
    assert export_main([str(path)]) == 1
    assert "refused" in capsys.readouterr().err and not marker.exists()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        from train.export import export_checkpoint
        export_checkpoint(path)


def test_resume_reads_checkpoints_without_pickle(tmp_path):
    from train.checkpoint import AtomicCheckpointIO

    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Payload(marker)}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="weights_only=True only"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
