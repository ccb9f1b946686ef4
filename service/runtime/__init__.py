"""One runtime class per artifact format, behind `ModelRuntime`."""

from service.runtime.base import ModelRuntime, Reconstruction
from service.runtime.joblib import JoblibRuntime
from service.runtime.onnx import OnnxRuntime

RUNTIMES: dict[str, type[ModelRuntime]] = {"onnx": OnnxRuntime, "joblib": JoblibRuntime}

__all__ = ["RUNTIMES", "JoblibRuntime", "ModelRuntime", "OnnxRuntime", "Reconstruction"]
