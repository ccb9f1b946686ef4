"""Images in (PNG / JPEG files of a multipart form) and out (one PNG row)."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from latentserve_core.manifest import InputSpec
from service.errors import InvalidInput, NotAcceptable, PayloadTooLarge, Timeout

MAX_IMAGE_PIXELS = 4096 * 4096
_OBJECT_REPR = re.compile(r"\s*<[^<>]* object at 0x[0-9a-fA-F]+>")  # PIL names its BytesIO: not for users


@dataclass
class ImageFile:
    name: str
    data: bytes


async def read_images(headers: Mapping[str, str], body: bytes, max_files: int) -> list[ImageFile]:
    """The files under the `files` form field of a multipart body already read whole (`read_body`);
    `headers` give its Content-Type (the boundary)."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    content_type = Headers({"content-type": headers.get("content-type", "")})
    try:
        form = await MultiPartParser(content_type, chunks(), max_files=max_files, max_fields=16).parse()
    except MultiPartException as exc:
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
        _check_pixels(files, max_pixels)
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
        pic = _decoded(f, where, mode)
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


def png_image(images: npt.NDArray[np.float32] | None, spec: InputSpec | None) -> bytes:
    """The one image row of `images` (values in the spec's value_range) as a PNG file."""
    from PIL import Image

    if images is None or spec is None or spec.layout != "image":
        raise NotAcceptable("Accept: image/png is only produced for image models", field="accept")
    if len(images) != 1:
        raise NotAcceptable(
            f"Accept: image/png needs exactly one row, got {len(images)}; "
            "ask for application/x-npy for several",
            field="accept",
        )
    lo, hi = spec.value_range if spec.value_range is not None else (0.0, 1.0)
    a = (images[0].reshape(spec.shape) - lo) / ((hi - lo) or 1.0)
    pixels = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if spec.channels == 1 and pixels.ndim == 3:
        pixels = pixels[..., 0]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _check_pixels(files: list[ImageFile], max_pixels: int) -> None:
    """More than `max_pixels` decoded pixels in all: a 413, read from the files' headers."""
    from PIL import Image

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


def _decoded(f: ImageFile, where: str, mode: str) -> Any:
    """One PNG or JPEG file, decoded and converted to `mode`; a 422 naming `where` otherwise."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(f.data)) as img:
            if img.format not in ("PNG", "JPEG"):
                raise InvalidInput(f"{where}: expected a PNG or JPEG image, got {img.format}", field="files")
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InvalidInput(f"{where}: image of {img.width}x{img.height} is too large", field="files")
            img.load()
            return img.convert(mode)
    except InvalidInput:
        raise
    except Exception as exc:  # PIL raises many types on corrupt data
        reason = _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__
        raise InvalidInput(
            f"{where}: not a readable image ({reason}); expected a PNG or JPEG file", field="files"
        ) from None
