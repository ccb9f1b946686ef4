#!/usr/bin/env bash
# The main job: set up .venv, train the default models into the registry if it is empty,
# then serve them on http://127.0.0.1:8000 (override with LATENTSERVE_HOST / LATENTSERVE_PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh train
models="${LATENTSERVE_MODELS_DIR:-models}"
.venv/bin/python -m training bootstrap --models-dir "$models"
# The defaults were just trained on this machine, so their joblib (pickle) files are trusted here.
export LATENTSERVE_ALLOW_PICKLE="${LATENTSERVE_ALLOW_PICKLE:-true}"
exec .venv/bin/python -m service --models-dir "$models" \
  --host "${LATENTSERVE_HOST:-127.0.0.1}" --port "${LATENTSERVE_PORT:-8000}"
