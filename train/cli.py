"""``python -m train config=NAME [key=value ...]``: compose a config with Hydra and run it.

``config=NAME`` picks ``configs/NAME.yaml``; every other word is a Hydra override (``key=value``,
``group=option``, ``group@key=option``, ``+key=value``, ``~key``). A config that does not compose (an
unknown config, a key that does not exist, a malformed override) prints Hydra's message and exits
with status 2, as does a config that composes but cannot run (a loss on labels the data lacks);
bad data prints the reader's message (file, frame, key) and exits with status 1. ``--help`` lists
the configs and config groups.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from train.config import ConfigError, available_configs, compose_config, config_groups, describe

USAGE = "usage: python -m train config=NAME [KEY=VALUE ...]"
EXIT_USAGE = 2
EXIT_DATA = 1


def help_text() -> str:
    """The ``--help`` text: usage, configs with their descriptions, config groups with their options."""
    names = available_configs()
    width = max((len(n) for n in names), default=0)
    lines = [
        USAGE,
        "",
        "Train an interatomic potential or a neural operator. NAME is one of the configs below",
        "(configs/NAME.yaml); every other argument is a Hydra override: key=value (nested keys with dots),",
        "group=option to swap a config group, group@key=option for a group placed at another key,",
        "+key=value to add a key.",
        "",
        "configs:",
        *(f"  {name.ljust(width)}  {describe(name)}" for name in names),
        "",
        "config groups (GROUP=OPTION):",
        *(f"  {group}: {', '.join(options)}" for group, options in config_groups().items()),
        "",
        "examples:",
        "  python -m train config=mace_tdn",
        "  python -m train config=mace model.num_channels=64 tp@model.tensor_product=cp model.tensor_product.rank=16",
        "  python -m train config=acac_mace trainer.devices=2 trainer.strategy=ddp",
        "  python -m train config=mace ckpt_path=runs/mace/<time>/checkpoints/last.ckpt",
        "  python -m train config=fno_darcy model.width=64 data.num_train=1000 refine.epochs=10",
        "",
        "A run writes runs/<config>/<time>/ (or run_dir=...): config.yaml, checkpoints/{best,last}.ckpt,",
        "csv/version_N/ and tensorboard/ logs, test_metrics.json, model.safetensors and parity.png",
        "(potentials) or predictions_<resolution>.png (operators).",
    ]
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``(config name, overrides)`` from the command line; raises :class:`ConfigError` without ``config=``."""
    names = [a.split("=", 1)[1] for a in argv if a.startswith("config=")]
    overrides = [a for a in argv if not a.startswith("config=")]
    if len(names) != 1 or not names[0]:
        raise ConfigError(f"give exactly one config=NAME (got {len(names)}); available configs: "
                          f"{', '.join(available_configs())}")
    return names[0], overrides


def _show_optimizer_messages() -> None:
    """Print the optimizers' one-line messages (e.g. which Hessian-vector product a run uses) to stderr."""
    logger = logging.getLogger("train.optim")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(help_text())
        return 0 if argv else EXIT_USAGE
    try:
        name, overrides = parse_arguments(argv)
        config = compose_config(name, overrides)
    except ConfigError as error:
        print(f"{USAGE}\nerror: {error}", file=sys.stderr)
        return EXIT_USAGE
    _show_optimizer_messages()
    # heavy imports (torch, Lightning, the model zoo) only once the config composes
    from datasets.errors import DatasetError
    from train.experiment import run

    try:
        run_dir = run(config, name)
    except ConfigError as error:  # a config that composes but cannot run (e.g. a loss on absent labels)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DatasetError as error:  # bad data: the message names file, frame and key
        print(f"error in the data: {error}", file=sys.stderr)
        return EXIT_DATA
    print(f"run directory: {run_dir}")
    return 0
