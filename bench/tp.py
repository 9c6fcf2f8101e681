"""Tensor-product benchmark: the four equizoo methods against e3nn, in one run.

The product is MACE's message, the hot spot of an interatomic potential: node features
``U x (0e + 1o + ... + L)`` times the edge's spherical harmonics ``0e + 1o + ... + L`` (mul 1)
into ``U x (0e + 1o + ... + L)``, channelwise (``uvu``) with one weight vector per row, as fed
by MACE's radial MLP. With these irreps parity allows only ``l1 + l2 + l3`` even paths, so every
method covers the same couplings; they differ in how weights enter (per path for cg/e3nn, per
irrep for gaunt/grid, shared by all paths for cp) and in cost.

For each (L, channels U, rows) and method: forward time, forward+backward time (gradients of
all three inputs) and the peak memory of forward+backward above the inputs. Each measurement
runs in its own process so peaks do not mix (CPU: peak resident memory via /proc, CUDA:
``torch.cuda.max_memory_allocated``). Results print as markdown, with times as ratios to e3nn
(below 1 = faster than e3nn), and are saved as JSON.

    python bench/tp.py --quick                   # a minute on a laptop CPU
    python bench/tp.py                           # the full grid (L 1..6, U 32/128, rows 1e4/1e5)
    python bench/tp.py --device cuda --kernel fused
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

METHODS = ("e3nn", "cg", "gaunt", "grid", "cp")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build(method: str, lmax: int, channels: int, kernel: str, device: str, dtype):
    """The module and its inputs for one configuration."""
    import torch
    from e3nn import o3

    sh = o3.Irreps.spherical_harmonics(lmax)
    node = o3.Irreps([(channels, ir) for _, ir in sh])
    if method == "e3nn":
        from layers.tensor_product.cg import cg_instructions

        instructions = cg_instructions(node, sh, node, "uvu")
        module = o3.TensorProduct(node, sh, node, instructions, shared_weights=False, internal_weights=False)
    else:
        from layers.tensor_product import make_tensor_product

        module = make_tensor_product(node, sh, node, method=method, mode="uvu", kernel=kernel, shared_weights=False)
    return module.to(device=device, dtype=dtype), node, sh


def measure(config: dict) -> dict:
    """Run one configuration in this process (called in a child process)."""
    import torch

    torch.set_num_threads(config["threads"])
    device, dtype = config["device"], getattr(torch, config["dtype"])
    torch.manual_seed(0)
    started = time.perf_counter()
    module, node, sh = build(config["method"], config["lmax"], config["channels"], config["kernel"], device, dtype)
    build_seconds = time.perf_counter() - started
    rows = config["rows"]
    x1 = torch.randn(rows, node.dim, device=device, dtype=dtype, requires_grad=True)
    x2 = torch.randn(rows, sh.dim, device=device, dtype=dtype, requires_grad=True)
    weight = torch.randn(rows, module.weight_numel, device=device, dtype=dtype, requires_grad=True)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            module(x1, x2, weight)

    def forward_backward():
        out = module(x1, x2, weight)
        torch.autograd.grad(out, (x1, x2, weight), torch.ones_like(out))

    def timed(function) -> float:
        function()  # warm-up (compilation, caches)
        sync()
        repeats, total, best = 0, 0.0, float("inf")
        while repeats < config["min_repeats"] or (total < config["min_seconds"] and repeats < 50):
            start = time.perf_counter()
            function()
            sync()
            elapsed = time.perf_counter() - start
            best, total, repeats = min(best, elapsed), total + elapsed, repeats + 1
        return best

    forward_ms = 1e3 * timed(forward)
    # peak memory of one forward+backward, above what the inputs already hold
    if device == "cuda":
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward_backward()
        torch.cuda.synchronize()
        peak_mib = (torch.cuda.max_memory_allocated() - baseline) / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
        baseline = _rss_kib("VmRSS")
        forward_backward()
        peak_mib = (_rss_kib("VmHWM") - baseline) / 1024
    forward_backward_ms = 1e3 * timed(forward_backward)
    return {
        **config,
        "forward_ms": forward_ms,
        "forward_backward_ms": forward_backward_ms,
        "peak_mib": peak_mib,
        "build_s": build_seconds,
        "weight_numel": module.weight_numel,
        "rank": getattr(module, "rank", None),
    }


def estimated_gib(lmax: int, channels: int, rows: int) -> float:
    """Rough size of inputs, outputs and their gradients (float32), to skip what cannot fit."""
    dim = (lmax + 1) ** 2
    paths = sum(1 for l1 in range(lmax + 1) for l2 in range(lmax + 1) for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1) if (l1 + l2 + l3) % 2 == 0)
    return 4 * rows * channels * (4 * dim + 2 * paths) / 2**30


def run_grid(args) -> list[dict]:
    """Every configuration, smallest first. Where e3nn's forward took longer than ``--budget``
    seconds, every larger configuration (at least as large in L, channels and rows) is skipped."""
    results = []
    too_slow: list[tuple[int, int, int]] = []
    for lmax in args.lmax:
        for channels in args.channels:
            for rows in args.rows:
                for method in args.methods:
                    config = dict(
                        method=method, lmax=lmax, channels=channels, rows=rows, device=args.device, dtype=args.dtype,
                        kernel=args.kernel, threads=args.threads, min_repeats=args.min_repeats, min_seconds=args.min_seconds,
                    )
                    if any(lmax >= l and channels >= c and rows >= r and (lmax, channels, rows) != (l, c, r) for l, c, r in too_slow):
                        results.append({**config, "skipped": f"skipped: e3nn forward over {args.budget:g} s at a smaller size"})
                        continue
                    if estimated_gib(lmax, channels, rows) > args.max_gib:
                        results.append({**config, "skipped": f"needs about {estimated_gib(lmax, channels, rows):.0f} GiB"})
                        print(f"skip {method} L={lmax} U={channels} rows={rows}: memory", flush=True)
                        continue
                    child = subprocess.run(
                        [sys.executable, __file__, "--single", json.dumps(config)],
                        capture_output=True, text=True, timeout=args.timeout,
                    )
                    if child.returncode != 0:
                        killed = child.returncode in (-9, 137)
                        tail = "killed (out of memory)" if killed else (child.stderr.strip().splitlines() or ["?"])[-1]
                        results.append({**config, "skipped": f"failed: {tail[:120]}"})
                    else:
                        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
                    r = results[-1]
                    if method == "e3nn" and "skipped" not in r and r["forward_ms"] > 1e3 * args.budget:
                        too_slow.append((lmax, channels, rows))
                    if "skipped" in r:
                        print(f"{method:6s} L={lmax} U={channels:3d} rows={rows:6d}  {r['skipped']}", flush=True)
                    else:
                        print(
                            f"{method:6s} L={lmax} U={channels:3d} rows={rows:6d}  fwd {r['forward_ms']:9.2f} ms  "
                            f"fwd+bwd {r['forward_backward_ms']:9.2f} ms  peak {r['peak_mib']:8.1f} MiB",
                            flush=True,
                        )
    return results


def markdown(results: list[dict], methods: tuple[str, ...]) -> str:
    """One row per configuration: e3nn's absolute numbers, then each method as a ratio to e3nn."""
    header = "| L | U | rows | e3nn fwd ms | e3nn fwd+bwd ms | e3nn peak MiB | " + " | ".join(
        f"{m} fwd / fwd+bwd / mem" for m in methods if m != "e3nn"
    ) + " |"
    lines = [header, "|" + "---|" * (6 + len([m for m in methods if m != "e3nn"]))]
    keys = sorted({(r["lmax"], r["channels"], r["rows"]) for r in results})
    for key in keys:
        row = {r["method"]: r for r in results if (r["lmax"], r["channels"], r["rows"]) == key}
        base = row.get("e3nn")
        if base is None or "skipped" in base:
            cells = ["–", "–", "–"]
        else:
            cells = [f"{base['forward_ms']:.2f}", f"{base['forward_backward_ms']:.2f}", f"{base['peak_mib']:.0f}"]
        for method in methods:
            if method == "e3nn":
                continue
            r = row.get(method)
            if r is None or "skipped" in r:
                cells.append((r or {}).get("skipped", "–"))
            elif base is None or "skipped" in base:
                cells.append(f"{r['forward_ms']:.2f} ms / {r['forward_backward_ms']:.2f} ms / {r['peak_mib']:.0f} MiB")
            else:
                cells.append(
                    f"{r['forward_ms'] / base['forward_ms']:.2f} / {r['forward_backward_ms'] / base['forward_backward_ms']:.2f}"
                    f" / {r['peak_mib'] / max(base['peak_mib'], 1e-9):.2f}"
                )
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores visible (torch {torch.__version__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="L 1..3, U 32, 2000 rows")
    parser.add_argument("--lmax", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--channels", type=lambda s: [int(x) for x in s.split(",")], default=[32, 128])
    parser.add_argument("--rows", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--methods", type=lambda s: tuple(s.split(",")), default=METHODS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--kernel", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-gib", type=float, default=8.0, help="skip configurations needing more memory")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement process")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="skip configurations larger than one where e3nn's forward took longer (seconds)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(json.loads(args.single))))
        return
    if args.quick:
        args.lmax, args.channels, args.rows, args.min_repeats, args.min_seconds = [1, 2, 3], [32], [2000], 2, 0.2
    started = time.time()
    results = run_grid(args)
    print()
    print(f"machine: {machine()}; {date.today()}; dtype {args.dtype}; kernel {args.kernel}; {time.time() - started:.0f} s")
    print(markdown(results, args.methods))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine(), "date": str(date.today()), "results": results}, indent=1))


if __name__ == "__main__":
    main()
