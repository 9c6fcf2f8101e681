"""Fine-tuning a pretrained model on 50 frames of a new molecule against training from scratch on them.

The new molecule is acetylacetone (``../shared/data/acac``: DFT: ORCA, PBE+D3/def2-SVP, see its SOURCE.md),
which the pretrained models never saw: they were trained on GFN2-xTB MD of ethanol, acetic acid,
acetamide and ethylamine (``organics_gfn2``). Every run is this project's own ``python -m train``
with the quick config's model (``config=mace``/``mace_tdn``: 32 channels, max_ell 2, correlation 3)
and the same data, budget and schedule, one process per run:

- train: 50 frames drawn (seeded) from ``train_300K.xyz``; validation: 50 other frames of it;
  test: ``test_MD_300K.xyz`` (every frame);
- ``scratch``: E0s from the isolated atoms, statistics from the 50 frames, random initial weights;
- ``finetune``: ``finetune.from=<pretrained>`` (E0s refitted on the pretrained model's residuals,
  its scale, shift and neighbour normalisation), the learning rate times ``lr_scale``.

It records the test E/F RMSE of the best (EMA) weights, the optimizer steps, the wall time, and the
validation force RMSE along the way (after the first epoch and at the 25/50/100 % marks of the
budget), to bench/results/finetune-cpu.json, and prints a markdown table.

    .venv/bin/python bench/finetune.py                 # all runs, two at a time (one thread each)
    .venv/bin/python bench/finetune.py --epochs 5      # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.provenance import provenance  # noqa: E402

ACAC = ROOT.parent / "shared" / "data" / "acac"
RUNS = {
    # name: (config, extra overrides)
    "scratch cg": ("mace", []),
    "finetune mace_organics (cg)": ("mace", ["finetune.from=mace_organics"]),
    "finetune mace_organics (cg), lr x0.1": ("mace", ["finetune.from=mace_organics", "finetune.lr_scale=0.1"]),
    "scratch cp (TDN)": ("mace_tdn", []),
    "finetune mace_tdn_organics (cp)": ("mace_tdn", ["finetune.from=mace_tdn_organics"]),
}


def overrides(args, run_dir: Path) -> list[str]:
    return [
        "data=acac", f"data.train_path={ACAC / 'train_300K.xyz'}", f"data.test_path={ACAC / 'test_MD_300K.xyz'}",
        f"data.atomic_energies={ACAC / 'isolated_atoms.xyz'}", "data.valid_fraction=0.05",
        f"data.max_frames={args.frames}", "loader.batch_size=5", f"trainer.max_epochs={args.epochs}",
        "trainer.max_time=null", "trainer.enable_progress_bar=false", f"run_dir={run_dir}",
    ]


def validation_curve(run_dir: Path) -> list[tuple[int, float]]:
    rows = list(csv.DictReader(open(run_dir / "csv" / "version_0" / "metrics.csv")))
    return [(int(r["step"]), float(r["val/forces_rmse"])) for r in rows if r.get("val/forces_rmse")]


def one_run(args, name: str, out: Path) -> dict:
    config, extra = RUNS[name]
    run_dir = out / (name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", ""))
    command = [sys.executable, "-m", "train", f"config={config}", *overrides(args, run_dir), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"name": name, "error": done.stderr[-2000:], "command": " ".join(command[1:])}
    metrics = json.loads((run_dir / "test_metrics.json").read_text())["metrics"]
    curve = validation_curve(run_dir)
    steps = curve[-1][0] if curve else None
    marks = {}
    for fraction in (0.0, 0.25, 0.5, 1.0):
        target = fraction * (steps or 0)
        reached = [value for step, value in curve if step >= target]
        marks[f"{int(fraction * 100)}%"] = reached[0] if reached else None
    return {"name": name, "command": "python " + " ".join(command[1:]), "seconds": seconds, "steps": steps,
            "test_energy_rmse_meV": metrics["energy"]["rmse"], "test_forces_rmse_meV_per_A": metrics["forces"]["rmse"],
            "test_energy_per_atom_rmse_meV": metrics["energy_per_atom"]["rmse"],
            "val_forces_rmse_along_the_way": marks, "run_dir": os.path.relpath(run_dir, ROOT)}


def markdown(results: list[dict]) -> str:
    lines = ["| run | steps | time (s) | test E RMSE (meV) | test F RMSE (meV/Å) | val F RMSE after epoch 1 / 25 % / 50 % |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | failed | | | | |")
            continue
        marks = r["val_forces_rmse_along_the_way"]
        along = " / ".join(f"{marks[k]:.1f}" if marks[k] is not None else "-" for k in ("0%", "25%", "50%"))
        lines.append(f"| {r['name']} | {r['steps']} | {r['seconds']:.0f} | {r['test_energy_rmse_meV']:.1f} | "
                     f"{r['test_forces_rmse_meV_per_A']:.1f} | {along} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", nargs="*", default=list(RUNS), help="names of RUNS")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_finetune")
    parser.add_argument("--save", type=Path, default=ROOT / "bench" / "results" / "finetune-cpu.json")
    args = parser.parse_args()
    if not ACAC.is_dir():
        print(f"needs {ACAC} (the shared benchmark data)", file=sys.stderr)
        return 1
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(lambda name: one_run(args, name, args.out), args.runs))
    record = {"benchmark": "finetune vs scratch on acetylacetone", "started": started, "provenance": provenance(),
              "settings": {"frames": args.frames, "epochs": args.epochs, "parallel": args.parallel,
                           "threads": args.threads}, "results": results}
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(results))
    for r in results:
        if "error" in r:
            print(f"\n{r['name']} failed:\n{r['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
