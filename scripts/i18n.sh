#!/usr/bin/env bash
# Translations: extract every English msgid (_ N_ ngettext in the code, preset titles in configs/presets)
# into locales/messages.pot, merge it into the vi and en catalogs, and compile the .mo files.
#   scripts/i18n.sh            extract + update + compile
#   scripts/i18n.sh extract    only write locales/messages.pot (to stdout-free temp use: OUT=/tmp/x.pot)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
BABEL=("$PYTHON" -m babel.messages.frontend)
POT="${OUT:-locales/messages.pot}"

extract() {
  "${BABEL[@]}" extract -F babel.cfg --no-default-keywords -k _ -k N_ -k ngettext:1,2 \
    --project "LEGO Factory for vLLM" --version 0.1.0 --copyright-holder "LEGO Factory for vLLM" \
    --msgid-bugs-address "" --sort-by-file --width 110 -o "$POT" .
}

update() {
  for lang in vi en; do
    po="locales/$lang/LC_MESSAGES/messages.po"
    if [ -f "$po" ]; then
      "${BABEL[@]}" update -i "$POT" -d locales -l "$lang" --no-fuzzy-matching --ignore-obsolete --width 110
    else
      "${BABEL[@]}" init -i "$POT" -d locales -l "$lang" --width 110
    fi
  done
}

compile() {
  "${BABEL[@]}" compile -d locales --statistics
}

case "${1:-all}" in
  extract) extract ;;
  update) update ;;
  compile) compile ;;
  all) extract; update; compile ;;
  *) echo "usage: $0 [extract|update|compile|all]" >&2; exit 2 ;;
esac
