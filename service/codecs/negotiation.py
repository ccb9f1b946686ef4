"""Which media type answers (the Accept header), and the answers: results and errors.

Binary responses (`Accept: application/x-npy | application/x-npz | image/png`) carry the model and
version in the `X-Model` / `X-Model-Version` headers:
  - `application/x-npy`: the endpoint's primary array: codes (/encode), outputs (/decode, /sample),
    reconstructions (/reconstruct), scores (/anomaly-score; the threshold in `X-Threshold`, the rule
    that decided is_anomaly in `X-Rule`, with `X-Alpha` for rule alpha).
  - `application/x-npz`: every array of the JSON response, under the same names.
  - `image/png`: one image row (/reconstruct, /decode, /sample of an image model, exactly one row).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import Response

from latentserve_core.manifest import InputSpec
from service.codecs.images import png_image
from service.codecs.jsonbody import dump_json
from service.codecs.media import JSON, NPY, NPZ, PNG
from service.codecs.npy import npy_bytes, npz_bytes
from service.errors import InternalError, LatentServeError, NotAcceptable, error_body, response_headers


@dataclass
class Result:
    """What an inference verb produced; `arrays` keeps the JSON field order, the first is primary."""

    model: str
    version: int
    arrays: dict[str, npt.NDArray[Any]]
    scalars: dict[str, float | str] = field(default_factory=dict)  # beside the arrays, or X- headers
    images: npt.NDArray[np.float32] | None = None
    image_spec: InputSpec | None = None


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
        return Response((dumps or dump_json)(doc), media_type=JSON)
    headers = {"X-Model": result.model, "X-Model-Version": str(result.version)}
    for name, value in result.scalars.items():
        text = value if isinstance(value, str) else repr(float(value))
        headers["X-" + name.replace("_", "-").title()] = text
    if media == NPY:
        data = npy_bytes(next(iter(result.arrays.values())))
    elif media == NPZ:
        data = npz_bytes(result.arrays)
    else:
        data = png_image(result.images, result.image_spec)
    return Response(data, media_type=media, headers=headers)


def error_response(exc: LatentServeError) -> Response:
    """The one JSON error shape, with the error's own status code."""
    return Response(
        orjson.dumps(error_body(exc)),
        status_code=exc.status_code,
        media_type=JSON,
        headers=response_headers(exc),
    )


def internal_error_response(
    method: str,
    path: str,
    exc: BaseException,
    render: Callable[[LatentServeError], Response] | None = None,
) -> Response:
    """Log `exc` with its stack trace and answer the one 500, without it, in the error shape of
    `render` (default: ours)."""
    logging.getLogger("latentserve.app").error("unhandled error on %s %s", method, path, exc_info=exc)
    return (render or error_response)(InternalError("internal error; the server log has the details"))
