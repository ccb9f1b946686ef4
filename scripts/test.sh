#!/usr/bin/env bash
# The test command: set up .venv with the train and dev extras, lint, type-check, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh train,dev
echo "== ruff" && .venv/bin/ruff check service training client tests benchmarks
echo "== mypy --strict" && .venv/bin/mypy
# the browser test's screenshots of /ui and a version page become the README's pictures
export LATENTSERVE_SCREENSHOTS_DIR="${LATENTSERVE_SCREENSHOTS_DIR-docs/screenshots}"
echo "== pytest" && .venv/bin/python -m pytest "$@"
