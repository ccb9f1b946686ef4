"""Bodies in and out, one module per content type.

- `media`: the media types; `body`: reading a body within its limit, its Content-Type and
  Content-Encoding, and validating the options envelope;
- `jsonbody`: JSON bodies into arrays (orjson; simdjson for large batches of flat rows);
- `npy`: `.npy` bodies read without a copy, `.npy` / `.npz` answers;
- `table`: rows by column name (JSON records, `text/csv` with a header) ordered by the manifest;
- `images`: PNG / JPEG files of a multipart form in, one PNG row out;
- `negotiation`: the answer's media type from Accept, and the answers: results and errors.
"""

from service.codecs.body import (
    body_too_large,
    check_content_encoding,
    check_content_type,
    media_type,
    read_body,
    read_body_chunks,
    validate_options,
)
from service.codecs.images import ImageFile, images_to_array, png_image, read_images
from service.codecs.jsonbody import (
    FAST_JSON_MIN_BYTES,
    dump_json,
    has_array_boolean,
    load_json,
    load_json_rows,
    read_json,
    rows_to_array,
)
from service.codecs.media import CSV, JSON, MULTIPART, NPY, NPZ, PNG
from service.codecs.negotiation import (
    Result,
    encode_response,
    error_response,
    internal_error_response,
    negotiate,
)
from service.codecs.npy import load_npy, npy_bytes, npz_bytes
from service.codecs.table import NamedRows, is_records, load_csv, records_to_rows

__all__ = [
    "CSV",
    "FAST_JSON_MIN_BYTES",
    "JSON",
    "MULTIPART",
    "NPY",
    "NPZ",
    "PNG",
    "ImageFile",
    "NamedRows",
    "Result",
    "body_too_large",
    "check_content_encoding",
    "check_content_type",
    "dump_json",
    "encode_response",
    "error_response",
    "has_array_boolean",
    "images_to_array",
    "internal_error_response",
    "is_records",
    "load_csv",
    "load_json",
    "load_json_rows",
    "load_npy",
    "media_type",
    "negotiate",
    "npy_bytes",
    "npz_bytes",
    "png_image",
    "read_body",
    "read_body_chunks",
    "read_images",
    "read_json",
    "records_to_rows",
    "rows_to_array",
    "validate_options",
]
