"""Shallow water on the sphere: exact steady solutions (Williamson et al. 1992 test case 2, and a tilted
solid-body rotation on a non-rotating sphere, which exercises the m != 0 modes), conservation of mass,
symmetry under rotation about the pole, agreement with torch-harmonics' own solver, determinism from
the seed, the ``generate`` round trip at a tiny size, and bad input."""

import json
import math
import sys

import numpy as np
import pytest
import torch

from datasets.pde import generate as gen
from datasets.pde import shallow_water as sw
from datasets.pde.neuraloperator_files import read_pt_with_metadata

HOUR = 3600.0


def latitude_sine_cosine_longitude(nlat, nlon):
    """``sin(latitude) [nlat, 1]``, ``cos(latitude) [nlat, 1]``, ``longitude [1, nlon]`` of the data grid,
    written out here independently of the module."""
    colatitude = np.pi * np.arange(nlat) / (nlat - 1)
    longitude = 2 * np.pi * np.arange(nlon) / nlon
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return as_tensor(np.cos(colatitude)[:, None]), as_tensor(np.sin(colatitude)[:, None]), as_tensor(longitude[None])


def sphere_mean(field):
    """Mean over the sphere of ``[..., nlat, nlon]`` by Clenshaw-Curtis weights (numpy, not the solver's)."""
    nlat = field.shape[-2]
    n = nlat - 1
    theta = np.pi * np.arange(nlat) / n
    # Clenshaw-Curtis weights of int_0^pi g(theta) sin(theta) dtheta on theta_i = pi i / n (Trefethen,
    # "Spectral Methods in MATLAB", clencurt): w_i = c_i / n (1 - sum_k b_k cos(2 k theta_i) / (4 k^2 - 1))
    k = np.arange(1, n // 2 + 1)
    b = np.where(2 * k == n, 1.0, 2.0)
    weights = (1.0 - (b * np.cos(2 * np.outer(theta, k)) / (4 * k * k - 1)).sum(axis=1)) * 2.0 / n
    weights[[0, -1]] *= 0.5  # c_0 = c_n = 1
    assert abs(weights.sum() - 2.0) < 1e-13
    return (field.mean(dim=-1) * torch.from_numpy(weights)).sum(dim=-1) / 2.0


def vorticity0(sine, u0, a, nlat, nlon):
    return 2 * u0 * sine.expand(nlat, nlon)[None] / a


def test_williamson_case_2_stays_steady():
    """u = u0 cos(lat), Phi = g h0 - (a Omega u0 + u0^2/2) sin^2(lat) on the rotating Earth is an exact
    steady solution; two hours (48 steps) later it is unchanged but for the hyperdiffusion of l = 1."""
    nlat, nlon = 17, 32
    sine, cosine, _ = latitude_sine_cosine_longitude(nlat, nlon)
    u0, gh0, a, omega = 2 * math.pi * 6.37122e6 / (12 * 86400), 2.94e4, 6.37122e6, 7.292e-5
    phi = (gh0 - (a * omega * u0 + 0.5 * u0 ** 2) * sine ** 2).expand(nlat, nlon)
    vorticity = (2 * u0 * sine / a).expand(nlat, nlon)
    state0 = sw.from_physical(phi[None], vorticity[None], torch.zeros(1, nlat, nlon, dtype=torch.float64))
    torch.testing.assert_close(state0, sw.williamson_steady_zonal_flow(nlat, nlon), rtol=0, atol=1e-13)
    state = sw.simulate(state0, 2 * HOUR)
    scale = state0.abs().amax(dim=(-2, -1))  # per channel (divergence: that of vorticity)
    scale[:, 2] = scale[:, 1]
    error = ((state - state0).abs().amax(dim=(-2, -1)) / scale).max().item()
    # hyperdiffusion alone damps the l = 1 vorticity by 2 h / 2 h * (2 / 30)^4 = 2.0e-5 relative
    assert 1.5e-5 < error < 3e-5, error
    # and without hyperdiffusion it is steady to round-off: the Coriolis, curvature and pressure terms
    # cancel exactly
    state = sw.simulate(state0, 2 * HOUR, hyperdiffusion_time=math.inf)
    error = ((state - state0).abs().amax(dim=(-2, -1)) / scale).max().item()
    assert error < 1e-12, error


def test_tilted_solid_body_rotation_on_a_non_rotating_sphere_is_steady():
    """Without rotation (Omega = 0) a solid-body rotation about any axis is steady with
    Phi = g h0 - u0^2/2 sin^2(lat'), zeta = 2 u0 sin(lat') / a (lat' the latitude about the tilted
    axis). A tilt alpha puts the flow into orders m = 0 and 1 and the products into m <= 2."""
    nlat, nlon, alpha = 17, 32, 0.7
    planet = sw.Planet(omega=0.0)
    sine, cosine, longitude = latitude_sine_cosine_longitude(nlat, nlon)
    tilted = sine * math.cos(alpha) - torch.cos(longitude) * cosine * math.sin(alpha)
    u0, gh0, a = 40.0, 9.80616 * 1e4, planet.radius
    phi = gh0 - 0.5 * u0 ** 2 * tilted ** 2
    vorticity = 2 * u0 * tilted / a
    state0 = sw.from_physical(phi[None], vorticity[None], torch.zeros(1, nlat, nlon, dtype=torch.float64), planet)
    assert state0[0, 1].std(dim=-1).max() > 0.1 * state0[0, 1].abs().max()  # really not zonal
    state = sw.simulate(state0, 2 * HOUR, planet=planet, hyperdiffusion_time=math.inf)
    scale = state0.abs().amax(dim=(-2, -1))
    scale[:, 2] = scale[:, 1]
    error = ((state - state0).abs().amax(dim=(-2, -1)) / scale).max().item()
    assert error < 1e-12, error
    # and with the Earth's rotation the same state is not steady: the test can fail
    moved = sw.simulate(sw.from_physical(phi[None], vorticity[None], torch.zeros_like(phi)[None]), HOUR)
    assert ((moved - sw.from_physical(phi[None], vorticity[None], torch.zeros_like(phi)[None])).abs().max() > 0.01)


def test_mass_is_conserved_and_the_flow_changes():
    """d/dt int Phi = -int div(Phi u) = 0 (and hyperdiffusion leaves Phi alone): the mean height
    anomaly is unchanged to round-off while the fields change by O(1); the means of vorticity and
    divergence stay zero (they are a curl and a divergence)."""
    nlat, nlon = 17, 32
    x = sw.random_initial_condition(2, nlat, nlon, torch.Generator().manual_seed(3))
    y = sw.simulate(x, 2 * HOUR)
    assert ((y - x).norm() / x.norm()).item() > 0.5
    mean_x, mean_y = sphere_mean(x), sphere_mean(y)
    assert mean_x[:, 0].abs().min() > 1e-4  # a random mean height anomaly
    # the solver carries Phi = g (H + A h'): round-off of H / A = 83 units of h'; measured 1.7e-14
    torch.testing.assert_close(mean_y[:, 0], mean_x[:, 0], rtol=0, atol=2e-13)
    assert mean_x[:, 1:].abs().max() < 1e-14 and mean_y[:, 1:].abs().max() < 1e-14


def test_rotation_about_the_pole_commutes_with_the_solver():
    """The equations are invariant under rotations about the Earth's axis: rolling the initial state
    by k longitudes rolls the solution by k longitudes."""
    x = sw.random_initial_condition(1, 17, 32, torch.Generator().manual_seed(4))
    y = sw.simulate(x, HOUR)
    torch.testing.assert_close(sw.simulate(torch.roll(x, 5, dims=-1), HOUR), torch.roll(y, 5, dims=-1),
                               rtol=0, atol=1e-12)


def test_agrees_with_torch_harmonics_shallow_water_solver():
    """Same random draw after seeding torch's global generator, and the same state after 24 steps of
    torch-harmonics' ShallowWaterSolver.timestep (float64) as from our batched solver: to round-off
    once its vector transform gets our float64 1 / (l (l + 1)), to ~1e-8 as it ships."""
    from torch_harmonics.examples import ShallowWaterSolver

    nlat, nlon = 17, 32
    lmax = sw.band_limit(nlat)
    solver = ShallowWaterSolver(nlat, nlon, 150.0, lmax=lmax, mmax=lmax, grid="equiangular")
    with torch.random.fork_rng():
        torch.manual_seed(11)
        spectrum = solver.random_initial_condition(mach=0.2)
    spectrum[1:, 0, 0] = 0  # torch-harmonics draws a mean vorticity and divergence; we do not
    theirs_x = sw.from_physical(*solver.spec2grid(spectrum)[None].unbind(1))
    as_shipped = sw.from_physical(*solver.spec2grid(solver.timestep(spectrum, 24))[None].unbind(1))
    degree = torch.arange(lmax, dtype=torch.float64)
    exact = torch.where(degree > 0, 1.0 / (degree * (degree + 1)).clamp(min=1), 1.0)
    with torch.no_grad():
        solver.vsht.weights *= (exact / exact.float().double())[:, None]
    theirs_y = sw.from_physical(*solver.spec2grid(solver.timestep(spectrum, 24))[None].unbind(1))
    x = sw.random_initial_condition(1, nlat, nlon, torch.Generator().manual_seed(11))
    torch.testing.assert_close(x, theirs_x, rtol=0, atol=1e-13)
    y = sw.simulate(x, HOUR)
    torch.testing.assert_close(y, theirs_y, rtol=0, atol=1e-12)
    difference = (y - as_shipped).abs().max().item()
    assert 1e-12 < difference < 1e-6, difference  # measured 1.3e-9
    assert (y - x).abs().max() > 0.1  # an hour changes the state


def test_random_states_are_determined_by_the_generator():
    draw = lambda seed, batch=2: sw.random_initial_condition(batch, 9, 16, torch.Generator().manual_seed(seed))  # noqa: E731
    first = draw(1)
    assert first.shape == (2, 3, 9, 16) and first.dtype == torch.float64
    assert torch.equal(first, draw(1)) and not torch.allclose(first, draw(2))
    generator = torch.Generator().manual_seed(1)  # the batch is the samples drawn one after another
    one_by_one = torch.cat([sw.random_initial_condition(1, 9, 16, generator) for _ in range(2)])
    assert torch.equal(first, one_by_one)
    # the three channels share one spectrum at Mach 0.2; the wind scales with mach
    slow = sw.random_initial_condition(2, 9, 16, torch.Generator().manual_seed(1), mach=0.1)
    torch.testing.assert_close(slow[:, 0], first[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(slow[:, 1:], 0.5 * first[:, 1:], rtol=1e-14, atol=0)
    together = sw.simulate(first, 600.0)
    torch.testing.assert_close(sw.simulate(first[1:], 600.0), together[1:], rtol=0, atol=1e-13)


def _run(out, *extra, seed=7):
    return gen.main(["shallow_water", "--train", "3", "--test", "2", "--seed", str(seed), "--out", str(out),
                     "--resolution", "9", "--solver-resolution", "17", "--t", "600", "--batch-size", "2",
                     "--no-progress", *extra])


def test_generate_round_trip(tmp_path):
    written = _run(tmp_path / "a")
    assert [path.name for path in written] == ["shallow_water_train_9.pt", "shallow_water_test_9.pt"]
    for path, count, split in zip(written, (3, 2), ("train", "test")):
        tensors, metadata = read_pt_with_metadata(path)
        assert tensors["x"].shape == tensors["y"].shape == (count, 3, 9, 16)
        assert tensors["x"].dtype == torch.float32
        assert json.loads(json.dumps(metadata)) == metadata
        assert metadata["equation"] == "shallow_water" and metadata["split"] == split and metadata["grid"] == "sphere"
        assert metadata["parameters"] == {"t": 600.0, "dt": 150.0, "mach": 0.2}
        assert metadata["solver"].startswith("datasets.pde.shallow_water") and "Bonev" in metadata["reference"]
    assert [a.read_bytes() for a in written] == [b.read_bytes() for b in _run(tmp_path / "b")]
    # x and y are the solver's 17 x 32 states at every second latitude and longitude
    options = dict(num_samples=2, seed=7, solver_resolution=17, t=600.0, dtype="float64")
    fine, coarse = gen.generate("shallow_water", resolution=17, **options), gen.generate("shallow_water", 9, **options)
    assert fine["x"].shape == (2, 3, 17, 32)
    for key in ("x", "y"):
        assert torch.equal(coarse[key], fine[key][..., ::2, ::2])
    x = sw.random_initial_condition(1, 17, 32, gen.sample_generator(7, "train", 1))
    torch.testing.assert_close(fine["x"][1:2], x, rtol=0, atol=0)
    torch.testing.assert_close(fine["y"][1:2], sw.simulate(x, 600.0), rtol=0, atol=1e-13)


@pytest.mark.parametrize("extra, match", [
    (["--resolution", "6"], "must divide solver_resolution - 1"),
    (["--mach", "-1"], "mach must be a finite positive number"),
    (["--nu", "0.1"], "nu does not apply to shallow_water"),
])
def test_bad_generate_options_are_named(tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit):
        _run(tmp_path, *extra)
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("call, match", [
    (lambda x: sw.simulate(x[0], HOUR), "state0 must have shape"),
    (lambda x: sw.simulate(x[:, :2], HOUR), "state0 must have shape"),
    (lambda x: sw.simulate(x.to(torch.int64), HOUR), "state0 must be a real"),
    (lambda x: sw.simulate(x * float("nan"), HOUR), "NaN"),
    (lambda x: sw.simulate(x[..., :3], HOUR), "nlon = 3"),
    (lambda x: sw.simulate(x, -1.0), "t must be >= 0"),
    (lambda x: sw.simulate(x, float("inf")), "t must be a finite"),
    (lambda x: sw.simulate(x, HOUR, dt_solver=0.0), "dt_solver must be positive"),
    (lambda x: sw.simulate(x, HOUR, hyperdiffusion_time=0.0), "hyperdiffusion_time"),
    (lambda x: sw.simulate(x, HOUR, planet=sw.Planet(radius=-1.0)), "planet.radius"),
    (lambda x: sw.random_initial_condition(0, 9, 16, torch.Generator()), "batch"),
    (lambda x: sw.random_initial_condition(1, 2, 16, torch.Generator()), "nlat must be >= 3"),
    (lambda x: sw.random_initial_condition(1, 9, 16, 3), "generator"),
    (lambda x: sw.random_initial_condition(1, 9, 16, torch.Generator(), mach=0.0), "mach"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.zeros(1, 3, 9, 16, dtype=torch.float64))


def test_missing_torch_harmonics_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_harmonics", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install --no-build-isolation torch-harmonics==0.7.4"):
        sw.simulate(torch.zeros(1, 3, 11, 20, dtype=torch.float64), HOUR)
