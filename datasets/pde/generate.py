"""Make the FNO benchmark data with our own solvers: ``python -m datasets.pde.generate EQUATION ...``.

    python -m datasets.pde.generate darcy --resolution 85 --train 1000 --test 100 --seed 0 --out data/pde
    python -m datasets.pde.generate burgers --resolution 1024 --train 1000 --test 100 --seed 0 --out data/pde
    python -m datasets.pde.generate navier_stokes --resolution 64 --train 1000 --test 200 --seed 0 --out data/pde
    python -m datasets.pde.generate shallow_water --resolution 33 --train 512 --test 64 --seed 0 --out data/pde

For each sample the input function is drawn from the Gaussian random field of the FNO protocol
(``datasets.pde.random_fields``), the PDE is solved at ``--solver-resolution`` and both input and
solution are subsampled to ``--resolution`` (Li et al., "Fourier Neural Operator for Parametric
PDEs", ICLR 2021, sec. 5 and appendix A):

    burgers        x = u0 [N, s] ~ N(0, 625 (-Delta + 25 I)^-2) on [0, 1) periodic,
                   y = u(., t) [N, s] of u_t + (u^2/2)_x = nu u_xx (nu = 0.1, t = 1),
                   solved on 8192 points (``datasets.pde.burgers``), s = 8192 / 2^k.
    darcy          x = a [N, s, s] = psi(mu), mu ~ N(0, (-Delta + 9 I)^-2) (Neumann), psi in {12, 3},
                   y = u [N, s, s] of -div(a grad u) = 1, u = 0 on the boundary, solved on 421 x 421
                   nodes (``datasets.pde.darcy``), s = 85, 141, 211, 421.
    navier_stokes  x = w0 [N, s, s] ~ N(0, 7^3 (-Delta + 49 I)^-2.5) on [0, 1)^2 periodic (sigma = 7^1.5
                   as FNO's code), y = w at t = 1, 2, ..., T [N, T, s, s] of the vorticity equation
                   w_t + u.grad w = nu Delta w + f, f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)), nu = 1e-3
                   (T = 50; 1e-4 -> 30, 1e-5 -> 20 when --t is not given), dt = 1e-4, solved on
                   256 x 256 (``datasets.pde.navier_stokes``, ``--scheme heun``; ``euler`` is FNO's
                   first-order update), s = 64. The FNO models map the first 10 snapshots to the rest.
    shallow_water  (the SFNO data: Bonev et al., "Spherical Fourier Neural Operators", ICML 2023, and
                   torch-harmonics' PdeDataset) x = a random state [N, 3, s, 2 (s - 1)] (height
                   anomaly, vorticity, divergence; ``shallow_water.random_initial_condition``, Mach
                   0.2), y = the state t = 3600 s later, rotating shallow-water equations on the Earth,
                   spectral transform method, Adams-Bashforth 3 with 150 s steps
                   (``datasets.pde.shallow_water``). Grid: equiangular with both poles, s rows
                   (colatitude pi i / (s - 1)) and 2 (s - 1) longitudes; resolution = s = nlat, default
                   257 (the paper's 256 x 512 grid is torch-harmonics' nlon = 2 nlat; ours keeps
                   (s - 1) / (r - 1) coarsenings exact). The solver keeps degrees l < ceil(n / 3) of its
                   n rows; a grid coarser than 2 ceil(n / 3) - 1 rows samples them with aliasing.

Files: ``OUT/<equation>_train_<s>.pt`` and ``OUT/<equation>_test_<s>.pt``, each a ``torch.save`` dict
``{"x": Tensor, "y": Tensor, "metadata": dict}`` (the keys of neuraloperator's Darcy files, so
``datasets.pde.neuraloperator_files.read_neuraloperator_pt`` reads both), written atomically (a
temporary file in ``OUT`` moved into place with ``os.replace``). ``metadata`` holds only plain JSON
types: the equation, its parameters, the seed, the resolutions, the solver and the random field.
A viscosity given as several values (``--nu 0.05 0.1 0.2``; Burgers and Navier-Stokes) is drawn per
sample (``datasets.pde.varied_parameters``, CAPE's setting); the file then also holds
``"pde_parameters": [N, 1]``, each sample's value, named in ``metadata["pde_parameters"]``.

Determinism: sample ``i`` of split ``s`` (train 0, test 1) draws its input from its own
``torch.Generator`` seeded by ``numpy.random.SeedSequence([seed, s, i])``, so train and test never
share draws and a sample's input does not depend on the batch size. Samples are solved in batches
of ``--batch-size``; the Burgers time step is the CFL bound of the whole batch, so its outputs are
reproducible for a given (seed, batch size), bit for bit on the same machine and library versions.

Cost (2 shared CPU cores): Darcy about 1 s per sample at 421 x 421 (one SuperLU factorisation);
Burgers at 8192 points to t = 1 takes minutes per batch on the CPU and Navier-Stokes at 256 x 256
(5e5 steps to T = 50) is a GPU job: ``--device cuda`` runs those two solvers there (the inputs are
still drawn on the CPU, so the seed gives the same inputs on any device). Shallow water on 33 x 64
(24 steps of 150 s per sample, batches of 64): about 7 s for 576 samples on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.generators.progress import progress_bar
from datasets.pde import burgers, darcy, navier_stokes, shallow_water, varied_parameters
from datasets.pde.grids import subsample_grid
from datasets.pde.random_fields import (
    FNO_BURGERS,
    FNO_DARCY,
    FNO_NAVIER_STOKES,
    neumann_random_field,
    periodic_random_field,
    threshold_field,
)

SPLITS = {"train": 0, "test": 1}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Protocol:
    """Defaults of one equation (the FNO paper's) and the function that makes a batch of samples.

    ``make(generators, params) -> (x, y)`` (or ``(x, y, pde_parameters [B, P])`` when a parameter is drawn
    per sample) draws one input per generator at
    ``params["solver_resolution"]`` (on the CPU), solves (Burgers and Navier-Stokes on
    ``params["device"]``), and returns both on the CPU at the solver resolution (float64).
    ``grid`` is ``"periodic"`` (points ``j / n``, subsampled by ``n / s``), ``"nodes"`` (``j / (n-1)``
    with the boundary, subsampled by ``(n - 1) / (s - 1)``) or ``"sphere"`` (``n`` latitudes with both
    poles and ``2 (n - 1)`` longitudes, the last two axes of ``[B, channels, n, 2 (n - 1)]``, both
    subsampled by ``(n - 1) / (s - 1)``).
    """

    solver_resolution: int
    resolution: int
    grid: str
    parameters: dict  # default values of the equation's own options (nu, t, ...)
    make: Callable[[list[torch.Generator], dict], tuple[torch.Tensor, torch.Tensor]]
    solver: str
    field: dict
    x: str
    y: str
    reference: str = "Li et al., Fourier Neural Operator for Parametric PDEs, ICLR 2021"


def _with_viscosity(generators: list[torch.Generator], params: dict, x: torch.Tensor,
                    solve: Callable[[torch.Tensor, float], torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``(x, solve(x, nu))``; with a list ``nu`` (``varied_parameters``) each sample draws its own and the
    drawn values come third, ``[B, 1]``."""
    if not varied_parameters.is_list(params["nu"]):
        return x, solve(x, params["nu"])
    nu = varied_parameters.draw(generators, params["nu"])
    return x, varied_parameters.solve_grouped(nu, solve, x), nu[:, None]


def _burgers(generators: list[torch.Generator], params: dict) -> tuple[torch.Tensor, ...]:
    n = params["solver_resolution"]
    u0 = torch.cat([periodic_random_field(1, n, generator=g, **FNO_BURGERS) for g in generators])
    return _with_viscosity(generators, params, u0, lambda u, nu: burgers.simulate(
        u.to(params["device"]), nu=nu, t=params["t"]).cpu())


def _darcy(generators: list[torch.Generator], params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    n = params["solver_resolution"]
    mu = torch.cat([neumann_random_field(1, n, grid="vertex", generator=g, **FNO_DARCY) for g in generators])
    a = threshold_field(mu, high=params["high"], low=params["low"])
    return a, darcy.solve(a, params["f"], face_mean=params["face_mean"])  # scipy: always on the CPU


def _navier_stokes(generators: list[torch.Generator], params: dict) -> tuple[torch.Tensor, ...]:
    """x = w0 ``[B, n, n]``, y = w at ``record_every, 2 record_every, ..., t``: ``[B, T, n, n]``."""
    n = params["solver_resolution"]
    w0 = torch.cat([periodic_random_field(1, n, generator=g, **FNO_NAVIER_STOKES) for g in generators])
    return _with_viscosity(generators, params, w0, lambda w, nu: navier_stokes.simulate(
        w.to(params["device"]), nu=nu, t=params["t"], forcing=navier_stokes.fno_forcing(n), dt=params["dt"],
        record_times=record_times(params["t"], params["record_every"]), scheme=params["scheme"]).cpu())


def _shallow_water(generators: list[torch.Generator], params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """x = a random state ``[B, 3, n, 2 (n - 1)]``, y = the state ``params["t"]`` seconds later."""
    n = params["solver_resolution"]
    nlon = shallow_water.longitudes_per_latitude(n)
    x = torch.cat([shallow_water.random_initial_condition(1, n, nlon, g, mach=params["mach"]) for g in generators])
    return x, shallow_water.simulate(x.to(params["device"]), params["t"], dt_solver=params["dt"]).cpu()


def record_times(t: float, every: float) -> list[float]:
    """``every, 2 every, ..., t`` (as ``t k / count``, so the last is ``t`` exactly); ``t / every`` must be
    a whole number (to 1e-9)."""
    count = round(t / every)
    if count < 1 or abs(count * every - t) > 1e-9 * max(1.0, t):
        raise ValueError(f"t = {t} must be a whole multiple of record_every = {every}")
    return [t * k / count for k in range(1, count + 1)]


PROTOCOLS: dict[str, Protocol] = {
    "burgers": Protocol(
        solver_resolution=8192, resolution=1024, grid="periodic", parameters={"nu": 0.1, "t": 1.0}, make=_burgers,
        solver="datasets.pde.burgers.simulate: Fourier pseudo-spectral (2/3 rule), ETDRK4, CFL time step",
        field={"law": "N(0, sigma^2 (-Delta + tau^2 I)^-alpha) on the unit circle", **FNO_BURGERS},
        x="u0 at x_j = j / s", y="u(x_j, t)"),
    "darcy": Protocol(
        solver_resolution=darcy.FNO_SOLVER_RESOLUTION, resolution=85, grid="nodes",
        parameters={"face_mean": "harmonic", "high": 12.0, "low": 3.0, "f": 1.0}, make=_darcy,
        solver="datasets.pde.darcy.solve: 5-point finite differences, sparse LU (SuperLU)",
        field={"law": "a = psi(mu), mu ~ N(0, sigma^2 (-Delta + tau^2 I)^-alpha), zero Neumann, vertex grid",
               **FNO_DARCY},
        x="coefficient a at (i, j) / (s - 1)", y="u at (i, j) / (s - 1), zero on the boundary"),
    "navier_stokes": Protocol(
        solver_resolution=256, resolution=64, grid="periodic",
        parameters={"nu": 1e-3, "t": None, "dt": 1e-4, "record_every": 1.0, "scheme": "heun"}, make=_navier_stokes,
        solver="datasets.pde.navier_stokes.simulate: Fourier pseudo-spectral (2/3 rule), Crank-Nicolson "
               "diffusion, explicit advection; forcing 0.1 (sin 2pi(x+y) + cos 2pi(x+y))",
        field={"law": "N(0, sigma^2 (-Delta + tau^2 I)^-alpha) on the unit torus", **FNO_NAVIER_STOKES},
        x="vorticity w0 at (i, j) / s", y="vorticity at t = record_every, 2 record_every, ..., t: [T, s, s]"),
    "shallow_water": Protocol(
        solver_resolution=257, resolution=257, grid="sphere", parameters={"t": 3600.0, "dt": 150.0, "mach": 0.2},
        make=_shallow_water,
        solver="datasets.pde.shallow_water.simulate: rotating shallow-water equations (vorticity-divergence form) "
               "on the Earth, spectral transform method (torch-harmonics SHT, degrees l < ceil(n / 3)), "
               "Adams-Bashforth 3 with hyperdiffusion (torch-harmonics' ShallowWaterSolver)",
        field={"law": "spherical-harmonic coefficients c_lm ~ sqrt(4 pi / (120 * 121)) CN(0, 1), l < ceil(n / 3), "
                      "m <= l; height anomaly c^Phi, vorticity and divergence (mach / 0.2) c (torch-harmonics' "
                      "random_initial_condition)", "planet": dict(vars(shallow_water.EARTH))},
        x="state [3 (height anomaly (Phi - g H) / (g A), vorticity zeta a / U, divergence delta a / U), s, 2 (s - 1)] "
          "at colatitude pi i / (s - 1), longitude pi j / (s - 1); A = 120 m, H = 10 km, U = 0.2 sqrt(g H)",
        y="the state t seconds later (same layout)",
        reference="Bonev et al., Spherical Fourier Neural Operators: Learning Stable Dynamics on the Sphere, "
                  "ICML 2023"),
}


def sample_generator(seed: int, split: str, index: int) -> torch.Generator:
    """The generator of sample ``index`` of ``split``: seeded by ``SeedSequence([seed, split, index])``."""
    state = np.random.SeedSequence([seed, SPLITS[split], index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _check_options(equation: str, resolution: int, solver_resolution: int, num_samples: int, batch_size: int,
                   parameters: dict) -> None:
    protocol = PROTOCOLS[equation]
    for name, value, minimum in (("resolution", resolution, 2), ("solver_resolution", solver_resolution, 3),
                                 ("num_samples", num_samples, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if protocol.grid == "periodic" and solver_resolution % resolution != 0:
        raise ValueError(f"resolution {resolution} must divide solver_resolution {solver_resolution}")
    if protocol.grid == "nodes" and (solver_resolution - 1) % (resolution - 1) != 0:
        raise ValueError(f"resolution - 1 = {resolution - 1} must divide solver_resolution - 1 = "
                         f"{solver_resolution - 1} (grids with the boundary nodes)")
    if protocol.grid == "sphere":
        if resolution < 3:
            raise ValueError(f"resolution (latitudes, both poles included) must be >= 3, got {resolution}")
        if (solver_resolution - 1) % (resolution - 1) != 0:
            raise ValueError(f"resolution - 1 = {resolution - 1} must divide solver_resolution - 1 = "
                             f"{solver_resolution - 1} (latitudes with both poles; longitudes 2 (nlat - 1))")
    unknown = set(parameters) - set(protocol.parameters)
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))} does not apply to {equation} "
                         f"(its parameters: {', '.join(protocol.parameters)})")
    varied = varied_parameters.varied_names(equation, parameters)
    for name in ("nu", "t", "dt", "record_every", "mach"):
        value = parameters.get(name)
        if name in varied:
            varied_parameters.check_values(name, value)
        elif value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def generate(equation: str, resolution: int | None = None, num_samples: int = 1, seed: int = 0, split: str = "train",
             solver_resolution: int | None = None, batch_size: int = 16, dtype: str = "float32",
             device: str = "cpu", progress: bool = False, **parameters) -> dict:
    """``{"x": [num_samples, ...], "y": [num_samples, ...], "metadata": {...}}`` for one split.

    equation: ``"burgers" | "darcy" | "navier_stokes" | "shallow_water"``; resolution / solver_resolution default to
    the FNO protocol's (``PROTOCOLS``); ``parameters`` override the equation's own (``nu``, ``t``,
    ...; ``None`` values are ignored). Tensors are stored in ``dtype`` (solved in float64). ``device``
    runs the Burgers, Navier-Stokes and shallow-water solvers (e.g. ``"cuda"``); inputs are always drawn on the CPU,
    so a seed gives the same inputs on any device. Darcy always solves on the CPU (SuperLU).
    """
    if equation not in PROTOCOLS:
        raise ValueError(f"equation must be one of {', '.join(PROTOCOLS)}, got {equation!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    protocol = PROTOCOLS[equation]
    parameters = {name: value for name, value in parameters.items() if value is not None}
    resolution = protocol.resolution if resolution is None else resolution
    solver_resolution = protocol.solver_resolution if solver_resolution is None else solver_resolution
    _check_options(equation, resolution, solver_resolution, num_samples, batch_size, parameters)
    try:
        device = str(torch.device(device))
    except RuntimeError as error:
        raise ValueError(f"device: {error}") from None
    params = {**protocol.parameters, **parameters, "solver_resolution": solver_resolution, "device": device}
    if equation == "navier_stokes":
        if params["t"] is None:  # FNO's final time for its viscosity, else 50
            params["t"] = navier_stokes.FNO_PROTOCOLS.get(params["nu"], 50.0)
        record_times(params["t"], params["record_every"])  # checks t / record_every

    xs, ys, drawn = [], [], []
    with progress_bar(num_samples, f"{equation} {split}", enabled=progress) as advance:
        for start in range(0, num_samples, batch_size):
            indices = range(start, min(start + batch_size, num_samples))
            x, y, *pde_parameters = protocol.make([sample_generator(seed, split, i) for i in indices], params)
            dims = 2 if protocol.grid == "sphere" else x.ndim - 1  # sphere: [B, channels, nlat, nlon]
            xs.append(subsample_grid(x, resolution, protocol.grid, dims).to(DTYPES[dtype]).contiguous())
            ys.append(subsample_grid(y, resolution, protocol.grid, dims).to(DTYPES[dtype]).contiguous())
            drawn += pde_parameters
            advance(len(indices))
    metadata = {
        "equation": equation,
        "split": split,
        "num_samples": num_samples,
        "seed": seed,
        "resolution": resolution,
        "solver_resolution": solver_resolution,
        "grid": protocol.grid,
        "parameters": {name: value for name, value in params.items() if name not in ("solver_resolution", "device")},
        "random_field": dict(protocol.field),
        "solver": protocol.solver,
        "batch_size": batch_size,
        "device": device if equation != "darcy" else "cpu",
        "dtype": dtype,
        "x": protocol.x,
        "y": protocol.y,
        "generator": "python -m datasets.pde.generate",
        "reference": protocol.reference,
    }
    content = {"x": torch.cat(xs), "y": torch.cat(ys), "metadata": metadata}
    if drawn:  # parameters drawn per sample (varied_parameters)
        content["pde_parameters"] = torch.cat(drawn).to(DTYPES[dtype])
        metadata["pde_parameters"] = list(varied_parameters.varied_names(equation, parameters))
    return content


def write_atomic(path: str | os.PathLike, content: dict) -> Path:
    """``torch.save(content)`` to a temporary file beside ``path``, flushed, then ``os.replace``d onto it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # a file object (not a path) keeps the archive's inner folder name fixed ("archive"), so equal
        # content gives equal bytes whatever the temporary name
        with os.fdopen(handle, "wb") as stream:
            torch.save(content, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def output_path(out: str | os.PathLike, equation: str, split: str, resolution: int) -> Path:
    """``OUT/<equation>_<split>_<resolution>.pt``."""
    return Path(out) / f"{equation}_{split}_{resolution}.pt"


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m datasets.pde.generate", description=__doc__.split("\n")[0])
    parser.add_argument("equation", choices=list(PROTOCOLS))
    parser.add_argument("--resolution", type=int, default=None,
                        help="output points per side (default: burgers 1024, darcy 85, navier_stokes 64; "
                             "shallow_water: latitudes 257, longitudes 2 (nlat - 1))")
    parser.add_argument("--train", type=int, required=True, help="number of training samples")
    parser.add_argument("--test", type=int, required=True, help="number of test samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--solver-resolution", type=int, default=None,
                        help="points per side the PDE is solved on (default: burgers 8192, darcy 421, "
                             "navier_stokes 256, shallow_water 257 latitudes)")
    parser.add_argument("--nu", type=float, nargs="+", default=None,
                        help="viscosity (burgers, navier_stokes); several values: each sample draws one of them "
                             "(stored as pde_parameters)")
    parser.add_argument("--t", type=float, default=None,
                        help="final time (burgers, navier_stokes; shallow_water: lead time in seconds, default 3600)")
    parser.add_argument("--dt", type=float, default=None,
                        help="largest time step (navier_stokes: default 1e-4; shallow_water: seconds, default 150)")
    parser.add_argument("--mach", type=float, default=None,
                        help="shallow_water: wind of the random initial states, in gravity-wave speeds (default 0.2)")
    parser.add_argument("--record-every", type=float, default=None,
                        help="navier_stokes: time between recorded snapshots (default 1)")
    parser.add_argument("--scheme", choices=("heun", "euler"), default=None,
                        help="navier_stokes: time stepping (default heun; euler is FNO's update)")
    parser.add_argument("--face-mean", choices=darcy.FACE_MEANS, default=None, help="darcy: face coefficient")
    parser.add_argument("--batch-size", type=int, default=16, help="samples solved together")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="of the stored tensors")
    parser.add_argument("--device", default="cpu",
                        help="burgers, navier_stokes, shallow_water: where to solve (e.g. cuda)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    nu = args.nu[0] if args.nu is not None and len(args.nu) == 1 else args.nu
    parameters = {"nu": nu, "t": args.t, "dt": args.dt, "record_every": args.record_every, "scheme": args.scheme,
                  "face_mean": args.face_mean, "mach": args.mach}
    written = []
    for split, count in (("train", args.train), ("test", args.test)):
        start = time.perf_counter()
        try:
            content = generate(args.equation, args.resolution, count, args.seed, split, args.solver_resolution,
                               args.batch_size, args.dtype, args.device, progress=not args.no_progress,
                               **parameters)
        except ValueError as error:
            parser.error(str(error))
        path = write_atomic(output_path(args.out, args.equation, split, content["metadata"]["resolution"]), content)
        written.append(path)
        print(f"wrote {path}: x {list(content['x'].shape)}, y {list(content['y'].shape)} "
              f"({os.path.getsize(path)} bytes) in {time.perf_counter() - start:.1f} s")
    return written


if __name__ == "__main__":
    main()
