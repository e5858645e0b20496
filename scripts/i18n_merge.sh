#!/usr/bin/env bash
# Extract the template, update both catalogs, fold in locales/incoming/*.po, compile. One at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/lego-i18n.lock
flock 9
PYTHON="${PYTHON:-.venv/bin/python}"
bash scripts/i18n.sh extract
bash scripts/i18n.sh update
"$PYTHON" scripts/i18n_merge.py
bash scripts/i18n.sh compile >/dev/null
