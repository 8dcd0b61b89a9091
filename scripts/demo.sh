#!/usr/bin/env bash
# Set up a virtual environment and run the demo: simulator + chaos + client + integrity report.
# Usage: bash scripts/demo.sh [gapless demo options, e.g. --duration 60 --seed 7 --json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/gapless demo "$@"
