#!/usr/bin/env bash
# Train every autoencoder kind for 1-2 epochs on MNIST, export each into a temporary registry with
# the ONNX parity checks, time an epoch and print one table. Exits non-zero when any kind fails.
#
#   scripts/gpu-check.sh                      # on a CUDA machine: 2 epochs on 55,000 images each
#   scripts/gpu-check.sh --cpu                # quick CPU run: 1 epoch on 1,000 images
#   scripts/gpu-check.sh --data-dir DIR       # where the MNIST .gz files are (default ../shared/data/mnist)
#   scripts/gpu-check.sh --compile --bf16     # also exercise torch.compile (CUDA graphs) / bf16 autocast
#
# Needs only torch, onnx, onnxruntime, scikit-learn, numpy, pydantic (no fastapi). On a lent GPU
# machine, scripts/prepare-device.sh prints the carry list and the command (pydantic wheels, MNIST).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
