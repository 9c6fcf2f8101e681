"""One training run from a resolved config: seed -> data -> statistics -> model -> module -> Trainer -> fit -> test.

What a run directory holds (``runs/<config>/<YYYY-mm-dd_HH-MM-SS>`` unless ``run_dir=`` is given):

- ``config.yaml``: the resolved config, with the statistics filled in from the data;
- ``data.json``: which files were read, the split, the E0 source and the data statistics;
- ``provenance.json``: the git commit of the code, software versions, machine and start time;
- ``checkpoints/best.ckpt``, ``checkpoints/last.ckpt``: Lightning checkpoints (atomic writes); their
  ``state_dict`` holds the EMA weights, ``config`` the resolved config;
- ``csv/version_N/metrics.csv`` (N counts the starts of the run: 0, then 1 after a resume ...) and
  ``tensorboard/``: the logs;
- ``test_metrics.json`` and ``parity.png``: the test set (the validation set if there is no test
  set) evaluated with the best checkpoint (the final weights when none was written);
- ``model.safetensors``: those weights as an equizoo checkpoint (``zoo.load(path)``, the ASE
  calculator, ``finetune.from=path``), see :mod:`train.export`.

``ckpt_path=<...>/checkpoints/last.ckpt`` resumes a run: model, optimizer, EMA, schedule, epoch and
the training order continue as if uninterrupted; without ``run_dir=`` it writes into that run's
directory.

Under DDP (``trainer.strategy=ddp``, ``trainer.devices``, ``trainer.num_nodes``), Lightning starts one
process per device by re-running this command; the run directory is passed to them in the
environment variable ``EQUIZOO_RUN_DIR`` so every process writes into the same one, and only the
global rank 0 writes files other than checkpoints. Processes started by a cluster launcher share
the SLURM job's name (``runs/<config>/slurm-<job>.<step>``) or need ``run_dir=`` (torchrun).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

import zoo
from zoo.provenance import provenance
from datasets import schema
from datasets.atomistic import build_atomistic_data
from train.checkpoint import AtomicCheckpointIO, BestAndLastCheckpoint
from train.config import ConfigError
from train.data_module import AtomisticDataModule
from train.ema import ExponentialMovingAverage
from train.optim import accepts_keyword, takes_loss_closure
from train.export import export_run
from train.finetune import build_finetune_model
from train.parity import plot_parity
from train.potential import PotentialModule
from train.statistics import fill_model_statistics, labels_present

RUN_DIR_ENV = "EQUIZOO_RUN_DIR"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = {"float32": "32-true", "float64": "64-true"}
# DDP strategies by name, without buffer broadcasts: the model's buffers are constants, and a
# broadcast in every forward would hang when processes run different numbers of validation batches
DDP_STRATEGIES = {
    "ddp": dict(),
    "ddp_find_unused_parameters_true": dict(find_unused_parameters=True),
    "ddp_spawn": dict(start_method="spawn"),
}
TOP_LEVEL_KEYS = ("seed", "dtype", "run_dir", "ckpt_path", "model", "data", "loader", "loss", "optimizer",
                  "scheduler", "trainer", "ema", "statistics", "finetune")


def _run_name() -> str:
    """The default name of a new run: the time, or the SLURM job (and step) that every process shares.

    Processes that a cluster launcher starts (srun, torchrun) do not inherit ``EQUIZOO_RUN_DIR`` from
    global rank 0, and their clocks need not agree to the second; a SLURM job names its run itself,
    other external launchers must be given ``run_dir=``.
    """
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        step = os.environ.get("SLURM_STEP_ID")
        return f"slurm-{os.environ['SLURM_JOB_ID']}" + (f".{step}" if step else "")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("this process was started by an external launcher (WORLD_SIZE > 1) without run_dir=; "
                          "give run_dir=... so that every process writes into the same directory")
    return datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def resolve_run_dir(config: Mapping[str, Any], config_name: str) -> Path:
    """``run_dir`` if given, else the DDP parent's, else the resumed run's, else ``runs/<config>/<name>``."""
    if config.get("run_dir"):
        return Path(config["run_dir"])
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if config.get("ckpt_path"):
        resumed = Path(config["ckpt_path"]).resolve().parent.parent
        if (resumed / "config.yaml").exists():
            return resumed
    return Path("runs") / config_name / _run_name()


@contextlib.contextmanager
def _exported(name: str, value: str) -> Iterator[None]:
    """Set an environment variable (inherited by DDP's child processes) for the duration of a run."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def check_keys_and_dtype(config: Mapping[str, Any], required: tuple[str, ...], kind: str) -> None:
    """The checks every run config shares: the ``required`` top-level keys are present, ``dtype`` is one of
    DTYPES and ``data.dtype`` follows it. ``kind`` names the config in the error, article included
    ("a potential", "an operator")."""
    missing = [key for key in required if key not in config]
    if missing:
        raise ConfigError(f"the config lacks the top-level key(s) {missing}; {kind} config has {required}")
    if config["dtype"] not in DTYPES:
        raise ConfigError(f"dtype={config['dtype']!r}; valid: {', '.join(DTYPES)}")
    if config["data"].get("dtype") != config["dtype"]:
        raise ConfigError(f"data.dtype={config['data'].get('dtype')!r} differs from dtype={config['dtype']!r}; "
                          "set the top-level dtype only (data.dtype follows it)")


def _check_config(config: Mapping[str, Any]) -> None:
    check_keys_and_dtype(config, TOP_LEVEL_KEYS, "a potential")
    if float(config["data"].get("r_max")) != float(config["model"].get("r_max")):
        raise ConfigError(f"data.r_max={config['data'].get('r_max')} differs from model.r_max="
                          f"{config['model'].get('r_max')}; set model.r_max only (data.r_max follows it)")


def _check_labels(loss: Mapping[str, Any], present: set[str]) -> None:
    """A loss term on a label no frame carries is a config mistake, not a silent zero."""
    stages = [loss] + ([loss["stage_two"]] if loss.get("stage_two") else [])
    for stage in stages:
        for label in schema.LABELS:
            weight = stage.get(f"{label}_weight", 0.0) or 0.0
            if weight > 0 and label not in present:
                raise ConfigError(f"loss.{label}_weight={weight} but no frame of the data has {label} labels; "
                                  f"set loss.{label}_weight=0 (labels present: {sorted(present)})")


def clipping_for_optimizer(config: dict[str, Any]) -> dict[str, Any]:
    """Move ``trainer.gradient_clip_val`` to ``optimizer.max_grad_norm`` for a closure optimizer.

    Lightning clips only under automatic optimization; the closure optimizers (manual optimization,
    see :mod:`train.potential`) clip the gradient themselves, before their curvature uses it.
    """
    clip = config["trainer"].get("gradient_clip_val")
    name = config["optimizer"]["name"]
    if not clip or not takes_loss_closure(name):
        return config
    if not accepts_keyword(name, "max_grad_norm"):
        raise ConfigError(f"trainer.gradient_clip_val={clip} but optimizer {name!r} cannot clip its gradient; "
                          "set trainer.gradient_clip_val=null")
    optimizer = {**config["optimizer"]}
    optimizer.setdefault("max_grad_norm", float(clip))
    return {**config, "optimizer": optimizer, "trainer": {**config["trainer"], "gradient_clip_val": None}}


def build_trainer(config: Mapping[str, Any], run_dir: Path) -> pl.Trainer:
    """A ``lightning.Trainer`` from the ``trainer:`` node, with this project's checkpoints, EMA and logs."""
    kwargs = dict(config["trainer"])
    precision = kwargs.pop("precision", None) or PRECISIONS[config["dtype"]]
    if str(precision) not in (PRECISIONS[config["dtype"]], PRECISIONS[config["dtype"]].split("-")[0]):
        raise ConfigError(f"trainer.precision={precision!r} contradicts dtype={config['dtype']!r}; set dtype only")
    strategy = kwargs.pop("strategy", "auto")
    if isinstance(strategy, str) and strategy in DDP_STRATEGIES:
        strategy = DDPStrategy(broadcast_buffers=False, **DDP_STRATEGIES[strategy])
    callbacks: list[pl.Callback] = [BestAndLastCheckpoint(run_dir / "checkpoints")]
    if kwargs.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar())
    if config["ema"] and config["ema"].get("decay") is not None:
        callbacks.append(ExponentialMovingAverage(**config["ema"]))
    loggers = [
        # a new csv/version_N per (re)start: Lightning's CSV writer deletes an existing metrics.csv
        CSVLogger(save_dir=run_dir, name="csv"),
        TensorBoardLogger(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False),
    ]
    return pl.Trainer(
        **kwargs,
        precision=precision,
        strategy=strategy,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],
        # forces are derivatives: evaluation runs under no_grad with enable_grad inside, never inference mode
        inference_mode=False,
        # the data module shards validation/test without repeating frames (exact metrics)
        use_distributed_sampler=False,
    )


def _write_yaml(path: Path, content: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(_plain(content), sort_keys=False))


def _plain(value: Any) -> Any:
    """Tuples to lists and numpy/torch scalars to Python numbers, recursively (for YAML/JSON)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_test_outputs(run_dir: Path, config_name: str, module: PotentialModule, split: str, num_frames: int,
                       checkpoint: str) -> None:
    """``test_metrics.json`` and ``parity.png`` of the last ``trainer.test`` (on global rank 0)."""
    results = module.test_results
    record = {
        "config": config_name,
        "split": split,
        "num_frames": num_frames,
        "weights": checkpoint or "final weights of the run (EMA when enabled)",
        "loss": results["loss"],
        "metrics": results["metrics"],
    }
    (run_dir / "test_metrics.json").write_text(json.dumps(_plain(record), indent=2) + "\n")
    parity = {key: value.numpy() for key, value in module.parity_data.items()}
    plot_parity(run_dir / "parity.png", parity["energy_per_atom_ref"], parity["energy_per_atom_pred"],
                parity["forces_ref"], parity["forces_pred"], title=f"{config_name}: {split} set",
                energy_label="energy per atom - E0s" if module.parity_energy_offset else "energy per atom")


def run(config: Mapping[str, Any], config_name: str) -> Path:
    """Train and test as ``config`` (resolved, plain dicts) says; return the run directory."""
    if config.get("task") == "operator":  # neural operators: train.operator_experiment
        from train.operator_experiment import run_operator

        return run_operator(config, config_name)
    config = copy.deepcopy(dict(config))
    _check_config(config)
    run_dir = resolve_run_dir(config, config_name).resolve()
    with _exported(RUN_DIR_ENV, str(run_dir)):
        pl.seed_everything(int(config["seed"]), workers=True, verbose=False)
        dtype = DTYPES[config["dtype"]]

        data = build_atomistic_data(**config["data"])
        present = labels_present(data.train + data.valid + data.test)
        _check_labels(config["loss"], present)

        finetune = config["finetune"] or {}
        if finetune.get("from"):
            model, config["model"], record = build_finetune_model(finetune, config["model"], data, dtype)
            config["finetune"] = {**finetune, "resolved": record}
            config["optimizer"] = {**config["optimizer"],
                                   "lr": float(config["optimizer"]["lr"]) * float(finetune.get("lr_scale", 1.0))}
        else:
            config["model"] = fill_model_statistics(config["model"], data, config["statistics"])
            model_config = dict(config["model"])
            with _default_dtype(dtype):
                model = zoo.build_model(model_config.pop("name"), **model_config).to(dtype)
        config = clipping_for_optimizer(config)
        module = PotentialModule(
            model, loss=config["loss"], optimizer=config["optimizer"], scheduler=config["scheduler"],
            compute_forces=schema.FORCES in present,
            compute_stress=bool({schema.STRESS, schema.VIRIALS} & present),
            config=config, atomic_energies=data.atomic_energies,
        )
        datamodule = AtomisticDataModule(data.train, data.valid, data.test, seed=int(config["seed"]),
                                         **config["loader"])
        trainer = build_trainer(config, run_dir)
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_yaml(run_dir / "config.yaml", config)
            statistics = dict(avg_num_neighbors=data.avg_num_neighbors, mean_energy_per_atom=data.mean_energy_per_atom,
                              std_energy_per_atom=data.std_energy_per_atom, rms_forces=data.rms_forces)
            (run_dir / "data.json").write_text(json.dumps(_plain(dict(sources=data.sources, statistics=statistics,
                                                                     labels=sorted(present))), indent=2) + "\n")
            (run_dir / "provenance.json").write_text(json.dumps(provenance(), indent=2) + "\n")

        trainer.fit(module, datamodule=datamodule, ckpt_path=config.get("ckpt_path"))
        callback = trainer.checkpoint_callback  # writes nothing under fast_dev_run: test the final weights then
        best = callback.best_model_path if callback is not None and callback.best_model_path else ""
        best = best if best and Path(best).is_file() else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        if trainer.is_global_zero:
            split = datamodule.test_split
            write_test_outputs(run_dir, config_name, module, split, len(data.test if split == "test" else data.valid),
                               best)
            export_run(run_dir, module.model, config, best)
    return run_dir
