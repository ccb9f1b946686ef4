"""The registry UI's pages, through the real app (TestClient): content, escaping, Try-it, errors, auth."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from tests.service.conftest import error_of, png

MakeClient = Callable[..., AbstractContextManager[TestClient]]
VAE_PAGE = "/ui/models/digits-vae/versions/1"
CANCER_PAGE = "/ui/models/breast-cancer-pca/versions/1"


def _score_shown(html: str) -> float:
    match = re.search(r'id="try-score" data-score="([^"]+)"', html)
    assert match, html[-3000:]
    return float(match[1])


def _publish_card(folder: Path, card: bytes) -> None:
    """Replace a version's model card, and its sha256 and size in the manifest (a republished card)."""
    (folder / "README.md").write_bytes(card)
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == "README.md":
            f["sha256"], f["bytes"] = hashlib.sha256(card).hexdigest(), len(card)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_registry_page_lists_every_model_and_version_with_status_and_figures(client: TestClient) -> None:
    r = client.get("/ui")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    models = client.get("/models").json()["models"]
    for model in models:
        assert f'id="{model["name"]}"' in html
        for v in model["versions"]:
            assert f'data-model="{model["name"]}" data-version="{v["version"]}"' in html
            assert f"{v['threshold']:.4g}" in html
    assert 'class="ready"' in html
    assert "vae" in html and "[8, 8] &rarr; 4" in html
    assert 'src="/ui/models/digits-vae/versions/1/files/loss.png"' in html


def test_a_failed_version_shows_why(registry_copy: Path, make_client: MakeClient) -> None:
    (registry_copy / "digits-pca" / "1" / "encoder.onnx").write_bytes(b"broken")
    with make_client(registry_copy) as client:
        html = client.get("/ui").text
        row = html.split('data-model="digits-pca" data-version="1"')[1].split("</tr>")[0]
        assert 'class="failed"' in row
        reason = client.get("/models").json()["models"]
        error = next(v["error"] for m in reason if m["name"] == "digits-pca" for v in m["versions"])
        assert "sha256" in error and str(escape(error)) in row
        page = client.get("/ui/models/digits-pca/versions/1")
        assert page.status_code == 200 and str(escape(error)) in page.text
        assert "not served: no live scores" in page.text
        tried = client.post(
            "/ui/models/digits-pca/versions/1/try", files={"file": ("a.png", b"x", "image/png")}
        )
        assert tried.status_code == 503 and "failed to load" in tried.text


def test_pictures_the_card_does_not_show_are_shown_below_it(
    registry_copy: Path, make_client: MakeClient
) -> None:
    folder = registry_copy / "digits-vae" / "1"
    card = b"# a card without pictures\n"
    _publish_card(folder, card)
    with make_client(registry_copy) as client:
        html = client.get(VAE_PAGE).text
    gallery = html.split("<h3>Pictures</h3>")[1]
    assert '<img src="/ui/models/digits-vae/versions/1/files/loss.png"' in gallery
    assert "<h1>a card without pictures</h1>" in html


def test_a_version_page_renders_the_card_pictures_and_the_histogram(client: TestClient) -> None:
    html = client.get(VAE_PAGE).text
    assert "<h3>Pictures</h3>" not in html  # the card shows every picture
    card = client.get("/models/digits-vae/versions/1/files/README.md").text
    title = card.splitlines()[0].removeprefix("# ")
    assert f"<h1>{title}</h1>" in html
    assert '<img src="/ui/models/digits-vae/versions/1/files/loss.png"' in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="hist"' in html
    assert 'class="threshold"' in html
    assert 'name="file"' in html  # an image model: an upload


def test_the_ui_file_route_serves_the_same_checked_bytes(client: TestClient) -> None:
    a = client.get(f"{VAE_PAGE}/files/scores.png")
    b = client.get("/models/digits-vae/versions/1/files/scores.png")
    assert a.status_code == b.status_code == 200 and a.content == b.content
    assert a.headers["etag"] == b.headers["etag"]
    assert error_of(client.get(f"{VAE_PAGE}/files/manifest.json"), 404)["field"] == "file"


def test_the_live_histogram_appears_once_scores_arrive(make_client: MakeClient, digits: np.ndarray) -> None:
    with make_client() as client:
        assert 'class="live"' not in client.get(VAE_PAGE).text
        client.post("/anomaly-score", json={"model": "digits-vae", "inputs": digits.tolist()})
        html = client.get(VAE_PAGE).text
        assert 'class="live"' in html
        assert f"{len(digits)} live scores since start-up" in html


def test_a_card_with_raw_html_is_shown_as_text(registry_copy: Path, make_client: MakeClient) -> None:
    folder = registry_copy / "digits-vae" / "1"
    card = b"# evil\n\n<script>alert(1)</script>\n\n![x](javascript:alert(1))\n"
    _publish_card(folder, card)
    with make_client(registry_copy) as client:
        html = client.get(VAE_PAGE).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'src="javascript:' not in html and 'href="javascript:' not in html  # left as text


def test_a_tampered_card_is_named_on_the_page_not_shown(registry_copy: Path, make_client: MakeClient) -> None:
    path = registry_copy / "digits-vae" / "1" / "README.md"
    path.write_bytes(path.read_bytes().replace(b"#", b"!", 1))
    with make_client(registry_copy) as client:
        r = client.get(VAE_PAGE)
    assert r.status_code == 200
    assert "file &#39;README.md&#39; does not match the sha256" in r.text


def test_try_an_image_scores_as_the_api_does(client: TestClient, digits: np.ndarray) -> None:
    image = png(digits[3])
    r = client.post(f"{VAE_PAGE}/try", files={"file": ("three.png", image, "image/png")})
    assert r.status_code == 200, r.text[-2000:]
    api = client.post("/anomaly-score?model=digits-vae&version=1", files={"files": ("three.png", image)})
    assert _score_shown(r.text) == api.json()["scores"][0]
    assert r.text.count('src="data:image/png;base64,') == 3  # input, reconstruction, error map
    p = api.json()["p_values"][0]
    assert f'id="try-p">{p:.4g}<' in r.text


def test_try_a_row_lists_the_top_features_by_name(client: TestClient) -> None:
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    row = bc.data[0].astype(np.float32)
    row[3] *= 4  # "mean area" far off
    line = ",".join(f"{x:.6g}" for x in row)
    r = client.post(f"{CANCER_PAGE}/try", data={"row": line})
    assert r.status_code == 200, r.text[-2000:]
    values = [float(x) for x in line.split(",")]
    api = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": [values]})
    assert _score_shown(r.text) == api.json()["scores"][0]
    table = r.text.split('id="try-features"')[1].split("</table>")[0]
    assert "mean area" in table
    assert "<td>feature 0</td>" not in table
    json_row = client.post(f"{CANCER_PAGE}/try", data={"row": json.dumps(values)})
    assert _score_shown(json_row.text) == _score_shown(r.text)


def test_a_broken_upload_shows_the_apis_error_message(client: TestClient) -> None:
    r = client.post(f"{VAE_PAGE}/try", files={"file": ("junk.png", b"not an image", "image/png")})
    api = client.post("/anomaly-score?model=digits-vae", files={"files": ("junk.png", b"not an image")})
    message = error_of(api, 422)["message"]
    assert r.status_code == 422
    assert 'id="try-error" data-status="422"' in r.text

    def no_address(text: str) -> str:  # PIL's message names the BytesIO object's address
        return re.sub(r"0x[0-9a-f]+", "0x", text)

    assert "not a readable image" in message
    assert no_address(escape(message)) in no_address(r.text)


def test_a_row_of_the_wrong_width_or_with_a_word_shows_why(client: TestClient) -> None:
    short = client.post(f"{CANCER_PAGE}/try", data={"row": "1,2,3"})
    assert short.status_code == 422
    api = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": [[1, 2, 3]]})
    assert escape(error_of(api, 422)["message"]) in short.text
    word = client.post(f"{CANCER_PAGE}/try", data={"row": "1,two,3"})
    assert word.status_code == 422 and "row[1]: &#39;two&#39; is not a number" in word.text
    empty = client.post(f"{CANCER_PAGE}/try", data={"row": " "})
    assert empty.status_code == 422 and "choose an image file or paste a row" in empty.text


def test_unknown_pages_are_404(client: TestClient) -> None:
    assert error_of(client.get("/ui/models/nope/versions/1"), 404)["field"] == "model"
    assert error_of(client.get("/ui/models/digits-vae/versions/7"), 404)["field"] == "version"


def test_with_a_key_the_pages_ask_for_basic_credentials(make_client: MakeClient) -> None:
    with make_client(api_key="s3cret") as client:
        r = client.get("/ui")
        assert error_of(r, 401)["field"] == "api_key"
        assert r.headers["www-authenticate"].startswith("Basic")
        good = base64.b64encode(b"anyone:s3cret").decode()
        bad = base64.b64encode(b"anyone:nope").decode()
        assert client.get("/ui", headers={"authorization": f"Basic {good}"}).status_code == 200
        assert client.get(f"{VAE_PAGE}/files/loss.png", headers={"authorization": f"Basic {good}"}).is_success
        assert error_of(client.get("/ui", headers={"authorization": f"Basic {bad}"}), 401)["message"] == (
            "wrong API key"
        )
        assert client.get("/ui", headers={"x-api-key": "s3cret"}).status_code == 200
        assert error_of(client.get("/ui", headers={"authorization": "Basic !!"}), 401)["field"] == "api_key"


def test_an_evaluation_report_shows_its_figures_and_roc_curve(
    registry_copy: Path, make_client: MakeClient
) -> None:
    from training.evaluate import evaluate

    report = evaluate(registry_copy, "digits-pca:1", "digits", normal_classes=[0, 1, 2, 3, 4])
    roc = Path(report["files"][1]).name
    page = "/ui/models/digits-pca/versions/1"
    with make_client(registry_copy) as client:
        row = client.get("/ui").text.split('data-model="digits-pca" data-version="1"')[1].split("</tr>")[0]
        assert f"auroc {report['auroc']:.4f}" in row
        assert f'src="{page}/evaluations/{roc}"' in row
        assert f'src="{page}/evaluations/{roc}"' in client.get(page).text
        r = client.get(f"{page}/evaluations/{roc}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == Path(report["files"][1]).read_bytes()
        assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
        for bad in ("nothere.png", "x.txt", ".hidden.png", "manifest.json"):
            assert error_of(client.get(f"{page}/evaluations/{bad}"), 404)["field"] == "file", bad
        for bad in ("..%2Fmanifest.json", "..%2F..%2F1%2Fmanifest.json"):  # no route takes a slash
            assert error_of(client.get(f"{page}/evaluations/{bad}"), 404)["type"] == "RouteNotFound"
        link = registry_copy / "digits-pca" / "1" / "evaluations" / "link.png"
        link.symlink_to(Path(report["files"][1]))
        assert error_of(client.get(f"{page}/evaluations/link.png"), 404)["field"] == "file"


def test_an_upload_over_the_body_limit_or_a_malformed_form_is_refused_on_the_page(
    make_client: MakeClient,
) -> None:
    with make_client(max_body_bytes=2000) as client:
        big = client.post(f"{VAE_PAGE}/try", files={"file": ("big.png", b"x" * 5000, "image/png")})
        assert big.status_code == 413
        assert 'id="try-error" data-status="413"' in big.text and "over the limit of 2000 bytes" in big.text
        two = client.post(
            f"{VAE_PAGE}/try",
            files=[("file", ("a.png", b"a", "image/png")), ("file", ("b.png", b"b", "image/png"))],
        )
        assert two.status_code == 422 and "malformed form" in two.text


def test_a_hostile_evaluation_report_is_skipped_not_a_500(
    registry_copy: Path, make_client: MakeClient
) -> None:
    """Break 11: an evaluation JSON with a 400-digit integer or deep nesting made /ui answer 500."""
    folder = registry_copy / "digits-pca" / "1" / "evaluations"
    folder.mkdir(exist_ok=True)
    hostile = {
        "huge.json": '{"auroc": ' + "9" * 400 + ', "expected_fpr": ' + "9" * 400 + "}",
        "deep.json": "[" * 100_000 + "]" * 100_000,
    }
    with make_client(registry_copy) as client:
        for file, text in hostile.items():
            (folder / file).write_text(text)
            for page in ("/ui", "/ui/models/digits-pca/versions/1"):
                r = client.get(page)
                assert r.status_code == 200, (file, page, r.text[:200])


def test_an_aborted_upload_is_dropped_quietly_and_a_shed_one_says_when_to_retry(
    make_client: MakeClient, caplog: Any
) -> None:
    """Breaks 8 and 9: an upload aborted mid-body raised ClientDisconnect out of the app (a
    traceback per abort, on the event loop), then rendered the version page for nobody; Try-it's
    503 had no Retry-After."""
    with make_client(max_inflight_bytes=10_000) as client:
        sent: list[dict[str, Any]] = []
        chunks = [
            {"type": "http.request", "body": b"--x\r\nContent-Disposition: form-data", "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> dict[str, Any]:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": f"{VAE_PAGE}/try", "raw_path": f"{VAE_PAGE}/try".encode(),
            "root_path": "", "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("t", 80),
            "headers": [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"5000")],
        }  # fmt: skip
        caplog.clear()
        client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
        assert not [r for r in caplog.records if r.exc_info], "an aborted upload logged a traceback"
        # nobody reads the answer: no page is rendered for it (on the event loop, per abort)
        assert [m.get("body", b"") for m in sent if m["type"] == "http.response.body"] == [b""]
        assert sent[0]["status"] == 499
        held = client.app.state.service.admission.enter(9_000, 1)  # type: ignore[attr-defined]
        try:  # the memory budget is taken: the upload is shed
            r = client.post(f"{VAE_PAGE}/try", files={"file": ("big.png", b"x" * 20_000, "image/png")})
        finally:
            held.release()
        assert r.status_code == 503 and r.headers["retry-after"] == "1"


def _requests_counted(client: TestClient, model: str, status: str) -> float:
    counter = client.app.state.metrics.requests  # type: ignore[attr-defined]
    return float(counter.labels("anomaly-score", model, status)._value.get())


def test_a_try_it_call_is_an_anomaly_score_call_counted_in_metrics_and_drift(client: TestClient) -> None:
    """Try-it goes through the dataplane's door: each scored row moves the /anomaly-score counter and
    the version's live drift, as the same rows sent to the API do; a refused form is counted too."""
    from sklearn.datasets import load_breast_cancer

    state = client.app.state  # type: ignore[attr-defined]
    manifest = state.registry.get("breast-cancer-pca", 1).manifest
    drift = state.metrics.drift
    rows = load_breast_cancer().data[:3]
    before = (_requests_counted(client, "breast-cancer-pca", "200"), drift.of(manifest).snapshot().n)
    text = "\n".join(",".join(f"{x:.6g}" for x in row) for row in rows)
    assert client.post(f"{CANCER_PAGE}/try", data={"row": text}).status_code == 200
    after = (_requests_counted(client, "breast-cancer-pca", "200"), drift.of(manifest).snapshot().n)
    assert after == (before[0] + 1, before[1] + 3)
    refused = _requests_counted(client, "breast-cancer-pca", "422")
    assert client.post(f"{CANCER_PAGE}/try", data={"row": "1,2,3"}).status_code == 422
    assert _requests_counted(client, "breast-cancer-pca", "422") == refused + 1
    assert drift.of(manifest).snapshot().n == after[1]  # nothing scored, nothing observed


@pytest.mark.parametrize("fast_path", [True, False])
def test_try_it_answers_alike_through_the_shortcut_and_the_route(
    make_client: MakeClient, fast_path: bool
) -> None:
    """With LATENTSERVE_FAST_PATH=false the POST goes through FastAPI's route, else the ASGI
    shortcut serves it first: the same page, the same count."""
    with make_client(fast_path=fast_path) as client:
        before = _requests_counted(client, "breast-cancer-pca", "200")
        r = client.post(f"{CANCER_PAGE}/try", data={"row": ",".join(["1"] * 30)})
        assert r.status_code == 200 and 'id="try-score"' in r.text
        assert _requests_counted(client, "breast-cancer-pca", "200") == before + 1
        assert (
            client.post("/ui/models/breast-cancer-pca/versions/0/try", data={"row": "1"}).status_code == 422
        )
