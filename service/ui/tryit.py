"""The version page's Try-it form: one uploaded image or one pasted row, scored by the version.

A row is a CSV line (under a header line whose names are matched to the manifest's feature names
and reordered), a JSON array, or a JSON object by feature name; several rows are refused with a
message (the page shows one result). Every bad form is an error shown on the page, never a 5xx.

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
import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from service import codecs
from service.admission import BINARY_WEIGHT, Admission
from service.codecs import ImageFile
from service.errors import InvalidInput, Timeout, UnsupportedMediaType
from service.runtime import ModelRuntime
from service.settings import Settings

TOP_FEATURES = 5  # how many of a row's largest per-feature errors the page lists
MAX_ROW_CHARS = 1 << 20  # a pasted row longer than this is refused before it is parsed
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # what the form may send


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
    ticket = admission.enter(int(declared) if declared and declared.isdigit() else None, BINARY_WEIGHT)
    try:
        body = await codecs.read_body(request, settings.max_body_bytes, ticket)
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind not in FORM_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type: expected multipart/form-data (the page's form), got {kind or 'none'}",
                field="content-type",
            )
        try:  # fields as large as the body limit: parse_row's own limit names a long row
            form = await _replayed(request, body).form(
                max_files=1, max_fields=4, max_part_size=settings.max_body_bytes
            )
        except HTTPException as exc:  # starlette's answer to a malformed or over-full form
            raise InvalidInput(f"body: malformed form: {exc.detail}", field="file") from None
        work = await _work(
            form.get("file"), form.get("row"), form.get("resize") is not None, runtime, settings
        )
        try:
            return await admission.run_in_thread(settings.request_timeout_s, work)
        except TimeoutError:
            raise Timeout(f"try: scoring took longer than {settings.request_timeout_s:g} s") from None
    finally:
        ticket.release()


async def _work(
    upload: UploadFile | str | None,
    row: UploadFile | str | None,
    resize: bool,
    runtime: ModelRuntime,
    settings: Settings,
) -> Callable[[], TryResult]:
    """What to score: the uploaded image or the pasted row, whichever the form holds (not both)."""
    has_file = isinstance(upload, UploadFile) and bool(upload.filename)
    has_row = isinstance(row, str) and bool(row.strip())
    if has_file and has_row:
        raise InvalidInput("choose an image file or paste a row, not both", field="file")
    if isinstance(upload, UploadFile) and upload.filename:
        if runtime.manifest.input.layout != "image":
            raise InvalidInput(
                f"file: this model takes rows of {runtime.manifest.input.size} values, not images; "
                "paste one row instead",
                field="file",
            )
        data, name, max_pixels = await upload.read(), upload.filename, settings.max_request_pixels
        return lambda: score_image(runtime, name, data, resize, max_pixels)
    if isinstance(row, str) and row.strip():
        text = row
        return lambda: score_row(runtime, text)
    if isinstance(row, UploadFile):
        raise InvalidInput("row: expected pasted text, got a file", field="row")
    if isinstance(upload, str) and upload.strip():
        raise InvalidInput("file: expected an uploaded image file, got a text field", field="file")
    raise InvalidInput("choose an image file or paste a row", field="file")


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


def parse_row(text: str, feature_names: list[str] | None = None) -> npt.NDArray[np.float64]:
    """One row, as (1, n) values: a CSV line (commas, semicolons, tabs or spaces), optionally under a
    header line whose names are matched to `feature_names` and put in their order; a JSON array of
    numbers; or a JSON object of feature name -> number. Anything else is an InvalidInput that says
    what is wrong and where. Values are not cast here: `check_inputs` casts them and refuses
    non-finite ones with the API's message."""
    if len(text) > MAX_ROW_CHARS:
        raise InvalidInput(f"row: {len(text)} characters is over the limit of {MAX_ROW_CHARS}", field="row")
    line = text.strip()
    if not line:
        raise InvalidInput("row: empty; paste one CSV line or a JSON array of numbers", field="row")
    if line[0] in "[{":
        return _json_row(line, feature_names)
    lines = [s.strip() for s in line.splitlines() if s.strip()]
    first = _cells(lines[0], 1)
    if len(lines) == 1 or all(_is_number(c) for c in first):
        if len(lines) > 1:
            raise _one_row(len(lines))
        return np.asarray([_numbers(first, None, 1)], dtype=np.float64)
    if len(lines) > 2:
        raise _one_row(len(lines) - 1, header=True)
    values = _numbers(_cells(lines[1], 2), first, 2)
    return np.asarray([_by_name(dict(zip(first, values, strict=True)), feature_names, "the header")])


def _one_row(n: int, header: bool = False) -> InvalidInput:
    under = " under the header" if header else ""
    return InvalidInput(
        f"row: {n} rows pasted{under}; Try-it scores one row at a time (POST /anomaly-score scores "
        "many): keep one line of values, with or without a header line above it",
        field="row",
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _cells(line: str, number: int) -> list[str]:
    """The cells of one CSV line, split on its first separator among `,` `;` tab (or on spaces)."""
    sep = next((s for s in (",", ";", "\t") if s in line), None)
    if sep is None:
        return line.split()
    try:
        cells = [c.strip() for c in next(csv.reader([line], delimiter=sep))]
    except csv.Error as exc:  # a NUL byte, an unterminated quote under strict rules
        raise InvalidInput(f"row: line {number} is not a CSV line: {exc}", field="row") from None
    if len(cells) > 1 and not cells[-1]:  # a trailing separator
        cells.pop()
    return cells


def _numbers(cells: list[str], header: list[str] | None, number: int) -> list[float]:
    """The cells as floats; an empty or non-numeric cell is named by its index (and column)."""
    if header is not None and len(cells) != len(header):
        raise InvalidInput(
            f"row: line {number} has {len(cells)} values, the header line names {len(header)} columns",
            field="row",
        )
    values = []
    for i, cell in enumerate(cells):
        column = f" (column {header[i]!r})" if header is not None else ""
        if not cell:
            raise InvalidInput(f"row[{i}]{column}: empty cell; every feature needs a number", field="row")
        try:
            values.append(float(cell))
        except ValueError:
            raise InvalidInput(f"row[{i}]{column}: {_shown(cell)} is not a number", field="row") from None
    return values


def _shown(cell: str, limit: int = 40) -> str:
    return repr(cell if len(cell) <= limit else cell[:limit] + "...")


def _json_row(text: str, feature_names: list[str] | None) -> npt.NDArray[np.float64]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"row: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field="row"
        ) from None
    if isinstance(data, dict):
        bad = next((k for k, v in data.items() if not _is_json_number(v)), None)
        if bad is not None:
            raise InvalidInput(f"row[{bad!r}]: {_json_shown(data[bad])} is not a number", field="row")
        return np.asarray([_by_name(data, feature_names, "the JSON object")])
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        if len(data) > 1:
            raise _one_row(len(data))
        data = data[0]
    if not isinstance(data, list) or not data:
        raise InvalidInput(
            "row: expected a JSON array of numbers or an object of feature name -> number", field="row"
        )
    for i, v in enumerate(data):
        if not _is_json_number(v):
            raise InvalidInput(f"row[{i}]: {_json_shown(v)} is not a number", field="row")
    return np.asarray([data], dtype=np.float64)


def _json_shown(v: object, limit: int = 40) -> str:
    text = orjson.dumps(v).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def _is_json_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _by_name(named: dict[str, float], feature_names: list[str] | None, source: str) -> list[float]:
    """The values of `named` in the model's feature order; unknown and missing names are refused."""
    if feature_names is None:
        raise InvalidInput(
            f"row: {source} names columns, but this model records no feature names; "
            "paste the values alone, in the order the model was trained on",
            field="row",
        )
    known = set(feature_names)
    unknown = [k for k in named if k not in known]
    missing = [k for k in feature_names if k not in named]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"names {_listed(unknown)}, which the model does not take")
        if missing:
            parts.append(f"lacks {_listed(missing)}")
        raise InvalidInput(
            f"row: {source} {' and '.join(parts)}; the model takes {len(feature_names)} features: "
            f"{_listed(feature_names)}",
            field="row",
            details={"unknown": unknown, "missing": missing},
        )
    return [float(named[k]) for k in feature_names]


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(_shown(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def score_image(runtime: ModelRuntime, name: str, data: bytes, resize: bool, max_pixels: int) -> TryResult:
    """Score one uploaded image; show it, its reconstruction and its per-pixel error map."""
    spec = runtime.manifest.input
    X = codecs.images_to_array([ImageFile(name, data)], spec, resize, max_pixels)
    return _score(runtime, runtime.check_inputs(X))


def score_row(runtime: ModelRuntime, text: str) -> TryResult:
    """Score one pasted row; list the features whose errors weigh most."""
    return _score(runtime, runtime.check_inputs(parse_row(text, runtime.manifest.input.feature_names)))


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
