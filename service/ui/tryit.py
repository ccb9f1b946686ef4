"""The version page's Try-it form: one uploaded image or pasted rows, scored by the version.

Rows are CSV lines (under a header line whose names are matched to the manifest's feature names
and reordered), JSON arrays, or JSON objects by feature name (`pasted.parse_rows`), each scored.
Every bad form is an error shown on the page, never a 5xx.

It decodes and checks the input with the same functions the API uses (`codecs.images_to_array`,
`ModelRuntime.check_inputs`), so a broken upload fails with the API's own message, and scores it
with the runtime's `scores` op, the one `/anomaly-score` runs: the score shown is the API's.
"""

from __future__ import annotations

import base64
import collections
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from latentserve_core.runtime import ModelRuntime
from service import codecs
from service.admission import BINARY_WEIGHT, Admission
from service.codecs import ImageFile
from service.errors import ClientClosed, InvalidInput, LatentServeError, Timeout, UnsupportedMediaType
from service.settings import Settings
from service.ui.pasted import MAX_ROW_CHARS, parse_rows

TOP_FEATURES = 5  # how many of a row's largest per-feature errors the page lists
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # what the form may send


@dataclass(frozen=True)
class Picture:
    caption: str
    uri: str  # a data: URI of a PNG


@dataclass(frozen=True)
class TryResult:
    """What the page shows for one scored row or image."""

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


@dataclass(frozen=True)
class Tried:
    """What the page shows after a Try-it post: the results or the error, and the pasted text
    again (empty when the form was never read), so that a user can fix it."""

    row: str = ""
    results: list[TryResult] = field(default_factory=list)
    error: LatentServeError | None = None


async def from_request(
    request: Request, runtime: ModelRuntime, settings: Settings, admission: Admission
) -> Tried:
    """Read the form (admitted, at most MAX_BODY_BYTES) and score it in a worker thread, in one of
    the MAX_CONCURRENCY slots and within REQUEST_TIMEOUT_S, as the API's worker-thread requests.
    A refusal before the form is read (admission, body limit) raises; the form's errors are in
    the answer, beside its text."""
    declared = request.headers.get("content-length")
    digits = declared is not None and declared.isascii() and declared.isdigit()
    ticket = admission.enter(int(declared) if digits and declared else None, BINARY_WEIGHT)
    row_text = ""
    try:
        try:
            body = await codecs.read_body_chunks(request, settings.max_body_bytes, ticket)
        except ClientDisconnect:  # an aborted upload: nobody to answer, nothing to log
            raise ClientClosed("try: the client closed the connection before its upload was read") from None
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind not in FORM_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type: expected multipart/form-data (the page's form), got {kind or 'none'}",
                field="content-type",
            )
        try:  # fields as large as the body limit: parse_rows' own limit names long text
            form = await _replayed(request, body).form(
                max_files=1, max_fields=4, max_part_size=settings.max_body_bytes
            )
        except HTTPException as exc:  # starlette's answer to a malformed or over-full form
            raise InvalidInput(f"body: malformed form: {exc.detail}", field="file") from None
        row = form.get("row")
        row_text = row if isinstance(row, str) and len(row) <= MAX_ROW_CHARS else ""
        work = await _work(form.get("file"), row, form.get("resize") is not None, runtime, settings)
        try:
            return Tried(row_text, await admission.run_in_thread(settings.request_timeout_s, work))
        except TimeoutError:
            raise Timeout(f"try: scoring took longer than {settings.request_timeout_s:g} s") from None
    except LatentServeError as exc:
        if not row_text:
            raise
        return Tried(row_text, error=exc)
    finally:
        ticket.release()


async def _work(
    upload: UploadFile | str | None,
    row: UploadFile | str | None,
    resize: bool,
    runtime: ModelRuntime,
    settings: Settings,
) -> Callable[[], list[TryResult]]:
    """What to score: the uploaded image or the pasted row, whichever the form holds (not both)."""
    has_file = isinstance(upload, UploadFile) and bool(upload.filename)
    has_row = isinstance(row, str) and bool(row.strip())
    if has_file and has_row:
        raise InvalidInput("choose an image file or paste a row, not both", field="file")
    if isinstance(upload, UploadFile) and upload.filename:
        if runtime.manifest.input.layout != "image":
            raise InvalidInput(
                f"file: this model takes rows of {runtime.manifest.input.size} values, not images; "
                "paste rows instead",
                field="file",
            )
        data, name, max_pixels = await upload.read(), upload.filename, settings.max_request_pixels
        return lambda: score_image(runtime, name, data, resize, max_pixels)
    if isinstance(row, str) and row.strip():
        text = row
        return lambda: score_rows(runtime, text)
    if isinstance(row, UploadFile):
        raise InvalidInput("row: expected pasted text, got a file", field="row")
    if isinstance(upload, str) and upload.strip():
        raise InvalidInput("file: expected an uploaded image file, got a text field", field="file")
    raise InvalidInput("choose an image file or paste a row", field="file")


def _replayed(request: Request, body: list[bytes]) -> Request:
    """A request over the same scope whose stream is `body`, already read (and admitted) whole, so
    starlette's form parser reads it without touching the request's private state. The chunks are
    given as received and each dropped once given: the parser's copies are a chunk's, its file
    part spools to disk past 1 MiB, and the upload costs its size once more when read (`_work`),
    within the two bodies its admission holds (joined, and parsed in one piece, it cost 3.1)."""
    chunks = collections.deque(body or [b""])
    body.clear()

    async def receive() -> Message:
        if not chunks:
            return {"type": "http.disconnect"}
        chunk = chunks.popleft()
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return Request(request.scope, receive)


def score_image(
    runtime: ModelRuntime, name: str, data: bytes, resize: bool, max_pixels: int
) -> list[TryResult]:
    """Score one uploaded image; show it, its reconstruction and its per-pixel error map."""
    spec = runtime.manifest.input
    X = codecs.images_to_array([ImageFile(name, data)], spec, resize, max_pixels)
    return _score(runtime, runtime.check_inputs(X))


def score_rows(runtime: ModelRuntime, text: str) -> list[TryResult]:
    """Score the pasted rows; list each one's features whose errors weigh most."""
    return _score(runtime, runtime.check_inputs(parse_rows(text, runtime.manifest.input.feature_names)))


def _score(runtime: ModelRuntime, X: npt.NDArray[np.float32]) -> list[TryResult]:
    X_hat, scores = runtime.compute("reconstruct", X)  # the same scores as the "scores" op
    threshold, is_anomaly, p_values = runtime.judge(scores)
    m = runtime.manifest
    errors: npt.NDArray[np.floating[Any]] = runtime.feature_errors(X, X_hat).reshape(len(X), -1)
    if m.score.scale is not None:  # in the score's units: each feature's error over its std
        errors = errors / np.square(np.asarray(m.score.scale, dtype=np.float32))
    names = m.input.feature_names or [f"feature {i}" for i in range(m.input.size)]
    results = []
    for i, row_errors in enumerate(errors):
        pictures: list[Picture] = []
        top: list[tuple[str, float]] = []
        if m.input.layout == "image":
            peak = float(row_errors.max()) or 1.0
            heat = np.clip(row_errors / peak, 0.0, 1.0).reshape(m.input.shape)
            if heat.ndim == 3:
                heat = heat.max(axis=-1)
            pictures = [
                Picture("input", _png_uri(runtime, X[i : i + 1])),
                Picture("reconstruction", _png_uri(runtime, X_hat[i : i + 1])),
                Picture(f"squared error (white = {peak:.3g})", _heat_uri(heat)),
            ]
        else:
            total = float(row_errors.sum()) or 1.0
            order = np.argsort(row_errors)[::-1][:TOP_FEATURES]
            top = [(names[j], float(row_errors[j]) / total) for j in order]
        results.append(
            TryResult(float(scores[i]), float(p_values[i]), bool(is_anomaly[i]), threshold, pictures, top)
        )
    return results


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
