"""Every neural-operator config of ``configs/`` trained as a user runs it, on this machine, one after another.

``python -m train config=NAME`` with the config's own settings (data generated into a fresh cache, so the
time includes the solver), plus the baselines that make a row readable: ``fno_burgers_cape`` again with
``model.channel_attention_parameters=0`` (the same FNO on the same multi-viscosity data, without CAPE).
For each run: wall time (data generation and training, as the user waits for it), the epochs trained
(``trainer.max_time`` may stop a config early), and the test metrics of ``test_metrics.json``.

    python bench/operator_configs.py                         # all -> bench/results/operator-configs-cpu.json
    python bench/operator_configs.py --configs fno_darcy,sfno_swe --out /tmp/ops.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import machine_load  # noqa: E402

CONFIGS = ("fno_darcy", "tfno_darcy", "mgno_darcy", "fno_burgers", "deeponet_burgers", "fno_burgers_cape", "fno_ns",
           "sfno_swe")
# extra runs after a config: config -> (label, overrides)
BASELINES = {"fno_burgers_cape": ("fno_burgers_cape without CAPE", ["model.channel_attention_parameters=0"])}


def epochs_trained(run_dir: Path) -> int:
    """Epochs with a validation row in the run's CSV log."""
    with open(run_dir / "csv" / "version_0" / "metrics.csv", newline="") as handle:
        return len({row["epoch"] for row in csv.DictReader(handle) if row.get("val/l2")})


def run_config(label: str, config: str, overrides: list[str], workdir: Path) -> dict:
    run_dir = workdir / label.replace(" ", "_")
    command = [sys.executable, "-m", "train", f"config={config}", *overrides, f"run_dir={run_dir}",
               f"data.cache_dir={workdir / 'cache'}", "trainer.enable_progress_bar=false"]
    print("+ " + " ".join(command[1:]), flush=True)
    busy, ours, start = machine_load.busy_cpu_seconds(), machine_load.children_cpu_seconds(), time.perf_counter()
    child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    others = (machine_load.busy_cpu_seconds() - busy) - (machine_load.children_cpu_seconds() - ours)
    record = {"label": label, "config": config, "overrides": overrides, "wall_s": wall,
              "others_share": max(others, 0.0) / (wall * (os.cpu_count() or 1))}
    if child.returncode != 0:
        return {**record, "error": child.stderr[-3000:]}
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    return {**record, "epochs": epochs_trained(run_dir), "max_epochs": resolved["trainer"]["max_epochs"],
            "max_time": resolved["trainer"].get("max_time"), "model": resolved["model"]["name"],
            "train_samples": resolved["data"]["num_train"], "metrics": metrics["metrics"],
            "rollout": metrics.get("rollout")}


def table(records: list[dict]) -> str:
    rows = ["| run | wall (s) | epochs | test relative L2 (H1) per resolution |", "|---|---:|---:|---|"]
    for r in records:
        if "error" in r:
            rows.append(f"| {r['label']} | {r['wall_s']:.0f} | failed | {r['error'].strip().splitlines()[-1]} |")
            continue
        cells = ", ".join(f"{res}: {m['l2']:.4f}" + (f" ({m['h1']:.4f})" if "h1" in m else "")
                          for res, m in sorted(r["metrics"].items(), key=lambda item: int(item[0])))
        rows.append(f"| {r['label']} | {r['wall_s']:.0f} | {r['epochs']}/{r['max_epochs']} | {cells} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/equizoo-bench-operator-configs"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator-configs-cpu.json")
    args = parser.parse_args()
    records = []
    for config in [c for c in args.configs.split(",") if c]:
        records.append(run_config(config, config, [], args.workdir))
        if config in BASELINES:
            label, overrides = BASELINES[config]
            records.append(run_config(label, config, overrides, args.workdir))
        print(table(records[-1:]).splitlines()[-1], flush=True)
    result = {"benchmark": "every operator config with its own settings (python -m train config=NAME)",
              "machine": machine_load.machine(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "runs": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(records))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
