"""FNO on our own Burgers and Navier-Stokes data, trained by ``python -m train`` with the FNO paper's recipe.

Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021 (sec. 5, and
the authors' ``fourier_1d.py`` / ``fourier_2d_time.py``). Their data came from their own solvers; ours come
from ``datasets.pde`` with the same equations, initial-condition laws and grids (``datasets.pde.generate``
documents each protocol), so the comparison is of the whole pipeline: solver, model and training.

    burgers        u0 -> u(., 1), nu = 0.1, u0 ~ N(0, 625 (-Delta + 25 I)^-2); N = 1000 train, 100 test at
                   s = 1024 (solved on --solver-resolution points, 8192 in the paper); FNO-1D: width 64,
                   16 modes, 4 Fourier layers; Adam lr 1e-3, weight decay 1e-4, halved every 100 epochs
                   (every epochs / 5 with --epochs), 500 epochs, batch 20, relative L2 loss. Paper (Table 1,
                   s = 1024): 0.0160.
    navier_stokes  w(., 0..9) -> w(., 10..T-1) autoregressively, nu = 1e-3, T = 50, 64 x 64 (solved on
                   --solver-resolution, 256 in the paper), FNO forcing; FNO-2D: width 20, 12 modes, the
                   10 latest frames as channels; Adam lr 1e-3 halved every 100 epochs, 500 epochs, batch 20,
                   relative L2 of the whole rollout. Paper (Table 2, N = 1000): FNO-2D 0.0128.

Each problem is one run of ``python -m train config=fno_burgers | fno_ns`` with overrides (printed and saved):
the data are generated first in this process (timed, into a cache the run then reads), the training runs
as a child process (timed), and its ``test_metrics.json`` gives the relative L2 and H1 errors. Differences
from the paper's code that remain: our FNO's lifting is a two-layer MLP (theirs one linear layer), the
optimizer is torch's AdamW (decoupled weight decay; theirs adds the decay to the gradient), complex spectral
weights get one Adam second moment per real and imaginary part, the loss is the batch mean of the per-sample
relative error (theirs the sum), and the model normalises its input and output with training statistics.

    python bench/fno_paper.py burgers                                 # the paper's protocol
    python bench/fno_paper.py burgers --nu 0.01 --solver-resolution 1024   # the same at nu = 0.01
    python bench/fno_paper.py navier_stokes --train 100 --test 20 --epochs 50 --t 20   # a reduced one
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import machine_load  # noqa: E402
from datasets.pde.operator_data import build_operator_data  # noqa: E402
from train.config import compose_config  # noqa: E402

# the paper's numbers for the protocol defaults below (relative L2 on the test set)
PAPER = {"burgers": {"l2": 0.0160, "source": "Li et al. ICLR 2021, Table 1 (FNO, s = 1024)"},
         "navier_stokes": {"l2": 0.0128, "source": "Li et al. ICLR 2021, Table 2 (FNO-2D, nu = 1e-3, T = 50, N = 1000)"}}
DEFAULTS = {
    "burgers": {"train": 1000, "test": 100, "epochs": 500, "resolution": 1024, "solver_resolution": 8192, "t": 1.0,
                "nu": 0.1},
    "navier_stokes": {"train": 1000, "test": 200, "epochs": 500, "resolution": 64, "solver_resolution": 256, "t": 50.0,
                      "nu": 1e-3},
}


def overrides_for(problem: str, args: argparse.Namespace, cache: Path) -> tuple[str, list[str]]:
    """The config and the Hydra overrides that make ``python -m train`` follow the paper's recipe."""
    valid = max(1, args.train // 10) if args.valid is None else args.valid
    common = [f"data.num_train={args.train}", f"data.num_valid={valid}", f"data.num_test={args.test}",
              f"data.resolution={args.resolution}", f"data.solver_resolution={args.solver_resolution}",
              f"data.test_resolutions=[{args.resolution}]", f"data.cache_dir={cache}", "data.batch_size=50",
              "loss=relative_l2", "scheduler=step", f"scheduler.step_size={max(1, args.epochs // 5)}",
              "scheduler.gamma=0.5",
              "optimizer.lr=1e-3", "optimizer.weight_decay=1e-4", "optimizer.amsgrad=false",
              "loader.batch_size=20", f"trainer.max_epochs={args.epochs}", "trainer.max_time=null",
              "trainer.enable_progress_bar=false", f"seed={args.seed}", "model.channel_mlp=false",
              "model.positional_embedding=true"]
    if problem == "burgers":
        return "fno_burgers", common + [
            "model.width=64", "model.convolution.modes=[16]", "model.lifting_channels=64",
            "model.projection_channels=128", f"data.parameters.nu={args.nu}", f"data.parameters.t={args.t}"]
    return "fno_ns", common + [
        "model.width=20", "model.convolution.modes=[12,12]", "model.lifting_channels=20",
        "model.projection_channels=128", f"data.parameters.nu={args.nu}", f"data.parameters.t={args.t}",
        "data.parameters.record_every=1.0", f"data.parameters.dt={args.dt}", "data.rollout.history=10",
        "data.rollout.train=rollout"]


def run(problem: str, args: argparse.Namespace) -> dict:
    cache = args.workdir / "cache"
    run_dir = args.workdir / f"{problem}_run"
    config_name, overrides = overrides_for(problem, args, cache)
    config = compose_config(config_name, overrides)

    start = time.perf_counter()
    data_options = {k: v for k, v in config["data"].items() if k != "rollout"}
    data_options["progress"] = True
    data = build_operator_data(**data_options)
    generation_s = time.perf_counter() - start
    print(f"[{problem}] data: train {tuple(data.train_x.shape)}, test {[tuple(x.shape) for x, _ in data.test.values()]}"
          f" in {generation_s:.0f} s", flush=True)

    command = [sys.executable, "-m", "train", f"config={config_name}", *overrides, f"run_dir={run_dir}"]
    print("+ " + " ".join(command[1:]), flush=True)
    load1, busy, ours, started = (os.getloadavg()[0], machine_load.busy_cpu_seconds(),
                                  machine_load.children_cpu_seconds(), time.perf_counter())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    child = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    training_s = time.perf_counter() - started
    others = (machine_load.busy_cpu_seconds() - busy) - (machine_load.children_cpu_seconds() - ours)
    if child.returncode != 0:
        raise SystemExit(f"python -m train failed ({child.returncode}):\n{child.stderr[-3000:]}")
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    return {
        "problem": problem, "config": config_name, "overrides": overrides,
        "data": {"train": list(data.train_x.shape), "generation_s": generation_s, "sources": data.sources},
        "training": {"wall_s": training_s, "epochs": args.epochs, "seconds_per_epoch": training_s / args.epochs,
                     "threads": args.threads, "load1_at_start": load1,
                     "others_share": max(others, 0.0) / (training_s * (os.cpu_count() or 1))},
        "test_metrics": metrics,
        "paper": PAPER[problem] if _is_paper_protocol(problem, args) else None,
        "protocol": "paper" if _is_paper_protocol(problem, args) else "reduced",
        "run_dir": str(run_dir),
    }


def _is_paper_protocol(problem: str, args: argparse.Namespace) -> bool:
    defaults = DEFAULTS[problem]
    return all(getattr(args, key) == value for key, value in defaults.items() if key != "solver_resolution")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("problem", choices=sorted(DEFAULTS))
    parser.add_argument("--train", type=int)
    parser.add_argument("--valid", type=int, default=None, help="validation samples (default train / 10)")
    parser.add_argument("--test", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--solver-resolution", type=int)
    parser.add_argument("--t", type=float, help="final time (Navier-Stokes: T, frames at 1, 2, ..., T)")
    parser.add_argument("--nu", type=float, help="viscosity (the paper's: burgers 0.1, navier_stokes 1e-3)")
    parser.add_argument("--dt", type=float, default=1e-3, help="navier_stokes: the solver's largest step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/equizoo-bench-fno-paper"))
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/fno-paper-<problem>-cpu.json")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.problem].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    record = run(args.problem, args)
    record["machine"] = {**machine_load.machine(), "platform": platform.platform()}
    record["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    out = args.out or ROOT / "bench" / "results" / f"fno-paper-{args.problem}-nu{args.nu:g}-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    metrics = record["test_metrics"]["metrics"]
    print(json.dumps({"metrics": metrics, "seconds_per_epoch": record["training"]["seconds_per_epoch"],
                      "paper": record["paper"]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
