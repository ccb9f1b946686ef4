"""Exporting a PyTorch module to ONNX, and the bound every network parity check holds it to.

A difference above ATOL + RTOL * max |reference| (1e-4 plus float32-scale slack) between
onnxruntime and PyTorch raises an ExportError, and nothing is published.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from training.base import allowed_difference
from training.errors import ExportError

OPSET = 17
ATOL = 1e-4  # every network parity check allows ATOL + RTOL * max |reference|
RTOL = 1e-6  # float32 resolves ~6e-8 of a value: large codes or raw standardised features need slack


def parity_bound(reference: Any) -> float:
    """The largest max |ONNX - PyTorch| a network parity check accepts: 1e-4 + 1e-6 * max |reference|."""
    return allowed_difference(reference, atol=ATOL, rtol=RTOL)


def check_close(what: str, got: Any, reference: Any) -> float:
    """Return max |got - reference|; raise ExportError naming the bound when it exceeds parity_bound."""
    got64, ref64 = np.asarray(got, np.float64), np.asarray(reference, np.float64)
    diff = float(np.max(np.abs(got64 - ref64))) if ref64.size else 0.0
    bound = parity_bound(ref64)
    if not diff <= bound:  # NaN fails too
        raise ExportError(
            f"{what} differs from the PyTorch model by {diff:.3g} (allowed {bound:.3g} = {ATOL:g} + "
            f"{RTOL:g} x max |reference| {float(np.max(np.abs(ref64))):.3g}); nothing was published"
        )
    return diff


def to_onnx(module: nn.Module, example: Tensor, path: Path, inputs: list[str], outputs: list[str]) -> None:
    axes = {name: {0: "batch"} for name in [*inputs, *outputs]}
    with warnings.catch_warnings():
        # the tracer's notes on LSTM shapes and python-bool conversions: the batch axis stays dynamic
        warnings.filterwarnings("ignore", module=r"torch\.")
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
        )
        names: dict[str, Any] = {"input_names": inputs, "output_names": outputs, "opset_version": OPSET}
        try:
            torch.onnx.export(module, (example,), str(path), dynamo=False, dynamic_axes=axes, **names)
        except (TypeError, NotImplementedError):  # a torch without the legacy exporter
            batch = {0: torch.export.Dim("batch")}
            torch.onnx.export(module, (example,), str(path), dynamo=True, dynamic_shapes=(batch,), **names)
