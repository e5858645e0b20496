#!/usr/bin/env bash
# Installs what is missing (test tools included) and runs the whole test suite, real vLLM included.
# Extra arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh --dev
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -m "not gpu" "$@"
