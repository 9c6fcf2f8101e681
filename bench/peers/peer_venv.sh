# Sourced by the peer install scripts (install_mace_torch.sh, install_neuralop.sh): a plain venv (no system
# site packages, so the peer's pins never meet equizoo's) holding the CPU build torch==2.13.0, from the
# PyTorch CPU index where it is reachable, else from the default index; no CUDA wheels are pulled.
#
#   venv=.venv-NAME; source bench/peers/peer_venv.sh; pip_install "package==version"
set -euo pipefail
python="${PYTHON:-python3}"

pip_install() {  # quiet pip into $venv; its log is shown only when it fails
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
