#!/usr/bin/env bash
# Install the peer of bench/mace_step.py, mace-torch, into ./.venv-mace (repository root).
#
#   bench/peers/install_mace_torch.sh
#
# mace-torch 0.3.16 pins e3nn 0.4.4, which conflicts with equizoo's e3nn 0.6, so it lives in its
# own plain venv (no system site packages). torch is the CPU build torch==2.13.0, from the PyTorch
# CPU index where it is reachable, else from the default index; no CUDA wheels are pulled.
# This is the only download the benchmark needs; bench/mace_step.py downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
venv=.venv-mace

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
  # the CPU wheel alone from the PyTorch CPU index (falling back to the default index), then its
  # dependencies from the default index
  pip_install --no-deps "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    || pip_install --no-deps "torch==2.13.0"
  pip_install "torch==2.13.0"
fi

# torch is already satisfied, so mace-torch's own "torch>=1.12" pulls nothing more of it
pip_install "mace-torch==0.3.16" ase
"$venv/bin/python" - <<'PY'
import e3nn, mace, torch
print(f"mace-torch installed in .venv-mace (torch {torch.__version__}, e3nn {e3nn.__version__}, "
      f"mace {getattr(mace, '__version__', '0.3.16')})")
PY
