#!/usr/bin/env bash
# Create .venv and install latentserve with the extras named in $1 (default: train), its scoring core
# (core/, latentserve-core) and the client (client/, latentserve-client), all editable.
# Picks the torch build that fits the machine: CUDA torch where an NVIDIA GPU answers,
# otherwise the CPU build (torch==2.13.0, which installs from a local wheel where one is
# provided). Override with LATENTSERVE_TORCH_SPEC (e.g. "torch==2.14.1" or "torch").
# Re-running is cheap: nothing is reinstalled unless pyproject.toml or the extras changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
py="${PYTHON:-python3}"
venv=".venv"
stamp="$venv/.latentserve-installed"
want="$(cat pyproject.toml core/pyproject.toml client/pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $extras"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($py --version)" >&2
  "$py" -m venv "$venv"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip=("$venv/bin/python" -m pip install -q)

if [[ "$extras" == *train* ]]; then
  if [ -n "${LATENTSERVE_TORCH_SPEC:-}" ]; then
    torch_spec="$LATENTSERVE_TORCH_SPEC"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    torch_spec="torch"            # a CUDA build: what a GPU machine wants
  else
    torch_spec="torch==2.13.0"    # the CPU build where a local wheel provides it
  fi
  if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing $torch_spec" >&2
    "${pip[@]}" "$torch_spec"
  fi
fi
echo "setup: installing latentserve-core, latentserve[$extras] and latentserve-client" >&2
"${pip[@]}" -e ./core  # first: latentserve and latentserve-client[spark] depend on it, and it is not on PyPI
"${pip[@]}" -e ".[$extras]" -e ./client
echo "$want" > "$stamp"
