#!/usr/bin/env bash
# Install the peer of bench/mace_step.py, mace-torch, into ./.venv-mace (repository root).
#
#   bench/peers/install_mace_torch.sh
#
# mace-torch 0.3.16 pins e3nn 0.4.4, which conflicts with equizoo's e3nn 0.6, so it lives in its
# own plain venv with the CPU build torch==2.13.0 (bench/peers/peer_venv.sh).
# This is the only download the benchmark needs; bench/mace_step.py downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-mace
source bench/peers/peer_venv.sh

# torch is already satisfied, so mace-torch's own "torch>=1.12" pulls nothing more of it
pip_install "mace-torch==0.3.16" ase
"$venv/bin/python" - <<'PY'
import e3nn, mace, torch
print(f"mace-torch installed in .venv-mace (torch {torch.__version__}, e3nn {e3nn.__version__}, "
      f"mace {getattr(mace, '__version__', '0.3.16')})")
PY
