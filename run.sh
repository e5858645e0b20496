#!/usr/bin/env bash
# Installs what is missing, prepares the model and opens the LEGO factory.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh
exec .venv/bin/python -m streamlit run dashboard/app.py "$@"
