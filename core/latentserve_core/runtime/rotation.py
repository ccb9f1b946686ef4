"""The rotation term of a score (docs/score.md, step 7), run through onnxruntime.

Its network is stored as an ONNX model taking flat rows (n, d) to the term (n,): log(1 + the sum
over the image's four quarter turns of -log p(the right turn)). The numpy scorer (the joblib runtime, and
`training`'s in-memory model) calls it here; the ONNX scorer holds the same graph inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from latentserve_core.errors import IntegrityError
from latentserve_core.manifest import Manifest

FloatArray = npt.NDArray[np.float32]


class RotationTerm:
    """Flat rows (n, d) -> the rotation term (n,), float32. Pickles as its ONNX bytes."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        self.model = model
        self._threads = threads
        self._session: Any = None

    def session(self) -> Any:
        """The onnxruntime session, made on first use (and again after unpickling)."""
        if self._session is None:
            from latentserve_core.runtime.onnx import make_session

            self._session = make_session(self.model, self._threads)
        return self._session

    def __call__(self, X: FloatArray) -> FloatArray:
        session = self.session()
        rows = np.ascontiguousarray(X, dtype=np.float32).reshape(len(X), -1)
        (term,) = session.run(None, {session.get_inputs()[0].name: rows})
        return np.asarray(term, dtype=np.float32).reshape(len(X))

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "_threads": self._threads, "_session": None}


def load_rotation(
    manifest: Manifest, folder: Path, *, threads: int = 1, open_session: bool = True
) -> RotationTerm | None:
    """The network of a score's rotation term (sha256-checked, and with `open_session` loaded
    into onnxruntime now, so that a file that does not load is refused here), or None. A runtime
    whose fused scorer holds the term's graph never runs it: it passes open_session=False."""
    spec = manifest.score.rotation
    if spec is None:
        return None
    from latentserve_core.runtime.base import verify_file

    entry = next(f for f in manifest.files if f.role == "rotation" and f.path == spec.file)
    term = RotationTerm(verify_file(folder, entry, manifest).read_bytes(), threads)
    if not open_session:
        return term
    try:
        term.session()
    except Exception as exc:  # onnxruntime raises several private types
        raise IntegrityError(
            f"file {entry.path!r} is not a loadable ONNX model: {exc}",
            field="files",
            model=manifest.name,
            version=manifest.version,
        ) from exc
    return term
