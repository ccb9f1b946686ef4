"""Where training runs: `auto` picks CUDA when torch sees a GPU."""

from __future__ import annotations

from training.errors import UsageError


def resolve_device(device: str) -> str:
    """Map auto / cpu / cuda to the device to use; a clear UsageError when cuda is missing."""
    if device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if device == "cuda":
            raise UsageError("--device cuda needs torch with CUDA; torch is not installed") from None
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return "cuda" if torch.cuda.is_available() else "cpu"
