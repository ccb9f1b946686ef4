"""Bodies in and out: JSON (orjson), .npy, multipart images; JSON, .npy, .npz and PNG responses.

Request bodies are read once, with the size limit enforced on Content-Length and while streaming.
JSON arrays become numpy arrays in one `np.asarray` call; only when that fails (ragged rows,
strings, nulls) are the rows walked to name the first bad one.

Binary responses (`Accept: application/x-npy | application/x-npz | image/png`) carry the model and
version in the `X-Model` / `X-Model-Version` headers:
  - `application/x-npy`: the endpoint's primary array: codes (/encode), outputs (/decode, /sample),
    reconstructions (/reconstruct), scores (/anomaly-score; the threshold in `X-Threshold`).
  - `application/x-npz`: every array of the JSON response, under the same names.
  - `image/png`: one image row (/reconstruct, /decode, /sample of an image model, exactly one row).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

try:
    import simdjson as _simdjson
except ImportError:  # optional: without it every JSON body takes the orjson path
    _simdjson = None  # type: ignore[assignment]
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from service.errors import (
    InternalError,
    InvalidInput,
    LatentServeError,
    NotAcceptable,
    PayloadTooLarge,
    Timeout,
    UnsupportedMediaType,
)
from service.manifest import InputSpec

if TYPE_CHECKING:
    from service.admission import Ticket

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"
PNG = "image/png"
MULTIPART = "multipart/form-data"
MAX_IMAGE_PIXELS = 4096 * 4096


# ---- request bodies ---------------------------------------------------------------------------
async def read_body(
    request: Request,
    limit: int,
    ticket: Ticket | None = None,
    too_large: Callable[[int | None], PayloadTooLarge] | None = None,
) -> bytes:
    """Return the whole body, or raise PayloadTooLarge (413, `too_large(declared)` when given) once
    it passes `limit` bytes; a body longer than the admission `ticket` reserved (no Content-Length)
    grows it, or is shed (503)."""
    refuse = too_large if too_large is not None else functools.partial(body_too_large, limit)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refuse(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refuse(None)
        if ticket is not None and size * ticket.weight > ticket.held:
            ticket.grow(size - ticket.held // ticket.weight)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # later readers (the multipart parser) get the cached bytes
    return body


def body_too_large(limit: int, declared: int | None = None) -> PayloadTooLarge:
    """The 413 for a body over `limit` bytes: its declared Content-Length, or found while reading."""
    if declared is not None:
        return PayloadTooLarge(
            f"body: {declared} bytes is over the limit of {limit} bytes",
            field="body",
            details={"limit": limit, "got": declared},
        )
    return PayloadTooLarge(
        f"body: more than the limit of {limit} bytes", field="body", details={"limit": limit}
    )


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type header, lower case ("" when absent)."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def check_content_type(ctype: str, accepted: tuple[str, ...]) -> str:
    """Map a Content-Type onto one we read (JSON when absent), or raise 415."""
    if ctype in ("", JSON) or (ctype.startswith("application/") and ctype.endswith("+json")):
        ctype = JSON
    if ctype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not supported here; send one of {list(accepted)}",
            field="content-type",
            details={"supported": list(accepted)},
        )
    return ctype


def check_content_encoding(header: str | None) -> None:
    """Bodies are read as sent: a Content-Encoding other than identity is a 415 (not decoded)."""
    if header is None:
        return
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    if any(c != "identity" for c in codings):
        raise UnsupportedMediaType(
            f"Content-Encoding {header!r} is not supported; send the body uncompressed "
            "(Content-Encoding: identity or none)",
            field="content-encoding",
            details={"supported": ["identity"]},
        )


def validate_options(model: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    """Validate the small envelope of a request; pydantic errors become one 422 in our shape."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput.from_errors(exc.errors(include_url=False, include_input=False), source) from None


def load_json(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body with orjson; malformed JSON is a 422 that says where."""
    if not body:
        raise InvalidInput("body: empty; expected a JSON object", field="body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"body: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field="body"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"body: expected a JSON object, got {_json_type(data)}", field="body")
    return data


FAST_JSON_MIN_BYTES = 32 * 1024
_JSON_SPACE = b" \t\r\n"


def has_array_boolean(body: bytes) -> bool:
    """Whether true / false stands as an array element (after "[" or ","; an option's boolean
    follows ":" instead). A body that has one gets its rows walked, since numpy reads true among
    numbers as 1.0. Only the places of a "t" or an "f" are looked at (single-byte finds, which
    numbers never stop): a regex over every comma of a 256 x 784 batch cost 27 ms, five times the
    parse, and a multi-byte find 2.5 ms; this costs well under 0.1 ms."""
    for first, word in ((b"t", b"true"), (b"f", b"false")):  # letters numbers never hold
        at = body.find(first)
        while at != -1:
            if body.startswith(word, at):
                before = at - 1
                while before >= 0 and body[before] in _JSON_SPACE:
                    before -= 1
                if before >= 0 and body[before] in b"[,":
                    return True
            at = body.find(first, at + 1)
    return False


def load_json_rows(body: bytes, field: str) -> tuple[dict[str, Any], npt.NDArray[np.float64]] | None:
    """Parse a large body of flat rows `{..., field: [[n, ...], ...]}` straight into one array.

    simdjson reads the numbers into a buffer without making a Python float per value: 2.5x faster
    than orjson + np.asarray on a 256x784 batch. It is taken only when the structure is proven to be
    a plain list of equal-length lists of numbers: the body holds exactly n + 1 "[" (the outer
    list and the n rows), every row has the same length, and simdjson's typed
    buffer accepts only numbers. Anything else returns None and goes through `load_json`, whose
    messages name the bad row; so does a body with a repeated top-level key, so that the last one
    counts whatever the body's size (orjson's rule; simdjson would take the first).
    """
    if _simdjson is None or len(body) < FAST_JSON_MIN_BYTES:
        return None
    try:
        doc = _simdjson.Parser().parse(body)
        if not isinstance(doc, _simdjson.Object) or field not in doc:
            return None
        keys = list(doc.keys())
        if len(keys) != len(set(keys)):
            return None
        rows = doc[field]
        if not isinstance(rows, _simdjson.Array):
            return None
        n = len(rows)
        # structural "[" >= n + 1 (the list and its n rows); a count of exactly n + 1 leaves none
        # for a nested list or a string, so no row hides a list
        if n == 0 or int(np.count_nonzero(np.frombuffer(body, np.uint8) == ord("["))) != n + 1:
            return None
        width = -1
        for row in rows:
            if not isinstance(row, _simdjson.Array) or (width >= 0 and len(row) != width):
                return None
            width = len(row)
        flat = np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64)
        if width == 0 or flat.size != n * width:
            return None
        rest: dict[str, Any] = {}
        for key in keys:
            if key != field:
                value = doc[key]
                rest[key] = value.as_dict() if isinstance(value, _simdjson.Object) else value
        return rest, flat.reshape(n, width)
    except (ValueError, TypeError, RuntimeError, KeyError):
        return None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "an object"


def rows_to_array(values: object, field: str, booleans: bool = True) -> npt.NDArray[Any]:
    """Turn a JSON list of rows into one numeric array, or raise InvalidInput naming the bad row.

    numpy reads true / false among numbers as 1.0 / 0.0: with `booleans` (the body holds the word
    true or false somewhere) the rows are walked for them, and one is a 422 naming its row."""
    if isinstance(values, np.ndarray):  # already parsed by load_json_rows
        return values
    if not isinstance(values, list) or not values:
        raise InvalidInput(
            f"{field}: expected a non-empty list of rows, got {_json_type(values)}", field=field
        )
    try:
        A = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise _bad_row(values, field) from None
    if A.dtype.kind not in "fiu" or (booleans and any(_first_non_number(row) is not _OK for row in values)):
        raise _bad_row(values, field)
    if A.ndim == 1:
        raise InvalidInput(
            f"{field}: expected a list of rows (lists of numbers), got a list of numbers; "
            "wrap a single row in a list",
            field=field,
        )
    return A


def _bad_row(rows: list[Any], field: str) -> InvalidInput:
    shape0: tuple[int, ...] | None = None
    for i, row in enumerate(rows):
        bad = _first_non_number(row)
        if bad is _TOO_DEEP:
            return InvalidInput(
                f"{field}: row {i} nests lists more than {MAX_ROW_DEPTH} deep",
                field=field,
                details={"row": i},
            )
        if bad is not _OK:
            return InvalidInput(
                f"{field}: row {i} contains a non-numeric value {_show(bad)}; rows hold numbers only",
                field=field,
                details={"row": i},
            )
        try:
            shape = np.asarray(row, dtype=np.float64).shape
        except ValueError:
            return InvalidInput(
                f"{field}: row {i} is ragged (its nested lists have different lengths)",
                field=field,
                details={"row": i},
            )
        if shape0 is None:
            shape0 = shape
        elif shape != shape0:
            return InvalidInput(
                f"{field}: row {i} has shape {list(shape)} but row 0 has shape {list(shape0)}; "
                "all rows must have the same shape",
                field=field,
                details={"row": i, "expected": list(shape0), "got": list(shape)},
            )
    return InvalidInput(f"{field}: rows are not a rectangular array of numbers", field=field)


_OK = object()
_TOO_DEEP = object()
MAX_ROW_DEPTH = 32  # lists within a row; numpy arrays have at most 64 dimensions in all


def _first_non_number(value: object) -> object:
    """The first value in a row that is not a number (depth first), _TOO_DEEP, or _OK."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:  # iterative: a body nested a thousand lists deep must not exhaust the C stack
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth >= MAX_ROW_DEPTH:
                return _TOO_DEEP
            stack.extend((child, depth + 1) for child in reversed(item))
        elif not isinstance(item, (int, float)) or isinstance(item, bool):
            return item
    return _OK


def _show(value: object) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, (set, bytes)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_npy(body: bytes, field: str) -> npt.NDArray[Any]:
    """Read a .npy body (no pickles) without copying it; rows are the first axis."""
    try:
        A = _npy_view(body)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError... on bad bytes
        raise InvalidInput(f"body: not a readable .npy array: {exc}", field=field) from None
    if A.dtype.kind not in "fiu":
        raise InvalidInput(f"body: expected a numeric .npy array, got dtype {A.dtype}", field=field)
    if A.ndim < 2:
        raise InvalidInput(
            f"body: expected an array of rows (at least 2 dimensions), got shape {list(A.shape)}", field=field
        )
    return A


def _npy_view(body: bytes) -> npt.NDArray[Any]:
    """A read-only array over the body's data section (np.load would copy it)."""
    if body[:6] != b"\x93NUMPY":
        kind = "a .npz archive" if body[:4] == b"PK\x03\x04" else "no .npy magic string"
        raise ValueError(f"{kind}; send one array saved with numpy.save")
    version = bytes(body[6:8])
    if version not in (b"\x01\x00", b"\x02\x00"):  # 3.0 (utf-8 header) or unknown: numpy decides
        A = np.load(io.BytesIO(body), allow_pickle=False)
        if not isinstance(A, np.ndarray):
            raise ValueError("not a single array")
        return A
    size = 2 if version == b"\x01\x00" else 4
    offset = 8 + size + int.from_bytes(body[8 : 8 + size], "little")
    shape, fortran, dtype = _npy_header(bytes(body[:offset]))
    count = int(np.prod(shape, dtype=np.int64))
    if len(body) - offset < count * dtype.itemsize:
        raise ValueError(f"the data section is shorter than shape {list(shape)} needs")
    A = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return A.reshape(shape, order="F" if fortran else "C")


@functools.lru_cache(maxsize=256)
def _npy_header(head: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of a .npy header; a pipeline sends the same few headers, so
    numpy's parse (a Python literal_eval) runs once per distinct header."""
    from numpy.lib import format as npy_format

    stream = io.BytesIO(head)
    version = npy_format.read_magic(stream)
    reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, fortran, dtype = reader(stream)
    if dtype.hasobject:
        raise ValueError("object arrays need pickles, which are refused")
    if any(int(n) < 0 for n in shape):
        raise ValueError(f"the header's shape {list(shape)} has a negative length")
    return tuple(shape), bool(fortran), dtype


@dataclass
class ImageFile:
    name: str
    data: bytes


async def read_images(request: Request, max_files: int) -> list[ImageFile]:
    """The files under the `files` form field of a multipart body (already read by `read_body`)."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException

    try:
        form = await request.form(max_files=max_files, max_fields=16)
    except HTTPException as exc:  # raised when the request runs inside the app's router
        raise InvalidInput(f"body: malformed multipart form: {exc.detail}", field="files") from None
    except MultiPartException as exc:  # raised on the fast path
        raise InvalidInput(f"body: malformed multipart form: {exc.message}", field="files") from None
    try:
        files: list[ImageFile] = []
        for item in form.getlist("files"):
            if not isinstance(item, UploadFile):
                raise InvalidInput("files: expected image files, got a text field", field="files")
            files.append(ImageFile(item.filename or f"files[{len(files)}]", await item.read()))
    finally:
        await form.close()
    if not files:
        raise InvalidInput(
            "files: expected one or more image files under the form field 'files'", field="files"
        )
    return files


def images_to_array(
    files: list[ImageFile],
    spec: InputSpec,
    resize: bool,
    max_pixels: int | None = None,
    deadline: float | None = None,
) -> npt.NDArray[np.float32]:
    """Decode PNG/JPEG files to rows in [value_range] shaped like the manifest's input. More than
    `max_pixels` decoded pixels in all is a 413 before any file is decoded (read from the files'
    headers); past `deadline` (time.monotonic()) decoding stops with a 504."""
    from PIL import Image

    if max_pixels is not None:
        total = 0
        for f in files:
            with contextlib.suppress(Exception), Image.open(io.BytesIO(f.data)) as img:  # corrupt: below
                total += img.width * img.height
        if total > max_pixels:
            raise PayloadTooLarge(
                f"files: {total} pixels to decode is over the limit of {max_pixels} per request "
                "(LATENTSERVE_MAX_REQUEST_PIXELS); send fewer or smaller images",
                field="files",
                details={"limit": max_pixels, "got": total},
            )

    if spec.layout != "image":
        raise InvalidInput(
            f"files: this model takes {spec.layout} rows of shape {spec.shape}, not images; "
            "send JSON or .npy",
            field="files",
        )
    height, width = spec.shape[0], spec.shape[1] if len(spec.shape) > 1 else 1
    mode = "L" if spec.channels == 1 else "RGB"
    lo, hi = spec.value_range if spec.value_range is not None else (0.0, 1.0)
    rows = []
    for i, f in enumerate(files):
        if deadline is not None and time.monotonic() > deadline:
            raise Timeout(f"files: decoding stopped at files[{i}]: the request ran past its deadline")
        where = f"files[{i}] ({f.name})"
        try:
            with Image.open(io.BytesIO(f.data)) as img:
                if img.format not in ("PNG", "JPEG"):
                    raise InvalidInput(
                        f"{where}: expected a PNG or JPEG image, got {img.format}", field="files"
                    )
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise InvalidInput(
                        f"{where}: image of {img.width}x{img.height} is too large", field="files"
                    )
                img.load()
                pic = img.convert(mode)
        except InvalidInput:
            raise
        except Exception as exc:  # PIL raises many types on corrupt data
            raise InvalidInput(f"{where}: not a readable image: {exc}", field="files") from None
        if pic.size != (width, height):
            if not resize:
                raise InvalidInput(
                    f"{where}: image is {pic.width}x{pic.height}, the model expects {width}x{height}; "
                    "pass resize=true to resize it",
                    field="files",
                    details={"expected": [width, height], "got": [pic.width, pic.height]},
                )
            pic = pic.resize((width, height), Image.Resampling.BILINEAR)
        a = np.asarray(pic, dtype=np.float32) / 255.0
        rows.append(lo + (hi - lo) * a)
    return np.stack(rows).reshape((len(rows), *spec.shape))


# ---- responses --------------------------------------------------------------------------------
@dataclass
class Result:
    """What an inference verb produced; `arrays` keeps the JSON field order, the first is primary."""

    model: str
    version: int
    arrays: dict[str, npt.NDArray[Any]]
    scalars: dict[str, float] = field(default_factory=dict)
    images: npt.NDArray[np.float32] | None = None
    image_spec: InputSpec | None = None


def error_response(exc: LatentServeError) -> Response:
    """The one JSON error shape, with the error's own status code."""
    headers = exc.headers or None  # WWW-Authenticate on a 401, Retry-After on a shed 503
    return Response(
        orjson.dumps(exc.to_dict()), status_code=exc.status_code, media_type=JSON, headers=headers
    )


def internal_error_response(
    method: str, path: str, render: Callable[[LatentServeError], Response] | None = None
) -> Response:
    """Log the exception being handled and answer the one 500, without a stack trace, in the error
    shape of `render` (default: ours)."""
    logging.getLogger("latentserve.app").exception("unhandled error on %s %s", method, path)
    return (render or error_response)(InternalError("internal error; the server log has the details"))


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str:
    """Pick the response type from the Accept header (by q, then order); JSON when absent."""
    if not accept or accept == "*/*" or accept == JSON:
        return JSON
    prefs: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            prefs.append((-q, i, media.lower()))
    for _, _, media in sorted(prefs):
        if media in offered:
            return media
        if media in ("*/*", "application/*"):
            return offered[0]
        if media == "image/*" and PNG in offered:
            return PNG
    raise NotAcceptable(
        f"Accept: cannot produce {accept!r}; this endpoint produces {list(offered)}",
        field="accept",
        details={"produces": list(offered)},
    )


def encode_response(
    result: Result, media: str, dumps: Callable[[dict[str, Any]], bytes] | None = None
) -> Response:
    """`dumps` encodes the JSON document when given (service.jsonpool: in a worker process)."""
    if media == JSON:
        doc: dict[str, Any] = {"model": result.model, "version": result.version}
        for name, A in result.arrays.items():
            doc[name] = np.ascontiguousarray(A)
        doc.update(result.scalars)
        if dumps is not None:
            return Response(dumps(doc), media_type=JSON)
        return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)
    headers = {"X-Model": result.model, "X-Model-Version": str(result.version)}
    for name, value in result.scalars.items():
        headers["X-" + name.replace("_", "-").title()] = repr(float(value))
    buf = io.BytesIO()
    if media == NPY:
        np.save(buf, next(iter(result.arrays.values())), allow_pickle=False)
    elif media == NPZ:
        savez: Any = np.savez  # numpy's stub types **kwds as its own options
        savez(buf, **result.arrays)
    else:
        buf.write(png_bytes(result))
    return Response(buf.getvalue(), media_type=media, headers=headers)


def png_bytes(result: Result) -> bytes:
    from PIL import Image

    spec = result.image_spec
    if result.images is None or spec is None or spec.layout != "image":
        raise NotAcceptable("Accept: image/png is only produced for image models", field="accept")
    if len(result.images) != 1:
        raise NotAcceptable(
            f"Accept: image/png needs exactly one row, got {len(result.images)}; "
            "ask for application/x-npy for several",
            field="accept",
        )
    lo, hi = spec.value_range if spec.value_range is not None else (0.0, 1.0)
    a = (result.images[0].reshape(spec.shape) - lo) / ((hi - lo) or 1.0)
    pixels = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if spec.channels == 1 and pixels.ndim == 3:
        pixels = pixels[..., 0]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
