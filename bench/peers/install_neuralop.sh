#!/usr/bin/env bash
# Install the peer of bench/operators.py, neuraloperator 2.0.0, into ./.venv-neuralop (repository root).
#
#   bench/peers/install_neuralop.sh
#
# A plain venv with the CPU build torch==2.13.0 (bench/peers/peer_venv.sh). The Darcy files come from
# scripts/fetch_neuraloperator_data.sh; bench/operators.py downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-neuralop
source bench/peers/peer_venv.sh

# torch is already satisfied, so neuraloperator's own requirement pulls nothing more of it
pip_install "neuraloperator==2.0.0"
"$venv/bin/python" - <<'PY'
import neuralop, torch
print(f"neuraloperator {neuralop.__version__} installed in .venv-neuralop (torch {torch.__version__})")
PY
