"""Convert a training checkpoint of ``python -m train`` into an equizoo checkpoint (safetensors + JSON).

    python -m train.export runs/mace_tdn/2026-11-23_10-00-00                 # best.ckpt -> model.safetensors
    python -m train.export runs/.../checkpoints/last.ckpt --out my.safetensors --weights raw

A Lightning ``.ckpt`` is read with ``torch.load(weights_only=True)``: tensors, containers, numbers and
strings only, so a checkpoint carrying code is refused, never run. Its ``config`` (the resolved
training config, statistics included) rebuilds the model with ``zoo.build_model``; ``state_dict``
holds the EMA weights when EMA was on (``--weights ema``, the default, which is what the run
validated and tested), ``current_model_state`` the raw training weights (``--weights raw``).

The equizoo checkpoint records, under ``training``: the config, the run's ``data.json``,
``test_metrics.json`` (when exporting ``best.ckpt``, the weights they were measured with) and
``provenance.json`` (git commit, versions, machine), plus the epoch and step of the weights. Every run
exports its best weights to ``<run>/model.safetensors`` at its end (:func:`export_run`).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from train.ema import RAW_WEIGHTS_KEY
from zoo.checkpoint import CheckpointError, save
from zoo.registry import build_model_to_load

MODULE_PREFIX = "model."  # PotentialModule holds the potential as .model
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """The dictionary of a Lightning checkpoint, read without unpickling code."""
    if not path.is_file():
        raise CheckpointError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(path, "refused: it holds Python objects other than tensors, containers, numbers and "
                                    f"strings, and loading it would run code ({str(error).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(path, f"not a readable PyTorch checkpoint (truncated or corrupt?): {error}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(path, "not a training checkpoint of `python -m train` (no state_dict and config)")
    return checkpoint


def _run_files(run_dir: Path, with_metrics: bool) -> dict[str, Any]:
    def json_of(name: str) -> Optional[dict]:
        file = run_dir / name
        return json.loads(file.read_text()) if file.is_file() else None

    return {"data": json_of("data.json"), "provenance": json_of("provenance.json"),
            "test_metrics": json_of("test_metrics.json") if with_metrics else None}


def model_from_config(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """Build the model of a resolved training ``config`` and load ``state`` (its own names)."""
    model_config = dict(config["model"])
    dtype = DTYPES[config.get("dtype", "float32")]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = build_model_to_load(model_config.pop("name"), **model_config)
    finally:
        torch.set_default_dtype(previous)
    model.load_state_dict(dict(state))
    return model


def export_checkpoint(path: Path, out: Optional[Path] = None, weights: str = "ema") -> Path:
    """Convert the Lightning checkpoint ``path`` (or a run directory: its ``checkpoints/best.ckpt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    checkpoint = read_training_checkpoint(path)
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights={weights!r}; valid: ema, raw")
    source = checkpoint["state_dict"]
    if weights == "raw":
        if RAW_WEIGHTS_KEY not in checkpoint:
            raise CheckpointError(path, "has no raw weights (EMA was off: its state_dict are the raw weights)")
        source = checkpoint[RAW_WEIGHTS_KEY]
    state = {k[len(MODULE_PREFIX):]: v for k, v in source.items() if k.startswith(MODULE_PREFIX)}
    model = model_from_config(checkpoint["config"], state)
    run_dir = path.resolve().parent.parent
    training = {
        "config": checkpoint["config"],
        "checkpoint": {"file": path.name, "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step"),
                       "weights": weights},
        **_run_files(run_dir, with_metrics=path.name == "best.ckpt" and weights == "ema"),
    }
    out = Path(out) if out is not None else (run_dir / "model.safetensors" if path.name == "best.ckpt"
                                            else path.with_suffix(".safetensors"))
    return save(model, out, training=training)


def export_run(run_dir: Path, model: torch.nn.Module, config: Mapping[str, Any], best: str) -> Path:
    """``<run>/model.safetensors`` at the end of a run: the best checkpoint, or the final weights."""
    if best:
        return export_checkpoint(Path(best), run_dir / "model.safetensors")
    training = {"config": dict(config), "checkpoint": {"file": None, "weights": "final weights of the run"},
                **_run_files(run_dir, with_metrics=True)}
    return save(model, run_dir / "model.safetensors", training=training)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run directory (its best.ckpt) or a .ckpt file")
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default: <run>/model.safetensors for best.ckpt, else beside the .ckpt)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema", help="EMA (default) or raw weights")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, args.weights)
    except (CheckpointError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} (load it with zoo.load({str(out)!r}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
