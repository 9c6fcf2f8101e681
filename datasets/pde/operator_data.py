"""Train / valid / multi-resolution test tensors for neural-operator training: ``build_operator_data``.

Three sources give the same ``OperatorData``:

- ``"generate"``: our solvers (``datasets.pde.generate``, any equation of ``generate.PROTOCOLS``).
  Train split: ``num_train + num_valid`` samples at ``resolution`` (valid = the last ``num_valid``).
  Test split: ``num_test`` samples generated once at the finest of ``test_resolutions`` and
  ``resolution`` and subsampled to each of them, so every test resolution holds the same functions
  (the zero-shot super-resolution test of the FNO paper). Both splits are cached
  (:mod:`datasets.pde.generation_cache`) in ``cache_dir``
  (default ``$EQUIZOO_PDE_CACHE``, else ``~/.cache/equizoo/pde``) as
  ``<equation>_<split>_<resolution>_<hash>.pt``, the hash covering every option that changes the
  content; a cached file is used only when the request stored in its metadata equals this one,
  otherwise it is generated again (and replaced).
- ``"neuraloperator"``: neuraloperator 0.3.0's small Darcy files (``darcy_train_16``: the first
  ``num_train`` of its 1000 samples for training, the last ``num_valid`` for validation;
  ``darcy_test_16`` / ``darcy_test_32``: 50 test samples at 16 and 32 nodes per side).
- ``"files"``: ``files = {"train": path, "test": {resolution: path, ...}}``, our ``.pt`` format or
  neuraloperator's; a requested resolution missing from ``files["test"]`` (or a train file on a finer
  grid than ``resolution``) is subsampled from the finest file that reaches it.

Shapes (``s`` points per side, ``d`` spatial dimensions):

- task ``"map"``: ``x: [N, C_in, *s]``, ``y: [N, C_out, *s]``. A file's ``x: [N, *s]`` gets a channel axis;
  a time series ``y: [N, T, *s]`` (Navier-Stokes: w at ``t = 1 .. T``) or ``[N, *s, T]`` becomes ``T``
  output channels.
- task ``"rollout"`` (autoregressive training): ``x: [N, T + 1, *s]`` trajectories with time as the
  channel axis, ``cat(x, y)`` of a time-dependent equation; ``y`` is ``None``.

Subsampling keeps every ``r``-th point per axis: ``r = n / s`` on a ``"periodic"`` grid (``x_j = j / n``)
and ``r = (n - 1) / (s - 1)`` on a ``"nodes"`` grid (``x_j = j / (n - 1)``, the boundary kept) and on a
``"sphere"`` grid (shallow water: ``[..., nlat, 2 (nlat - 1)]``, both poles kept; ``resolution`` counts
latitudes, and the input already has its channels, ``[N, 3, nlat, nlon]``).
Data made with a parameter drawn per sample (``datasets.pde.varied_parameters``: ``parameters: {nu: [0.05,
0.1, 0.2]}``, or a file with ``pde_parameters: [N, P]``) carry each sample's parameters beside it
(``train_parameters``, ``valid_parameters``, ``test_parameters``: ``[N, P]``), for operators conditioned on
them (CAPE).
Bad data raise ``DatasetError`` naming the file and key; bad options raise ``ValueError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from datasets.errors import DatasetError
from datasets.pde import generate as gen
from datasets.pde.generation_cache import cache_directory, cached_or_generated, file_record, generation_request
from datasets.pde.grids import admissible_resolutions, grid_resolution, reachable, subsample_grid
from datasets.pde.neuraloperator_files import find_neuraloperator_data, read_pt_with_metadata

SOURCES = ("generate", "neuraloperator", "files")
TASKS = ("map", "rollout")
NEURALOPERATOR_TEST_SAMPLES = 50
NEURALOPERATOR_TRAIN_SAMPLES = 1000


@dataclass
class OperatorData:
    """The tensors of one operator-learning experiment (see the module docstring for the shapes)."""

    task: str  # "map" (x -> y) or "rollout" (time series, autoregressive)
    domain: str  # "periodic" | "nodes" | "sphere"
    spatial_dims: int
    resolution: int  # training grid (points per dimension)
    train_x: torch.Tensor
    train_y: torch.Tensor | None
    valid_x: torch.Tensor
    valid_y: torch.Tensor | None
    test: dict[int, tuple[torch.Tensor, torch.Tensor | None]]  # resolution -> the same samples on that grid
    sources: dict = field(default_factory=dict)  # JSON-plain: files, sha256, generation metadata
    # PDE parameters of each sample, [N, P] (data made with parameters drawn per sample, for CAPE); else None / {}
    pde_parameter_names: list[str] = field(default_factory=list)
    train_parameters: torch.Tensor | None = None
    valid_parameters: torch.Tensor | None = None
    test_parameters: dict[int, torch.Tensor] = field(default_factory=dict)  # resolution -> [N_test, P]


# --- shapes --------------------------------------------------------------------------------------------

def _as_operator_pair(tensors: dict[str, torch.Tensor], spatial_dims: int, task: str, dtype: torch.dtype,
                      path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """File tensors -> ``(x [N, C_in, *s], y [N, C_out, *s])`` (map) or ``(x [N, T + 1, *s], None)`` (rollout)."""
    if {"x", "y"} <= tensors.keys():
        x, y, x_key, y_key = tensors["x"], tensors["y"], "x", "y"
    elif {"input", "output"} <= tensors.keys():  # neuraloperator's Burgers: output[:, 0] is the input
        x, y, x_key, y_key = tensors["input"], tensors["output"][:, 1:], "input", "output"
    else:
        raise DatasetError(f"expected the keys x and y (or input and output), got {sorted(tensors)}", file=path)
    # a time series: one input snapshot [N, *s] and y with one more axis (time) than x
    time_series = x.ndim == spatial_dims + 1 and y.ndim == spatial_dims + 2
    if x.ndim == spatial_dims + 1:
        x = x.unsqueeze(1)
    if x.ndim != spatial_dims + 2:
        raise DatasetError(f"expected [N, *grid] or [N, C, *grid] with {spatial_dims} grid axes, got "
                           f"{list(x.shape)}", file=path, key=x_key)
    grid = tuple(x.shape[2:])
    if y.ndim == spatial_dims + 1 and tuple(y.shape[1:]) == grid:
        y = y.unsqueeze(1)
    elif y.ndim == spatial_dims + 2 and tuple(y.shape[2:]) != grid and tuple(y.shape[1:-1]) == grid:
        y = torch.movedim(y, -1, 1)  # [N, *s, T] -> [N, T, *s]
    if y.ndim != spatial_dims + 2 or tuple(y.shape[2:]) != grid or y.shape[0] != x.shape[0]:
        raise DatasetError(f"shape {list(y.shape)} does not fit the input {list(x.shape)} (expected [N, *grid], "
                           "[N, T, *grid] or [N, *grid, T])", file=path, key=y_key)
    x, y = x.to(dtype), y.to(dtype)
    for key, tensor in ((x_key, x), (y_key, y)):
        if not torch.isfinite(tensor).all():
            raise DatasetError("contains NaN or infinite values", file=path, key=key)
    if task == "rollout":
        if not time_series:
            raise DatasetError("task 'rollout' needs a time series: x one snapshot [N, *grid] and y the later "
                               f"snapshots [N, T, *grid]; got {x_key} {list(tensors[x_key].shape)}, {y_key} "
                               f"{list(tensors[y_key].shape)}", file=path)
        return torch.cat([x, y], dim=1).contiguous(), None
    return x.contiguous(), y.contiguous()


def _pde_parameters(tensors: dict, metadata: dict, num_samples: int, dtype: torch.dtype,
                    path: str) -> tuple[list[str], torch.Tensor | None]:
    """``(names, [N, P])`` of a file's per-sample PDE parameters (``pde_parameters``), or ``([], None)``."""
    values = tensors.get("pde_parameters")
    if values is None:
        return [], None
    names = list(metadata.get("pde_parameters") or [f"p{i}" for i in range(values.shape[-1] if values.ndim else 0)])
    if values.ndim != 2 or values.shape != (num_samples, len(names)):
        raise DatasetError(f"expected [{num_samples}, {len(names)}] (one row per sample, one column per name in "
                           f"metadata['pde_parameters'] = {names}), got {list(values.shape)}", file=path,
                           key="pde_parameters")
    if not torch.isfinite(values).all():
        raise DatasetError("contains NaN or infinite values", file=path, key="pde_parameters")
    return names, values.to(dtype).contiguous()


def _take(x: torch.Tensor, y: torch.Tensor | None, start: int, stop: int):
    return x[start:stop], _rows(y, start, stop)


def _rows(tensor: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if tensor is None else tensor[start:stop]


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --- source "generate" ---------------------------------------------------------------------------------

def _declared_spatial_dims(equation: str) -> int | None:
    """2 on a sphere, or the protocol's ``spatial_dims`` when it declares one (then x carries channels);
    None: ``x`` is ``[N, *grid]``."""
    protocol = gen.PROTOCOLS.get(equation)
    if protocol is not None and protocol.grid == "sphere":
        return 2
    return getattr(protocol, "spatial_dims", None)


def _spatial_dims(equation: str, x: torch.Tensor) -> int:
    return _declared_spatial_dims(equation) or x.ndim - 1


def _from_generate(equation, resolution, test_resolutions, num_train, num_valid, num_test, seed, solver_resolution,
                   parameters, task, cache_dir, dtype, batch_size, progress, device) -> OperatorData:
    if equation not in gen.PROTOCOLS:
        raise ValueError(f"equation must be one of {', '.join(gen.PROTOCOLS)} for source 'generate', got {equation!r}")
    domain = gen.PROTOCOLS[equation].grid
    finest = max([resolution, *test_resolutions])
    for s in test_resolutions:  # fail before any solve
        if not reachable(finest, s, domain):
            raise ValueError(f"test resolution {s} is not a subsample of the finest test grid {finest} ({domain}); "
                             f"admissible: {admissible_resolutions(finest, domain)}")
    directory = cache_directory(cache_dir)
    common = dict(equation=equation, seed=seed, solver_resolution=solver_resolution, parameters=parameters,
                  dtype=dtype, batch_size=batch_size)
    train_request = generation_request(split="train", resolution=resolution, num_samples=num_train + num_valid,
                                       **common)
    tensors, metadata, train_record = cached_or_generated(train_request, directory, device, progress)
    dims = _spatial_dims(equation, tensors["x"])
    x, y = _as_operator_pair(tensors, dims, task, gen.DTYPES[dtype], train_record["file"])
    names, p = _pde_parameters(tensors, metadata, x.shape[0], gen.DTYPES[dtype], train_record["file"])
    sources = {"source": "generate", "equation": equation, "train": train_record,
               "splits": {"train": [0, num_train], "valid": [num_train, num_train + num_valid]}}
    test, test_parameters = {}, {}
    if num_test > 0:
        test_request = generation_request(split="test", resolution=finest, num_samples=num_test, **common)
        tensors, metadata, test_record = cached_or_generated(test_request, directory, device, progress)
        tx, ty = _as_operator_pair(tensors, dims, task, gen.DTYPES[dtype], test_record["file"])
        _, tp = _pde_parameters(tensors, metadata, tx.shape[0], gen.DTYPES[dtype], test_record["file"])
        for s in sorted({resolution, *test_resolutions}):
            test[s] = (subsample_grid(tx, s, domain, dims), None if ty is None else subsample_grid(ty, s, domain, dims))
            if tp is not None:
                test_parameters[s] = tp
        sources["test"] = {**test_record, "resolution": finest, "subsampled_to": sorted(test)}
    return OperatorData(task, domain, dims, resolution, *_take(x, y, 0, num_train),
                        *_take(x, y, num_train, num_train + num_valid), test, sources, pde_parameter_names=names,
                        train_parameters=_rows(p, 0, num_train), valid_parameters=_rows(p, num_train, num_train + num_valid),
                        test_parameters=test_parameters)


# --- sources "neuraloperator" and "files" --------------------------------------------------------------

def _read(path: str | os.PathLike, spatial_dims: int | None, task: str, dtype: torch.dtype):
    """``(x, y, spatial_dims, metadata, path, (names, pde_parameters))`` of one file; ``spatial_dims`` None:
    ``x`` is ``[N, *grid]``."""
    path = Path(path).expanduser()
    tensors, metadata = read_pt_with_metadata(path)
    raw_x = tensors.get("x", tensors.get("input"))
    dims = spatial_dims or (raw_x.ndim - 1 if raw_x is not None else 1)
    x, y = _as_operator_pair(tensors, dims, task, dtype, str(path))
    return x, y, dims, metadata, path, _pde_parameters(tensors, metadata, x.shape[0], dtype, str(path))


def _split_train(x, y, num_train: int, num_valid: int, path) -> tuple:
    total = x.shape[0]
    if num_train + num_valid > total:
        raise DatasetError(f"holds {total} samples, fewer than num_train + num_valid = {num_train + num_valid}",
                           file=path)
    return (*_take(x, y, 0, num_train), *_take(x, y, total - num_valid, total))


def _from_files(equation, resolution, test_resolutions, num_train, num_valid, num_test, task, files, dtype,
                source) -> OperatorData:
    if not isinstance(files, dict) or "train" not in files or not isinstance(files.get("test", {}), dict):
        raise ValueError('files must be {"train": path, "test": {resolution: path, ...}}, got ' f"{files!r}")
    tx, ty, dims, metadata, train_path, (names, tp) = _read(files["train"], _declared_spatial_dims(equation), task,
                                                            dtype)
    if metadata.get("equation") not in (None, equation):
        raise DatasetError(f"holds {metadata['equation']!r} data, not {equation!r}", file=train_path, key="metadata")
    domain = metadata.get("grid") or ("nodes" if source == "neuraloperator" else None)
    if domain is None:
        if equation not in gen.PROTOCOLS:
            raise ValueError(f"{train_path} names no grid in its metadata and equation {equation!r} is not one of "
                             f"{', '.join(gen.PROTOCOLS)}: cannot tell a 'periodic' from a 'nodes' grid")
        domain = gen.PROTOCOLS[equation].grid
    try:
        tx, ty = subsample_grid(tx, resolution, domain, dims), None if ty is None else subsample_grid(ty, resolution,
                                                                                                        domain, dims)
    except ValueError as error:
        raise DatasetError(f"cannot serve the training resolution: {error}", file=train_path) from None
    train_x, train_y, valid_x, valid_y = _split_train(tx, ty, num_train, num_valid, train_path)
    sources = {"source": source, "equation": equation,
               "train": file_record(train_path, metadata, splits={"train": [0, num_train],
                                                                   "valid": [tx.shape[0] - num_valid, tx.shape[0]]})}
    given = {int(s): path for s, path in files.get("test", {}).items()}
    # like "generate": the training resolution is always tested (when there is a test set)
    wanted = sorted(set(test_resolutions or given) | {resolution}) if given and num_test > 0 else []
    loaded, test, records, test_parameters = {}, {}, {}, {}
    for s in sorted(given, reverse=True) if wanted else []:
        loaded[s] = _read(given[s], dims, task, dtype)
    for s in wanted:
        source_resolution = s if s in loaded else next((n for n in sorted(loaded, reverse=True)
                                                        if reachable(grid_resolution(loaded[n][0], domain), s,
                                                                     domain)), None)
        if source_resolution is None:
            raise ValueError(f"test resolution {s}: no test file at that resolution nor one that subsamples to it "
                             f"(given: {sorted(given)}, grid {domain!r})")
        x, y, _, file_metadata, path, (test_names, p) = loaded[source_resolution]
        if x.shape[0] < num_test:
            raise DatasetError(f"holds {x.shape[0]} test samples, fewer than num_test = {num_test}", file=path)
        if test_names != names:
            raise DatasetError(f"has PDE parameters {test_names or 'none'}, the training file {names or 'none'}",
                               file=path, key="pde_parameters")
        x, y = _take(x, y, 0, num_test)
        if p is not None:
            test_parameters[s] = p[:num_test]
        test[s] = (subsample_grid(x, s, domain, dims), None if y is None else subsample_grid(y, s, domain, dims))
        records[str(s)] = file_record(path, file_metadata, subsampled_from=source_resolution)
    sources["test"] = records
    total = tx.shape[0]
    return OperatorData(task, domain, dims, resolution, train_x, train_y, valid_x, valid_y, test, sources,
                        pde_parameter_names=names, train_parameters=_rows(tp, 0, num_train),
                        valid_parameters=_rows(tp, total - num_valid, total), test_parameters=test_parameters)


def _neuraloperator_files(resolution: int, test_resolutions: list[int], num_test: int) -> dict:
    if resolution != 16:
        raise ValueError(f"source 'neuraloperator' trains at resolution 16 (darcy_train_16), got {resolution}")
    if not set(test_resolutions) <= {16, 32}:
        raise ValueError(f"source 'neuraloperator' has tests at 16 and 32 only, got {sorted(test_resolutions)}")
    if num_test > NEURALOPERATOR_TEST_SAMPLES:
        raise ValueError(f"source 'neuraloperator' has {NEURALOPERATOR_TEST_SAMPLES} test samples, "
                         f"num_test = {num_test}")
    return {"train": find_neuraloperator_data("darcy_train_16"),
            "test": {s: find_neuraloperator_data(f"darcy_test_{s}") for s in sorted({16, *test_resolutions})}}


# --- the builder ---------------------------------------------------------------------------------------

def build_operator_data(*, source: str, equation: str, resolution: int, test_resolutions: list[int],
                        num_train: int, num_valid: int, num_test: int, seed: int = 0,
                        solver_resolution: int | None = None, parameters: dict | None = None,
                        task: str = "map", cache_dir: str | None = None, files: dict | None = None,
                        dtype: str = "float32", batch_size: int = 16, progress: bool = True,
                        device: str = "cpu") -> OperatorData:
    """Build train/valid/test tensors (see the module docstring).

    Args:
        source: ``"generate"``, ``"neuraloperator"`` (Darcy only) or ``"files"``.
        equation: a key of ``generate.PROTOCOLS`` (``"darcy"``, ``"burgers"``, ``"navier_stokes"``, ...).
        resolution: training grid, points per dimension.
        test_resolutions: grids of the test set; ``test`` holds these and the training resolution
            (when ``num_test > 0``); for ``"files"`` an empty list means the resolutions of ``files["test"]``.
        num_train, num_valid, num_test: sample counts (``num_valid`` / ``num_test`` may be 0).
        seed: generation seed (``"generate"``).
        solver_resolution: grid the PDE is solved on (``"generate"``; default the protocol's).
        parameters: the equation's options passed to ``generate.generate`` (``nu``, ``t``, ``record_every``, ...).
        task: ``"map"`` or ``"rollout"``.
        cache_dir: where generated splits are cached (default ``$EQUIZOO_PDE_CACHE`` or ``~/.cache/equizoo/pde``).
        files: ``{"train": path, "test": {resolution: path}}`` for source ``"files"``.
        dtype: ``"float32"`` or ``"float64"`` of the returned tensors.
        batch_size: samples solved together (``"generate"``; Burgers' CFL step depends on it).
        progress: show a progress bar while generating.
        device: where Burgers and Navier-Stokes are solved (``"generate"``), e.g. ``"cuda"``.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if dtype not in gen.DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(gen.DTYPES)}, got {dtype!r}")
    _check_count("resolution", resolution, 2)
    _check_count("num_train", num_train, 1)
    _check_count("num_valid", num_valid, 0)
    _check_count("num_test", num_test, 0)
    _check_count("batch_size", batch_size, 1)
    test_resolutions = list(test_resolutions)
    for s in test_resolutions:
        _check_count("each test resolution", s, 2)
    parameters = dict(parameters or {})
    if source == "generate":
        if files is not None:
            raise ValueError("files apply to source 'files' only")
        return _from_generate(equation, resolution, test_resolutions, num_train, num_valid, num_test, seed,
                              solver_resolution, parameters, task, cache_dir, dtype, batch_size, progress, device)
    if parameters or solver_resolution is not None:
        raise ValueError(f"parameters and solver_resolution apply to source 'generate' only, not {source!r}")
    if source == "neuraloperator":
        if equation != "darcy":
            raise ValueError(f"source 'neuraloperator' has Darcy files only, got equation {equation!r}")
        if task != "map":
            raise ValueError("source 'neuraloperator' (Darcy) has no time series: use task 'map'")
        if num_train + num_valid > NEURALOPERATOR_TRAIN_SAMPLES:
            raise ValueError(f"darcy_train_16 holds {NEURALOPERATOR_TRAIN_SAMPLES} samples, num_train + num_valid "
                             f"= {num_train + num_valid}")
        files = _neuraloperator_files(resolution, test_resolutions, num_test)
    elif files is None:
        raise ValueError('source "files" needs files = {"train": path, "test": {resolution: path}}')
    return _from_files(equation, resolution, test_resolutions, num_train, num_valid, num_test, task, files,
                       gen.DTYPES[dtype], source)
