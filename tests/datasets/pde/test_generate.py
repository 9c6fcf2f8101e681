"""``python -m datasets.pde.generate`` on tiny sizes: file layout, determinism, the safe reader reads what it
writes, and the data checked against independent facts (the Darcy equation re-applied by a separate
stencil, conservation of the mean by Burgers and by Navier-Stokes, exact subsampling)."""

import json

import numpy as np
import pytest
import torch

from datasets.pde import generate as gen
from datasets.pde.neuraloperator_files import read_pt_with_metadata

TINY = {
    "burgers": ["--resolution", "16", "--solver-resolution", "64", "--t", "0.1"],
    "darcy": ["--resolution", "9", "--solver-resolution", "17"],
    "navier_stokes": ["--resolution", "8", "--solver-resolution", "16", "--t", "0.1", "--record-every", "0.05",
                      "--dt", "0.01"],
}
SHAPES = {  # x, y of one sample
    "burgers": ((16,), (16,)),
    "darcy": ((9, 9), (9, 9)),
    "navier_stokes": ((8, 8), (2, 8, 8)),
}


def _run(equation, out, *extra, train=3, test=2, seed=7):
    argv = [equation, "--train", str(train), "--test", str(test), "--seed", str(seed), "--out", str(out),
            "--batch-size", "2", "--no-progress", *TINY[equation], *extra]
    return gen.main(argv)


@pytest.mark.parametrize("equation", list(TINY))
def test_layout_metadata_and_the_reader(tmp_path, equation, capsys):
    written = _run(equation, tmp_path)
    resolution = SHAPES[equation][0][-1]
    names = [f"{equation}_train_{resolution}.pt", f"{equation}_test_{resolution}.pt"]
    assert [path.name for path in written] == names
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names)  # no temporary files left
    assert "wrote" in capsys.readouterr().out
    for path, count, split in zip(written, (3, 2), ("train", "test")):
        tensors, metadata = read_pt_with_metadata(path)
        assert set(tensors) == {"x", "y"}
        assert tensors["x"].shape == (count, *SHAPES[equation][0])
        assert tensors["y"].shape == (count, *SHAPES[equation][1])
        assert tensors["x"].dtype == tensors["y"].dtype == torch.float32
        assert torch.isfinite(tensors["y"]).all() and tensors["y"].abs().max() > 0
        assert json.loads(json.dumps(metadata)) == metadata  # plain JSON types only
        assert metadata["equation"] == equation and metadata["split"] == split and metadata["seed"] == 7
        assert metadata["resolution"] == resolution and metadata["num_samples"] == count
        assert metadata["solver"].startswith(f"datasets.pde.{equation}")
    train, test = (read_pt_with_metadata(path)[0]["x"] for path in written)
    assert not any(torch.equal(a, b) for a in train for b in test)  # train and test never share draws


@pytest.mark.parametrize("equation", list(TINY))
def test_two_runs_are_byte_identical(tmp_path, equation):
    first = _run(equation, tmp_path / "first")
    second = _run(equation, tmp_path / "second")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
        left, right = read_pt_with_metadata(a)[0], read_pt_with_metadata(b)[0]
        for key in ("x", "y"):
            assert left[key].numpy().tobytes() == right[key].numpy().tobytes()
    other_seed = _run(equation, tmp_path / "other", seed=8)[0]
    assert not torch.equal(read_pt_with_metadata(other_seed)[0]["x"], read_pt_with_metadata(first[0])[0]["x"])


def test_darcy_samples_do_not_depend_on_the_batch_size():
    options = dict(resolution=9, num_samples=3, seed=3, solver_resolution=17, dtype="float64")
    one = gen.generate("darcy", batch_size=1, **options)
    three = gen.generate("darcy", batch_size=3, **options)
    assert torch.equal(one["x"], three["x"]) and torch.equal(one["y"], three["y"])


def test_darcy_data_satisfy_the_equation():
    """At the solver resolution, re-apply -div(a grad u) with harmonic face means by a separate stencil:
    it gives f = 1 at every interior node; a takes FNO's two values, u >= 0 and vanishes on the boundary."""
    data = gen.generate("darcy", resolution=17, num_samples=2, seed=0, solver_resolution=17, dtype="float64")
    a, u = data["x"].numpy(), data["y"].numpy()
    assert set(np.unique(a)) <= {3.0, 12.0} and len(np.unique(a)) == 2
    h = 1 / 16
    for ab, ub in zip(a, u):
        assert (ub >= 0).all() and ub[0].max() == ub[-1].max() == ub[:, 0].max() == ub[:, -1].max() == 0
        residual = np.zeros((15, 15))
        for i in range(1, 16):
            for j in range(1, 16):
                flux = 0.0
                for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    k = 2 * ab[i, j] * ab[i + di, j + dj] / (ab[i, j] + ab[i + di, j + dj])
                    flux += k * (ub[i + di, j + dj] - ub[i, j])
                residual[i - 1, j - 1] = -flux / h**2
        np.testing.assert_allclose(residual, 1.0, rtol=1e-9)


def test_subsampling_is_exact():
    """The 8-point file is the 16-point file at every other point (same seed, same solver grid)."""
    options = dict(num_samples=2, seed=5, solver_resolution=64, t=0.1, dtype="float64")
    fine = gen.generate("burgers", resolution=16, **options)
    coarse = gen.generate("burgers", resolution=8, **options)
    assert torch.equal(coarse["x"], fine["x"][:, ::2]) and torch.equal(coarse["y"], fine["y"][:, ::2])
    options = dict(num_samples=2, seed=5, solver_resolution=17, dtype="float64")
    fine, coarse = gen.generate("darcy", resolution=17, **options), gen.generate("darcy", resolution=5, **options)
    assert torch.equal(coarse["x"], fine["x"][:, ::4, ::4]) and torch.equal(coarse["y"], fine["y"][:, ::4, ::4])


def test_burgers_conserves_the_mean_and_dissipates_energy():
    """On the periodic interval d/dt integral u = 0 and d/dt integral u^2 = -2 nu integral u_x^2 <= 0."""
    data = gen.generate("burgers", resolution=64, num_samples=2, seed=1, solver_resolution=64, t=0.2, dtype="float64")
    x, y = data["x"], data["y"]
    torch.testing.assert_close(y.mean(dim=-1), x.mean(dim=-1), atol=1e-12, rtol=0)
    assert (y.pow(2).mean(dim=-1) < x.pow(2).mean(dim=-1)).all()
    assert data["metadata"]["parameters"] == {"nu": 0.1, "t": 0.2}


def test_navier_stokes_keeps_the_vorticity_mean_free():
    """w0 is mean-free and the forcing has zero mean, so the mean vorticity stays zero."""
    data = gen.generate("navier_stokes", resolution=16, num_samples=2, seed=1, solver_resolution=16, t=0.1,
                        record_every=0.05, dt=0.01, dtype="float64")
    x, y = data["x"], data["y"]
    assert x.shape == (2, 16, 16) and y.shape == (2, 2, 16, 16)
    assert x.mean(dim=(-2, -1)).abs().max() < 1e-12 and y.mean(dim=(-2, -1)).abs().max() < 1e-12
    assert not torch.allclose(y[:, 0], y[:, 1])
    assert gen.generate("navier_stokes", resolution=4, num_samples=1, solver_resolution=8, t=0.05, record_every=0.05,
                        dt=0.05, nu=1e-4)["metadata"]["parameters"]["t"] == 0.05
    assert gen.record_times(0.3, 0.1)[-1] == 0.3


def test_write_atomic_leaves_the_old_file_when_saving_fails(tmp_path):
    path = gen.write_atomic(tmp_path / "data.pt", {"x": torch.zeros(2, 3), "y": torch.zeros(2, 3)})
    before = path.read_bytes()
    with pytest.raises(Exception):
        gen.write_atomic(path, {"x": lambda: None})  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data.pt"]


@pytest.mark.parametrize(
    "equation, extra, match",
    [
        ("burgers", ["--nu", "-0.1"], "nu must be a finite positive number"),
        ("burgers", ["--resolution", "24"], "resolution 24 must divide"),
        ("darcy", ["--nu", "0.1"], "nu does not apply to darcy"),
        ("darcy", ["--resolution", "6"], "must divide solver_resolution - 1"),
        ("navier_stokes", ["--record-every", "0.03"], "whole multiple of record_every"),
        ("navier_stokes", ["--dt", "nan"], "dt must be a finite positive number"),
    ],
)
def test_bad_options_are_named(tmp_path, capsys, equation, extra, match):
    with pytest.raises(SystemExit):
        _run(equation, tmp_path, *extra)
    assert match in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_bad_arguments_of_generate():
    with pytest.raises(ValueError, match="num_samples"):
        gen.generate("darcy", num_samples=0)
    with pytest.raises(ValueError, match="equation"):
        gen.generate("heat")
    with pytest.raises(ValueError, match="split"):
        gen.generate("darcy", split="validation")
    with pytest.raises(ValueError, match="device"):
        gen.generate("burgers", device="nonsense")


@pytest.mark.parametrize("equation", ["burgers", "navier_stokes"])
def test_a_list_of_viscosities_is_drawn_per_sample(equation):
    """Each sample draws its nu from the list; its input is the one the seed gives for a fixed nu, and its
    output is the solution at its own nu (checked against solving each sample alone at that nu)."""
    options = {"burgers": dict(resolution=16, solver_resolution=64, t=0.1),
               "navier_stokes": dict(resolution=8, solver_resolution=16, t=0.1, record_every=0.05, dt=0.01)}[equation]
    values = [0.01, 0.1, 1.0]
    varied = gen.generate(equation, num_samples=6, seed=3, batch_size=3, dtype="float64", nu=values, **options)
    fixed = gen.generate(equation, num_samples=6, seed=3, batch_size=3, dtype="float64", nu=0.1, **options)
    nu = varied["pde_parameters"]
    assert nu.shape == (6, 1) and set(nu.flatten().tolist()) <= set(values)
    assert len(set(nu.flatten().tolist())) > 1  # 6 draws from 3 values: the seed gives more than one
    assert varied["metadata"]["pde_parameters"] == ["nu"] and "pde_parameters" not in fixed
    assert torch.equal(varied["x"], fixed["x"])
    for i in range(6):
        alone = gen.generate(equation, num_samples=i + 1, seed=3, batch_size=1, dtype="float64",
                             nu=float(nu[i, 0]), **options)
        assert torch.allclose(varied["y"][i], alone["y"][i], rtol=1e-6, atol=1e-9)


def test_only_the_viscosity_may_be_a_list(tmp_path, capsys):
    with pytest.raises(ValueError, match="t of burgers cannot vary per sample"):
        gen.generate("burgers", resolution=16, solver_resolution=64, num_samples=1, t=[0.1, 0.2])
    with pytest.raises(ValueError, match="non-empty list"):
        gen.generate("burgers", resolution=16, solver_resolution=64, num_samples=1, nu=[0.1, -1.0])
    with pytest.raises(ValueError, match="high of darcy cannot vary per sample"):
        gen.generate("darcy", resolution=9, solver_resolution=17, num_samples=1, high=[12.0, 10.0])
    written = _run("burgers", tmp_path, "--nu", "0.05", "0.2")
    tensors, metadata = read_pt_with_metadata(written[0])
    assert tensors["pde_parameters"].shape == (3, 1) and metadata["parameters"]["nu"] == [0.05, 0.2]
