#!/usr/bin/env bash
# Set up, then run the whole test suite (backend, CLI, QGIS plugin headless).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest -q tests "$@"
