"""MACE step time on the CPU: equizoo's MACE (cg, cp, grid, gaunt products) against mace-torch's, in one run.

Both sides get the same structures and the same sizes: hidden irreps ``C x 0e + C x 1o``, edge
harmonics up to ``max_ell = 3``, correlation 3, two interactions (the first without residual, then
residual ones: mace-torch's ``RealAgnosticInteractionBlock`` then ``RealAgnosticResidualInteractionBlock``),
r_max 5 Å, 8 Bessel functions, polynomial cutoff p = 5, radial MLP [64, 64, 64], readout MLP
``16x0e`` with SiLU, the same E0s and average number of neighbours, scale 1 and shift 0, float32.
Two measurements per model:

- ``eval``: energy and forces of the batch (forward, forces by autograd);
- ``train``: one training step: forward with forces kept differentiable, MACE's weighted loss
  ``1 x mean_graphs((dE/N)^2) + 100 x mean(dF^2)``, backward, an Adam step (lr 0.01).

Workloads: ``acac``, the first 5 acetylacetone molecules of ``shared/data/acac/train_300K.xyz``
(15 atoms each, labels from the file); ``cu``, one periodic fcc Cu box of 256 atoms (4x4x4 cubic cells,
a = 3.61 Å, positions rattled by 0.05 Å, seed 0; labels zero, E0 = 0 on both sides).

equizoo runs in this environment; mace-torch (0.3.16, which pins e3nn 0.4.4) runs in its own venv
``.venv-mace`` (install it with ``bench/peers/install_mace_torch.sh``) through
``bench/peers/mace_torch_step.py``, which builds its graphs with mace-torch's own data pipeline from
an extxyz file this script writes to a temporary folder. Every measurement (model x workload x C x
mode) runs in its own process with ``--threads`` torch threads: warm-up steps (one when a step takes
over ``--target-seconds / 4``), then the median of up to ``--max-repeats`` steps (fewer when steps are
slow: stop once ``--min-repeats`` steps took ``--target-seconds``), timed by the same function on both
sides; the process's peak resident memory is recorded too (it includes torch itself, ~0.3-0.6 GiB).

The machine may be shared: before each measurement the script waits (up to ``--max-wait`` s) until other
processes use less than ``--quiet-below`` of the cores, records the share of the cores they took
while the measurement ran (from /proc/stat less this process's children), and repeats a measurement
they disturbed more (``--retries``, for measurements shorter than ``--retry-below`` s), keeping the
least disturbed. That share is printed with every row.

Before timing, a sanity check in float64: our ``cg`` model's forces equal the negative gradient of
its energy by central finite differences; every measurement also reports whether its energies and
forces were finite.

    python bench/mace_step.py --quick                        # acac, C = 32, few repeats (a few minutes)
    python bench/mace_step.py --out bench/results/mace-step-cpu.json   # the full table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "peers"))
from mace_torch_step import median_ms, peak_rss_mib  # noqa: E402  (standard library only)
from machine_load import machine, run_measured  # noqa: E402

OURS = ("cg", "cp", "grid", "gaunt")
PEER = "mace-torch"
MODELS = OURS + (PEER,)
LABELS = {"cg": "equizoo cg", "cp": "equizoo cp (mace_tdn)", "grid": "equizoo grid", "gaunt": "equizoo gaunt",
          PEER: "mace-torch ScaleShiftMACE"}
WORKLOADS = ("acac", "cu")
# the acac set in shared/ beside the checkout (or $EQUIZOO_ACAC); read by path, never copied into the project
ACAC = Path(os.environ.get("EQUIZOO_ACAC", ROOT.parent / "shared" / "data" / "acac"))
SIZES = dict(r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, max_L=1, num_interactions=2,
             correlation=3, radial_mlp=[64, 64, 64], readout_mlp=16)
ENERGY_WEIGHT, FORCES_WEIGHT, LEARNING_RATE = 1.0, 100.0, 0.01


# --- workloads ----------------------------------------------------------------------------------

def workload_atoms(name: str):
    """The structures of a workload as ``ase.Atoms`` with ``REF_energy`` / ``REF_forces`` labels, and the E0s."""
    import ase.io
    import numpy as np
    from ase import Atoms
    from ase.build import bulk

    if name == "acac":
        frames = ase.io.read(ACAC / "train_300K.xyz", index=":5")
        structures = []
        for frame in frames:
            atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=frame.pbc)
            atoms.info["REF_energy"] = frame.get_potential_energy()
            atoms.arrays["REF_forces"] = frame.get_forces()
            structures.append(atoms)
        e0s = {}
        for atom in ase.io.read(ACAC / "isolated_atoms.xyz", index=":"):
            e0s[int(atom.numbers[0])] = float(atom.get_potential_energy())
        return structures, e0s
    if name == "cu":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
        atoms.rattle(stdev=0.05, seed=0)
        atoms = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
        atoms.info["REF_energy"] = 0.0
        atoms.arrays["REF_forces"] = np.zeros((len(atoms), 3))
        return [atoms], {29: 0.0}
    raise ValueError(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}")


def write_workload(name: str, folder: Path) -> dict:
    """Write the workload's extxyz into ``folder``; its path, E0s and size (with our graphs)."""
    import ase.io
    from torch_geometric.data import Batch

    from datasets import schema
    from datasets.graph import to_graph

    structures, e0s = workload_atoms(name)
    path = folder / f"{name}.xyz"
    ase.io.write(path, structures, format="extxyz")
    batch = Batch.from_data_list([to_graph(atoms, SIZES["r_max"]) for atoms in structures])
    num_atoms, num_edges = int(batch.num_nodes), int(batch[schema.EDGE_INDEX].shape[1])
    return {"workload": name, "xyz": str(path), "e0s": {str(z): e for z, e in sorted(e0s.items())},
            "num_graphs": len(structures), "num_atoms": num_atoms, "num_edges": num_edges,
            "avg_num_neighbors": num_edges / num_atoms}


# --- our side, in a child process ---------------------------------------------------------------

def our_batch(xyz: str, dtype):
    from torch_geometric.data import Batch

    from datasets.extxyz import read_extxyz
    from datasets.graph import to_graph

    configs = read_extxyz(xyz, energy_key="REF_energy", forces_key="REF_forces")
    return Batch.from_data_list([to_graph(c, SIZES["r_max"], dtype=dtype) for c in configs])


def our_model(config: dict, dtype):
    import zoo

    return zoo.build_model(
        "mace", elements=sorted(int(z) for z in config["e0s"]),
        atomic_energies={int(z): e for z, e in config["e0s"].items()},
        avg_num_neighbors=config["avg_num_neighbors"], num_channels=config["channels"],
        tensor_product={"method": config["model"]}, kernel="auto", **SIZES,
    ).to(dtype)


def weighted_loss(batch, out):
    """MACE's ``WeightedEnergyForcesLoss`` (energy per atom, forces per component), same weights as the peer."""
    import torch

    from datasets import schema

    atoms = torch.bincount(batch[schema.BATCH], minlength=batch[schema.ENERGY].shape[0]).to(out[schema.ENERGY].dtype)
    energy = (batch[schema.ENERGY_WEIGHT] * ((batch[schema.ENERGY] - out[schema.ENERGY]) / atoms) ** 2).mean()
    forces_weight = batch[schema.FORCES_WEIGHT][batch[schema.BATCH]].unsqueeze(-1)
    forces = (forces_weight * (batch[schema.FORCES] - out[schema.FORCES]) ** 2).mean()
    return ENERGY_WEIGHT * energy + FORCES_WEIGHT * forces


def measure_ours(config: dict) -> dict:
    """One measurement of equizoo's MACE in this process (called in a child process)."""
    import e3nn
    import torch

    from datasets import schema

    torch.set_num_threads(config["threads"])
    dtype = getattr(torch, config["dtype"])
    torch.set_default_dtype(dtype)
    torch.manual_seed(config["seed"])
    batch = our_batch(config["xyz"], dtype)
    started = time.perf_counter()
    model = our_model(config, dtype)
    build_seconds = time.perf_counter() - started
    first: dict = {}
    if config["mode"] == "eval":
        model.eval()

        def step():
            out = model(batch, compute_forces=True, compute_stress=False, training=False)
            if not first:
                first.update(energy=out[schema.ENERGY].detach().tolist(),
                             forces_finite=bool(torch.isfinite(out[schema.FORCES]).all()))
    else:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

        def step():
            optimizer.zero_grad(set_to_none=True)
            out = model(batch, compute_forces=True, compute_stress=False, training=True)
            loss = weighted_loss(batch, out)
            loss.backward()
            optimizer.step()
            if not first:
                first.update(energy=out[schema.ENERGY].detach().tolist(), loss=float(loss.detach()),
                             forces_finite=bool(torch.isfinite(out[schema.FORCES]).all()))

    ms, times = median_ms(step, config["warmup"], config["min_repeats"], config["max_repeats"], config["target_seconds"])
    return {
        "side": "equizoo", "ms": ms, "times_ms": times,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_atoms": int(batch.num_nodes), "num_edges": int(batch[schema.EDGE_INDEX].shape[1]),
        "build_s": build_seconds, "peak_rss_mib": peak_rss_mib(),
        "energy": first.get("energy"), "loss": first.get("loss"),
        "finite": all(math.isfinite(e) for e in first.get("energy", [float("nan")])) and bool(first.get("forces_finite")),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "e3nn": e3nn.__version__},
    }


def check_forces(config: dict) -> dict:
    """float64: our ``cg`` model's forces against central differences of its energy (one acac molecule)."""
    import torch

    from datasets import schema

    torch.set_num_threads(config["threads"])
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    batch = our_batch(config["xyz"], torch.float64).get_example(0)
    # E0 = 0: the constant E0 term has no gradient but its ~1e4 eV would swamp the differences in round-off
    zero_e0s = {z: 0.0 for z in config["e0s"]}
    model = our_model({**config, "model": "cg", "e0s": zero_e0s}, torch.float64).eval()
    out = model(batch, compute_forces=True, training=False)
    forces = out[schema.FORCES].detach()
    positions = batch[schema.POSITIONS].clone()
    generator = torch.Generator().manual_seed(1)
    h, worst, checks = 1e-4, 0.0, []
    for _ in range(config.get("directions", 4)):
        direction = torch.randn(positions.shape, generator=generator, dtype=torch.float64)
        direction /= direction.norm()
        energies = []
        for sign in (1.0, -1.0):
            batch[schema.POSITIONS] = positions + sign * h * direction
            with torch.no_grad():
                energies.append(float(model(batch, compute_forces=False)[schema.ENERGY].sum()))
        numeric = (energies[0] - energies[1]) / (2 * h)  # dE/dt along the direction
        analytic = -float((forces * direction).sum())  # -F . d
        error = abs(numeric - analytic) / max(abs(analytic), 1e-6 * float(forces.abs().max()), 1e-12)
        worst = max(worst, error)
        checks.append({"dE_dt_fd": numeric, "minus_F_dot_d": analytic, "rel_error": error})
    return {"check": "forces = -dE/dx (cg, float64, central differences h = 1e-4 Å)",
            "energy": float(out[schema.ENERGY].detach().sum()), "max_rel_error": worst, "passed": worst < 1e-6,
            "directions": checks}


# --- the driver ---------------------------------------------------------------------------------

def peer_model_arguments(workload: dict, channels: int, dtype: str, threads: int, seed: int = 0) -> list[str]:
    """The command-line arguments of a peer script for our model's sizes (``SIZES``) on ``workload``
    (see ``bench/peers/mace_torch_step.py``'s ``add_model_arguments``)."""
    return [
        "--channels", str(channels), "--max-ell", str(SIZES["max_ell"]), "--max-L", str(SIZES["max_L"]),
        "--correlation", str(SIZES["correlation"]), "--num-interactions", str(SIZES["num_interactions"]),
        "--r-max", str(SIZES["r_max"]), "--num-bessel", str(SIZES["num_bessel"]),
        "--num-polynomial-cutoff", str(SIZES["num_polynomial_cutoff"]),
        "--radial-mlp", ",".join(map(str, SIZES["radial_mlp"])), "--readout-mlp", str(SIZES["readout_mlp"]),
        "--avg-num-neighbors", repr(workload["avg_num_neighbors"]), "--e0s", json.dumps(workload["e0s"]),
        "--dtype", dtype, "--threads", str(threads), "--seed", str(seed),
    ]


def measured(args, model: str, mode: str, workload: dict, channels: int) -> dict:
    """One measurement, repeated (up to ``--retries`` times, after waiting for a quiet machine) while
    other processes took more than ``--quiet-below`` of the cores during it; the least disturbed is kept."""
    key = (workload["workload"], channels, model, mode)
    best = args.previous.get(key)
    if best is not None and not best.get("others_share", 1.0) > args.quiet_below:
        return {**best, "xyz": workload["xyz"], "reused": True}
    for attempt in range(1 + args.retries):
        r = run_child(args, model, mode, workload, channels)
        if best is None or "skipped" in best or r.get("others_share", 0.0) < best.get("others_share", 0.0):
            best = r
        if "skipped" in r or not r.get("others_share", 0.0) > args.quiet_below or r.get("wall_s", 0.0) > args.retry_below:
            break
        if attempt < args.retries:
            print(f"  (others used {r['others_share']:.0%} of the cores during {model} {mode}: again)", flush=True)
    return best


def run_child(args, model: str, mode: str, workload: dict, channels: int) -> dict:
    config = dict(
        model=model, mode=mode, workload=workload["workload"], channels=channels, xyz=workload["xyz"],
        e0s=workload["e0s"], avg_num_neighbors=workload["avg_num_neighbors"], dtype=args.dtype,
        threads=args.threads, seed=0, warmup=args.warmup, min_repeats=args.min_repeats,
        max_repeats=args.max_repeats, target_seconds=args.target_seconds,
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if model == PEER:
        if not Path(args.mace_python).exists():
            return {**config, "skipped": f"no {args.mace_python}: run bench/peers/install_mace_torch.sh"}
        command = [
            args.mace_python, str(ROOT / "bench" / "peers" / "mace_torch_step.py"), "--xyz", workload["xyz"],
            "--mode", mode, *peer_model_arguments(workload, channels, args.dtype, args.threads),
            "--energy-weight", str(ENERGY_WEIGHT), "--forces-weight", str(FORCES_WEIGHT), "--lr", str(LEARNING_RATE),
            "--warmup", str(args.warmup), "--min-repeats", str(args.min_repeats),
            "--max-repeats", str(args.max_repeats), "--target-seconds", str(args.target_seconds),
        ]
    else:
        command = [sys.executable, __file__, "--single", json.dumps(config)]
    child, context = run_measured(command, env, ROOT, args.timeout, args.quiet_below, args.max_wait)
    if child is None:
        return {**config, "skipped": f"over the {args.timeout:.0f} s limit per measurement", **context}
    if child.returncode != 0:
        killed = child.returncode in (-9, 137)
        tail = "killed (out of memory)" if killed else (child.stderr.strip().splitlines() or ["?"])[-1]
        return {**config, "skipped": f"failed: {tail[:160]}", **context}
    return {**config, **json.loads(child.stdout.strip().splitlines()[-1]), **context}


def markdown(results: list[dict], models: tuple[str, ...]) -> str:
    """One row per (workload, C, model): parameters, both times, and the times as ratios to mace-torch."""
    lines = ["| workload (atoms, edges) | C | model | parameters | E+F ms | train step ms | E+F / mace-torch "
             "| step / mace-torch | train peak RSS MiB | others' CPU share (E+F / step) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in results:
        if (r["workload"], r["channels"]) not in keys:
            keys.append((r["workload"], r["channels"]))
    for workload, channels in keys:
        row = {(r["model"], r["mode"]): r for r in results if (r["workload"], r["channels"]) == (workload, channels)}
        sizes = next((r for r in row.values() if "num_atoms" in r), {})
        where = f"{workload} ({sizes.get('num_atoms', '?')}, {sizes.get('num_edges', '?')})"
        for model in models:
            cells, times = [], {}
            measured = [row[(model, m)] for m in ("eval", "train") if (model, m) in row and "skipped" not in row[(model, m)]]
            cells.append(f"{measured[0]['num_parameters']:,}" if measured else "–")
            for mode in ("eval", "train"):
                r = row.get((model, mode))
                if r is None:
                    cells.append("–")
                elif "skipped" in r:
                    cells.append(r["skipped"])
                else:
                    times[mode] = r["ms"]
                    cells.append(f"{r['ms']:.1f}" + ("" if r.get("finite", True) else " (non-finite!)"))
            for mode in ("eval", "train"):
                peer = row.get((PEER, mode))
                if model == PEER or mode not in times or peer is None or "skipped" in peer:
                    cells.append("–" if model != PEER else "1")
                else:
                    cells.append(f"{times[mode] / peer['ms']:.2f}")
            train = row.get((model, "train"), {})
            cells.append(f"{train['peak_rss_mib']:.0f}" if "peak_rss_mib" in train else "–")
            shares = [row[(model, m)].get("others_share") for m in ("eval", "train") if (model, m) in row]
            cells.append(" / ".join("–" if x is None else f"{x:.0%}" for x in shares) or "–")
            lines.append(f"| {where} | {channels} | {LABELS[model]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="acac only, C = 32, 1 warm-up step, at most 3 repeats")
    parser.add_argument("--workloads", type=lambda s: tuple(s.split(",")), default=WORKLOADS)
    parser.add_argument("--channels", type=lambda s: [int(x) for x in s.split(",")], default=[32, 128])
    parser.add_argument("--models", type=lambda s: tuple(s.split(",")), default=MODELS)
    parser.add_argument("--modes", type=lambda s: tuple(s.split(",")), default=("eval", "train"))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--max-repeats", type=int, default=10)
    parser.add_argument("--target-seconds", type=float, default=20.0,
                        help="stop repeating once --min-repeats steps took this long together")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement process")
    parser.add_argument("--quiet-below", type=float, default=0.25,
                        help="before each measurement wait until other processes use less than this share of the cores; "
                             "repeat a measurement they disturbed more (1 turns both off)")
    parser.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--retries", type=int, default=2, help="repeats of a disturbed measurement")
    parser.add_argument("--retry-below", type=float, default=300.0,
                        help="repeat a disturbed measurement only when its process took less than this (s)")
    parser.add_argument("--mace-python", default=str(ROOT / ".venv-mace" / "bin" / "python"))
    parser.add_argument("--no-check", action="store_true", help="skip the float64 forces = -dE/dx check")
    parser.add_argument("--resume", type=Path, default=None,
                        help="JSON of an earlier run: keep its measurements that others disturbed less than "
                             "--quiet-below, measure the rest again (keeping the less disturbed)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--check-single", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure_ours(json.loads(args.single))))
        return
    if args.check_single:
        print(json.dumps(check_forces(json.loads(args.check_single))))
        return
    if args.quick:
        args.workloads, args.channels = ("acac",), [32]
        args.warmup, args.min_repeats, args.max_repeats, args.target_seconds = 1, 2, 3, 2.0
        args.max_wait, args.retries = min(args.max_wait, 60.0), 0
    unknown = sorted(set(args.models) - set(MODELS)) + sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown model(s)/workload(s) {unknown}; models: {', '.join(MODELS)}; workloads: {', '.join(WORKLOADS)}")

    args.previous, args.earlier_runs = {}, []
    if args.resume:
        earlier = json.loads(args.resume.read_text())
        args.earlier_runs = earlier.get("earlier_runs", []) + [earlier["machine"]]
        for r in earlier["results"]:
            args.previous[(r["workload"], r["channels"], r["model"], r["mode"])] = r
    started = time.time()
    info = machine()
    results, check = [], None
    with tempfile.TemporaryDirectory(prefix="equizoo-mace-step-") as folder:
        workloads = {name: write_workload(name, Path(folder)) for name in args.workloads}
        for w in workloads.values():
            print(f"{w['workload']}: {w['num_graphs']} graph(s), {w['num_atoms']} atoms, {w['num_edges']} edges, "
                  f"avg_num_neighbors {w['avg_num_neighbors']:.3f}", flush=True)
        if not args.no_check and "acac" in workloads:
            config = {**workloads["acac"], "channels": 16, "threads": args.threads}
            child = subprocess.run([sys.executable, __file__, "--check-single", json.dumps(config)],
                                   capture_output=True, text=True, cwd=ROOT)
            check = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else {
                "passed": False, "error": (child.stderr.strip().splitlines() or ["?"])[-1]}
            print(f"check: {check.get('check', 'forces = -dE/dx')}: max relative error "
                  f"{check.get('max_rel_error', float('nan')):.1e} -> {'passed' if check['passed'] else 'FAILED'}", flush=True)
        for name, workload in workloads.items():
            for channels in args.channels:
                for model in args.models:
                    for mode in args.modes:
                        r = measured(args, model, mode, workload, channels)
                        results.append(r)
                        save(args, info, workloads, check, results, started)
                        if r.get("reused"):
                            print(f"{name:4s} C={channels:3d} {model:10s} {mode:5s}  {r['ms']:10.1f} ms  (kept from "
                                  f"{args.resume}, others {r['others_share']:.0%})", flush=True)
                        elif "skipped" in r:
                            print(f"{name:4s} C={channels:3d} {model:10s} {mode:5s}  {r['skipped']}", flush=True)
                        else:
                            print(f"{name:4s} C={channels:3d} {model:10s} {mode:5s}  {r['ms']:10.1f} ms  "
                                  f"({len(r['times_ms'])} repeats, {r['num_parameters']:,} parameters, "
                                  f"finite {r['finite']}, load {r['load1']:.2f}, others {r['others_share']:.0%})", flush=True)
    save(args, info, workloads, check, results, started)
    versions = collect_versions(results)
    finite = all(r.get("finite", True) for r in results)
    print()
    print(f"machine: {info['cpu']}, {info['cores']} cores; {info['date']}; commit {info['commit']}"
          f"{' + uncommitted changes' if info['uncommitted_changes'] or info['untracked_files'] else ''}; "
          f"{args.dtype}, {args.threads} threads; versions {versions}; {time.time() - started:.0f} s")
    print(f"all energies and forces finite: {finite}; forces check: {'not run' if check is None else 'passed' if check['passed'] else check}")
    print(markdown(results, args.models))


def collect_versions(results: list[dict]) -> dict:
    versions = {}
    for r in results:
        if "versions" in r:
            versions.setdefault(r["side"], r["versions"])
    return versions


def save(args, info, workloads, check, results, started) -> None:
    """Write the JSON of what is measured so far (after every measurement, so a stopped run can --resume)."""
    if not args.out:
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".part")
    partial.write_text(json.dumps({
        "machine": info, "earlier_runs": args.earlier_runs, "versions": collect_versions(results), "sizes": SIZES, "dtype": args.dtype,
        "threads": args.threads,
        "protocol": {"warmup": args.warmup, "min_repeats": args.min_repeats, "max_repeats": args.max_repeats,
                     "target_seconds": args.target_seconds, "quiet_below": args.quiet_below},
        "workloads": {k: {key: v for key, v in w.items() if key != "xyz"} for k, w in workloads.items()},
        "check": check, "results": [{k: v for k, v in r.items() if k != "xyz"} for r in results],
        "seconds": time.time() - started,
    }, indent=1))
    partial.replace(args.out)

if __name__ == "__main__":
    main()
