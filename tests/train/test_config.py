"""Configs compose; the CLI lists them, and a bad override is Hydra's clear error with a non-zero exit."""

import subprocess
import sys

import pytest

from tests.train.conftest import ROOT
from tests.train.test_operator_runs import is_operator_config
from train.cli import parse_arguments
from train.config import ConfigError, available_configs, compose_config, config_groups
from train.experiment import TOP_LEVEL_KEYS

# the potential (MACE) configs; the operator configs are checked in test_operator_runs.py
POTENTIAL_CONFIGS = [name for name in available_configs() if not is_operator_config(name)]
CONFIGS = ("mace", "mace_tdn", "mace_gaunt", "mace_grid", "acac_mace", "acac_mace_tdn", "3bpa_mace", "ethanol_mace")


def run_module(*arguments):
    return subprocess.run([sys.executable, "-m", "train", *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_the_issue_configs_exist():
    assert set(CONFIGS) <= set(available_configs())


@pytest.mark.parametrize("name", POTENTIAL_CONFIGS)
def test_every_config_composes_to_plain_dicts(name):
    config = compose_config(name)
    assert set(TOP_LEVEL_KEYS) <= set(config)
    assert type(config["model"]) is dict and type(config["model"]["radial_mlp"]) is list
    assert config["data"]["r_max"] == config["model"]["r_max"]  # interpolations resolved
    assert config["data"]["dtype"] == config["dtype"]
    assert config["model"]["tensor_product"]["method"] in ("cg", "gaunt", "grid", "cp")


def test_tensor_product_methods_of_the_named_configs():
    methods = {name: compose_config(name)["model"]["tensor_product"]["method"] for name in CONFIGS}
    assert methods == {"mace": "cg", "mace_tdn": "cp", "mace_gaunt": "gaunt", "mace_grid": "grid",
                       "acac_mace": "cg", "acac_mace_tdn": "cp", "3bpa_mace": "cg", "ethanol_mace": "cg"}
    assert compose_config("mace_tdn")["model"]["tensor_product"]["rank"] is None


def test_nested_keys_and_groups_are_overridable():
    config = compose_config("mace", ["model.num_channels=64", "tp@model.tensor_product=cp",
                                     "model.tensor_product.rank=16", "dtype=float64", "trainer.max_epochs=5"])
    assert config["model"]["num_channels"] == 64
    assert config["model"]["tensor_product"] == {"method": "cp", "rank": 16, "target_error": 1e-3}
    assert config["data"]["dtype"] == "float64"
    assert config["trainer"]["max_epochs"] == 5


@pytest.mark.parametrize("overrides, message", [
    (["model.num_chanels=64"], "Could not override 'model.num_chanels'"),
    (["tp@model.tensor_product=cpx"], "tp/cpx"),
    (["model.num_channels=="], "model.num_channels"),
])
def test_bad_overrides_raise_hydras_message(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        compose_config("mace", overrides)


def test_unknown_config_lists_the_available_ones():
    with pytest.raises(ConfigError, match="mace_tdn"):
        compose_config("mace_tnd")
    with pytest.raises(ConfigError, match="exactly one config=NAME"):
        parse_arguments(["model.num_channels=3"])


def test_help_lists_configs_and_groups():
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    for name in available_configs():
        assert name in result.stdout
    for group in config_groups():
        assert f"{group}:" in result.stdout


def test_typo_exits_non_zero_with_hydras_error_and_no_traceback():
    result = run_module("config=mace", "model.num_chanels=64")
    assert result.returncode == 2
    assert "Could not override 'model.num_chanels'" in result.stderr
    assert "Traceback" not in result.stderr
