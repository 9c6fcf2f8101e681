"""Small organic molecules sampled by Langevin MD and labelled with GFN2-xTB: ``organics_gfn2.xyz``.

What is computed
    For each molecule (default: ethanol ``CH3CH2OH``, acetic acid ``CH3COOH``, acetamide
    ``CH3CONH2``, ethylamine ``CH3CH2NH2``; 8-10 atoms of H, C, N, O, from ``ase.build.molecule``'s
    G2 set) and each temperature (default 300 K and 600 K): Langevin dynamics (``ase.md.langevin``,
    0.5 fs steps, friction 0.01 fs⁻¹, centre of mass fixed) on the GFN2-xTB surface, started from
    the G2 geometry with Maxwell-Boltzmann velocities, equilibrated for ``equilibration_steps``,
    then one snapshot every ``sample_every`` steps. Each snapshot is labelled by a fresh GFN2-xTB
    single point (energy [eV], forces [eV/Å]), so a label depends on the positions alone, not on
    the SCF history of the trajectory. 300 K samples near-equilibrium geometries, 600 K distorted
    ones (stretched bonds, torsions). One ``config_type=IsolatedAtom`` frame per element holds the
    GFN2-xTB energy of the lone atom (spin-restricted, lowest multiplicity for its electron count),
    the E0 reference of an energy model; these are the method's own atomic references, not the
    energies of physical free atoms.

Level of theory
    GFN2-xTB (Bannwarth, Ehlert, Grimme, J. Chem. Theory Comput. 15, 1652 (2019)), a
    self-consistent density-functional tight-binding method with multipole electrostatics and D4
    dispersion, through tblite's ASE calculator (``tblite.ase.TBLite``), open boundaries.

Why
    equizoo must train an interatomic potential on a fresh machine without network, so it ships
    its own data. GFN2-xTB gives an anharmonic, quantum-mechanical surface for organic chemistry
    at milliseconds per frame, so a thousand decorrelated frames take about a minute on one core
    and anyone can regenerate them bit for bit. It is a training set for the quick start, not a
    benchmark: public benchmarks (3BPA, acetylacetone, rMD17) are read from their own files.

Determinism: every trajectory draws its velocities and Langevin noise from
``numpy.random.default_rng([seed, molecule_index, temperature_index])``. tblite's OpenMP sums
differ in the last bit from run to run when it uses several threads, and MD amplifies that, so the
command runs tblite on one thread (``OMP_NUM_THREADS=1`` unless set; also the fastest for molecules
this small) and then writes the same bytes for the same seed.

``python -m datasets.generators.xtb_md --out datasets/data/organics_gfn2.xyz --seed 0``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import ase
import numpy as np
from ase import units
from ase.build import molecule
from ase.collections import g2
from ase.constraints import FixCom
from ase.data import chemical_symbols
from ase.md import velocitydistribution
from ase.md.langevin import Langevin

from datasets import schema
from datasets.generators.frames import labelled_frame, summary, write_frames
from datasets.generators.progress import progress_bar

METHOD = "GFN2-xTB"
DEFAULT_MOLECULES = ("CH3CH2OH", "CH3COOH", "CH3CONH2", "CH3CH2NH2")
DEFAULT_TEMPERATURES_K = (300.0, 600.0)
ISOLATED_ATOM = "IsolatedAtom"  # config_type of E0 frames (MACE's convention)

# ase >= 3.29 renamed the Maxwell-Boltzmann initialiser; both take (atoms, temperature_K=, rng=)
_thermalize = getattr(velocitydistribution, "thermalize_momenta", None) or velocitydistribution.MaxwellBoltzmannDistribution


def gfn2_calculator(multiplicity: int | None = None):
    """A fresh, silent tblite GFN2-xTB ASE calculator (``multiplicity`` None: from the atoms' magmoms, 0)."""
    try:
        from tblite.ase import TBLite
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the GFN2-xTB generator needs tblite: pip install 'equizoo[generate]' (or pip install tblite)"
        ) from error
    return TBLite(method=METHOD, verbosity=0, multiplicity=multiplicity)


def single_point(atoms: ase.Atoms, multiplicity: int | None = None) -> dict[str, float | np.ndarray]:
    """GFN2-xTB ``{energy: eV, forces: [num_atoms, 3] eV/Å}`` of ``atoms`` from a fresh calculator."""
    work = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    work.calc = gfn2_calculator(multiplicity)
    return {schema.ENERGY: work.get_potential_energy(), schema.FORCES: work.get_forces()}


def isolated_atoms(symbols: Sequence[str]) -> list[ase.Atoms]:
    """One ``IsolatedAtom`` frame per symbol: GFN2-xTB energy of the lone atom, zero forces.

    Spin-restricted GFN2-xTB has no spin-polarisation energy, so its lowest state is the lowest
    multiplicity allowed by the electron count: a singlet for an even atomic number, else a doublet.
    """
    frames = []
    for symbol in symbols:
        atom = ase.Atoms(symbol)
        multiplicity = 1 + int(atom.numbers[0]) % 2
        labels = single_point(atom, multiplicity)
        frames.append(labelled_frame(atom, labels, config_type=ISOLATED_ATOM))
    return frames


def _check_molecules(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in g2.names]
    if unknown:
        raise ValueError(f"unknown molecule {unknown[0]!r}: expected G2 names of ase.build.molecule "
                         f"(ase.collections.g2.names), e.g. {', '.join(DEFAULT_MOLECULES)}")


def md_frames(
    name: str,
    temperature_K: float,
    num_frames: int,
    rng: np.random.Generator,
    *,
    equilibration_steps: int = 1000,
    sample_every: int = 20,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.01,
    advance: Callable[[int], None] = lambda n=1: None,
) -> list[ase.Atoms]:
    """``num_frames`` GFN2-xTB-labelled snapshots of G2 molecule ``name`` from Langevin MD at ``temperature_K``."""
    _check_molecules([name])
    atoms = molecule(name)
    atoms.calc = gfn2_calculator()
    atoms.set_constraint(FixCom())
    _thermalize(atoms, temperature_K=temperature_K, rng=rng)
    velocitydistribution.Stationary(atoms)
    velocitydistribution.ZeroRotation(atoms)
    dynamics = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    dynamics.run(equilibration_steps)
    frames = []
    for _ in range(num_frames):
        dynamics.run(sample_every)
        frames.append(labelled_frame(atoms, single_point(atoms), config_type=f"md_{temperature_K:g}K",
                                     molecule=name))
        advance(1)
    return frames


def _split(total: int, parts: int) -> list[int]:
    """``total`` frames shared as evenly as possible over ``parts`` trajectories."""
    return [total // parts + (index < total % parts) for index in range(parts)]


def generate(
    molecules: Sequence[str] = DEFAULT_MOLECULES,
    temperatures_K: Sequence[float] = DEFAULT_TEMPERATURES_K,
    frames_per_molecule: int = 250,
    *,
    seed: int = 0,
    equilibration_steps: int = 1000,
    sample_every: int = 20,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.01,
    include_isolated_atoms: bool = True,
    progress: bool = True,
) -> list[ase.Atoms]:
    """The dataset: IsolatedAtom frames (one per element, by atomic number), then MD frames per molecule and temperature.

    ``frames_per_molecule`` is shared over the temperatures. The same arguments give the same frames
    (bit for bit when tblite runs on one OpenMP thread, else to round-off amplified by the dynamics).
    """
    if frames_per_molecule < 1 or sample_every < 1 or equilibration_steps < 0:
        raise ValueError(f"need frames_per_molecule >= 1, sample_every >= 1, equilibration_steps >= 0; got "
                         f"{frames_per_molecule}, {sample_every}, {equilibration_steps}")
    _check_molecules(molecules)
    frames = []
    if include_isolated_atoms:
        numbers = sorted({int(z) for name in molecules for z in molecule(name).numbers})
        frames += isolated_atoms([chemical_symbols[z] for z in numbers])
    counts = _split(frames_per_molecule, len(temperatures_K))
    with progress_bar(frames_per_molecule * len(molecules), f"{METHOD} MD", enabled=progress) as advance:
        for molecule_index, name in enumerate(molecules):
            for temperature_index, (temperature_K, count) in enumerate(zip(temperatures_K, counts)):
                rng = np.random.default_rng([seed, molecule_index, temperature_index])
                frames += md_frames(name, temperature_K, count, rng, equilibration_steps=equilibration_steps,
                                    sample_every=sample_every, timestep_fs=timestep_fs,
                                    friction_per_fs=friction_per_fs, advance=advance)
    return frames


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.generators.xtb_md", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="extxyz file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--molecules", nargs="+", default=list(DEFAULT_MOLECULES), help="G2 names")
    parser.add_argument("--temperatures", nargs="+", type=float, default=list(DEFAULT_TEMPERATURES_K), help="K")
    parser.add_argument("--frames-per-molecule", type=int, default=250)
    parser.add_argument("--equilibration-steps", type=int, default=1000)
    parser.add_argument("--sample-every", type=int, default=20, help="MD steps between snapshots")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--friction-per-fs", type=float, default=0.01)
    parser.add_argument("--no-isolated-atoms", action="store_true", help="leave out the IsolatedAtom frames")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    # before tblite (and its OpenMP runtime) is loaded: reproducible sums, and no threading overhead
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    frames = generate(args.molecules, args.temperatures, args.frames_per_molecule, seed=args.seed,
                      equilibration_steps=args.equilibration_steps, sample_every=args.sample_every,
                      timestep_fs=args.timestep_fs, friction_per_fs=args.friction_per_fs,
                      include_isolated_atoms=not args.no_isolated_atoms, progress=not args.no_progress)
    write_frames(args.out, frames)
    print(summary(frames))
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.perf_counter() - start:.1f} s "
          f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")


if __name__ == "__main__":
    main()
