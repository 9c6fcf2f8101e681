"""The equizoo checkpoint (zoo.checkpoint): round trip, atomic writes, and every bad file refused clearly."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from ase.build import molecule
from safetensors.torch import save_file

import zoo
from zoo import checkpoint
from zoo.checkpoint import CheckpointError
from tests.zoo.graphs import graph_of

ELEMENTS = [1, 6, 8]


def tiny(method: str = "cg", **extra):
    torch.manual_seed(0)
    return zoo.build_model("mace", elements=ELEMENTS, atomic_energies={1: -13.6, 6: -1029.0, 8: -2041.0},
                           avg_num_neighbors=6.0, scale=0.7, shift=-0.1, num_channels=8, max_ell=2, max_L=1,
                           correlation=2, radial_mlp=[8], r_max=4.0, tensor_product={"method": method}, **extra)


def energy(model, atoms, dtype=torch.float64):
    out = model(graph_of(atoms, model.r_max, dtype), compute_forces=True)
    return out["energy"].item(), out["forces"].detach().numpy()


@pytest.fixture
def saved(tmp_path):
    model = tiny().double()
    path = checkpoint.save(model, tmp_path / "m.safetensors", training={"config": {"seed": 1}})
    return model, path


def test_round_trip_rebuilds_the_same_model(saved):
    model, path = saved
    loaded = zoo.load(path)
    assert loaded.build_arguments == model.build_arguments
    for (name, a), (other, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == other and torch.equal(a, b), name
    atoms = molecule("CH3CH2OH")
    e0, f0 = energy(model, atoms)
    e1, f1 = energy(loaded, atoms)
    assert e0 == e1 and np.array_equal(f0, f1)
    assert not loaded.training


def test_document_records_what_builds_and_made_the_model(saved):
    _, path = saved
    document, tensors = checkpoint.read(path)
    assert document["model"]["name"] == "mace" and document["model"]["kwargs"]["num_channels"] == 8
    assert document["r_max"] == 4.0 and document["elements"] == ELEMENTS
    assert document["atomic_energies"] == pytest.approx({"1": -13.6, "6": -1029.0, "8": -2041.0}, rel=1e-7)
    assert document["tensor_product"] == {"method": "cg"} and document["dtype"] == "float64"
    assert document["units"]["energy"] == "eV" and document["units"]["length"] == "Å"
    versions = document["provenance"]["versions"]
    assert versions["torch"] == torch.__version__ and versions["e3nn"] and versions["equizoo"]
    assert document["training"] == {"config": {"seed": 1}}
    assert set(tensors) == set(tiny().state_dict())


def test_dtype_and_kernel_are_load_time_choices(saved):
    model, path = saved
    single = zoo.load(path, dtype="float32", kernel="reference")
    assert all(t.dtype == torch.float32 for t in single.state_dict().values() if t.is_floating_point())
    assert single.build_arguments["kwargs"]["kernel"] == "reference"
    for name, tensor in model.state_dict().items():  # the kernel never changes the weights
        assert torch.equal(single.state_dict()[name], tensor.float()), name
    e64, _ = energy(model, molecule("H2O"))
    e32, _ = energy(single, molecule("H2O"), torch.float32)
    assert e32 == pytest.approx(e64, rel=1e-5)


def test_cp_factors_travel_with_the_checkpoint(tmp_path, monkeypatch):
    model = tiny("cp")
    with torch.no_grad():  # factors differing from any fit: the checkpoint's must win over the cache
        for name, buffer in model.named_buffers():
            if "factor_" in name:
                buffer.mul_(1.5)
    path = checkpoint.save(model, tmp_path / "cp.safetensors")
    empty_cache = tmp_path / "cache"
    monkeypatch.setenv("EQUIZOO_CACHE_DIR", str(empty_cache))
    loaded = zoo.load(path)
    assert not empty_cache.exists()  # loading fitted nothing: the factors and their rank come from the file
    for name, buffer in model.named_buffers():
        if "factor_" in name:
            assert torch.equal(loaded.get_buffer(name), buffer), name


def test_write_is_atomic(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tiny("cg"), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_model_not_from_build_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="zoo.build_model"):
        checkpoint.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 100, -10])
def test_truncated_file_is_named(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(CheckpointError, match="truncated|empty") as error:
        zoo.load(path)
    assert str(path) in str(error.value)


def test_missing_directory_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file") as error:
        zoo.load(tmp_path / "absent.safetensors")
    assert "absent.safetensors" in str(error.value)
    with pytest.raises(CheckpointError, match="not a regular file"):
        checkpoint.load_model(tmp_path)
    save_file({"w": torch.zeros(3)}, tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="not an equizoo checkpoint"):
        zoo.load(tmp_path / "foreign.safetensors")
    (tmp_path / "text.safetensors").write_bytes(struct.pack("<Q", 4) + b"nope")
    with pytest.raises(CheckpointError, match="not JSON"):
        zoo.load(tmp_path / "text.safetensors")
    with pytest.raises(FileNotFoundError, match="neither a pretrained model"):
        zoo.load("no_such_model_name")


def _rewrite(path, edit):
    """Rewrite the checkpoint at ``path`` with its document changed by ``edit`` (or its tensors)."""
    document, tensors = checkpoint.read(path)
    metadata = {"format": checkpoint.FORMAT, "format_version": "1", "equizoo": json.dumps(document)}
    edit(document, tensors, metadata)
    metadata["equizoo"] = json.dumps(document)
    save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("edit, message", [
    (lambda d, t, m: m.update(format_version="99"), "newer than this equizoo reads"),
    (lambda d, t, m: d["model"].update(name="allegro"), "model 'allegro' is not one"),
    (lambda d, t, m: d["model"]["kwargs"].update(num_layers=3), "do not build 'mace'"),
    (lambda d, t, m: t.update(scale=torch.zeros(2)), "wrong shape scale"),
    (lambda d, t, m: t.pop("atomic_energies"), "missing atomic_energies"),
])
def test_incompatible_checkpoints_are_explained(saved, edit, message):
    _, path = saved
    _rewrite(path, edit)
    with pytest.raises(CheckpointError, match=message) as error:
        zoo.load(path)
    assert str(path) in str(error.value)


class _Payload:
    """Unpickling this runs code: it creates the file named in its argument."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors", "evil.ckpt"])
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_pickle_with_code_is_refused_and_never_run(tmp_path, name, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    payload = {"state_dict": {"w": torch.zeros(2)}, "hook": _Payload(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError, match="never unpickles"):
        zoo.load(path)
    assert not marker.exists()


def test_shipped_pretrained_models_load_and_say_how_they_were_made():
    assert {"mace_organics", "mace_tdn_organics"} <= set(zoo.pretrained.available())
    atoms = molecule("CH3CH2OH")
    for name, method in (("mace_organics", "cg"), ("mace_tdn_organics", "cp")):
        path = zoo.pretrained.path(name)
        assert path.stat().st_size < 5_000_000  # shipped small
        document = zoo.pretrained.describe(name)
        training = document["training"]
        assert training["config"]["model"]["tensor_product"]["method"] == method
        assert training["data"]["sources"]["train"][0].endswith("organics_gfn2.xyz")
        assert training["test_metrics"]["metrics"]["forces"]["rmse"] < 100.0  # meV/Å, as trained
        assert len(training["provenance"]["commit"]) == 40 and training["provenance"]["dirty"] is False
        assert document["elements"] == [1, 6, 7, 8] and document["r_max"] == 5.0
        reference = zoo.load(name, dtype="float64", kernel="reference")
        default = zoo.load(name, dtype="float64")
        for key, tensor in default.state_dict().items():
            assert torch.equal(reference.state_dict()[key], tensor), key
        e_ref, f_ref = energy(reference, atoms)
        e_def, f_def = energy(default, atoms)
        assert e_ref == pytest.approx(e_def, abs=1e-9) and np.allclose(f_ref, f_def, atol=1e-9)
        # a sensible potential: the equilibrium molecule sits near a minimum of the xTB-trained surface
        assert np.abs(f_ref).max() < 2.0
