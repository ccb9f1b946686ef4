"""`.npy` bodies (`service.codecs.npy`): read without a copy, every header version, forged headers refused."""

from __future__ import annotations

import numpy as np
import pytest

from service import codecs
from service.errors import InvalidInput


def _npy(A: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    import io

    from numpy.lib import format as npy_format

    buf = io.BytesIO()
    npy_format.write_array(buf, A, version=version)
    return buf.getvalue()


@pytest.mark.parametrize("version", [None, (1, 0), (2, 0)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_view_reads_every_header_version_and_order(version: tuple[int, int] | None, order: str) -> None:
    A = np.asarray(np.random.default_rng(0).standard_normal((5, 3, 2)), order=order)
    np.testing.assert_array_equal(codecs.load_npy(_npy(A, version), "inputs"), A)
    for dtype in (np.float32, np.int16, ">f8"):
        B = A.astype(dtype)
        np.testing.assert_array_equal(codecs.load_npy(_npy(B, version), "inputs"), B)


def test_npy_bodies_with_the_same_header_keep_their_own_data() -> None:
    """The header parse is cached by header bytes; the data always comes from the body at hand."""
    rng = np.random.default_rng(1)
    A, B = rng.random((4, 8)), rng.random((4, 8))
    head_a, head_b = _npy(A)[:128], _npy(B)[:128]
    assert head_a == head_b
    np.testing.assert_array_equal(codecs.load_npy(_npy(A), "inputs"), A)
    np.testing.assert_array_equal(codecs.load_npy(_npy(B), "inputs"), B)
    with pytest.raises(InvalidInput, match="shorter than shape"):
        codecs.load_npy(_npy(B)[:-8], "inputs")


def test_npy_header_with_a_negative_length_is_refused() -> None:
    body = _npy(np.zeros((2, 64)))
    forged = body.replace(b"(2, 64)", b"(-2,64)", 1)  # same length: the header stays well-formed
    assert len(forged) == len(body) and forged != body
    with pytest.raises(InvalidInput, match="negative length"):
        codecs.load_npy(forged, "inputs")
