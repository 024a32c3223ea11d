#!/usr/bin/env bash
# The run command: creates .venv (Python 3.11) if needed, installs requirements.txt, starts the app.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec .venv/bin/streamlit run app/main.py "$@"
