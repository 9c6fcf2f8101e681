"""Molecular dynamics through the calculator (zoo.md): energy conservation and the command's outputs.

Documented bound (README "Molecular dynamics"): NVE with the shipped ``mace_organics`` model in
float64, ethanol at 300 K, 1000 steps of 0.5 fs (0.5 ps): the total energy stays within 0.5 meV/atom
of its start and drifts by less than 0.1 meV/atom/ps. Measured (2026-11-23, CPU): 0.19 meV/atom and
0.0016 meV/atom/ps (mace_tdn_organics: 0.19 meV/atom, 0.014 meV/atom/ps); the deviation is velocity
Verlet's bounded oscillation at 0.5 fs with hydrogen atoms, not a drift.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import molecule

from zoo.calculator import Calculator
from zoo.md import main, read_structure, run_md

MAX_DEVIATION = 5e-4  # eV/atom
MAX_DRIFT = 1e-4  # eV/atom/ps


def test_nve_conserves_energy_with_a_float64_model():
    atoms = molecule("CH3CH2OH")
    atoms.calc = Calculator("mace_organics", dtype="float64")
    result = run_md(atoms, steps=1000, ensemble="nve", timestep_fs=0.5, temperature=300.0, seed=1, progress=False)
    summary = result["summary"]
    total = (result["potential"] + result["kinetic"]) / len(atoms)
    assert len(total) == 1001 and np.isfinite(total).all()
    # the dynamics moved: kinetic and potential energy exchanged far more than the total varied
    assert np.ptp(result["potential"]) / len(atoms) > 20 * np.ptp(total)
    assert summary["max_total_energy_deviation_eV_per_atom"] < MAX_DEVIATION
    assert abs(summary["drift_eV_per_atom_per_ps"]) < MAX_DRIFT


def test_command_writes_trajectory_log_plot_and_summary(tmp_path):
    out = tmp_path / "md"
    status = main(["--model", "mace_tdn_organics", "--structure", "H2O", "--ensemble", "bussi", "--steps", "20",
                   "--write-every", "5", "--log-every", "5", "--out", str(out), "--no-progress"])
    assert status == 0
    from ase.io import read

    frames = read(out / "trajectory.xyz", index=":")
    assert len(frames) == 5 and frames[-1].get_potential_energy() is not None  # steps 0, 5, 10, 15, 20
    assert len((out / "md.log").read_text().splitlines()) == 6  # header + 5 lines
    assert (out / "energy.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["atoms"] == 3 and summary["steps_per_second"] > 0


def test_langevin_heats_towards_the_target():
    atoms = molecule("CH4")
    atoms.calc = Calculator("mace_tdn_organics")
    result = run_md(atoms, steps=300, ensemble="langevin", temperature=600.0, friction=0.05, seed=2, progress=False)
    assert np.isfinite(result["temperature"]).all()
    assert result["summary"]["mean_temperature_K"] > 150.0  # equipartition alone would halve 600 K to ~300 K


def test_bad_structure_and_model_are_reported(tmp_path, capsys):
    assert main(["--structure", "not_a_molecule", "--out", str(tmp_path)]) == 1
    assert "neither a file nor a G2 molecule" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
    assert read_structure("C6H6").get_chemical_formula() == "C6H6"
    with pytest.raises(ValueError, match="steps"):
        run_md(molecule("H2"), steps=0)
