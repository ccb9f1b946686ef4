#!/usr/bin/env bash
# Prepare a run of scripts/gpu-check.sh (and benchmarks/train_gpu.py) on a lent GPU machine.
# Its image has torch, onnx, onnxruntime, scikit-learn and numpy but no pydantic (latentserve_core.manifest
# needs it), and ../shared does not travel: this puts pydantic's wheels (for that image's Python
# 3.12) into .whl/ and the MNIST files into .device-data/mnist/, both ignored by git, then prints
# the `carry` list and the command to give the device tool.
set -euo pipefail
cd "$(dirname "$0")/.."
mnist="${MNIST_DIR:-../shared/data/mnist}"
py=".venv/bin/python"
[ -x "$py" ] || py=python3
mkdir -p .whl .device-data/mnist
for p in /.whl/ /.device-data/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done
pins=$("$py" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in
  ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")))')
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $pins
cp "$mnist"/*-ubyte.gz .device-data/mnist/
cat <<'MSG'
carry: [".whl", ".device-data"]
command:
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 PYTHON=python3 scripts/gpu-check.sh --data-dir .device-data/mnist 2>&1 | tee $OUT/gpu-check.log; PYTHONUNBUFFERED=1 python3 benchmarks/train_gpu.py --data-dir .device-data/mnist 2>&1 | tee $OUT/train-gpu.log
MSG
