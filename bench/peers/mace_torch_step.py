"""The peer side of ``bench/mace_step.py``: one measurement of mace-torch's ``ScaleShiftMACE``.

Runs under ``.venv-mace/bin/python`` (mace-torch 0.3.16 with its e3nn 0.4.4; install with
``bench/peers/install_mace_torch.sh``), never under equizoo's environment. It reads the structures
from an extxyz file (labels under ``REF_energy`` / ``REF_forces``), builds the graphs with
mace-torch's own pipeline (``config_from_atoms`` -> ``AtomicData.from_config`` -> its
``DataLoader``, all structures in one batch), builds the model from the sizes given as arguments
and times one of

- ``--mode eval``: energy and forces (``model(batch, training=False, compute_force=True)``);
- ``--mode train``: forward with forces, MACE's ``WeightedEnergyForcesLoss``, backward, an Adam step.

It prints one JSON line: the median time in ms, every timed repeat, the parameter count, the
energies of the first call (to check that they are finite) and the versions.

    .venv-mace/bin/python bench/peers/mace_torch_step.py --xyz structures.xyz --mode train --channels 32

The module's top level uses the standard library only: ``bench/mace_step.py`` imports
:func:`median_ms` from here, so that both sides are timed by the same loop.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable


def median_ms(step: Callable[[], object], warmup: int, min_repeats: int, max_repeats: int,
              target_seconds: float) -> tuple[float, list[float]]:
    """Median wall time (ms) of ``step()`` after ``warmup`` untimed calls.

    Repeats until ``max_repeats`` calls, or earlier once at least ``min_repeats`` calls have taken
    ``target_seconds`` together (so a step of over ``target_seconds / max_repeats`` s gets fewer).
    The warm-up stops after one call when that call alone took over ``target_seconds / 4``: the
    one-time costs are then small against the step. Returns the median and every timed call in ms.
    """
    for _ in range(warmup):
        start = time.perf_counter()
        step()
        if time.perf_counter() - start > target_seconds / 4:
            break
    times: list[float] = []
    while len(times) < max_repeats:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if len(times) >= min_repeats and sum(times) >= target_seconds:
            break
    return 1e3 * statistics.median(times), [1e3 * t for t in times]


def peak_rss_mib() -> float:
    """The peak resident memory of this process so far (MiB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def add_model_arguments(parser: argparse.ArgumentParser, dtype: str) -> None:
    """The model's sizes and E0s (the defaults: ``bench/mace_step.py``'s ``SIZES``), its dtype (default
    ``dtype``), torch threads and seed: the arguments every peer script takes (see :func:`start`)."""
    parser.add_argument("--channels", type=int, required=True, help="C of the hidden irreps Cx0e+Cx1o")
    parser.add_argument("--max-ell", type=int, default=3)
    parser.add_argument("--max-L", type=int, default=1, help="hidden irreps up to this l (1: Cx0e+Cx1o)")
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--num-interactions", type=int, default=2)
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--num-bessel", type=int, default=8)
    parser.add_argument("--num-polynomial-cutoff", type=int, default=5)
    parser.add_argument("--radial-mlp", default="64,64,64")
    parser.add_argument("--readout-mlp", type=int, default=16, help="MLP_irreps = {n}x0e")
    parser.add_argument("--avg-num-neighbors", type=float, required=True)
    parser.add_argument("--e0s", required=True, help='JSON {"Z": eV}, e.g. {"1": -13.6, "6": -1026.9}')
    parser.add_argument("--dtype", default=dtype)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)


def start(args: argparse.Namespace) -> tuple[object, dict[int, float]]:
    """Import mace-torch (before e3nn: that lets e3nn 0.4.4 load its constants under torch >= 2.6), set
    torch's threads, mace-torch's default dtype and its seeds from ``args``; mace-torch's table of the
    elements and the E0s (eV per atomic number) of ``--e0s``."""
    import mace  # noqa: F401
    import torch
    from mace import tools

    torch.set_num_threads(args.threads)
    tools.set_default_dtype(args.dtype)
    tools.set_seeds(args.seed)
    e0s = {int(z): float(e) for z, e in json.loads(args.e0s).items()}
    return tools.get_atomic_number_table_from_zs(sorted(e0s)), e0s


def build_scale_shift_mace(args: argparse.Namespace, z_table, e0s: dict[int, float], scale: float = 1.0,
                           shift: float = 0.0):
    """mace-torch's ``ScaleShiftMACE`` of the sizes in ``args`` (:func:`add_model_arguments`), in the
    current default dtype with the current seed: ``RealAgnosticInteractionBlock`` first, then
    ``RealAgnosticResidualInteractionBlock``, SiLU gate, Bessel radial basis, ``use_reduced_cg=False``.

    ``z_table`` is mace-torch's ``AtomicNumberTable`` of the elements, ``e0s`` eV per atomic number.
    Imports mace-torch here, so that this module's top level stays standard library only; the caller
    must have imported ``mace`` before ``e3nn`` (:func:`start` does).
    """
    import numpy as np
    from e3nn import o3
    from mace import modules

    return modules.ScaleShiftMACE(
        r_max=args.r_max,
        num_bessel=args.num_bessel,
        num_polynomial_cutoff=args.num_polynomial_cutoff,
        max_ell=args.max_ell,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=args.num_interactions,
        num_elements=len(z_table),
        hidden_irreps=o3.Irreps(" + ".join(f"{args.channels}x{l}{'e' if l % 2 == 0 else 'o'}"
                                          for l in range(args.max_L + 1))),
        MLP_irreps=o3.Irreps(f"{args.readout_mlp}x0e"),
        atomic_energies=np.array([e0s[z] for z in z_table.zs]),
        avg_num_neighbors=args.avg_num_neighbors,
        atomic_numbers=z_table.zs,
        correlation=args.correlation,
        gate=modules.gate_dict["silu"],
        radial_MLP=[int(w) for w in args.radial_mlp.split(",")],
        radial_type="bessel",
        use_reduced_cg=False,  # mace-torch's command-line default
        atomic_inter_scale=scale,
        atomic_inter_shift=shift,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xyz", type=Path, required=True, help="extxyz with REF_energy / REF_forces labels")
    parser.add_argument("--mode", choices=("eval", "train"), required=True)
    add_model_arguments(parser, dtype="float32")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--energy-weight", type=float, default=1.0)
    parser.add_argument("--forces-weight", type=float, default=100.0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--max-repeats", type=int, default=10)
    parser.add_argument("--target-seconds", type=float, default=20.0)
    args = parser.parse_args()

    z_table, e0s = start(args)
    import ase.io
    import e3nn
    import mace
    import torch
    from mace import data, modules
    from mace.tools.torch_geometric.dataloader import DataLoader

    # mace-torch's data pipeline, all structures in one batch
    keys = data.KeySpecification(info_keys={"energy": "REF_energy"}, arrays_keys={"forces": "REF_forces"})
    atoms_list = ase.io.read(args.xyz, index=":")
    configs = [data.config_from_atoms(atoms, key_specification=keys) for atoms in atoms_list]
    graphs = [data.AtomicData.from_config(c, z_table=z_table, cutoff=args.r_max) for c in configs]
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs), shuffle=False, drop_last=False)))
    batch_dict = batch.to_dict()

    started = time.perf_counter()
    model = build_scale_shift_mace(args, z_table, e0s, scale=args.scale, shift=args.shift)
    build_seconds = time.perf_counter() - started
    num_parameters = sum(p.numel() for p in model.parameters())

    first: dict = {}
    if args.mode == "eval":
        model.eval()

        def step():
            out = model(batch_dict, training=False, compute_force=True)
            if not first:
                first.update(energy=out["energy"].detach().tolist(), forces_finite=bool(torch.isfinite(out["forces"]).all()))
    else:
        model.train()
        loss_fn = modules.WeightedEnergyForcesLoss(energy_weight=args.energy_weight, forces_weight=args.forces_weight)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

        def step():
            optimizer.zero_grad(set_to_none=True)
            out = model(batch_dict, training=True, compute_force=True)
            loss = loss_fn(pred=out, ref=batch)
            loss.backward()
            optimizer.step()
            if not first:
                first.update(energy=out["energy"].detach().tolist(), loss=float(loss.detach()),
                             forces_finite=bool(torch.isfinite(out["forces"]).all()))

    ms, times = median_ms(step, args.warmup, args.min_repeats, args.max_repeats, args.target_seconds)
    print(json.dumps({
        "side": "mace-torch",
        "mode": args.mode,
        "ms": ms,
        "times_ms": times,
        "num_parameters": num_parameters,
        "num_atoms": int(batch.num_nodes),
        "num_edges": int(batch.edge_index.shape[1]),
        "num_graphs": int(batch.num_graphs),
        "build_s": build_seconds,
        "peak_rss_mib": peak_rss_mib(),
        "energy": first.get("energy"),
        "loss": first.get("loss"),
        "finite": bool(all(math.isfinite(e) for e in first.get("energy", [float("nan")])) and first.get("forces_finite")),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "e3nn": e3nn.__version__,
                     "mace-torch": getattr(mace, "__version__", None) or _mace_version()},
    }))


def _mace_version() -> str:
    from importlib.metadata import version

    return version("mace-torch")


if __name__ == "__main__":
    main()
