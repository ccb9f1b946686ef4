"""`.npy` request bodies, read without a copy; `.npy` and `.npz` answers."""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import InvalidInput


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


def npy_bytes(A: npt.NDArray[Any]) -> bytes:
    """One array as a `.npy` file (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, A, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, npt.NDArray[Any]]) -> bytes:
    """Arrays by name as an (uncompressed) `.npz` archive."""
    buf = io.BytesIO()
    savez: Any = np.savez  # numpy's stub types **kwds as its own options
    savez(buf, **arrays)
    return buf.getvalue()
