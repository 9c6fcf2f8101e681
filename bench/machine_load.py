"""How busy the machine is, and what it is: for benchmarks on a shared machine.

Timings on a machine that other jobs share are only honest with the load recorded beside them:
``others_share`` measures the share of the cores that other processes use (from ``/proc/stat``,
minus this process's children), ``wait_for_quiet`` waits for a quiet window, ``run_measured`` runs
one measurement process with both, and ``machine`` records CPU, cores, date and commit for
bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (/proc/stat; nan where absent)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def others_share(seconds: float = 2.0) -> float:
    """The share of all cores (0..1) used by other processes while this one sleeps ``seconds``."""
    before = busy_cpu_seconds()
    time.sleep(seconds)
    return (busy_cpu_seconds() - before) / (seconds * (os.cpu_count() or 1))


def wait_for_quiet(quiet_below: float, max_wait: float) -> float:
    """Sleep until other processes use less than ``quiet_below`` of the cores (at most ``max_wait`` s)."""
    deadline = time.time() + max_wait
    share = others_share()
    while share > quiet_below and time.time() < deadline:
        time.sleep(15)
        share = others_share()
    return share


def run_measured(command: list[str], env: dict, cwd: Path, timeout: float, quiet_below: float,
                 max_wait: float) -> tuple[subprocess.CompletedProcess | None, dict]:
    """Run ``command`` (output captured) once other processes use less than ``quiet_below`` of the cores.

    Waits up to ``max_wait`` s for that (no wait, and no sample, when ``quiet_below >= 1``). Returns the
    finished process (``None`` when it ran past ``timeout`` s and was killed) and its context: the
    1-minute load average at the start, others' share of the cores just before (``others_share_before``)
    and during the run (``others_share``: CPU time of the whole machine less this process's children,
    over the wall time and all cores), and the wall time ``wall_s``.
    """
    share_before = wait_for_quiet(quiet_below, max_wait) if quiet_below < 1 else float("nan")
    load = os.getloadavg()[0]
    started, busy, ours = time.perf_counter(), busy_cpu_seconds(), children_cpu_seconds()
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        child = None
    wall = time.perf_counter() - started
    others = (busy_cpu_seconds() - busy) - (children_cpu_seconds() - ours)
    return child, {"load1": load, "others_share_before": share_before, "wall_s": wall,
                   "others_share": max(others, 0.0) / (wall * (os.cpu_count() or 1))}


def machine() -> dict:
    def run(*command):
        try:
            return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in run("lscpu").splitlines() if line.startswith("Model name")),
               platform.processor() or platform.machine())
    dirty = run("git", "status", "--porcelain", "--untracked-files=no")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "date": str(date.today()),
            "commit": run("git", "rev-parse", "--short", "HEAD"), "uncommitted_changes": bool(dirty) or None,
            "untracked_files": bool(run("git", "ls-files", "--others", "--exclude-standard"))}
