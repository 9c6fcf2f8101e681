"""Neighbour-list benchmark: vesin against matscipy (and ASE's own, as the baseline), in one run.

Every atomistic graph of equizoo is built from a full neighbour list with integer image shifts
("ijS": sender, receiver, lattice translation), one call per frame. This script times that call
for the libraries we could use, on the systems we meet:

- molecules with open boundaries in a dummy 50 Å box (as the public extxyz files store them),
  from a 9-atom ethanol and the 27-atom 3BPA (read from ../shared/data when present) to water
  clusters of 192 to 3000 atoms;
- periodic fcc Cu bulk (conventional cubic cell repeated n x n x n, 32 to 4000 atoms, rattled);
- cells smaller than the cutoff (primitive fcc Cu: 1 atom; 2 x 2 x 2 primitive cells: 8 atoms),
  where an atom sees several images of the same neighbour and its own images;
- a Cu(111) slab with mixed boundaries (periodic in-plane, open along z).

Each library's pairs are checked against ASE's (same sorted (i, j, S) triples) before timing.
A time is the best of repeated calls (at least ``--min-repeats`` and ``--min-seconds``), including
the construction of the library's calculator object, as ``datasets.neighbours`` calls it per frame.
vesin runs as ``datasets.neighbours`` calls it (pairs sorted, so the edge order never depends on
threads) with its default threads (all cores) and with one thread; matscipy and ASE are
single-threaded.

    python bench/neighbours.py                      # the table of bench/RESULTS.md
    python bench/neighbours.py --quick              # a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("ase", "matscipy", "vesin", "vesin-1thread")


def _water_cluster(n_per_side: int, seed: int = 0):
    """``n_per_side**3`` water molecules on a 3.1 Å grid, randomly rotated; open boundaries, 50+ Å box."""
    import ase
    import ase.build

    rng = np.random.default_rng(seed)
    water = ase.build.molecule("H2O")
    cluster = ase.Atoms()
    for ijk in np.ndindex(n_per_side, n_per_side, n_per_side):
        molecule = water.copy()
        molecule.rotate(rng.uniform(0, 360), rng.normal(size=3))
        molecule.translate(3.1 * np.array(ijk))
        cluster += molecule
    side = max(50.0, 3.1 * n_per_side + 10.0)
    cluster.cell = np.eye(3) * side
    cluster.pbc = False
    return cluster


def systems(quick: bool) -> dict:
    """name -> ase.Atoms."""
    import ase.build

    out = {}
    ethanol = ase.build.molecule("CH3CH2OH")
    ethanol.cell, ethanol.pbc = np.eye(3) * 50.0, False
    out["ethanol (open, dummy cell)"] = ethanol
    bpa = ROOT.parent / "shared" / "data" / "3bpa" / "train_300K.xyz"
    if bpa.exists():  # the public benchmark's molecule, when this checkout sits beside the shared data
        import ase.io

        out["3BPA (open, dummy cell)"] = ase.io.read(bpa, index=0)
    for n in (4,) if quick else (4, 7, 10):
        out[f"water cluster, {n ** 3} H2O (open)"] = _water_cluster(n)
    for n in (2, 4) if quick else (2, 3, 4, 5, 6, 8, 10):
        bulk = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True) * (n, n, n)
        bulk.rattle(0.05, seed=n)
        out[f"fcc Cu {n}x{n}x{n} (periodic)"] = bulk
    out["fcc Cu primitive, 1 atom (cell < r_max)"] = ase.build.bulk("Cu", "fcc", a=3.61)
    small = ase.build.bulk("Cu", "fcc", a=3.61) * (2, 2, 2)
    small.rattle(0.05, seed=1)
    out["fcc Cu primitive 2x2x2 (cell < r_max)"] = small
    slab = ase.build.fcc111("Cu", size=(4, 4, 4), vacuum=6.0)
    slab.rattle(0.05, seed=2)
    out["Cu(111) slab (T T F)"] = slab
    return out


def neighbour_call(library: str, cutoff: float):
    """A function ``atoms -> (i, j, S)`` for one library."""
    if library == "ase":
        from ase.neighborlist import neighbor_list

        return lambda atoms: neighbor_list("ijS", atoms, cutoff)
    if library == "matscipy":
        from matscipy.neighbours import neighbour_list

        return lambda atoms: neighbour_list("ijS", positions=atoms.positions, cell=atoms.cell.array,
                                            pbc=atoms.pbc, cutoff=cutoff)
    if library.startswith("vesin"):
        import vesin

        threads = 1 if library == "vesin-1thread" else 0

        def call(atoms):
            calculator = vesin.NeighborList(cutoff=cutoff, full_list=True, sorted=True, n_threads=threads)
            return calculator.compute(atoms.positions, atoms.cell.array, atoms.pbc, quantities="ijS")

        return call
    raise ValueError(f"unknown library {library!r}; choose from {LIBRARIES}")


def _canonical(i, j, shifts) -> np.ndarray:
    pairs = np.concatenate([np.asarray(i)[:, None], np.asarray(j)[:, None], np.asarray(shifts).astype(np.int64)], 1)
    return pairs[np.lexsort(pairs.T[::-1])]


def best_time(function, atoms, min_repeats: int, min_seconds: float) -> float:
    function(atoms)  # warm-up: imports, allocations
    times, started = [], time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        function(atoms)
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> dict:
    import ase
    import matscipy
    import vesin

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), ase=ase.__version__,
                matscipy=matscipy.__version__, vesin=vesin.__version__, numpy=np.__version__,
                date=date.today().isoformat(), commit=commit)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cutoff", type=float, default=5.0, help="r_max in Å (default 5)")
    parser.add_argument("--quick", action="store_true", help="a few small systems, short timings")
    parser.add_argument("--min-repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.min_repeats, args.min_seconds = 2, 0.05

    info = machine()
    rows = []
    header = ("| system | atoms | pairs | " + " | ".join(f"{lib} ms" for lib in LIBRARIES)
              + " | matscipy / vesin |")
    print(f"# neighbour lists, r_max = {args.cutoff} Å; {info}")
    print(header)
    print("|" + "---|" * (len(LIBRARIES) + 4))
    for name, atoms in systems(args.quick).items():
        reference = _canonical(*neighbour_call("ase", args.cutoff)(atoms))
        row = dict(system=name, atoms=len(atoms), pairs=len(reference), pbc=atoms.pbc.tolist(), ms={})
        for library in LIBRARIES:
            function = neighbour_call(library, args.cutoff)
            pairs = _canonical(*function(atoms))
            if not np.array_equal(pairs, reference):
                print(f"{library} disagrees with ase on {name}", file=sys.stderr)
                return 1
            row["ms"][library] = 1e3 * best_time(function, atoms, args.min_repeats, args.min_seconds)
        rows.append(row)
        cells = " | ".join(f"{row['ms'][lib]:.3g}" for lib in LIBRARIES)
        print(f"| {row['system']} | {row['atoms']} | {row['pairs']} | {cells} | "
              f"{row['ms']['matscipy'] / row['ms']['vesin']:.2f} |", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(machine=info, cutoff=args.cutoff, rows=rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
