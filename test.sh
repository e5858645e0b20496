#!/usr/bin/env bash
# Installs what is missing (test tools included) and runs the whole test suite, real vLLM included.
# GPU tests (marker `gpu`) run when an NVIDIA GPU answers `nvidia-smi -L`, and are skipped, saying so,
# when none does. Extra arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh --dev
.venv/bin/python -m ruff check .
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "NVIDIA GPU found ($(nvidia-smi -L | head -n 1)): the GPU tests run too."
  exec .venv/bin/python -m pytest "$@"
fi
echo "No NVIDIA GPU found (nvidia-smi -L does not answer): the GPU tests (marker gpu) are skipped."
exec .venv/bin/python -m pytest -m "not gpu" "$@"
