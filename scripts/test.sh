#!/usr/bin/env bash
# The test command: creates .venv (Python 3.11) if needed, installs requirements-dev.txt,
# installs Chromium and coturn for the browser tests where it can, then lint, format check, type check
# and the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
bash scripts/install-browser.sh || echo "note: Chromium could not be installed; browser tests will say why"
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
