"""The peer side of ``bench/md.py``: NVE molecular dynamics with mace-torch's ``MACECalculator``.

Runs under ``.venv-mace/bin/python`` (mace-torch 0.3.16 with its e3nn 0.4.4; install with
``bench/peers/install_mace_torch.sh``), never under equizoo's environment. It builds a
``ScaleShiftMACE`` with random (seeded) weights of the sizes given as arguments (the same model as
``mace_torch_step.py`` builds), saves it with ``torch.save`` into a temporary folder (mace-torch's own
model format), loads it back through ``MACECalculator(model_paths=..., default_dtype=...)`` as a user
would, reads the starting structure from an extxyz file and times :func:`run_md` on it. It prints one
JSON line: steps, times, energy drift, edge count, versions.

    .venv-mace/bin/python bench/peers/mace_torch_md.py --xyz start.xyz --channels 32 --avg-num-neighbors 40 \\
        --e0s '{"29": -29.0}'

The module's top level uses the standard library only: ``bench/md.py`` imports :func:`run_md` from
here, so that both calculators run the same MD protocol, timed by the same loop
(:func:`mace_torch_step.median_ms`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mace_torch_step import (  # noqa: E402  (standard library only)
    add_model_arguments, build_scale_shift_mace, median_ms, peak_rss_mib, start)


def run_md(atoms, calculator, *, timestep_fs: float, temperature_K: float, seed: int, warmup: int,
           min_steps: int, max_steps: int, target_seconds: float) -> dict:
    """Velocity Verlet NVE on ``atoms`` with ``calculator``; the wall time of each timed step.

    Velocities from a Maxwell-Boltzmann distribution at ``temperature_K`` (numpy generator seeded
    with ``seed``). The first energy and force evaluation and ``warmup`` steps are not timed; then
    steps are timed one by one (``dyn.run(1)``, one force call each) until ``max_steps``, or once at
    least ``min_steps`` took ``target_seconds`` together. Returns steps, seconds, steps/s, µs per atom
    and step, and the total energy before the first and after the last step (its drift per atom).
    """
    import numpy as np
    from ase import units
    from ase.md.verlet import VelocityVerlet

    try:  # ASE >= 3.29
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

    atoms.calc = calculator
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    started = time.perf_counter()
    energy_start = float(atoms.get_total_energy())  # the first evaluation: one-time costs, untimed
    first_call_s = time.perf_counter() - started
    median, times_ms = median_ms(lambda: dyn.run(1), warmup, min_steps, max_steps, target_seconds)
    energy_end = float(atoms.get_total_energy())
    seconds = sum(times_ms) / 1e3
    steps, num_atoms = len(times_ms), len(atoms)
    return {
        "num_atoms": num_atoms, "steps": steps, "total_steps": int(dyn.nsteps), "seconds": seconds,
        "steps_per_s": steps / seconds, "us_per_atom_step": 1e6 * seconds / (steps * num_atoms),
        "median_step_ms": median, "times_ms": times_ms, "first_call_s": first_call_s,
        "energy_start": energy_start, "energy_end": energy_end,
        "drift_mev_per_atom": 1e3 * (energy_end - energy_start) / num_atoms,
        "temperature_end_K": float(atoms.get_temperature()),
        "finite": bool(math.isfinite(energy_end) and np.isfinite(atoms.get_forces()).all()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xyz", type=Path, required=True, help="extxyz with the starting structure (first frame)")
    add_model_arguments(parser, dtype="float64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature-K", type=float, default=300.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--target-seconds", type=float, default=15.0)
    args = parser.parse_args()

    z_table, e0s = start(args)
    import ase.io
    import e3nn
    import mace
    import torch
    from mace.calculators import MACECalculator
    from mace.data.neighborhood import get_neighborhood

    model = build_scale_shift_mace(args, z_table, e0s)  # the model of mace_torch_step.py
    num_parameters = sum(p.numel() for p in model.parameters())

    atoms = ase.io.read(args.xyz, index=0)
    atoms.calc = None
    edges = get_neighborhood(atoms.positions, args.r_max, pbc=tuple(bool(p) for p in atoms.pbc),
                             cell=atoms.cell.array.copy())[0]
    with tempfile.TemporaryDirectory(prefix="equizoo-mace-md-") as folder:
        path = Path(folder) / "model.model"
        torch.save(model, path)
        started = time.perf_counter()
        calculator = MACECalculator(model_paths=str(path), device=args.device, default_dtype=args.dtype)
        load_seconds = time.perf_counter() - started
    result = run_md(atoms, calculator, timestep_fs=args.timestep_fs, temperature_K=args.temperature_K,
                    seed=args.seed, warmup=args.warmup, min_steps=args.min_steps, max_steps=args.max_steps,
                    target_seconds=args.target_seconds)
    print(json.dumps({
        "side": "mace-torch", **result,
        "num_edges": int(edges.shape[1]), "num_parameters": num_parameters, "load_s": load_seconds,
        "model_dtype": str(next(calculator.models[0].parameters()).dtype),
        "peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "e3nn": e3nn.__version__, "ase": ase.__version__,
                     "mace-torch": getattr(mace, "__version__", None)},
    }))


if __name__ == "__main__":
    main()
