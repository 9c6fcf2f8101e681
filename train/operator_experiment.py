"""One neural-operator run from a resolved config (``task: operator``): data -> statistics -> model -> fit -> test.

``python -m train config=fno_darcy`` lands here through :func:`train.experiment.run`. The build order is
the potentials' (seed, data, the statistics the model needs, ``zoo.build_model``, the LightningModule,
``build_trainer``), and so is the run directory (``runs/<config>/<time>`` or ``run_dir=``):

- ``config.yaml``: the resolved config with what was filled in from the data: ``model.in_channels``,
  ``out_channels``, ``spatial_dims``, ``domain`` (and DeepONet's ``sensor_shape``) when null, and the
  normalisers ``model.input_mean/input_std/output_mean/output_std`` from the TRAINING set
  (``layers.spectral.channel_statistics``): model arguments, so the exported model carries them;
- ``data.json`` (the data's sources and statistics), ``provenance.json``;
- ``checkpoints/{best,last}.ckpt`` (best: lowest ``val/l2``), ``csv/version_N/metrics.csv``, ``tensorboard/``;
- ``test_metrics.json``: ``{"config", "split", "weights", "metrics": {resolution: {"l2", "h1",
  "num_samples"}}}``, for rollout also ``"rollout": {"history", "training", "l2_per_step": {resolution:
  [...]}}``, and after a refine stage ``"before_refine"`` (the same metrics of the main fit's best weights);
- ``predictions_<resolution>.png``: the first test sample per test resolution (``evaluation.plot``; 1-D
  and 2-D data);
- ``model.safetensors``: the tested weights (``zoo.load(path)`` rebuilds the model), with the config,
  data, test metrics and provenance under ``training``.

Rollout (``data.task: rollout``, ``data.rollout: {history, train}``): the model maps the latest
``history`` frames (its ``in_channels``) to the next (``out_channels = 1``); training is one-step
teacher forcing on every window (``train: one_step``) or the autoregressive rollout of the whole
trajectory (``train: rollout``); validation and test always roll out from the first ``history`` frames.

Spectral-Refiner stage (``refine.epochs > 0``; Cao et al., "Spectral-Refiner: Accurate Fine-Tuning of
Spatiotemporal Fourier Neural Operator for Turbulent Flows", 2024): after the main fit, the best model
is rebuilt with all the Fourier modes its last block can resolve on the training grid
(``zoo.fno.with_full_last_layer_modes``, the same function), everything is frozen but the last block's
spectral weights (``model.last_layer_parameters()``), and those are trained ``refine.epochs`` more
epochs with AdamW at ``refine.lr`` on the relative negative Sobolev loss (``refine.loss``,
``refine.order``), logged as ``refine/train/loss``, ``refine/val/l2`` ...; its files go to
``<run>/refine/`` (``checkpoints/{best,last}.ckpt`` on ``refine/val/l2``, ``csv/``). The test and the
exported model are then the refined ones. Only for Fourier FNO/TFNO models. The refine stage is not
resumable: ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes the main fit, and when that is already
complete the refine stage runs again from the main fit's best weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as pl

import zoo
from datasets.pde.operator_data import build_operator_data
from layers.spectral import channel_statistics
from train.checkpoint import BestAndLastCheckpoint
from train.config import ConfigError
from train.experiment import (
    DTYPES,
    RUN_DIR_ENV,
    _default_dtype,
    _exported,
    _plain,
    _write_yaml,
    build_trainer,
    check_keys_and_dtype,
    clipping_for_optimizer,
    resolve_run_dir,
)
from train.operator import OperatorModule
from train.operator_data_module import OperatorDataModule
from train.operator_plots import plot_predictions
from zoo.checkpoint import save
from zoo.provenance import provenance

OPERATOR_KEYS = ("task", "seed", "dtype", "run_dir", "ckpt_path", "model", "data", "loader", "loss", "optimizer",
                 "scheduler", "trainer", "ema", "evaluation", "refine")
MONITOR = "val/l2"
REFINE_MODELS = ("fno", "tfno")
NORMALISERS = ("input_mean", "input_std", "output_mean", "output_std")


def _check_config(config: Mapping[str, Any]) -> None:
    check_keys_and_dtype(config, OPERATOR_KEYS, "an operator")
    if not config["model"].get("name"):
        raise ConfigError("model.name is missing (e.g. model=fno)")


def fill_model_config(model: Mapping[str, Any], data: Any, history: int | None) -> dict[str, Any]:
    """The model config with its data-dependent arguments filled in where they are null.

    in_channels / out_channels (``history`` and 1 for rollout), spatial_dims, domain, DeepONet's
    sensor_shape (the training grid), FNO's channel_attention_parameters (the number of per-sample PDE
    parameters of the data; a non-zero value must equal it), and the normalisers from the training set: for a map the
    statistics of every input and output channel; for rollout those of all frames together (one
    field), repeated for the ``history`` input channels.
    """
    model = dict(model)
    keys = set(zoo.model_keys(model["name"]))
    dims = int(data.spatial_dims)
    if data.task == "rollout":
        frames = data.train_x.reshape(-1, 1, *data.train_x.shape[2:])
        mean, std = channel_statistics(frames)
        inputs, outputs = (mean * history, std * history), (mean, std)
        channels = (history, 1)
    else:
        inputs, outputs = channel_statistics(data.train_x), channel_statistics(data.train_y)
        channels = (int(data.train_x.shape[1]), int(data.train_y.shape[1]))
    filled = {"in_channels": channels[0], "out_channels": channels[1], "spatial_dims": dims, "domain": data.domain,
              "sensor_shape": [int(data.resolution)] * dims, "input_mean": inputs[0], "input_std": inputs[1],
              "output_mean": outputs[0], "output_std": outputs[1]}
    for key, value in filled.items():
        if key not in keys:
            continue
        if model.get(key) is None:
            model[key] = value
        elif key in ("in_channels", "out_channels", "spatial_dims", "domain") and model[key] != value:
            raise ConfigError(f"model.{key}={model[key]!r} but the data needs {value!r}; leave it null to take it "
                              "from the data")
    names = list(data.pde_parameter_names)
    if "channel_attention_parameters" in keys:
        attention = model.get("channel_attention_parameters")
        if attention is None:
            model["channel_attention_parameters"] = len(names)
        elif attention and attention != len(names):
            raise ConfigError(f"model.channel_attention_parameters={attention} but the data carry "
                              f"{len(names)} PDE parameter(s) per sample ({names or 'none'}): CAPE needs data made "
                              "with a parameter drawn per sample, e.g. data.parameters.nu=[0.05,0.1,0.2]")
    return model


def _monitor(trainer: pl.Trainer, key: str) -> None:
    """Make the run's :class:`BestAndLastCheckpoint` keep the checkpoint with the lowest ``key``.

    ``build_trainer`` makes it monitor the potentials' ``val/loss``; an operator is chosen on its
    relative L2 error (``ModelCheckpoint`` reads ``monitor`` at every save).
    """
    for callback in trainer.callbacks:
        if isinstance(callback, BestAndLastCheckpoint):
            callback.monitor = key


def _best(trainer: pl.Trainer) -> str:
    callback = trainer.checkpoint_callback  # writes nothing under fast_dev_run: test the final weights then
    best = callback.best_model_path if callback is not None and callback.best_model_path else ""
    return best if best and Path(best).is_file() else ""


def _refine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    refine = dict(config["refine"] or {})
    unknown = sorted(set(refine) - {"epochs", "lr", "loss", "order"})
    if unknown:
        raise ConfigError(f"refine: unknown key(s) {unknown}; valid: epochs, lr, loss, order")
    refine.setdefault("epochs", 0)
    if int(refine["epochs"] or 0) > 0:
        name = config["model"]["name"]
        kind = (config["model"].get("convolution") or {}).get("kind", "fourier")
        if name not in REFINE_MODELS or kind != "fourier":
            raise ConfigError(f"refine.epochs={refine['epochs']}: the Spectral-Refiner stage fine-tunes the last "
                              f"Fourier layer of an FNO/TFNO ({', '.join(REFINE_MODELS)} with convolution.kind "
                              f"fourier), not model {name!r} ({kind}); set refine.epochs=0")
    return refine


def _refine(module: OperatorModule, config: dict[str, Any], data: Any, datamodule: OperatorDataModule,
            run_dir: Path, refine: Mapping[str, Any]) -> tuple[OperatorModule, pl.Trainer, str]:
    """Spectral-Refiner's last-layer fine-tuning of ``module.model`` (module docstring)."""
    from zoo.fno import with_full_last_layer_modes

    model = with_full_last_layer_modes(module.model, [int(data.resolution)] * int(data.spatial_dims))
    model = model.to(dtype=DTYPES[config["dtype"]], device=module.device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in model.last_layer_parameters():
        parameter.requires_grad_(True)
    refined_config = {**config, "model": {**config["model"],
                                          "last_layer_modes": model.build_arguments["kwargs"]["last_layer_modes"]}}
    stage = OperatorModule(
        model, loss={"name": refine.get("loss", "negative_sobolev"), "order": float(refine.get("order", 1.0))},
        optimizer={"name": "adamw", "lr": float(refine["lr"]), "weight_decay": 0.0}, scheduler=None,
        domain=data.domain, task=data.task, config=refined_config, log_prefix="refine/",
        test_resolutions=datamodule.test_resolutions)
    trainer_config = {**config, "trainer": {**config["trainer"], "max_epochs": int(refine["epochs"])},
                      "ema": {"decay": None}}
    trainer = build_trainer(trainer_config, run_dir / "refine")
    _monitor(trainer, "refine/" + MONITOR)
    trainer.fit(stage, datamodule=datamodule)
    best = _best(trainer)
    trainer.test(stage, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    return stage, trainer, best


def _metrics_record(module: OperatorModule) -> dict[str, Any]:
    return {str(res): {key: r[key] for key in ("l2", "h1", "num_samples") if key in r}
            for res, r in module.test_results.items()}


def write_operator_outputs(run_dir: Path, config_name: str, config: Mapping[str, Any], module: OperatorModule,
                           datamodule: OperatorDataModule, weights: str,
                           before_refine: Mapping[str, Any] | None) -> dict[str, Any]:
    """``test_metrics.json`` and ``predictions_<res>.png`` of the last test (global rank 0)."""
    record: dict[str, Any] = {"config": config_name, "split": datamodule.test_split,
                              "weights": weights or "final weights of the run (EMA when enabled)",
                              "metrics": _metrics_record(module)}
    if module.task == "rollout":
        record["rollout"] = {"history": datamodule.history, "training": datamodule.rollout_training,
                             "l2_per_step": {str(res): r["l2_per_step"] for res, r in module.test_results.items()}}
    if before_refine is not None:
        record["before_refine"] = before_refine
    (run_dir / "test_metrics.json").write_text(json.dumps(_plain(record), indent=2) + "\n")
    if (config.get("evaluation") or {}).get("plot", True) and datamodule.data.spatial_dims <= 2:  # 3-D: no plots
        for res, (x, truth, prediction) in module.test_examples.items():
            if module.task == "rollout":  # the last given frame, and the last predicted one
                x, truth, prediction = x[-1:], truth[-1:], prediction[-1:]
            plot_predictions(run_dir / f"predictions_{res}.png", x, truth, prediction, module.domain,
                             title=f"{config_name}: {datamodule.test_split} sample 0 at resolution {res}, relative "
                                   f"L2 {record['metrics'][str(res)]['l2']:.3g} (mean)")
    return record


def run_operator(config: Mapping[str, Any], config_name: str) -> Path:
    """Train and test the operator ``config`` (resolved, plain dicts) describes; return the run directory."""
    config = copy.deepcopy(dict(config))
    _check_config(config)
    refine = _refine_options(config)
    run_dir = resolve_run_dir(config, config_name).resolve()
    with _exported(RUN_DIR_ENV, str(run_dir)):
        pl.seed_everything(int(config["seed"]), workers=True, verbose=False)
        dtype = DTYPES[config["dtype"]]

        data_options = dict(config["data"])
        rollout = dict(data_options.pop("rollout", None) or {})
        data = build_operator_data(**data_options)
        history = int(rollout.get("history", 1)) if data.task == "rollout" else None
        config["model"] = fill_model_config(config["model"], data, history)
        model_config = dict(config["model"])
        with _default_dtype(dtype):
            model = zoo.build_model(model_config.pop("name"), **model_config).to(dtype)
        config = clipping_for_optimizer(config)

        datamodule = OperatorDataModule(data, seed=int(config["seed"]), history=history,
                                        rollout_training=rollout.get("train", "one_step"), **config["loader"])
        module = OperatorModule(model, loss=config["loss"], optimizer=config["optimizer"],
                                scheduler=config["scheduler"], domain=data.domain, task=data.task, config=config,
                                max_epochs=config["trainer"].get("max_epochs"),
                                test_resolutions=datamodule.test_resolutions)
        trainer = build_trainer(config, run_dir)
        _monitor(trainer, MONITOR)
        statistics = {key: config["model"].get(key) for key in NORMALISERS}
        data_record = {"sources": data.sources, "task": data.task, "domain": data.domain,
                       "resolution": data.resolution, "test_resolutions": datamodule.test_resolutions,
                       "num_samples": {"train": int(data.train_x.shape[0]), "valid": int(data.valid_x.shape[0]),
                                       "test": {str(r): int(x.shape[0]) for r, (x, _) in (data.test or {}).items()}},
                       "statistics": statistics}
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_yaml(run_dir / "config.yaml", config)
            (run_dir / "data.json").write_text(json.dumps(_plain(data_record), indent=2) + "\n")
            (run_dir / "provenance.json").write_text(json.dumps(provenance(), indent=2) + "\n")

        trainer.fit(module, datamodule=datamodule, ckpt_path=config.get("ckpt_path"))
        best = _best(trainer)
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        before_refine, saved_config = None, config
        if int(refine["epochs"] or 0) > 0:
            before_refine = _metrics_record(module)
            module, trainer, best = _refine(module, config, data, datamodule, run_dir, refine)
            saved_config = module.run_config
        if trainer.is_global_zero:
            record = write_operator_outputs(run_dir, config_name, config, module, datamodule, best, before_refine)
            training = {"config": saved_config, "data": data_record, "test_metrics": record,
                        "provenance": json.loads((run_dir / "provenance.json").read_text()),
                        "checkpoint": {"file": best or None,
                                       "weights": "best checkpoint" if best else "final weights of the run"}}
            save(module.model, run_dir / "model.safetensors", training=_plain(training))
    return run_dir
