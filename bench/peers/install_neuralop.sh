#!/usr/bin/env bash
# Install the peer of bench/operators.py, neuraloperator 2.0.0, into ./.venv-neuralop (repository root).
#
#   bench/peers/install_neuralop.sh
#
# The peer lives in its own plain venv (no system site packages), so neither package's pins touch the
# other's. torch is the CPU build torch==2.13.0, from the PyTorch CPU index where it is reachable, else
# from the default index; no CUDA wheels are pulled. The Darcy files come from
# scripts/fetch_neuraloperator_data.sh; bench/operators.py downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
venv=.venv-neuralop

pip_install() {  # quiet pip; its log is shown only when it fails
  local log
  log=$(mktemp)
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "Retrying\|is ignored: it is neither" "$log" >&2 || true
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  pip_install --no-deps "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    || pip_install --no-deps "torch==2.13.0"
  pip_install "torch==2.13.0"
fi

# torch is already satisfied, so neuraloperator's own requirement pulls nothing more of it
pip_install "neuraloperator==2.0.0"
"$venv/bin/python" - <<'PY'
import neuralop, torch
print(f"neuraloperator {neuralop.__version__} installed in .venv-neuralop (torch {torch.__version__})")
PY
