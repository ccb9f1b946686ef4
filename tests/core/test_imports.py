"""The scoring core stands alone: importing it (and loading a model with it) pulls in no web framework,
no torch, and neither the service nor the training package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FORBIDDEN = ("fastapi", "starlette", "uvicorn", "torch", "service", "training", "sklearn", "pyspark")


def test_the_core_imports_without_the_server_or_torch() -> None:
    code = (
        "import json, sys\n"
        "import latentserve_core.errors, latentserve_core.layout, latentserve_core.manifest\n"
        "import latentserve_core.runtime, latentserve_core.runtime.base\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=True
    )
    assert json.loads(out.stdout) == []


def test_training_imports_nothing_from_the_service() -> None:
    code = (
        "import json, sys\n"
        "import training, training.api, training.cli, training.export, training.evaluate\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'service')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=True
    )
    assert json.loads(out.stdout) == []
