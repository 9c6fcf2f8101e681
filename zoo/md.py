"""Molecular dynamics with an equizoo potential through ASE: ``python -m zoo.md``.

    python -m zoo.md --model mace_tdn_organics --structure CH3CH2OH --steps 2000 --ensemble langevin
    python -m zoo.md --model runs/mace/<time>/model.safetensors --structure my.xyz@-1 --ensemble nve

The structure is an extxyz/any ASE-readable file (``file@index`` picks a frame, default the first) or
the name of a molecule of ASE's G2 collection (``CH3CH2OH``, ``H2O``, ``C6H6`` ...). Velocities start
from a Maxwell-Boltzmann distribution at ``--temperature`` (seeded; centre-of-mass motion removed).
Ensembles (``ase.md``):

- ``nve``: velocity Verlet (``VelocityVerlet``);
- ``langevin``: Langevin thermostat (``Langevin``, friction ``--friction`` in 1/fs);
- ``bussi``: the stochastic velocity-rescaling thermostat of Bussi, Donadio and Parrinello (2007)
  (``Bussi``, relaxation time ``--taut`` in fs).

Writes into ``--out`` (default ``runs/md/<time>``): ``trajectory.xyz`` (extxyz with energies and forces
every ``--write-every`` steps), ``md.log`` (ASE's MD log: time, energies, temperature),
``energy.png`` (potential, kinetic and total energy per atom against time, and the temperature),
and ``summary.json`` (settings, model, steps per second, µs/atom/step, the total-energy drift).
A Rich progress bar shows the steps. The total-energy drift is the slope of a least-squares line
through the total energy per atom (eV/atom/ps); it is meaningful for ``nve`` only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import ase
import ase.io
import matplotlib
import numpy as np
from ase import units
from ase.collections import g2
from ase.md import MDLogger
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md import velocitydistribution
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from zoo.calculator import Calculator

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

ENSEMBLES = ("nve", "langevin", "bussi")


def read_structure(spec: str) -> ase.Atoms:
    """``path``, ``path@index`` (any ASE-readable file) or a G2 molecule name."""
    path, _, index = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if Path(path).is_file():
        try:
            return ase.io.read(path, index=int(index) if index else 0)
        except (ValueError, IndexError) as error:
            raise ValueError(f"{spec}: cannot read frame {index or 0}: {error}") from None
    if spec in g2.names:
        return g2[spec]
    raise ValueError(f"--structure {spec!r} is neither a file nor a G2 molecule name (e.g. CH3CH2OH, H2O, C6H6)")


def make_dynamics(atoms: ase.Atoms, ensemble: str, timestep_fs: float, temperature: float, friction: float,
                  taut_fs: float, seed: int):
    """The ``ase.md`` integrator of ``ensemble``."""
    rng = np.random.default_rng(seed)
    timestep = timestep_fs * units.fs
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=timestep)
    if ensemble == "langevin":
        return Langevin(atoms, timestep=timestep, temperature_K=temperature, friction=friction / units.fs, rng=rng)
    if ensemble == "bussi":
        return Bussi(atoms, timestep=timestep, temperature_K=temperature, taut=taut_fs * units.fs, rng=rng)
    raise ValueError(f"ensemble {ensemble!r}; valid: {', '.join(ENSEMBLES)}")


def energy_drift(times_ps: np.ndarray, total_per_atom: np.ndarray) -> float:
    """Slope (eV/atom/ps) of the least-squares line through the total energy per atom."""
    if len(times_ps) < 2:
        return 0.0
    return float(np.polyfit(times_ps, total_per_atom, 1)[0])


def run_md(atoms: ase.Atoms, steps: int, ensemble: str = "nve", timestep_fs: float = 0.5,
           temperature: float = 300.0, friction: float = 0.01, taut_fs: float = 100.0, seed: int = 0,
           out: Optional[Path] = None, write_every: int = 10, log_every: int = 10,
           progress: bool = True) -> dict[str, Any]:
    """Run ``steps`` of MD on ``atoms`` (its calculator attached) and return the record.

    The record holds per-step arrays ``time_ps``, ``potential``, ``kinetic`` (eV), ``temperature`` (K)
    and the summary (steps/s, µs/atom/step, drift). With ``out``, the files of the module docstring
    are written there.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    # ASE 3.29 renamed MaxwellBoltzmannDistribution to thermalize_momenta; older ASE has only the former
    thermalize = getattr(velocitydistribution, "thermalize_momenta", None) \
        or velocitydistribution.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dynamics = make_dynamics(atoms, ensemble, timestep_fs, temperature, friction, taut_fs, seed)
    n = len(atoms)
    record: dict[str, list] = {"time_ps": [], "potential": [], "kinetic": [], "temperature": []}

    def observe() -> None:
        record["time_ps"].append(dynamics.get_time() / (1000 * units.fs))
        record["potential"].append(atoms.get_potential_energy())
        record["kinetic"].append(atoms.get_kinetic_energy())
        record["temperature"].append(atoms.get_temperature())

    dynamics.attach(observe, interval=1)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        trajectory = out / "trajectory.xyz"
        trajectory.unlink(missing_ok=True)
        dynamics.attach(lambda: ase.io.write(trajectory, atoms, format="extxyz", append=True), interval=write_every)
        dynamics.attach(MDLogger(dynamics, atoms, str(out / "md.log"), header=True, mode="w"), interval=log_every)
    started = time.perf_counter()
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn(f"MD {ensemble}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("T {task.fields[temperature]:.0f} K"))
        with Progress(*columns) as bar:
            task = bar.add_task("md", total=steps, temperature=temperature)
            dynamics.attach(lambda: bar.update(task, completed=dynamics.nsteps, temperature=atoms.get_temperature()),
                            interval=1)
            dynamics.run(steps)
    else:
        dynamics.run(steps)
    seconds = time.perf_counter() - started
    arrays = {key: np.asarray(value) for key, value in record.items()}
    total = (arrays["potential"] + arrays["kinetic"]) / n
    summary = {
        "ensemble": ensemble, "steps": steps, "timestep_fs": timestep_fs, "temperature_K": temperature,
        "atoms": n, "seconds": seconds, "steps_per_second": steps / seconds,
        "us_per_atom_step": seconds / steps / n * 1e6,
        "drift_eV_per_atom_per_ps": energy_drift(arrays["time_ps"], total),
        "max_total_energy_deviation_eV_per_atom": float(np.abs(total - total[0]).max()),
        "mean_temperature_K": float(arrays["temperature"][len(arrays["temperature"]) // 2:].mean()),
    }
    if out is not None:
        plot_energies(out / "energy.png", arrays, n, title=f"{atoms.get_chemical_formula()} {ensemble}")
    return {**arrays, "summary": summary}


def plot_energies(path: Path, arrays: dict[str, np.ndarray], num_atoms: int, title: str) -> None:
    """Energies per atom (relative to the first total energy) and the temperature against time."""
    time_ps = arrays["time_ps"]
    potential, kinetic = arrays["potential"] / num_atoms, arrays["kinetic"] / num_atoms
    reference = potential[0] + kinetic[0]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(time_ps, potential - reference, label="potential")
    top.plot(time_ps, kinetic, label="kinetic")
    top.plot(time_ps, potential + kinetic - reference, label="total", color="black")
    top.set_ylabel("energy per atom (eV, from the first total)")
    top.legend()
    top.set_title(title)
    bottom.plot(time_ps, arrays["temperature"], color="tab:red")
    bottom.set_xlabel("time (ps)")
    bottom.set_ylabel("temperature (K)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.md", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="mace_tdn_organics", help="pretrained name or checkpoint path")
    parser.add_argument("--structure", default="CH3CH2OH", help="file, file@index, or a G2 molecule name")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="langevin")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (initial velocities; thermostat)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument("--taut", type=float, default=100.0, help="Bussi relaxation time, fs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--kernel", default=None, help="tensor-product kernel (default: as saved)")
    parser.add_argument("--skin", type=float, default=0.5, help="neighbour-list skin, Å")
    parser.add_argument("--write-every", type=int, default=10, help="steps between trajectory frames")
    parser.add_argument("--log-every", type=int, default=10, help="steps between md.log lines")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/md/<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        atoms = read_structure(args.structure)
        atoms.calc = Calculator(args.model, device=args.device, dtype=args.dtype, kernel=args.kernel, skin=args.skin)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = args.out or Path("runs") / "md" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    result = run_md(atoms, args.steps, args.ensemble, args.timestep, args.temperature, args.friction, args.taut,
                    args.seed, out, args.write_every, args.log_every, progress=not args.no_progress)
    summary = {**result["summary"], "model": str(args.model), "structure": args.structure, "device": args.device,
               "dtype": args.dtype, "neighbour_list_builds": atoms.calc.neighbours.num_builds}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/trajectory.xyz, md.log, energy.png, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
