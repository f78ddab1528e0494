#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv in .venv with the pinned dependencies.
# Sourced by the other scripts; it only reinstalls when pyproject.toml has changed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv"
fi
stamp="$root/.venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$root/.venv/bin/python" -m pip install --quiet --upgrade pip
  "$root/.venv/bin/python" -m pip install --quiet -e "$root[dev]"
  rm -f "$root"/.venv/.installed-* && touch "$stamp"
fi
