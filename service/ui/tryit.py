"""The version page's Try-it form: one uploaded image or one pasted row, scored by the version.

It decodes and checks the input with the same functions the API uses (`codecs.images_to_array`,
`ModelRuntime.check_inputs`), so a broken upload fails with the API's own message, and scores it
with the runtime's `scores` op, the one `/anomaly-score` runs: the score shown is the API's.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from service import codecs
from service.admission import BINARY_WEIGHT, Admission
from service.codecs import ImageFile
from service.errors import ClientClosed, InvalidInput, Timeout
from service.runtime import ModelRuntime
from service.settings import Settings

TOP_FEATURES = 5  # how many of a row's largest per-feature errors the page lists
MAX_ROW_CHARS = 1 << 20  # a pasted row longer than this is refused before it is parsed


@dataclass(frozen=True)
class Picture:
    caption: str
    uri: str  # a data: URI of a PNG


@dataclass(frozen=True)
class TryResult:
    """What the page shows for one input."""

    score: float
    p_value: float
    is_anomaly: bool
    threshold: float
    pictures: list[Picture]
    top_features: list[tuple[str, float]]  # (name or index, its share of the squared error)

    @property
    def score_text(self) -> str:
        """The score as the API's JSON writes it: the shortest text that reads back as the float32."""
        return str(np.float32(self.score))


async def from_request(
    request: Request, runtime: ModelRuntime, settings: Settings, admission: Admission
) -> TryResult:
    """Read the form (admitted, at most MAX_BODY_BYTES) and score it in a worker thread, in one of
    the MAX_CONCURRENCY slots and within REQUEST_TIMEOUT_S, as the API's worker-thread requests."""
    declared = request.headers.get("content-length")
    digits = declared is not None and declared.isascii() and declared.isdigit()
    ticket = admission.enter(int(declared) if digits and declared else None, BINARY_WEIGHT)
    try:
        try:
            body = await codecs.read_body(request, settings.max_body_bytes, ticket)
        except ClientDisconnect:  # an aborted upload: nobody to answer, nothing to log
            raise ClientClosed("try: the client closed the connection before its upload was read") from None
        try:
            form = await _replayed(request, body).form(max_files=1, max_fields=4)
        except HTTPException as exc:  # starlette's answer to a malformed or over-full form
            raise InvalidInput(f"body: malformed form: {exc.detail}", field="file") from None
        upload, row = form.get("file"), form.get("row")
        work: Callable[[], TryResult]
        if isinstance(upload, UploadFile) and upload.filename:
            data, name, resize = await upload.read(), upload.filename, form.get("resize") is not None

            def work() -> TryResult:
                return score_image(runtime, name, data, resize, settings.max_request_pixels)
        elif isinstance(row, str) and row.strip():

            def work() -> TryResult:
                return score_row(runtime, row)
        else:
            raise InvalidInput("choose an image file or paste a row", field="file")
        try:
            return await admission.run_in_thread(settings.request_timeout_s, work)
        except TimeoutError:
            raise Timeout(f"try: scoring took longer than {settings.request_timeout_s:g} s") from None
    finally:
        ticket.release()


def _replayed(request: Request, body: bytes) -> Request:
    """A request over the same scope whose stream is `body`, already read (and admitted) whole, so
    starlette's form parser reads it without touching the request's private state."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def parse_row(text: str) -> npt.NDArray[np.float32]:
    """One row from a CSV line (commas, semicolons, tabs or spaces) or a JSON array of numbers."""
    if len(text) > MAX_ROW_CHARS:
        raise InvalidInput(f"row: {len(text)} characters is over the limit of {MAX_ROW_CHARS}", field="row")
    line = text.strip()
    if not line:
        raise InvalidInput("row: empty; paste one CSV line or a JSON array of numbers", field="row")
    if line.startswith("["):
        return codecs.rows_to_array([codecs.load_json(b'{"row": ' + line.encode() + b"}")["row"]], "row")
    sep = next((s for s in (",", ";", "\t") if s in line), " ")
    cells = [c.strip() for c in next(csv.reader([line], delimiter=sep)) if c.strip()]
    values = []
    for i, cell in enumerate(cells):
        try:
            values.append(float(cell))
        except ValueError:
            raise InvalidInput(f"row[{i}]: {cell!r} is not a number", field="row") from None
    return np.asarray([values], dtype=np.float32)


def score_image(runtime: ModelRuntime, name: str, data: bytes, resize: bool, max_pixels: int) -> TryResult:
    """Score one uploaded image; show it, its reconstruction and its per-pixel error map."""
    spec = runtime.manifest.input
    X = codecs.images_to_array([ImageFile(name, data)], spec, resize, max_pixels)
    return _score(runtime, runtime.check_inputs(X))


def score_row(runtime: ModelRuntime, text: str) -> TryResult:
    """Score one pasted row; list the features whose errors weigh most."""
    return _score(runtime, runtime.check_inputs(parse_row(text)))


def _score(runtime: ModelRuntime, X: npt.NDArray[np.float32]) -> TryResult:
    X_hat, scores = runtime.compute("reconstruct", X)  # the same scores as the "scores" op
    threshold, is_anomaly, p_values = runtime.judge(scores)
    m = runtime.manifest
    errors = runtime.feature_errors(X, X_hat)[0].reshape(-1)
    if m.score.scale is not None:  # in the score's units: each feature's error over its std
        errors = errors / np.square(np.asarray(m.score.scale, dtype=np.float32))
    pictures: list[Picture] = []
    top: list[tuple[str, float]] = []
    if m.input.layout == "image":
        peak = float(errors.max()) or 1.0
        heat = np.clip(errors / peak, 0.0, 1.0).reshape(m.input.shape)
        if heat.ndim == 3:
            heat = heat.max(axis=-1)
        pictures = [
            Picture("input", _png_uri(runtime, X)),
            Picture("reconstruction", _png_uri(runtime, X_hat)),
            Picture(f"squared error (white = {peak:.3g})", _heat_uri(heat)),
        ]
    else:
        names = m.input.feature_names or [f"feature {i}" for i in range(m.input.size)]
        total = float(errors.sum()) or 1.0
        order = np.argsort(errors)[::-1][:TOP_FEATURES]
        top = [(names[i], float(errors[i]) / total) for i in order]
    return TryResult(float(scores[0]), float(p_values[0]), bool(is_anomaly[0]), threshold, pictures, top)


def _png_uri(runtime: ModelRuntime, rows: npt.NDArray[np.float32]) -> str:
    png = codecs.png_image(rows, runtime.manifest.input)
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _heat_uri(heat: npt.NDArray[np.float32]) -> str:
    """A black-red-yellow-white map of values in [0, 1]."""
    from PIL import Image

    rgb = np.stack([np.clip(3 * heat - k, 0, 1) for k in range(3)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
