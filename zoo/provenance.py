"""Where a run or a checkpoint came from: the git commit of the code and the versions of the software.

Recorded with every training run (``provenance.json`` in the run directory) and copied into every
checkpoint (:mod:`zoo.checkpoint`), so that a number or a pretrained model can be traced back to
the code that made it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGES = ("equizoo", "torch", "e3nn", "numpy", "ase", "torch_geometric", "lightning", "vesin")


def package_version(name: str) -> Optional[str]:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def software_versions() -> dict[str, Optional[str]]:
    """``{"python": ..., "equizoo": ..., "torch": ..., "e3nn": ..., ...}`` of this process."""
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    versions.update({name: package_version(name) for name in PACKAGES})
    return versions


def git_commit(repository: Path = REPOSITORY) -> dict[str, Any]:
    """``{"commit": <sha or None>, "dirty": <uncommitted changes to tracked files?>}`` of the code."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def processor_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """The commit, the software versions, the machine and the time (UTC) of this process."""
    return {
        **git_commit(),
        "versions": software_versions(),
        "machine": {"platform": platform.platform(), "processor": processor_name(), "cpus": os.cpu_count()},
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
