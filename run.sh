#!/usr/bin/env bash
# Installs what is missing, prepares the model and opens the LEGO factory.
#   ./run.sh            on this computer only (http://127.0.0.1:8501)
#   ./run.sh --share    for a class: listens on the network and prints a presenter link with a fresh key
#                       (LEGO_FACTORY_SHARE=1 ./run.sh does the same)
# Other options go to Streamlit, e.g. ./run.sh --server.port 8600
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh
exec .venv/bin/python -m dashboard.ui.launch "$@"
