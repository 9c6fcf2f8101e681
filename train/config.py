"""Configs: compose ``configs/NAME.yaml`` with Hydra overrides and hand back plain dicts.

The configs live in the repository's ``configs/`` directory, found relative to this package. Hydra's
compose API is used (not ``@hydra.main``) so that the CLI owns the run directory and the process;
the result is resolved (interpolations such as ``${model.r_max}`` filled in) and converted to plain
Python containers at once: below the CLI nobody sees OmegaConf.

Layout: ``configs/NAME.yaml`` are runnable experiments; every subdirectory is a config group whose
options are its YAML files (``model/``, ``data/``, ``tp/``, ...), selected in an experiment's
``defaults`` list and swapped on the command line with ``group=option`` (``tp@model.tensor_product=cp``
for a group placed at another key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be composed: unknown name, bad override, missing value."""


def _config_dir() -> Path:
    if not CONFIG_DIR.is_dir():
        raise ConfigError(f"no configs directory at {CONFIG_DIR} (train finds configs/ beside its package)")
    return CONFIG_DIR


def available_configs() -> list[str]:
    """Names of the runnable configs (``configs/*.yaml``)."""
    return sorted(p.stem for p in _config_dir().glob("*.yaml"))


def config_groups() -> dict[str, list[str]]:
    """``{group: [options]}`` of the config groups (subdirectories of ``configs/``)."""
    root = _config_dir()
    return {
        str(d.relative_to(root)): sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(root.rglob("*"))
        if d.is_dir() and any(d.glob("*.yaml"))
    }


def describe(name: str) -> str:
    """The first comment line of ``configs/<name>.yaml`` (its one-line description)."""
    for line in (_config_dir() / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def compose_config(name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved config ``name`` with Hydra ``overrides``, as plain dicts and lists.

    Raises :class:`ConfigError` with Hydra's (or OmegaConf's) message for an unknown config, an
    override of a key that does not exist, a malformed override or an unresolvable value.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    names = available_configs()
    if name not in names:
        raise ConfigError(f"unknown config {name!r}; available configs: {', '.join(names)}")
    try:
        with initialize_config_dir(config_dir=str(_config_dir()), version_base="1.3", job_name="train"):
            composed = compose(config_name=name, overrides=list(overrides))
        return OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as error:
        message = str(error)
        if error.__cause__ is not None and str(error.__cause__) not in message:
            message += f"\n{error.__cause__}"
        raise ConfigError(message) from None
