"""The cache of generated PDE data: one ``.pt`` file per generated split, keyed by everything that made it.

``datasets.pde.operator_data`` asks for a split as a *request* (``generation_request``: equation, split,
resolution, sample count, seed, solver resolution, the equation's parameters with the protocol's
defaults filled in, dtype, batch size, and ``CACHE_FORMAT``). The file is
``<cache_dir>/<equation>_<split>_<resolution>_<hash>.pt`` (hash of the request) and stores the request
in its metadata; a cached file is used only when that stored request equals this one and it holds the
requested number of samples, otherwise the split is generated again (``datasets.pde.generate``) and
written atomically over it. ``cache_dir`` defaults to ``$EQUIZOO_PDE_CACHE``, else ``~/.cache/equizoo/pde``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from datasets.errors import DatasetError
from datasets.pde import generate as gen
from datasets.pde.neuraloperator_files import read_pt_with_metadata, sha256

CACHE_ENV_VAR = "EQUIZOO_PDE_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/equizoo/pde")
CACHE_FORMAT = 1  # bump when the cached content of a request changes meaning
SHA256_MAX_BYTES = 1 << 30  # files above this are recorded by size only (hashing them costs seconds)


def file_record(path: Path, metadata: dict | None = None, **extra) -> dict:
    """JSON-plain description of a data file: path, size, sha256 (below ``SHA256_MAX_BYTES``), metadata, ``extra``."""
    record = {"file": str(path), "bytes": path.stat().st_size, **extra}
    if record["bytes"] <= SHA256_MAX_BYTES:
        record["sha256"] = sha256(path)
    if metadata:
        record["metadata"] = metadata
    return record


def cache_directory(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$EQUIZOO_PDE_CACHE``, else ``~/.cache/equizoo/pde``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()


def generation_request(*, equation: str, split: str, resolution: int, num_samples: int, seed: int,
                       solver_resolution: int | None, parameters: dict, dtype: str, batch_size: int) -> dict:
    """The JSON-plain description of one generated split: everything that changes its content (the
    protocol's defaults resolved, so a changed default is a changed request). The device is left out:
    CPU and GPU solves agree to rounding."""
    protocol = gen.PROTOCOLS[equation]
    given = {name: value for name, value in parameters.items() if value is not None}
    request = {
        "format": CACHE_FORMAT, "equation": equation, "split": split, "resolution": resolution,
        "num_samples": num_samples, "seed": seed,
        "solver_resolution": protocol.solver_resolution if solver_resolution is None else solver_resolution,
        "parameters": {**protocol.parameters, **given}, "dtype": dtype, "batch_size": batch_size,
    }
    try:
        return json.loads(json.dumps(request, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"parameters must be plain JSON values (numbers, strings, ...): {error}") from None


def cache_path(directory: Path, request: dict) -> Path:
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
    return directory / f"{request['equation']}_{request['split']}_{request['resolution']}_{digest}.pt"


def cached_or_generated(request: dict, directory: Path, device: str, progress: bool) -> tuple[dict, dict, dict]:
    """``(tensors, metadata, record)`` of one split: read from the cache when its stored request equals
    ``request`` and it has the requested number of samples, else generated and written."""
    path = cache_path(directory, request)
    if path.is_file():
        try:
            tensors, metadata = read_pt_with_metadata(path)
        except DatasetError:
            tensors, metadata = {}, {}  # unreadable: regenerate (the cache holds nothing but derived data)
        if metadata.get("request") == request and tensors.get("x") is not None and \
                tensors["x"].shape[0] == request["num_samples"]:
            return tensors, metadata, file_record(path, metadata, cached=True)
    content = gen.generate(request["equation"], request["resolution"], request["num_samples"], seed=request["seed"],
                           split=request["split"], solver_resolution=request["solver_resolution"],
                           batch_size=request["batch_size"], dtype=request["dtype"], device=device,
                           progress=progress, **request["parameters"])
    content["metadata"] = {**content["metadata"], "request": request}
    gen.write_atomic(path, content)
    return content, content["metadata"], file_record(path, content["metadata"], cached=False)
