"""build_operator_data on tiny sizes: caching, multi-resolution tests, splits, shapes, sources, errors."""

from __future__ import annotations

import json

import pytest
import torch

from datasets.errors import DatasetError
from datasets.pde import generate as gen
from datasets.pde import generation_cache
from datasets.pde import operator_data as od
from datasets.pde.neuraloperator_files import find_neuraloperator_data, read_pt_with_metadata

DARCY = dict(source="generate", equation="darcy", resolution=5, test_resolutions=[9, 17], num_train=3, num_valid=2,
             num_test=2, solver_resolution=17, progress=False)
NAVIER_STOKES = dict(source="generate", equation="navier_stokes", resolution=8, test_resolutions=[16], num_train=2,
                     num_valid=1, num_test=1, solver_resolution=16,
                     parameters=dict(t=0.1, record_every=0.05, dt=0.01), progress=False)


def _have_neuraloperator_files() -> bool:
    try:
        for name in ("darcy_train_16", "darcy_test_16", "darcy_test_32"):
            find_neuraloperator_data(name)
    except FileNotFoundError:
        return False
    return True


def test_generate_darcy_shapes_splits_and_sources(tmp_path):
    data = od.build_operator_data(cache_dir=tmp_path, **DARCY)
    assert (data.task, data.domain, data.spatial_dims, data.resolution) == ("map", "nodes", 2, 5)
    assert data.train_x.shape == data.train_y.shape == (3, 1, 5, 5)
    assert data.valid_x.shape == data.valid_y.shape == (2, 1, 5, 5)
    assert data.train_x.dtype == torch.float32
    assert sorted(data.test) == [5, 9, 17]  # the requested grids and the training grid
    json.dumps(data.sources)  # JSON-plain
    train_file = read_pt_with_metadata(data.sources["train"]["file"])[0]
    # valid = the last num_valid of the generated train split, disjoint from train
    torch.testing.assert_close(data.valid_x[:, 0], train_file["x"][3:])
    torch.testing.assert_close(data.train_x[:, 0], train_file["x"][:3])
    assert not any(torch.equal(t, v) for t in data.train_x for v in data.valid_x)
    assert data.sources["test"]["resolution"] == 17 and data.sources["train"]["cached"] is False


def test_test_resolutions_are_subsamples_of_the_same_samples(tmp_path):
    data = od.build_operator_data(cache_dir=tmp_path, **DARCY)
    fine_x, fine_y = data.test[17]
    for s, stride in ((9, 2), (5, 4)):
        x, y = data.test[s]
        torch.testing.assert_close(x, fine_x[..., ::stride, ::stride], rtol=0, atol=0)
        torch.testing.assert_close(y, fine_y[..., ::stride, ::stride], rtol=0, atol=0)
    # the test samples at the training grid equal a direct generation at that grid (same seed, split "test")
    direct = gen.generate("darcy", 5, 2, seed=0, split="test", solver_resolution=17)
    torch.testing.assert_close(data.test[5][1][:, 0], direct["y"], rtol=0, atol=0)
    # and differ from the training samples
    assert not torch.equal(data.test[5][0][0], data.train_x[0])


def test_cache_is_reused_and_keyed_by_every_option(tmp_path, monkeypatch):
    first = od.build_operator_data(cache_dir=tmp_path, **DARCY)
    files = sorted(path.name for path in tmp_path.iterdir())
    assert len(files) == 2  # train and (finest) test

    def refuse(*args, **kwargs):
        raise AssertionError("generate called although the cache holds the data")

    monkeypatch.setattr(gen, "generate", refuse)
    second = od.build_operator_data(cache_dir=tmp_path, **DARCY)
    assert second.sources["train"]["cached"] and second.sources["test"]["cached"]
    pairs = ((first.train_x, second.train_x), (first.valid_y, second.valid_y), (first.test[9][1], second.test[9][1]))
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    monkeypatch.undo()

    changed = od.build_operator_data(cache_dir=tmp_path, **{**DARCY, "seed": 1})
    assert len(list(tmp_path.iterdir())) == 4
    assert not torch.equal(changed.train_x, first.train_x)
    od.build_operator_data(cache_dir=tmp_path, **{**DARCY, "parameters": {"high": 10.0}})
    assert len(list(tmp_path.iterdir())) == 6


def test_a_cached_file_of_another_request_is_regenerated(tmp_path):
    data = od.build_operator_data(cache_dir=tmp_path, **DARCY)
    path = data.sources["train"]["file"]
    tensors, metadata = read_pt_with_metadata(path)
    # the same name but a different stored request (e.g. written by an older version): never reused
    gen.write_atomic(path, {"x": tensors["x"] * 0 + 1, "y": tensors["y"],
                            "metadata": {**metadata, "request": {**metadata["request"], "seed": 99}}})
    again = od.build_operator_data(cache_dir=tmp_path, **DARCY)
    assert again.sources["train"]["cached"] is False
    torch.testing.assert_close(again.train_x, data.train_x, rtol=0, atol=0)


def test_cache_directory_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(generation_cache.CACHE_ENV_VAR, str(tmp_path / "env"))
    assert generation_cache.cache_directory() == tmp_path / "env"
    assert generation_cache.cache_directory(tmp_path / "given") == tmp_path / "given"


def test_navier_stokes_map_and_rollout(tmp_path):
    mapped = od.build_operator_data(cache_dir=tmp_path, **NAVIER_STOKES)
    assert (mapped.domain, mapped.spatial_dims) == ("periodic", 2)
    assert mapped.train_x.shape == (2, 1, 8, 8) and mapped.train_y.shape == (2, 2, 8, 8)  # w0 -> w(0.05), w(0.1)
    assert mapped.test[16][1].shape == (1, 2, 16, 16)
    rollout = od.build_operator_data(cache_dir=tmp_path, task="rollout", **NAVIER_STOKES)
    assert rollout.train_y is None and rollout.valid_y is None
    assert rollout.train_x.shape == (2, 3, 8, 8) and rollout.valid_x.shape == (1, 3, 8, 8)
    torch.testing.assert_close(rollout.train_x, torch.cat([mapped.train_x, mapped.train_y], 1), rtol=0, atol=0)
    x16, y16 = rollout.test[16]
    assert y16 is None and x16.shape == (1, 3, 16, 16)
    torch.testing.assert_close(rollout.test[8][0], x16[..., ::2, ::2], rtol=0, atol=0)


def test_burgers_is_one_dimensional_and_periodic(tmp_path):
    data = od.build_operator_data(source="generate", equation="burgers", resolution=16, test_resolutions=[32],
                                  num_train=2, num_valid=0, num_test=1, solver_resolution=64,
                                  parameters={"t": 0.1}, cache_dir=tmp_path, progress=False, dtype="float64")
    assert (data.domain, data.spatial_dims) == ("periodic", 1)
    assert data.train_x.shape == (2, 1, 16) and data.valid_x.shape == (0, 1, 16)
    assert data.train_x.dtype == torch.float64
    torch.testing.assert_close(data.test[16][0], data.test[32][0][..., ::2], rtol=0, atol=0)


@pytest.mark.skipif("shallow_water" not in gen.PROTOCOLS, reason="no shallow-water protocol")
def test_shallow_water_on_the_sphere(tmp_path):
    data = od.build_operator_data(source="generate", equation="shallow_water", resolution=5, test_resolutions=[9],
                                  num_train=2, num_valid=1, num_test=1, solver_resolution=9,
                                  parameters={"t": 300.0}, cache_dir=tmp_path, progress=False)
    assert (data.domain, data.spatial_dims) == ("sphere", 2)
    assert data.train_x.shape == data.train_y.shape == (2, 3, 5, 8)  # 3 fields, nlat x 2 (nlat - 1)
    assert data.test[9][0].shape == (1, 3, 9, 16)
    torch.testing.assert_close(data.test[5][1], data.test[9][1][..., ::2, ::2], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"admissible: \[3, 5, 9\]"):
        od.subsample_grid(data.test[9][0], 4, "sphere", 2)


def test_files_source_reads_generated_files_and_subsamples(tmp_path):
    train = gen.generate("darcy", 9, 4, seed=3, split="train", solver_resolution=17)
    test = gen.generate("darcy", 17, 2, seed=3, split="test", solver_resolution=17)
    gen.write_atomic(tmp_path / "train.pt", train)
    gen.write_atomic(tmp_path / "test.pt", test)
    data = od.build_operator_data(source="files", equation="darcy", resolution=5, test_resolutions=[9],
                                  num_train=2, num_valid=1, num_test=2,
                                  files={"train": tmp_path / "train.pt", "test": {17: tmp_path / "test.pt"}})
    assert data.domain == "nodes" and data.train_x.shape == (2, 1, 5, 5)
    torch.testing.assert_close(data.train_x[:, 0], train["x"][:2, ::2, ::2], rtol=0, atol=0)
    torch.testing.assert_close(data.valid_x[:, 0], train["x"][3:, ::2, ::2], rtol=0, atol=0)
    assert sorted(data.test) == [5, 9]
    torch.testing.assert_close(data.test[9][1][:, 0], test["y"][:, ::2, ::2], rtol=0, atol=0)
    assert data.sources["test"]["9"]["subsampled_from"] == 17 and "sha256" in data.sources["train"]
    with pytest.raises(DatasetError, match="fewer than num_train"):
        od.build_operator_data(source="files", equation="darcy", resolution=9, test_resolutions=[], num_train=4,
                               num_valid=1, num_test=0, files={"train": tmp_path / "train.pt"})
    with pytest.raises(DatasetError, match="not 'burgers'"):
        od.build_operator_data(source="files", equation="burgers", resolution=9, test_resolutions=[], num_train=1,
                               num_valid=0, num_test=0, files={"train": tmp_path / "train.pt"})
    with pytest.raises(DatasetError, match="rollout"):
        od.build_operator_data(source="files", equation="darcy", resolution=9, test_resolutions=[], num_train=1,
                               num_valid=0, num_test=0, task="rollout", files={"train": tmp_path / "train.pt"})


def test_files_with_bad_values_name_the_file_and_key(tmp_path):
    x = torch.zeros(3, 8)
    y = torch.zeros(3, 8)
    y[1, 2] = float("nan")
    torch.save({"x": x, "y": y}, tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match=r"bad\.pt.*'y'.*NaN"):
        od.build_operator_data(source="files", equation="burgers", resolution=8, test_resolutions=[], num_train=1,
                               num_valid=0, num_test=0, files={"train": tmp_path / "bad.pt"})
    torch.save({"x": x, "y": torch.zeros(3, 7)}, tmp_path / "shape.pt")
    with pytest.raises(DatasetError, match=r"shape\.pt.*'y'"):
        od.build_operator_data(source="files", equation="burgers", resolution=8, test_resolutions=[], num_train=1,
                               num_valid=0, num_test=0, files={"train": tmp_path / "shape.pt"})


def test_per_sample_parameters_follow_their_samples(tmp_path):
    """Burgers with nu drawn per sample: every split carries each sample's nu, generated or read from files."""
    options = dict(source="generate", equation="burgers", resolution=8, test_resolutions=[16], num_train=4,
                   num_valid=2, num_test=3, solver_resolution=32, parameters={"nu": [0.05, 0.5], "t": 0.05},
                   progress=False, batch_size=3)
    data = od.build_operator_data(cache_dir=tmp_path / "cache", **options)
    train = read_pt_with_metadata(data.sources["train"]["file"])[0]
    assert data.pde_parameter_names == ["nu"]
    torch.testing.assert_close(data.train_parameters, train["pde_parameters"][:4], rtol=0, atol=0)
    torch.testing.assert_close(data.valid_parameters, train["pde_parameters"][4:], rtol=0, atol=0)
    assert sorted(data.test_parameters) == sorted(data.test) == [8, 16]
    assert data.test_parameters[8].shape == (3, 1) and torch.equal(data.test_parameters[8], data.test_parameters[16])
    fixed = od.build_operator_data(cache_dir=tmp_path / "cache", **{**options, "parameters": {"nu": 0.05, "t": 0.05}})
    assert fixed.pde_parameter_names == [] and fixed.train_parameters is None and fixed.test_parameters == {}

    gen.write_atomic(tmp_path / "train.pt", train)
    from_files = od.build_operator_data(source="files", equation="burgers", resolution=8, test_resolutions=[],
                                        num_train=3, num_valid=1, num_test=0, files={"train": tmp_path / "train.pt"})
    torch.testing.assert_close(from_files.train_parameters, train["pde_parameters"][:3], rtol=0, atol=0)
    torch.testing.assert_close(from_files.valid_parameters, train["pde_parameters"][5:], rtol=0, atol=0)
    torch.save({"x": train["x"], "y": train["y"], "pde_parameters": train["pde_parameters"][:2]}, tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match=r"bad\.pt.*'pde_parameters'.*one row per sample"):
        od.build_operator_data(source="files", equation="burgers", resolution=8, test_resolutions=[], num_train=1,
                               num_valid=0, num_test=0, files={"train": tmp_path / "bad.pt"})


@pytest.mark.skipif(not _have_neuraloperator_files(), reason="neuraloperator's Darcy files are not fetched")
def test_neuraloperator_source():
    data = od.build_operator_data(source="neuraloperator", equation="darcy", resolution=16, test_resolutions=[32],
                                  num_train=10, num_valid=5, num_test=4)
    raw = read_pt_with_metadata(find_neuraloperator_data("darcy_train_16"))[0]
    assert data.domain == "nodes" and data.train_x.dtype == torch.float32
    torch.testing.assert_close(data.train_x[:, 0], raw["x"][:10].float(), rtol=0, atol=0)
    torch.testing.assert_close(data.valid_y[:, 0], raw["y"][-5:], rtol=0, atol=0)  # the LAST num_valid of 1000
    assert sorted(data.test) == [16, 32] and data.test[32][0].shape == (4, 1, 32, 32)
    torch.testing.assert_close(data.test[16][0], data.test[32][0][..., ::2, ::2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="1000"):
        od.build_operator_data(source="neuraloperator", equation="darcy", resolution=16, test_resolutions=[],
                               num_train=999, num_valid=2, num_test=0)
    with pytest.raises(ValueError, match="50 test samples"):
        od.build_operator_data(source="neuraloperator", equation="darcy", resolution=16, test_resolutions=[],
                               num_train=1, num_valid=0, num_test=51)


def test_subsample_grid_and_admissible_resolutions():
    field = torch.arange(2 * 9 * 9, dtype=torch.float32).reshape(2, 1, 9, 9)
    torch.testing.assert_close(od.subsample_grid(field, 5, "nodes", 2), field[..., ::2, ::2])
    assert od.admissible_resolutions(9, "nodes") == [2, 3, 5, 9]
    assert od.admissible_resolutions(12, "periodic") == [1, 2, 3, 4, 6, 12]
    with pytest.raises(ValueError, match=r"admissible: \[2, 3, 5, 9\]"):
        od.subsample_grid(field, 4, "nodes", 2)


@pytest.mark.parametrize("change, error, match", [
    ({"source": "web"}, ValueError, "source"),
    ({"task": "forecast"}, ValueError, "task"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"num_train": 0}, ValueError, "num_train"),
    ({"equation": "heat"}, ValueError, "equation"),
    ({"test_resolutions": [17, 7]}, ValueError, r"admissible: \[2, 3, 5, 9, 17\]"),
    ({"resolution": 6}, ValueError, "resolution - 1"),
    ({"task": "rollout"}, DatasetError, "time series"),
    ({"parameters": {"viscosity": 1.0}}, ValueError, "viscosity"),
])
def test_clear_errors(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        od.build_operator_data(cache_dir=tmp_path, **{**DARCY, **change})
