"""Our neural operators against neuraloperator 2.0.0's FNO on its Darcy-16 set, in one run.

Data: neuraloperator's small Darcy flow (``darcy_train_16``: 1000 samples; ``darcy_test_16`` and
``darcy_test_32``: the same 50 test fields at 16x16 and 32x32), read by
``datasets.pde.neuraloperator_files``; the input is the coefficient mask as float, one channel.

Recipe (neuraloperator's own example, ``examples/models/plot_FNO_darcy.py`` @ 9933918e6d4b, with the
data pipeline and training loop of the installed neuralop 2.0.0; details and sources in
``bench/peers/neuralop_darcy.py``): batches of 64 in file order (no shuffling), AdamW (lr 1e-2,
weight decay 1e-4, neuralop's variant: ``eps`` added to ``sqrt(v)``, bias correction in the step size,
decoupled decay after the update, one second moment ``|g|^2`` per complex entry), cosine schedule
``T_max = 30`` stepped per epoch, training loss relative H1 summed over the batch on the normalised
output and target, output normalised per channel with the training statistics, input not normalised,
seed 0. The peer trains their FNO with it in ``.venv-neuralop`` (a subprocess); every one of our
models is trained by :func:`train_one` with the same recipe: the same batches, :class:`RecipeAdamW`
(neuralop's update rule, written here for our parameters, which store complex weights as real pairs),
the same schedule and loss (``train.operator_losses.relative_h1`` on ``(prediction - mean) / std``,
which is what their data processor trains on), the normalisers as the model's own
``output_mean``/``output_std``.

Metrics: relative L2 and H1 (``train.operator_losses``, ``domain="periodic"``, mean over the 50 test
samples) of every model's predictions, the peer's included, at 16 (the training grid) and 32 (zero
shot: the 32x32 input, output on the 32x32 grid). DeepONet's branch reads its 16x16 sensors, so at 32
it gets the 32x32 input subsampled at every other node (which is the 16x16 test input) and its trunk
is evaluated on the 32x32 grid. The peer's own ``LpLoss``/``H1Loss`` values on its predictions are
compared with ours (the largest difference is reported). Seconds per epoch: median training time of
an epoch (no evaluation inside), one thread per process, two processes at a time.

    python bench/operators.py                              # all models, 100 epochs -> operators-cpu.json
    python bench/operators.py --models neuralop,fno --epochs 5 --out /tmp/ops.json
    python bench/operators.py --worker fno --epochs 100 --workdir DIR   # one of ours (the driver runs it)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import machine_load  # noqa: E402
from datasets.pde.neuraloperator_files import find_neuraloperator_data, read_neuraloperator_pt  # noqa: E402
from layers.spectral import SpectralWeights, channel_statistics  # noqa: E402
from train.operator_losses import relative_h1, relative_l2  # noqa: E402
from zoo import build_model  # noqa: E402

PEER_PYTHON = ROOT / ".venv-neuralop" / "bin" / "python"
PEER_SCRIPT = ROOT / "bench" / "peers" / "neuralop_darcy.py"
ALL_MODELS = ("neuralop", "fno", "tfno", "mgno", "deeponet")
RECIPE = {"batch_size": 64, "shuffle": False, "lr": 1e-2, "weight_decay": 1e-4, "betas": (0.9, 0.999),
          "eps": 1e-6, "T_max": 30, "train_loss": "relative_h1 (periodic), summed over the batch, normalised space",
          "seed": 0}


def darcy_models(output_mean: list[float], output_std: list[float]) -> dict[str, tuple[str, dict, str]]:
    """Our models on Darcy-16: name -> (registry name, keyword arguments, what was chosen and why)."""
    common = {"in_channels": 1, "out_channels": 1, "spatial_dims": 2, "domain": "periodic",
              "output_mean": output_mean, "output_std": output_std}
    # the peer's FNO: n_modes 8 keeps k in -4..3 (first axis) and 0..4 (last); our modes m keeps |k| < m,
    # so m = 5 keeps -4..4 and 0..4: the nearest block (9 x 5 against 8 x 5)
    fno = {**common, "convolution": {"kind": "fourier", "modes": [5, 5]}, "width": 24, "num_layers": 4,
           "lifting_channels": 48, "projection_channels": 48, "channel_mlp": True, "channel_mlp_expansion": 0.5,
           "positional_embedding": True, "domain_padding": 0.0}
    return {
        "fno": ("fno", fno, "same size as neuralop's FNO (modes [5,5] ~ their n_modes 8; width 24; lifting/"
                            "projection ratio 2; channel MLP 0.5; grid embedding j/N; no padding)"),
        "tfno": ("tfno", {**fno, "convolution": {"kind": "fourier", "modes": [5, 5], "weights": "tucker", "rank": 0.42}},
                 "the FNO above with Tucker weights, rank 0.42 of the dense size (the zoo's tfno preset)"),
        "mgno": ("mgno", {**common}, "zoo defaults (width 32, 4 layers, 4 levels); periodic padding: 16 = 2 x 8 coarsens "
                                    "3 times, while Dirichlet padding needs 15 or 31"),
        "deeponet": ("deeponet", {**common, "sensor_shape": [16, 16]}, "zoo defaults (branch/trunk 128-128, p 64); "
                                                                      "sensors on the 16x16 grid"),
    }


def load_darcy(n_train: int) -> dict[str, torch.Tensor]:
    """``x_train, y_train`` (``[n_train, 1, 16, 16]``), ``x_16, y_16, x_32, y_32`` as float32."""
    out = {}
    for key, name in (("train", "darcy_train_16"), ("16", "darcy_test_16"), ("32", "darcy_test_32")):
        data = read_neuraloperator_pt(find_neuraloperator_data(name))
        x, y = data["x"].to(torch.float32).unsqueeze(1), data["y"].to(torch.float32).unsqueeze(1)
        if key == "train":
            x, y = x[:n_train], y[:n_train]
        out[f"x_{key}"], out[f"y_{key}"] = x.contiguous(), y.contiguous()
    return out


class RecipeAdamW(torch.optim.Optimizer):
    """neuraloperator 2.0.0's ``neuralop.training.AdamW`` update rule, for real parameters some of which
    hold complex numbers as trailing pairs (``complex_pairs``: parameters ``[..., 2]``).

    Per parameter: ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) |g|^2`` (for a complex pair ``|g|^2``
    is ``g_re^2 + g_im^2``, one second moment for both parts, as their optimizer has for a complex
    tensor); ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``; then ``p -= lr wd p``.
    """

    def __init__(self, params, complex_pairs: set[int], lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps})
        self.complex_pairs = complex_pairs

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    pair = id(p) in self.complex_pairs
                    state["exp_avg_sq"] = torch.zeros_like(p[..., :1] if pair else p)
                state["step"] += 1
                grad = p.grad
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                squared = grad.square().sum(-1, keepdim=True) if id(p) in self.complex_pairs else grad.square()
                state["exp_avg_sq"].mul_(beta2).add_(squared, alpha=1 - beta2)
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                p.add_(state["exp_avg"] / (state["exp_avg_sq"].sqrt() + group["eps"]), alpha=-step_size)
                if group["weight_decay"] > 0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])


def complex_pairs(model: torch.nn.Module) -> set[int]:
    """ids of the parameters that store complex numbers as ``[..., 2]``: every parameter of a complex
    ``SpectralWeights`` module except CP's real ``weights`` (lambda)."""
    ids = set()
    for module in model.modules():
        if isinstance(module, SpectralWeights) and module.complex_valued:
            ids.update(id(p) for name, p in module.named_parameters() if name != "weights")
    return ids


def train_one(name: str, epochs: int, threads: int, seed: int, n_train: int, workdir: Path) -> dict:
    """Train our model ``name`` on Darcy-16 with the recipe; save predictions, return the record."""
    torch.set_num_threads(threads)
    data = load_darcy(n_train)
    mean, std = channel_statistics(data["y_train"])
    registry_name, kwargs, note = darcy_models(mean, std)[name]
    torch.manual_seed(seed)
    model = build_model(registry_name, **kwargs)
    optimizer = RecipeAdamW(model.parameters(), complex_pairs(model), lr=RECIPE["lr"],
                            weight_decay=RECIPE["weight_decay"], betas=RECIPE["betas"], eps=RECIPE["eps"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=RECIPE["T_max"])
    mean_t = torch.tensor(mean).reshape(1, -1, 1, 1)
    std_t = torch.tensor(std).reshape(1, -1, 1, 1)
    x_train, y_train = data["x_train"], data["y_train"]
    batch = RECIPE["batch_size"]
    epoch_seconds, train_loss = [], []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        total = 0.0
        for i in range(0, len(x_train), batch):
            optimizer.zero_grad(set_to_none=True)
            prediction = model(x_train[i:i + batch])
            # the loss in the normalised space their data processor trains in
            loss = relative_h1((prediction - mean_t) / std_t, (y_train[i:i + batch] - mean_t) / std_t).sum()
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()
        epoch_seconds.append(time.perf_counter() - start)
        train_loss.append(total / len(x_train))
        if not math.isfinite(train_loss[-1]):
            raise SystemExit(f"{name}: training diverged at epoch {epoch} (loss {train_loss[-1]})")
    model.eval()
    predictions = {}
    with torch.no_grad():
        predictions["pred_16"] = model(data["x_16"])
        if name == "deeponet":  # the branch reads its 16x16 sensors: every other node of the 32x32 input
            predictions["pred_32"] = model(data["x_32"][..., ::2, ::2], output_shape=(32, 32))
        else:
            predictions["pred_32"] = model(data["x_32"])
    workdir.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in predictions.items()}, workdir / f"{name}_predictions.pt")
    record = {"model": name, "registry_name": registry_name, "arguments": {k: v for k, v in kwargs.items()
                                                                          if not k.startswith("output_")},
              "note": note, "parameters_real": sum(p.numel() for p in model.parameters()),
              "seconds_per_epoch_median": statistics.median(epoch_seconds), "epoch_seconds": epoch_seconds,
              "train_loss_per_sample": train_loss, "epochs": epochs, "threads": threads, "seed": seed,
              "n_train": len(x_train), "output_normaliser": {"mean": mean, "std": std}}
    (workdir / f"{name}.json").write_text(json.dumps(record, indent=1))
    return record


def command_for(name: str, args: argparse.Namespace) -> list[str]:
    common = ["--epochs", str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed),
              "--n-train", str(args.n_train)]
    if name == "neuralop":
        return [str(PEER_PYTHON), str(PEER_SCRIPT), *common, "--out", str(args.workdir)]
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, *common, "--workdir", str(args.workdir)]


def run_job(name: str, args: argparse.Namespace) -> dict:
    """Run one model's training in its own process; its record, or ``{"error": ...}``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    child = subprocess.run(command_for(name, args), capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    print(f"[{name}] finished in {wall:.0f} s (exit {child.returncode})", flush=True)
    record_file = args.workdir / ("neuralop_fno.json" if name == "neuralop" else f"{name}.json")
    if child.returncode != 0 or not record_file.exists():
        return {"model": name, "error": (child.stderr or child.stdout)[-2000:], "wall_s": wall}
    record = json.loads(record_file.read_text())
    record["wall_s"] = wall
    return record


def score(records: dict[str, dict], args: argparse.Namespace) -> dict:
    """Relative L2/H1 at 16 and 32 of every model's saved predictions, by the same functions; and the
    check of those functions against neuralop's own per-sample values on the peer's predictions."""
    data = load_darcy(args.n_train)
    check = {}
    for name, record in records.items():
        if "error" in record:
            continue
        saved = torch.load(args.workdir / ("neuralop_fno_predictions.pt" if name == "neuralop"
                                           else f"{name}_predictions.pt"), weights_only=True)
        for n in (16, 32):
            prediction, target = saved[f"pred_{n}"].to(torch.float64), data[f"y_{n}"].to(torch.float64)
            per_sample = {"l2": relative_l2(prediction, target, "periodic"),
                          "h1": relative_h1(prediction, target, "periodic")}
            for metric, values in per_sample.items():
                record[f"{metric}_{n}"] = values.mean().item()
                theirs = saved.get(f"neuralop_{metric}_{n}_per_sample")
                if theirs is not None:
                    check[f"{metric}_{n}"] = (values - theirs.to(torch.float64)).abs().max().item()
    return {"max_abs_difference_per_sample": check,
            "what": "our relative_l2/relative_h1 (periodic, float64) minus neuralop's LpLoss(d=2,p=2)/H1Loss(d=2) "
                    "(float32, eps 1e-8) on the peer's predictions, per test sample"}


def table(records: dict[str, dict]) -> str:
    rows = ["| model | parameters (real) | s/epoch | L2 @16 | H1 @16 | L2 @32 (zero-shot) | H1 @32 | train H1 (last epoch) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in records.items():
        if "error" in r:
            rows.append(f"| {name} | failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'} |||||||")
            continue
        rows.append(f"| {name} | {r['parameters_real']:,} | {r['seconds_per_epoch_median']:.2f} | {r['l2_16']:.4f} | "
                    f"{r['h1_16']:.4f} | {r['l2_32']:.4f} | {r['h1_32']:.4f} | {r['train_loss_per_sample'][-1]:.4f} |")
    return "\n".join(rows)


def plot(records: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, r in records.items():
        if "error" not in r:
            ax.semilogy(range(1, len(r["train_loss_per_sample"]) + 1), r["train_loss_per_sample"],
                        label=f"{name} (test L2@16 {r['l2_16']:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (relative H1, normalised output)")
    ax.set_title("Darcy-16, neuraloperator's FNO recipe")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_darcy(args: argparse.Namespace) -> None:
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(ALL_MODELS)}")
    if "neuralop" in models and not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} is missing: create the peer venv (torch + neuraloperator==2.0.0)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    load1, busy, ours, started = os.getloadavg()[0], machine_load.busy_cpu_seconds(), \
        machine_load.children_cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # jobs start in the order given
        results = list(pool.map(lambda name: run_job(name, args), models))
    wall = time.perf_counter() - started
    others = (machine_load.busy_cpu_seconds() - busy) - (machine_load.children_cpu_seconds() - ours)
    records = {r["model"] if r["model"] != "neuraloperator FNO" else "neuralop": r for r in results}
    check = score(records, args)
    peer = records.get("neuralop", {})
    result = {
        "benchmark": "neural operators on neuraloperator's Darcy-16 (1000 train, 50 test at 16 and 32)",
        "machine": machine_load.machine(),
        "load": {"load1_at_start": load1, "wall_s": wall, "jobs_at_once": args.jobs, "threads_per_job": args.threads,
                 "others_share": max(others, 0.0) / (wall * (os.cpu_count() or 1))},
        "versions": {"torch": torch.__version__, **{f"peer_{k}": v for k, v in peer.get("versions", {}).items()}},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "recipe": {**RECIPE, "peer": peer.get("recipe")},
        "metric_check": check,
        "models": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(records, args.out.with_suffix(".png"))
    print(table(records))
    print(f"metric check (max |ours - neuralop's| per sample): {check['max_abs_difference_per_sample']}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="threads per training process")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once")
    parser.add_argument("--models", default=",".join(ALL_MODELS), help=f"comma-separated, from {','.join(ALL_MODELS)}")
    parser.add_argument("--seed", type=int, default=RECIPE["seed"])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operators-cpu.json")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/equizoo-bench-operators"),
                        help="predictions and per-model records")
    parser.add_argument("--worker", choices=ALL_MODELS[1:], help="train one of our models in this process")
    args = parser.parse_args()
    if args.worker:
        record = train_one(args.worker, args.epochs, args.threads, args.seed, args.n_train, args.workdir)
        print(json.dumps({k: record[k] for k in ("model", "parameters_real", "seconds_per_epoch_median")}))
    else:
        run_darcy(args)


if __name__ == "__main__":
    main()
