"""Multipart image bodies (`service.codecs.images`): the files are parsed from the bytes already read,
with no request object (nothing is cached on starlette's request), and bad forms are a 422."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from latentserve_core.manifest import InputSpec
from service import codecs
from service.errors import InvalidInput
from tests.service.conftest import png

BOUNDARY = "latentserveboundary"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def _form(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: image/png\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_files_are_read_from_the_body_bytes(digits: np.ndarray) -> None:
    body = _form(("files", "a.png", png(digits[0])), ("files", "b.png", png(digits[1])))
    files = asyncio.run(codecs.read_images(HEADERS, body, max_files=4))
    assert [f.name for f in files] == ["a.png", "b.png"]
    spec = InputSpec(shape=[8, 8], layout="image", channels=1, value_range=(0.0, 1.0))
    X = codecs.images_to_array(files, spec, resize=False)
    expected = np.clip(digits[:2] * 255, 0, 255).astype(np.uint8) / np.float32(255.0)  # as png() wrote them
    np.testing.assert_allclose(X, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"content-type": "multipart/form-data"}, b"--x--\r\n", "malformed multipart form"),
        (HEADERS, _form(("note", None, b"hello")), "expected one or more image files"),
        (HEADERS, _form(("files", None, b"hello")), "got a text field"),
    ],
)
def test_bad_forms_are_422_naming_files(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        asyncio.run(codecs.read_images(headers, body, max_files=4))
    assert caught.value.field == "files"


def test_more_files_than_max_files_is_422(digits: np.ndarray) -> None:
    body = _form(*(("files", f"{i}.png", png(digits[i])) for i in range(3)))
    with pytest.raises(InvalidInput, match="malformed multipart form"):
        asyncio.run(codecs.read_images(HEADERS, body, max_files=2))
