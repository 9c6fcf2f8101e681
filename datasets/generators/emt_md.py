"""Periodic Cu and Cu-Au cells, strained, rattled and sampled by Langevin MD, labelled with EMT: ``metals_emt.xyz``.

What is computed
    Four periodic fcc systems (``SYSTEMS``): pure Cu in the 2x2x2 conventional supercell (32 atoms),
    Cu in the primitive cell repeated 2x2x2 (8 atoms, a rhombohedral cell with 60° angles and 4.2 Å
    between lattice planes), ordered L1₂ Cu₃Au in its 4-atom cubic cell (a ≈ 3.7 Å, so every
    lattice vector is shorter than a usual 5 Å cutoff and an atom sees several images of each
    neighbour), and a random Cu-Au solid solution in the 2x2x2 supercell (32 atoms, Au fraction
    drawn per trajectory from 10-50 %). Each cell starts at the EMT equilibrium lattice constant
    (energy minimised over an isotropic scale from Vegard's law), then each trajectory applies a
    random symmetric strain (components ~ N(0, ``strain_std``), a few percent) and a random
    displacement of every atom (~ N(0, ``rattle_std``) Å). That static configuration is the first
    frame (``config_type=strained_rattled``); Langevin dynamics (``ase.md.langevin``, 2 fs steps,
    fixed cell, centre of mass fixed) at 300, 600, 900 or 1200 K (cycled over the trajectories)
    gives the others (``config_type=md_<T>K``), one every ``sample_every`` steps after
    ``equilibration_steps``. Labels: energy [eV], forces [eV/Å] and stress [eV/Å³, ASE's sign and
    Voigt order] from a fresh EMT single point.

Level of theory
    Effective-medium theory (Jacobsen, Stoltze, Nørskov, Surf. Sci. 366, 394 (1996)) as implemented
    in ASE (``ase.calculators.emt.EMT``), a many-body embedded-atom-like potential fitted to Cu, Au
    and other fcc metals. Energies are relative to EMT's own fcc references.

Why
    Periodic cells exercise what molecules do not: cells, stress, and neighbour lists with several
    images of one atom. EMT is pure Python, needs no download and is bitwise deterministic, so the
    set is reproducible anywhere in seconds. It is a training set for tests and quick starts,
    not a benchmark.

Determinism: trajectory ``t`` of system ``s`` draws composition, strain, displacements, velocities
and Langevin noise from ``numpy.random.default_rng([seed, s, t])``.

``python -m datasets.generators.emt_md --out datasets/data/metals_emt.xyz --seed 0``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ase
import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixCom
from ase.data import atomic_numbers, reference_states
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from scipy.optimize import minimize_scalar

from datasets import schema
from datasets.generators.frames import labelled_frame, summary, write_frames
from datasets.generators.progress import progress_bar

DEFAULT_TEMPERATURES_K = (300.0, 600.0, 900.0, 1200.0)
STATIC = "strained_rattled"  # config_type of the first, static frame of each trajectory

# ase >= 3.29 renamed the Maxwell-Boltzmann initialiser; both take (atoms, temperature_K=, rng=)
_thermalize = getattr(velocitydistribution, "thermalize_momenta", None) or velocitydistribution.MaxwellBoltzmannDistribution


def _lattice_constant(symbol: str) -> float:
    """Experimental fcc lattice constant [Å] of ``symbol`` (ASE's reference states)."""
    return reference_states[atomic_numbers[symbol]]["a"]


def _vegard(au_fraction: float) -> float:
    """Lattice constant [Å] of fcc Cu(1-x)Au(x) by Vegard's law, a starting point for the EMT minimum."""
    return (1 - au_fraction) * _lattice_constant("Cu") + au_fraction * _lattice_constant("Au")


def _cu_conventional_2x2x2(rng: np.random.Generator) -> ase.Atoms:
    return bulk("Cu", "fcc", a=_vegard(0.0), cubic=True).repeat(2)


def _cu_primitive_2x2x2(rng: np.random.Generator) -> ase.Atoms:
    return bulk("Cu", "fcc", a=_vegard(0.0)).repeat(2)


def _cu3au_l12(rng: np.random.Generator) -> ase.Atoms:
    # ASE's cubic fcc cell holds atoms at the corner and the three face centres; Au on the corner is L1₂
    atoms = bulk("Cu", "fcc", a=_vegard(0.25), cubic=True)
    atoms[0].symbol = "Au"
    return atoms


def _cuau_random_2x2x2(rng: np.random.Generator) -> ase.Atoms:
    au_fraction = rng.uniform(0.1, 0.5)
    atoms = bulk("Cu", "fcc", a=_vegard(au_fraction), cubic=True).repeat(2)
    gold = rng.choice(len(atoms), size=max(1, round(au_fraction * len(atoms))), replace=False)
    atoms.symbols[gold] = "Au"
    return atoms


@dataclass(frozen=True)
class System:
    """A periodic cell to sample: ``build(rng)`` gives the ideal structure, ``trajectories`` its share."""

    build: Callable[[np.random.Generator], ase.Atoms]
    trajectories: int
    description: str


SYSTEMS = {
    "Cu_fcc_32": System(_cu_conventional_2x2x2, 12, "fcc Cu, conventional cell 2x2x2 (32 atoms)"),
    "Cu_fcc_primitive_8": System(_cu_primitive_2x2x2, 8, "fcc Cu, primitive cell 2x2x2 (8 atoms, rhombohedral)"),
    "Cu3Au_L12_4": System(_cu3au_l12, 8, "L1₂ Cu₃Au, cubic cell (4 atoms, a ≈ 3.7 Å)"),
    "CuAu_random_32": System(_cuau_random_2x2x2, 12, "random fcc Cu-Au, 10-50 % Au, 2x2x2 (32 atoms)"),
}


def single_point(atoms: ase.Atoms) -> dict[str, float | np.ndarray]:
    """EMT ``{energy: eV, forces: [num_atoms, 3] eV/Å, stress: [6] eV/Å³ (Voigt)}`` of ``atoms``."""
    work = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    work.calc = EMT()
    return {schema.ENERGY: work.get_potential_energy(), schema.FORCES: work.get_forces(),
            schema.STRESS: work.get_stress(voigt=True)}


def at_equilibrium_volume(atoms: ase.Atoms) -> ase.Atoms:
    """``atoms`` isotropically scaled to the EMT energy minimum (within ±10 % of the input scale)."""

    def energy(scale: float) -> float:
        trial = atoms.copy()
        trial.set_cell(atoms.cell * scale, scale_atoms=True)
        trial.calc = EMT()
        return trial.get_potential_energy()

    best = minimize_scalar(energy, bounds=(0.9, 1.1), method="bounded", options=dict(xatol=1e-6))
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell * best.x, scale_atoms=True)
    return scaled


def strained_and_rattled(atoms: ase.Atoms, rng: np.random.Generator, strain_std: float,
                         rattle_std: float) -> ase.Atoms:
    """``atoms`` under a random symmetric strain ``ε`` (cell rows ``h → h (1 + ε)``), then displaced at random."""
    noise = rng.normal(0.0, strain_std, size=(3, 3))
    strain = (noise + noise.T) / 2
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    moved.positions += rng.normal(0.0, rattle_std, size=moved.positions.shape)
    return moved


def trajectory_frames(
    name: str,
    temperature_K: float,
    num_frames: int,
    rng: np.random.Generator,
    *,
    strain_std: float = 0.02,
    rattle_std: float = 0.05,
    equilibration_steps: int = 100,
    sample_every: int = 25,
    timestep_fs: float = 2.0,
    friction_per_fs: float = 0.02,
    advance: Callable[[int], None] = lambda n=1: None,
) -> list[ase.Atoms]:
    """One strained, rattled static frame of system ``name``, then ``num_frames - 1`` Langevin MD frames."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; available: {', '.join(SYSTEMS)}")
    atoms = strained_and_rattled(at_equilibrium_volume(SYSTEMS[name].build(rng)), rng, strain_std, rattle_std)
    frames = [labelled_frame(atoms, single_point(atoms), config_type=STATIC, system=name)]
    advance(1)
    if num_frames == 1:
        return frames
    atoms.calc = EMT()
    atoms.set_constraint(FixCom())
    _thermalize(atoms, temperature_K=temperature_K, rng=rng)
    velocitydistribution.Stationary(atoms)
    dynamics = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    dynamics.run(equilibration_steps)
    for _ in range(num_frames - 1):
        dynamics.run(sample_every)
        frames.append(labelled_frame(atoms, single_point(atoms), config_type=f"md_{temperature_K:g}K", system=name))
        advance(1)
    return frames


def generate(
    systems: Sequence[str] | None = None,
    trajectories: int | None = None,
    frames_per_trajectory: int = 5,
    *,
    seed: int = 0,
    temperatures_K: Sequence[float] = DEFAULT_TEMPERATURES_K,
    strain_std: float = 0.02,
    rattle_std: float = 0.05,
    equilibration_steps: int = 100,
    sample_every: int = 25,
    timestep_fs: float = 2.0,
    friction_per_fs: float = 0.02,
    progress: bool = True,
) -> list[ase.Atoms]:
    """The dataset: per system (default all of ``SYSTEMS``) its trajectories, temperatures cycled.

    ``trajectories`` overrides every system's own count. The same arguments give the same frames.
    """
    names = list(SYSTEMS) if systems is None else list(systems)
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; available: {', '.join(SYSTEMS)}")
    if frames_per_trajectory < 1 or sample_every < 1 or equilibration_steps < 0:
        raise ValueError(f"need frames_per_trajectory >= 1, sample_every >= 1, equilibration_steps >= 0; got "
                         f"{frames_per_trajectory}, {sample_every}, {equilibration_steps}")
    counts = {name: SYSTEMS[name].trajectories if trajectories is None else trajectories for name in names}
    frames = []
    with progress_bar(sum(counts.values()) * frames_per_trajectory, "EMT MD", enabled=progress) as advance:
        for name in names:
            system_index = list(SYSTEMS).index(name)
            for trajectory in range(counts[name]):
                temperature_K = temperatures_K[trajectory % len(temperatures_K)]
                rng = np.random.default_rng([seed, system_index, trajectory])
                frames += trajectory_frames(
                    name, temperature_K, frames_per_trajectory, rng, strain_std=strain_std, rattle_std=rattle_std,
                    equilibration_steps=equilibration_steps, sample_every=sample_every, timestep_fs=timestep_fs,
                    friction_per_fs=friction_per_fs, advance=advance)
    return frames


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.generators.emt_md", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="extxyz file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=None, help="default: all")
    parser.add_argument("--trajectories", type=int, default=None, help="per system (default: each system's own)")
    parser.add_argument("--frames-per-trajectory", type=int, default=5)
    parser.add_argument("--temperatures", nargs="+", type=float, default=list(DEFAULT_TEMPERATURES_K), help="K")
    parser.add_argument("--strain-std", type=float, default=0.02)
    parser.add_argument("--rattle-std", type=float, default=0.05, help="Å")
    parser.add_argument("--equilibration-steps", type=int, default=100)
    parser.add_argument("--sample-every", type=int, default=25, help="MD steps between snapshots")
    parser.add_argument("--timestep-fs", type=float, default=2.0)
    parser.add_argument("--friction-per-fs", type=float, default=0.02)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    frames = generate(args.systems, args.trajectories, args.frames_per_trajectory, seed=args.seed,
                      temperatures_K=args.temperatures, strain_std=args.strain_std, rattle_std=args.rattle_std,
                      equilibration_steps=args.equilibration_steps, sample_every=args.sample_every,
                      timestep_fs=args.timestep_fs, friction_per_fs=args.friction_per_fs,
                      progress=not args.no_progress)
    write_frames(args.out, frames)
    print(summary(frames))
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
