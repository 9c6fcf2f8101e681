#!/usr/bin/env bash
# Install equizoo into ./.venv, ready to run.
#
#   ./install.sh            the package
#   ./install.sh test       the package and what the test suite needs
#
# On a machine without an NVIDIA GPU, torch is the CPU build (torch==2.13.0, from the PyTorch
# CPU index where it is reachable), so no multi-GB CUDA wheels are pulled. A torch that is
# already installed system-wide (e.g. a GPU machine's) is reused: the venv sees system packages.
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
python="${PYTHON:-python3}"

pip_install() {  # quiet pip; its log is shown only when it fails
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "Retrying\|is ignored: it is neither" "$log" >&2 || true
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv --system-site-packages .venv
fi

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip_install "torch>=2.6"
  else
    # the CPU wheel alone from the PyTorch CPU index, then its dependencies from the usual index
    pip_install --no-deps "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
    pip_install "torch==2.13.0"
  fi
fi

if [ -n "$extras" ]; then
  pip_install -e ".[${extras}]"
else
  pip_install -e .
fi
# torch-harmonics (the shallow-water solver behind configs/sfno_swe) is a source distribution that builds
# against the torch installed above; without --no-build-isolation pip would fetch another torch to build it
if ! .venv/bin/python -c "import torch_harmonics" 2>/dev/null; then
  pip_install --no-build-isolation --no-deps "torch-harmonics==0.7.4"
fi
echo "equizoo installed in .venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
