"""The Try-it form fuzzed, field by field, through the real app and real fitted models: every input
is scored (200) or refused on the page with a 4xx whose message names the problem; never a 5xx.

A table of the inputs a user or a broken client sends (several lines, a CSV header, empty, huge,
binary, not UTF-8, not an image, an image of the wrong size, both fields, neither, a wrong
Content-Type, a form without its boundary), then hypothesis over arbitrary text, bytes and headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from service.ui.pasted import MAX_ROW_CHARS, MAX_TRY_ROWS
from tests.service.conftest import png, serve

VAE_PAGE = "/ui/models/digits-vae/versions/1"
CANCER_PAGE = "/ui/models/breast-cancer-pca/versions/1"
BODY_LIMIT = 3 * MAX_ROW_CHARS  # room for a row over MAX_ROW_CHARS, and a body over this limit
BOUNDARY = "fuzzboundary"


@pytest.fixture(scope="module")
def client(models_dir: Any) -> Iterator[TestClient]:
    with serve(models_dir, max_body_bytes=BODY_LIMIT) as c:
        yield c


@pytest.fixture(scope="module")
def cancer_row() -> tuple[list[str], list[float]]:
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    return [str(n) for n in bc.feature_names], [float(x) for x in bc.data[0]]


def _page_error(r: Any) -> tuple[int, str]:
    """The status and the error shown on the page (unescaped), asserting the page was rendered."""
    assert r.status_code < 500, (r.status_code, r.text[-2000:])
    assert r.headers["content-type"].startswith("text/html"), r.text[:500]
    match = re.search(r'<p class="error" id="try-error" data-status="(\d+)">(.*?)</p>', r.text, re.S)
    if r.status_code == 200:
        assert match is None and ('id="try-score"' in r.text or 'id="try-rows"' in r.text)
        return 200, ""
    assert match, r.text[-2000:]
    assert int(match[1]) == r.status_code
    text = match[2].replace("&#39;", "'").replace("&#34;", '"').replace("&lt;", "<").replace("&gt;", ">")
    assert " object at 0x" not in text  # no Python object reprs
    return r.status_code, text.replace("&amp;", "&")


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> bytes:
    """A multipart body by hand: (name, value, filename or None) parts."""
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


@dataclass(frozen=True)
class Case:
    """One request to a Try-it page and what the page must say."""

    name: str
    page: str
    status: int
    says: tuple[str, ...]  # substrings of the message shown (all of them)
    data: dict[str, str] | None = None
    files: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _cases(names: list[str], row: list[float], digit: np.ndarray) -> list[Case]:
    line = ",".join(f"{x:.6g}" for x in row)
    header = ",".join(names)
    shuffled = list(reversed(range(len(names))))
    image = png(digit)
    multipart = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return [
        Case("one row", CANCER_PAGE, 200, (), data={"row": line}),
        Case("one row with a trailing newline", CANCER_PAGE, 200, (), data={"row": line + "\r\n"}),
        Case("two lines", CANCER_PAGE, 200, (), data={"row": f"{line}\n{line}"}),
        Case("three lines, CR only", CANCER_PAGE, 200, (), data={"row": "\r".join([line] * 3)}),
        Case(
            "more lines than the form scores",
            CANCER_PAGE,
            422,
            (f"{MAX_TRY_ROWS + 1} rows pasted", f"at most {MAX_TRY_ROWS}", "latentserve-score"),
            data={"row": "\n".join([line] * (MAX_TRY_ROWS + 1))},
        ),
        Case(
            "ragged lines",
            CANCER_PAGE,
            422,
            ("line 2 has 2 values, line 1 has 3",),
            data={"row": "1,2,3\n4,5"},
        ),
        Case("header and one row", CANCER_PAGE, 200, (), data={"row": f"{header}\n{line}"}),
        Case(
            "header and one row, columns reordered",
            CANCER_PAGE,
            200,
            (),
            data={
                "row": ",".join(names[i] for i in shuffled)
                + "\n"
                + ",".join(f"{row[i]:.6g}" for i in shuffled)
            },
        ),
        Case("header and two rows", CANCER_PAGE, 200, (), data={"row": f"{header}\n{line}\n{line}"}),
        Case(
            "header and too many rows",
            CANCER_PAGE,
            422,
            (f"{MAX_TRY_ROWS + 1} rows pasted under the header",),
            data={"row": "\n".join([header] + [line] * (MAX_TRY_ROWS + 1))},
        ),
        Case(
            "header with an unknown and a missing column",
            CANCER_PAGE,
            422,
            ("'id'", "which the model does not take", "lacks 'worst fractal dimension'"),
            data={"row": "id," + ",".join(names[:-1]) + "\n7," + ",".join(line.split(",")[:-1])},
        ),
        Case(
            "header longer than its row",
            CANCER_PAGE,
            422,
            ("line 2 has 29 values", "names 30 columns"),
            data={"row": f"{header}\n" + ",".join(line.split(",")[:-1])},
        ),
        Case(
            "header with a word in its row",
            CANCER_PAGE,
            422,
            ("row[1] (line 2, column 'mean texture'): 'high' is not a number",),
            data={"row": f"{header}\n" + line.replace(line.split(",")[1], "high", 1)},
        ),
        Case(
            "a header alone", CANCER_PAGE, 422, ("a header line with no rows under it",), data={"row": header}
        ),
        Case(
            "a header naming a column twice",
            CANCER_PAGE,
            422,
            ("names 'mean radius' more than once",),
            data={"row": f"{header},mean radius\n{line},1"},
        ),
        Case(
            "a header on an image model",
            VAE_PAGE,
            422,
            ("records no feature names",),
            data={"row": "a,b\n1,2"},
        ),
        Case("empty", CANCER_PAGE, 422, ("choose an image file or paste a row",), data={"row": ""}),
        Case(
            "whitespace", CANCER_PAGE, 422, ("choose an image file or paste a row",), data={"row": " \t\r\n "}
        ),
        Case("an empty cell", CANCER_PAGE, 422, ("row[1]: empty cell",), data={"row": "1,,3"}),
        Case("too few values", CANCER_PAGE, 422, ("expects rows of shape [30]",), data={"row": "1,2,3"}),
        Case("nan", CANCER_PAGE, 422, ("NaN or infinity",), data={"row": ",".join(["nan"] * 30)}),
        Case("over float32", CANCER_PAGE, 422, ("NaN or infinity",), data={"row": ",".join(["1e300"] * 30)}),
        Case(
            "over MAX_ROW_CHARS",
            CANCER_PAGE,
            422,
            (f"over the limit of {MAX_ROW_CHARS}",),
            data={"row": "1," * (MAX_ROW_CHARS // 2 + 10)},
        ),
        Case(
            "over the body limit",
            CANCER_PAGE,
            413,
            (f"over the limit of {BODY_LIMIT} bytes",),
            data={"row": "1" * (BODY_LIMIT + 10)},
        ),
        Case("a NUL byte", CANCER_PAGE, 422, ("row",), data={"row": "1,\x00,3"}),
        Case("an unterminated quote", CANCER_PAGE, 422, ("is not a number",), data={"row": '1,"2,3'}),
        Case("binary bytes", CANCER_PAGE, 422, ("row",), data={"row": bytes(range(256)).decode("latin-1")}),
        Case(
            "not UTF-8",
            CANCER_PAGE,
            422,
            ("is not a number",),
            content=_multipart([("row", b"\xff\xfe1,2,3", None)]),
            headers=multipart,
        ),
        Case("a JSON array", CANCER_PAGE, 200, (), data={"row": json.dumps(row)}),
        Case(
            "a JSON object by name",
            CANCER_PAGE,
            200,
            (),
            data={"row": json.dumps(dict(zip(names, row, strict=True)))},
        ),
        Case(
            "a JSON object missing a name",
            CANCER_PAGE,
            422,
            ("lacks 'mean radius'",),
            data={"row": json.dumps(dict(zip(names[1:], row[1:], strict=True)))},
        ),
        Case("JSON rows", CANCER_PAGE, 200, (), data={"row": json.dumps([row, row])}),
        Case(
            "JSON objects by name",
            CANCER_PAGE,
            200,
            (),
            data={"row": json.dumps([dict(zip(names, row, strict=True))] * 2)},
        ),
        Case(
            "ragged JSON rows",
            CANCER_PAGE,
            422,
            ("row[1]: 2 values, row[0] has 3",),
            data={"row": "[[1,2,3],[4,5]]"},
        ),
        Case(
            "a JSON row that is a string",
            CANCER_PAGE,
            422,
            ("row[1]: expected a JSON array",),
            data={"row": '[[1], "x"]'},
        ),
        Case("malformed JSON", CANCER_PAGE, 422, ("malformed JSON",), data={"row": "[1, 2,"}),
        Case(
            "JSON with a string", CANCER_PAGE, 422, ('row[1]: "x" is not a number',), data={"row": '[1, "x"]'}
        ),
        Case("a JSON boolean", CANCER_PAGE, 422, ("row[0]: true is not a number",), data={"row": "[true]"}),
        Case("an empty JSON array", CANCER_PAGE, 422, ("expected a JSON array",), data={"row": "[]"}),
        Case("an image", VAE_PAGE, 200, (), files={"file": ("three.png", image, "image/png")}),
        Case(
            "an upload that is not an image",
            VAE_PAGE,
            422,
            ("junk.png", "not a readable image", "expected a PNG or JPEG"),
            files={"file": ("junk.png", b"not an image", "image/png")},
        ),
        Case(
            "a text file as the image",
            VAE_PAGE,
            422,
            ("notes.txt", "not a readable image"),
            files={"file": ("notes.txt", b"hello\nworld\n", "text/plain")},
        ),
        Case(
            "a truncated PNG",
            VAE_PAGE,
            422,
            ("cut.png", "not a readable image"),
            files={"file": ("cut.png", image[: len(image) // 2], "image/png")},
        ),
        Case(
            "a GIF",
            VAE_PAGE,
            422,
            ("expected a PNG or JPEG image, got GIF",),
            files={"file": ("a.gif", _gif(), "image/gif")},
        ),
        Case(
            "a wrong-sized image",
            VAE_PAGE,
            422,
            ("image is 16x12, the model expects 8x8", "resize"),
            files={"file": ("big.png", png(np.zeros((12, 16), np.float32)), "image/png")},
        ),
        Case(
            "a wrong-sized image, resized",
            VAE_PAGE,
            200,
            (),
            data={"resize": "on"},
            files={"file": ("big.png", png(np.zeros((12, 16), np.float32)), "image/png")},
        ),
        Case(
            "an image on a row model",
            CANCER_PAGE,
            422,
            ("this model takes rows of 30 values, not images",),
            files={"file": ("three.png", image, "image/png")},
        ),
        Case(
            "both fields",
            VAE_PAGE,
            422,
            ("not both",),
            data={"row": "1,2"},
            files={"file": ("three.png", image, "image/png")},
        ),
        Case("neither field", VAE_PAGE, 422, ("choose an image file or paste a row",), data={"other": "x"}),
        Case(
            "an empty file part (no file chosen)",
            VAE_PAGE,
            422,
            ("choose an image file or paste a row",),
            content=_multipart([("file", b"", "")]),
            headers=multipart,
        ),
        Case(
            "a row sent as a file",
            CANCER_PAGE,
            422,
            ("row: expected pasted text, got a file",),
            files={"row": ("row.csv", line.encode(), "text/csv")},
        ),
        Case(
            "the file sent as text",
            VAE_PAGE,
            422,
            ("file: expected an uploaded image file",),
            data={"file": "three.png"},
        ),
        Case(
            "a JSON body",
            CANCER_PAGE,
            415,
            ("Content-Type", "application/json"),
            content=json.dumps({"row": line}).encode(),
            headers={"content-type": "application/json"},
        ),
        Case("no Content-Type", CANCER_PAGE, 415, ("got none",), content=b"row=1"),
        Case(
            "multipart without its boundary",
            CANCER_PAGE,
            422,
            ("malformed form", "boundary"),
            content=_multipart([("row", line.encode(), None)]),
            headers={"content-type": "multipart/form-data"},
        ),
        Case(
            "multipart cut short",
            CANCER_PAGE,
            422,
            ("choose an image file or paste a row",),
            content=_multipart([("row", line.encode(), None)])[:40],
            headers=multipart,
        ),
        Case(
            "too many fields",
            CANCER_PAGE,
            422,
            ("malformed form", "fields"),
            content=_multipart([(f"f{i}", b"1", None) for i in range(6)]),
            headers=multipart,
        ),
    ]


def _gif() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def test_every_field_of_the_form_is_scored_or_refused_on_the_page_with_a_message(
    client: TestClient, cancer_row: tuple[list[str], list[float]], digits: np.ndarray
) -> None:
    names, row = cancer_row
    failures = []
    for case in _cases(names, row, digits[3]):
        r = client.post(
            f"{case.page}/try", data=case.data, files=case.files, content=case.content, headers=case.headers
        )
        status, message = _page_error(r)
        if status != case.status or any(s not in message for s in case.says):
            failures.append(f"{case.name}: {status} {message[:300]!r}")
    assert not failures, "\n".join(failures)


def test_a_row_under_a_shuffled_header_scores_as_the_ordered_row(
    client: TestClient, cancer_row: tuple[list[str], list[float]]
) -> None:
    names, row = cancer_row
    line = ",".join(f"{x:.6g}" for x in row)
    order = np.random.default_rng(0).permutation(len(names))
    shuffled = ",".join(names[i] for i in order) + "\n" + ",".join(line.split(",")[i] for i in order)
    plain = client.post(f"{CANCER_PAGE}/try", data={"row": line})
    named = client.post(f"{CANCER_PAGE}/try", data={"row": shuffled})
    api = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": [row]}).json()
    score = re.compile(r'id="try-score" data-score="([^"]+)"')
    assert plain.status_code == named.status_code == 200
    plain_score, named_score = score.search(plain.text), score.search(named.text)
    assert plain_score and named_score and plain_score[1] == named_score[1]
    assert float(plain_score[1]) == pytest.approx(api["scores"][0], rel=1e-5)


def test_several_rows_under_a_shuffled_header_are_each_scored_as_the_api_scores_them(
    client: TestClient, cancer_row: tuple[list[str], list[float]], cancer: np.ndarray
) -> None:
    names = cancer_row[0]
    order = np.random.default_rng(1).permutation(len(names))
    lines = [",".join(names[i] for i in order)] + [",".join(repr(float(x)) for x in r[order]) for r in cancer]
    r = client.post(f"{CANCER_PAGE}/try", data={"row": "\r\n".join(lines) + "\r\n"})
    assert r.status_code == 200, r.text[-2000:]
    shown = [float(x) for x in re.findall(r'class="try-score" data-score="([^"]+)"', r.text)]
    api = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": cancer.tolist()}).json()
    assert shown == pytest.approx(api["scores"], rel=1e-5) and len(shown) == len(cancer)
    assert f"{len(cancer)} rows scored" in r.text and f"{sum(api['is_anomaly'])} above it" in r.text


def test_the_pasted_text_comes_back_in_the_form_escaped(client: TestClient) -> None:
    text = "1,two,3 </textarea><script>alert(1)</script>"
    r = client.post(f"{CANCER_PAGE}/try", data={"row": text})
    assert r.status_code == 422 and "row[1]: &#39;two&#39; is not a number" in r.text
    textarea = r.text.split('<textarea name="row"')[1].split("</textarea>")[0]
    assert textarea.endswith(">" + str(escape(text)))
    assert "<script>" not in r.text


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=st.text(max_size=400))
def test_any_pasted_text_is_scored_or_refused_with_a_message(client: TestClient, text: str) -> None:
    status, message = _page_error(client.post(f"{CANCER_PAGE}/try", data={"row": text}))
    assert status in (200, 422), (status, message)
    assert status == 200 or message


@FUZZ
@given(
    lines=st.lists(
        st.lists(
            st.one_of(st.floats(allow_nan=True), st.sampled_from(["", " ", "x", '"', "mean radius"])),
            max_size=32,
        ),
        min_size=1,
        max_size=4,
    ),
    sep=st.sampled_from([",", ";", "\t", " ", ", "]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_any_grid_of_cells_is_scored_or_refused_with_a_message(
    client: TestClient, lines: list[list[float | str]], sep: str, newline: str
) -> None:
    text = newline.join(sep.join(str(c) for c in cells) for cells in lines)
    status, message = _page_error(client.post(f"{CANCER_PAGE}/try", data={"row": text}))
    assert status in (200, 422) and (status == 200 or message)


@FUZZ
@given(
    data=st.binary(max_size=600),
    name=st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'), max_size=30),
    resize=st.booleans(),
)
def test_any_uploaded_bytes_are_scored_or_refused_with_a_message(
    client: TestClient, data: bytes, name: str, resize: bool
) -> None:
    r = client.post(
        f"{VAE_PAGE}/try",
        files={"file": (name or "x", data, "application/octet-stream")},
        data={"resize": "on"} if resize else None,
    )
    status, message = _page_error(r)
    assert status == 422 and "not a readable image" in message, message


@FUZZ
@given(
    body=st.binary(max_size=600),
    content_type=st.sampled_from(
        [
            "",
            "multipart/form-data",
            f"multipart/form-data; boundary={BOUNDARY}",
            "multipart/form-data; boundary=",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-16",
            "text/plain",
            "text/csv",
        ]
    ),
)
def test_any_body_under_any_content_type_is_refused_or_scored_never_a_5xx(
    client: TestClient, body: bytes, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    status, _ = _page_error(client.post(f"{CANCER_PAGE}/try", content=body, headers=headers))
    assert status in (200, 413, 415, 422)
