"""GET /models/{name}/versions/{v}/files/{file}: listed display files only, sha256-checked, cached."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from fastapi.testclient import TestClient

from tests.service.conftest import error_of

VAE = "/models/digits-vae/versions/1/files"
MakeClient = Callable[..., AbstractContextManager[TestClient]]


def _listed(models_dir: Path, file: str) -> dict[str, object]:
    manifest = json.loads((models_dir / "digits-vae" / "1" / "manifest.json").read_text())
    return next(f for f in manifest["files"] if f["path"] == file)  # type: ignore[no-any-return]


def test_a_listed_picture_comes_with_its_type_etag_and_caching(client: TestClient, models_dir: Path) -> None:
    r = client.get(f"{VAE}/loss.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    sha = hashlib.sha256(r.content).hexdigest()
    assert sha == _listed(models_dir, "loss.png")["sha256"]
    assert r.headers["etag"] == f'"{sha}"'
    assert "max-age" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_card_is_markdown_text(client: TestClient) -> None:
    r = client.get(f"{VAE}/README.md")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/markdown; charset=utf-8"
    assert r.text.startswith("# ")


def test_if_none_match_with_the_sha256_answers_304_without_a_body(client: TestClient) -> None:
    etag = client.get(f"{VAE}/loss.png").headers["etag"]
    r = client.get(f"{VAE}/loss.png", headers={"if-none-match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert client.get(f"{VAE}/loss.png", headers={"if-none-match": '"0000"'}).status_code == 200


def test_a_file_the_manifest_does_not_list_is_404_naming_what_is_listed(client: TestClient) -> None:
    err = error_of(client.get(f"{VAE}/nothere.png"), 404)
    assert err["field"] == "file"
    assert "nothere.png" in err["message"]
    assert "loss.png" in err["details"]["available"]


def test_model_weights_and_the_manifest_itself_are_not_served(client: TestClient) -> None:
    for file in ("encoder.onnx", "manifest.json"):
        assert error_of(client.get(f"{VAE}/{file}"), 404)["field"] == "file"


def test_paths_out_of_the_version_folder_are_never_reached(client: TestClient) -> None:
    for file in ("..", "..%2Fmanifest.json", "%2E%2E%2F..%2F..%2Fetc%2Fpasswd", "..%5Cmanifest.json"):
        r = client.get(f"{VAE}/{file}")
        assert r.status_code == 404, (file, r.text)
        assert b"root:" not in r.content


def test_unknown_model_or_version_is_404(client: TestClient) -> None:
    assert error_of(client.get("/models/nope/versions/1/files/loss.png"), 404)["field"] == "model"
    err = error_of(client.get("/models/digits-vae/versions/9/files/loss.png"), 404)
    assert err["field"] == "version"
    assert error_of(client.get("/models/digits-vae/versions/0/files/loss.png"), 422)["field"] == "version"


def test_a_tampered_listed_file_is_409_naming_the_version_never_the_bytes(
    registry_copy: Path, make_client: MakeClient
) -> None:
    with make_client(registry_copy) as client:
        path = registry_copy / "digits-vae" / "1" / "loss.png"
        original = path.read_bytes()
        path.write_bytes(original[:-8] + b"TAMPERED")  # same size, other bytes
        r = client.get(f"{VAE}/loss.png")
        err = error_of(r, 409)
        assert err["type"] == "ArtifactTampered"
        assert "'digits-vae' version 1" in err["message"] and "loss.png" in err["message"]
        assert b"TAMPERED" not in r.content and b"PNG" not in r.content
        path.write_bytes(original + b"x")  # longer
        assert error_of(client.get(f"{VAE}/loss.png"), 409)["details"]["file"] == "loss.png"
        path.unlink()
        assert error_of(client.get(f"{VAE}/loss.png"), 409)["field"] == "file"


def test_a_listed_file_replaced_by_a_link_out_of_its_folder_is_refused(
    registry_copy: Path, make_client: MakeClient, tmp_path: Path
) -> None:
    with make_client(registry_copy) as client:
        path = registry_copy / "digits-vae" / "1" / "loss.png"
        outside = tmp_path / "loss.png"
        outside.write_bytes(path.read_bytes())  # the very bytes: only the link is wrong
        path.unlink()
        path.symlink_to(outside)
        assert error_of(client.get(f"{VAE}/loss.png"), 409)["type"] == "ArtifactTampered"


def test_files_sit_behind_the_api_key(make_client: MakeClient) -> None:
    with make_client(api_key="s3cret") as client:
        assert error_of(client.get(f"{VAE}/loss.png"), 401)["field"] == "api_key"
        assert client.get(f"{VAE}/loss.png", headers={"x-api-key": "s3cret"}).status_code == 200


# ---- /models/{name}/versions/{v}/artifacts/{file}: the ONNX graphs and reference, for offline scorers
ARTIFACTS = "/models/digits-vae/versions/1/artifacts"


def test_an_onnx_graph_is_served_with_its_sha256_for_offline_scorers(
    client: TestClient, models_dir: Path
) -> None:
    manifest = json.loads((models_dir / "digits-vae" / "1" / "manifest.json").read_text())
    graphs = [f for f in manifest["files"] if f["format"] == "onnx"]
    assert graphs
    for entry in graphs:
        r = client.get(f"{ARTIFACTS}/{entry['path']}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        assert hashlib.sha256(r.content).hexdigest() == entry["sha256"] == r.headers["etag"].strip('"')


def test_display_files_are_not_artifacts_nor_artifacts_display_files(client: TestClient) -> None:
    err = error_of(client.get(f"{ARTIFACTS}/loss.png"), 404)
    assert "no ONNX graph or reference 'loss.png'" in err["message"] and err["details"]["available"]
    assert error_of(client.get(f"{VAE}/encoder.onnx"), 404)["field"] == "file"


def test_a_tampered_graph_is_409_and_never_sent(registry_copy: Path, make_client: MakeClient) -> None:
    with make_client(registry_copy) as client:
        manifest = json.loads((registry_copy / "digits-vae" / "1" / "manifest.json").read_text())
        entry = next(f for f in manifest["files"] if f["format"] == "onnx")
        path = registry_copy / "digits-vae" / "1" / entry["path"]
        path.write_bytes(path.read_bytes()[:-8] + b"TAMPERED")
        r = client.get(f"{ARTIFACTS}/{entry['path']}")
        assert error_of(r, 409)["type"] == "ArtifactTampered" and b"TAMPERED" not in r.content


def test_artifacts_sit_behind_the_api_key(make_client: MakeClient) -> None:
    with make_client(api_key="s3cret") as client:
        assert error_of(client.get(f"{ARTIFACTS}/encoder.onnx"), 401)["type"] == "Unauthorized"


def test_a_listed_file_replaced_by_a_fifo_is_refused_at_once(
    registry_copy: Path, make_client: MakeClient
) -> None:
    """Break 3: opening a FIFO blocked a worker thread until a writer came; 50 of them took the
    thread pool, and liveness with it."""
    import os
    import threading

    with make_client(registry_copy) as client:
        path = registry_copy / "digits-vae" / "1" / "loss.png"
        path.unlink()
        os.mkfifo(path)
        answers: list[int] = []
        getter = threading.Thread(target=lambda: answers.append(client.get(f"{VAE}/loss.png").status_code))
        getter.start()
        getter.join(10)
        blocked = getter.is_alive()
        if blocked:  # blocked in open(): a writer that closes at once frees it
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            getter.join(10)
        assert not blocked, "a FIFO in place of a listed file blocked its reader"
        assert answers == [409]
