"""The equizoo checkpoint: one safetensors file, weights as tensors, everything else as JSON in its header.

MACE ships models as pickled Python modules, which break when the code moves and run arbitrary code
when loaded. An equizoo checkpoint holds no code and is read without pickle:

- the tensors are the model's ``state_dict`` (parameters and persistent buffers: E0s, scale, shift,
  fitted CP factors ...), stored by `safetensors <https://huggingface.co/docs/safetensors>`_;
- the header's ``__metadata__`` holds ``"format": "equizoo.checkpoint"``, ``"format_version"`` and
  ``"equizoo"``, a JSON document::

      {"model": {"name": "mace", "kwargs": {...}},        # zoo.build_model(name, **kwargs) rebuilds it
       "tensor_product": {...}, "r_max": 5.0, "elements": [1, 6, 7, 8],
       "atomic_energies": {"1": -10.7, ...},             # eV, by atomic number
       "units": {"energy": "eV", "length": "Å", ...}, "dtype": "float32",
       "provenance": {"commit": ..., "versions": {"equizoo": ..., "e3nn": ..., "torch": ...}, ...},
       "training": {"config": {...}, "data": {...}, "test_metrics": {...}, "provenance": {...}} | null}

  (``python -m zoo.info FILE_OR_NAME`` prints it).

Files are written atomically (:mod:`zoo.atomic_file`): a crash leaves the old checkpoint or the new
one. Reading checks, and names the file in every error: that it exists and is a regular file; that
it is not a pickle or a PyTorch zip (refused without being opened by pickle, with a pointer to
``python -m train.export`` for Lightning training checkpoints); that its header is complete and its
tensor data not truncated; that it is an equizoo checkpoint of a format version this code reads; that
the model name exists and accepts the saved arguments; and that the tensors match the rebuilt model
name by name and shape.

The kernel (``reference``, ``fused``, ``cueq``, ``auto``) is chosen at load time and never changes the
weights: every kernel of a method holds the same parameters under the same names.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from zoo.atomic_file import atomic_write_bytes
from zoo.provenance import provenance
from zoo.registry import MODELS, build_model_to_load, json_plain, model_keys

FORMAT = "equizoo.checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å^3"}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# the first bytes of what torch.save writes: a zip archive (default) or a bare pickle (protocol 2+)
PICKLE_SIGNATURES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not rebuild its model; the message names the file."""

    def __init__(self, path: Union[str, os.PathLike], problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def dtype_name(dtype: torch.dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported dtype {dtype}; valid: {', '.join(DTYPES)}")


def describe_model(model: nn.Module, training: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The JSON document saved with ``model`` (see the module docstring)."""
    build = getattr(model, "build_arguments", None)
    if build is None:
        raise ValueError("the model's constructor arguments are unknown: build it with zoo.build_model(name, ...) "
                         "(or load it with zoo.load) so that a checkpoint can rebuild it")
    floats = [t for t in model.state_dict().values() if t.is_floating_point()]
    elements = [int(z) for z in getattr(model, "elements", [])]
    atomic_energies = getattr(model, "atomic_energies", None)
    return json_plain({
        "model": build,
        "tensor_product": build["kwargs"].get("tensor_product"),
        "r_max": getattr(model, "r_max", None),
        "elements": elements,
        "atomic_energies": (dict(zip(elements, atomic_energies.tolist()))
                            if isinstance(atomic_energies, torch.Tensor) and len(elements) == atomic_energies.numel()
                            else None),
        "units": UNITS,
        "dtype": dtype_name(floats[0].dtype) if floats else None,
        "provenance": provenance(),
        "training": training,
    })


def save(model: nn.Module, path: Union[str, os.PathLike], training: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` (built by ``zoo.build_model``) to ``path`` atomically; ``training`` is what made
    it (config, data, metrics, provenance of the run), or None. Returns the path."""
    path = Path(path)
    document = describe_model(model, training)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "equizoo": json.dumps(document)}
    atomic_write_bytes(path, safetensors_save(tensors, metadata=metadata))
    return path


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise CheckpointError(path, "no such file")
    if not path.is_file():
        raise CheckpointError(path, "not a regular file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror or error})") from None


def _check_container(path: Path, data: bytes) -> dict[str, Any]:
    """The safetensors header of ``data``, after checking it is complete and its data not truncated."""
    if data.startswith(PICKLE_SIGNATURES):
        raise CheckpointError(
            path, "a PyTorch pickle/zip file, not an equizoo checkpoint; equizoo never unpickles (a pickle can run "
                  "code). A training checkpoint of `python -m train` converts with `python -m train.export PATH`.")
    if len(data) < 8:
        raise CheckpointError(path, f"truncated or empty ({len(data)} bytes; a checkpoint starts with an 8-byte header size)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > MAX_HEADER_BYTES:
        raise CheckpointError(path, "not a safetensors file (its first 8 bytes are no plausible header size)")
    if len(data) < 8 + header_size:
        raise CheckpointError(path, f"truncated: the header needs {header_size} bytes, the file has {len(data) - 8}")
    try:
        header = json.loads(data[8:8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file (its header is not a JSON object)")
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    expected = 8 + header_size + max(ends, default=0)
    if len(data) < expected:
        raise CheckpointError(path, f"truncated: the tensors need {expected} bytes, the file has {len(data)}")
    return header


def read(path: Union[str, os.PathLike]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(document, tensors)`` of the checkpoint at ``path``, without building the model."""
    path = Path(path)
    data = _read_bytes(path)
    header = _check_container(path, data)
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise CheckpointError(path, "a safetensors file, but not an equizoo checkpoint (no equizoo metadata in its "
                                    "header); equizoo reads checkpoints written by zoo.checkpoint.save")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise CheckpointError(path, f"unreadable format_version {metadata.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(path, f"checkpoint format version {version} is newer than this equizoo reads "
                                    f"({FORMAT_VERSION}); upgrade equizoo")
    try:
        document = json.loads(metadata["equizoo"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(path, "its equizoo metadata is missing or not JSON") from None
    try:
        tensors = safetensors_load(data)
    except SafetensorError as error:
        raise CheckpointError(path, f"corrupt tensor data ({error})") from None
    return document, tensors


def load_model(
    path: Union[str, os.PathLike],
    device: Union[str, torch.device, None] = None,
    dtype: Union[str, torch.dtype, None] = None,
    kernel: Optional[str] = None,
) -> nn.Module:
    """Rebuild and fill the model saved at ``path``, in eval mode.

    device: where to put it (default CPU). dtype: ``float32``/``float64`` (default: as saved).
    kernel: the tensor-product kernel (default: as saved); never changes the weights.
    The returned model carries the checkpoint's document as ``model.checkpoint``.
    """
    path = Path(path)
    document, tensors = read(path)
    spec = document.get("model") or {}
    name, kwargs = spec.get("name"), dict(spec.get("kwargs") or {})
    if name not in MODELS:
        raise CheckpointError(path, f"model {name!r} is not one this equizoo knows ({', '.join(sorted(MODELS))}); "
                                    f"it was written by equizoo {_saved_version(document)}")
    if kernel is not None:
        if "kernel" not in model_keys(name):
            raise CheckpointError(path, f"model {name!r} has no kernel choice")
        kwargs["kernel"] = kernel
    target = DTYPES[dtype] if isinstance(dtype, str) and dtype in DTYPES else dtype
    if target is None:
        target = DTYPES.get(document.get("dtype") or "float32", torch.float32)
    if target not in DTYPES.values():
        raise ValueError(f"dtype={dtype!r}; valid: {', '.join(DTYPES)}")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(target)
    try:
        model = build_model_to_load(name, **kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"its model arguments do not build {name!r} with this equizoo "
                                    f"(saved by equizoo {_saved_version(document)}): {error}") from None
    finally:
        torch.set_default_dtype(previous)
    try:
        model.load_state_dict(tensors)  # products built without their fitted constants adopt the loaded ones
    except RuntimeError:
        expected = model.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong = sorted(key for key in set(expected) & set(tensors) if expected[key].shape != tensors[key].shape)
        details = "; ".join(part for part in (
            f"missing {_names(missing)}" if missing else "",
            f"unexpected {_names(unexpected)}" if unexpected else "",
            "wrong shape " + _names([f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}" for k in wrong])
            if wrong else "",
        ) if part)
        raise CheckpointError(path, f"its tensors do not fit the model they describe: {details}") from None
    model = model.to(device=device or "cpu", dtype=target).eval()
    model.checkpoint = document
    return model


def _saved_version(document: Mapping[str, Any]) -> str:
    return str(((document.get("provenance") or {}).get("versions") or {}).get("equizoo"))


def _names(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
