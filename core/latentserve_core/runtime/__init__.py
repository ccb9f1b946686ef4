"""One runtime class per artifact format, behind `ModelRuntime`."""

from latentserve_core.runtime.base import ModelRuntime, Reconstruction
from latentserve_core.runtime.joblib import JoblibRuntime
from latentserve_core.runtime.onnx import OnnxRuntime

RUNTIMES: dict[str, type[ModelRuntime]] = {"onnx": OnnxRuntime, "joblib": JoblibRuntime}

__all__ = ["RUNTIMES", "JoblibRuntime", "ModelRuntime", "OnnxRuntime", "Reconstruction"]
