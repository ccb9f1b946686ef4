"""The version page's Try-it form: one uploaded image or pasted rows, scored as `/anomaly-score`.

The form is one more transport of the dataplane's door: `serve` admits it (`Dataplane.ticket`:
the page's key check, the memory budget), reads the form within MAX_BODY_BYTES and hands its
parts to `Dataplane.infer` as the `TRY` verb, whose protocol (`FormProtocol`) reads the image or
the pasted rows (`pasted.parse_rows`) with the API's own decoders and checks, runs the model's
`reconstruct` op in a worker thread and judges the scores as `/anomaly-score` does. So a Try-it
call is counted in the metrics (as `anomaly-score`) and its scores in the live drift. Every bad
form is an error shown on the page, never a 5xx; an aborted upload is answered with nothing.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import io
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service import codecs
from service.batching import Outputs
from service.codecs import ImageFile, Result
from service.errors import ClientClosed, InternalError, InvalidInput, LatentServeError, UnsupportedMediaType
from service.inference import Dataplane, ModelRef, Refused, Ticket
from service.protocols import Protocol, Reader, result_of
from service.protocols.records import Array, Job, Labels, Parsed, Verb
from service.security import check_ui_key
from service.ui.pasted import MAX_ROW_CHARS, parse_rows

TOP_FEATURES = 5  # how many of a row's largest per-feature errors the page lists
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # what the form may send
TRY_PATH = re.compile(r"/ui/models/([^/]+)/versions/([1-9][0-9]*)/try")  # the form's POST
UPLOAD = "latentserve.try"  # the scope key of an upload admitted and read before the ASGI cycle


@dataclass(frozen=True, slots=True)
class Upload:
    """A Try-it upload admitted and read whole by the connection (`service.http.form`) before its
    ASGI cycle started: the handler scores it without reading, and releases the ticket."""

    ticket: Ticket
    chunks: list[bytes]


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


class Shown(Response):
    """The form protocol's answer: what the page shows (the page itself is rendered by the route)."""

    def __init__(self, results: list[TryResult] | None = None, error: LatentServeError | None = None) -> None:
        super().__init__(status_code=error.status_code if error is not None else 200)
        self.results = results or []
        self.error = error


class FormProtocol(Protocol):
    """Try-it's form: an image (`file`) or pasted rows (`row`) in, what the page shows out."""

    name = "form"

    def check_key(self, headers: Any, key: SecretStr | None) -> None:
        check_ui_key(headers, key)

    def body_kind(self, verb: Verb, headers: Any) -> str:
        kind = codecs.media_type(headers.get("content-type"))
        if kind not in FORM_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type: expected multipart/form-data (the page's form), got {kind or 'none'}",
                field="content-type",
            )
        return kind

    def parse(
        self, verb: Verb, parsed: Parsed, reader: Reader, labels: Labels
    ) -> tuple[ModelRuntime, Any, Array]:
        assert parsed.ref is not None and parsed.ref.version is not None
        runtime = reader.registry.get(parsed.ref.name, int(parsed.ref.version))
        labels.model = runtime.manifest.name
        row = parsed.fields.get("row", "")
        if parsed.images and row.strip():
            raise InvalidInput("choose an image file or paste a row, not both", field="file")
        m = runtime.manifest
        if parsed.images:
            if m.input.layout != "image":
                raise InvalidInput(
                    f"file: this model takes rows of {m.input.size} values, not images; paste rows instead",
                    field="file",
                )
            resize, pixels = "resize" in parsed.fields, reader.settings.max_request_pixels
            return (
                runtime,
                None,
                codecs.images_to_array(parsed.images, m.input, resize, pixels, parsed.deadline),
            )
        if row.strip():
            return runtime, None, parse_rows(row, m.input.feature_names)
        raise InvalidInput("choose an image file or paste a row", field="file")

    def rows(self, verb: Verb, runtime: ModelRuntime, X: Array, opts: Any) -> FloatArray:
        return runtime.check_inputs(X)

    def ops(self, verb: Verb, opts: Any) -> tuple[Op, ...]:
        return ("reconstruct",)  # the same scores as the "scores" op, and the pictures

    def finish(self, job: Job, outputs: Outputs) -> Result:
        rt = job.runtime
        X_hat, scores = outputs
        threshold, is_anomaly, p_values = rt.judge(scores)
        if job.on_scores is not None:  # the live drift, as /anomaly-score
            job.on_scores(rt.manifest, scores)
        arrays = {"scores": scores, "is_anomaly": is_anomaly, "p_values": p_values, "reconstructions": X_hat}
        arrays["feature_errors"] = rt.feature_errors(job.X, X_hat).reshape(len(job.X), -1)
        return result_of(job, arrays, scalars={"threshold": threshold})

    def answer_values(self, verb: Verb, manifest: Manifest, opts: Any) -> int:
        return 3 * manifest.input.size + 3  # the pictures, score, p-value, verdict

    def encode(self, job: Job, result: Result) -> Response:
        return Shown(_results(job.runtime, job.X, result))

    def error(self, exc: LatentServeError) -> Response:
        return Shown(error=exc)


FORM = FormProtocol()
TRY = Verb(
    name="anomaly-score", protocol=FORM, target="try", options=None, field=None, reads=FORM_TYPES,
    produces=("text/html",),
)  # fmt: skip


async def tried(request: Request, service: Dataplane, name: str, version: int) -> Tried:
    """Admit the form, read it and score it through the door; a refusal or an error is in the
    answer, beside the pasted text. Raises ClientClosed for an aborted upload."""
    given = request.scope.get(UPLOAD)  # admitted (and read, or refused) by the connection
    ticket = given.ticket if isinstance(given, Upload) else given
    if not isinstance(ticket, (Ticket, Refused)):
        ticket = service.ticket(TRY, request.headers, {}, ModelRef(name, str(version)))
    if isinstance(ticket, Refused):
        return Tried(error=ticket.error)
    row_text = ""
    try:
        try:
            if isinstance(given, Upload):
                chunks = given.chunks
            else:
                chunks = await codecs.read_body_chunks(request, ticket.body_limit, ticket.hold)
        except ClientDisconnect:  # an aborted upload: nobody to answer, nothing to log
            raise ClientClosed("try: the client closed the connection before its upload was read") from None
        form = await _form(request, chunks, service.settings.max_body_bytes)
        row = form.get("row")
        row_text = row if isinstance(row, str) and len(row) <= MAX_ROW_CHARS else ""
        images, fields = await _parts(form)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        service.infer(ticket, b"", partial(_settle, future), images, fields)
        shown = await future
        if not isinstance(shown, Shown):  # the door answered in another protocol: never expected
            raise InternalError("internal error; the server log has the details")
        return Tried(row_text, shown.results, shown.error)
    except ClientClosed as exc:
        service.refuse(TRY, exc, ticket.start)
        raise
    except LatentServeError as exc:
        service.refuse(TRY, exc, ticket.start)
        return Tried(row_text, error=exc)
    finally:
        ticket.release()


def release_upload(scope: Any) -> None:
    """Release the ticket of an upload the connection admitted for this request, if any (once
    released, releasing again does nothing)."""
    given = scope.get(UPLOAD)
    if isinstance(given, Upload):
        given.ticket.release()


async def _form(request: Request, chunks: list[bytes], max_part: int) -> FormData:
    """The form, parsed by starlette from the chunks already read (and admitted)."""
    try:  # fields as large as the body limit: parse_rows' own limit names long text
        return await _replayed(request, chunks).form(max_files=1, max_fields=4, max_part_size=max_part)
    except HTTPException as exc:  # starlette's answer to a malformed or over-full form
        raise InvalidInput(f"body: malformed form: {exc.detail}", field="file") from None


async def _parts(form: FormData) -> tuple[list[ImageFile] | None, dict[str, str]]:
    """The uploaded image, if any, and the text fields."""
    upload, row = form.get("file"), form.get("row")
    if isinstance(row, UploadFile):
        raise InvalidInput("row: expected pasted text, got a file", field="row")
    if isinstance(upload, str) and upload.strip():
        raise InvalidInput("file: expected an uploaded image file, got a text field", field="file")
    fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "file"}
    if isinstance(upload, UploadFile) and upload.filename:
        return [ImageFile(upload.filename, await upload.read())], fields
    return None, fields


def _settle(future: asyncio.Future[Response], response: Response) -> None:
    if not future.done():
        future.set_result(response)


def _replayed(request: Request, body: list[bytes]) -> Request:
    """A request over the same scope whose stream is `body`, already read (and admitted) whole, so
    starlette's form parser reads it without touching the request's private state. The chunks are
    given as received and each dropped once given: the parser's copies are a chunk's, its file
    part spools to disk past 1 MiB, and the upload costs its size once more when read (`_parts`),
    within the two bodies its admission holds (joined, and parsed in one piece, it cost 3.1)."""
    chunks = collections.deque(body or [b""])
    body.clear()

    async def receive() -> Message:
        if not chunks:
            return {"type": "http.disconnect"}
        chunk = chunks.popleft()
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return Request(request.scope, receive)


def _results(runtime: ModelRuntime, X: npt.NDArray[np.float32], result: Result) -> list[TryResult]:
    """Each scored row or image as the page shows it: pictures for images, the features whose
    errors weigh most for rows."""
    a, m = result.arrays, runtime.manifest
    errors: npt.NDArray[np.floating[Any]] = a["feature_errors"]
    if m.score.scale is not None:  # in the score's units: each feature's error over its std
        errors = errors / np.square(np.asarray(m.score.scale, dtype=np.float32))
    names = m.input.feature_names or [f"feature {i}" for i in range(m.input.size)]
    threshold = float(result.scalars["threshold"])
    results = []
    for i, row_errors in enumerate(errors):
        pictures: list[Picture] = []
        top: list[tuple[str, float]] = []
        if m.input.layout == "image":
            pictures = _pictures(runtime, X[i : i + 1], a["reconstructions"][i : i + 1], row_errors)
        else:
            total = float(row_errors.sum()) or 1.0
            order = np.argsort(row_errors)[::-1][:TOP_FEATURES]
            top = [(names[j], float(row_errors[j]) / total) for j in order]
        score, p, flag = float(a["scores"][i]), float(a["p_values"][i]), bool(a["is_anomaly"][i])
        results.append(TryResult(score, p, flag, threshold, pictures, top))
    return results


def _pictures(
    runtime: ModelRuntime, x: npt.NDArray[np.float32], x_hat: npt.NDArray[np.float32], row_errors: Any
) -> list[Picture]:
    """An image, its reconstruction and its per-pixel error map."""
    peak = float(row_errors.max()) or 1.0
    heat = np.clip(row_errors / peak, 0.0, 1.0).reshape(runtime.manifest.input.shape)
    if heat.ndim == 3:
        heat = heat.max(axis=-1)
    return [
        Picture("input", _png_uri(runtime, x)),
        Picture("reconstruction", _png_uri(runtime, x_hat)),
        Picture(f"squared error (white = {peak:.3g})", _heat_uri(heat)),
    ]


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
