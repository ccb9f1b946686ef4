"""The sealed registry: links out of MODELS_DIR, artifacts that change under a running server, and
messages that never name a server path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from latentserve_core.manifest import InputSpec, Manifest, sha256_of
from service.registry import Registry, public_message
from tests.service.api.routes.test_admin import publish_copy
from tests.service.conftest import error_of


def _registry(models_dir: Path, **kw: bool) -> Registry:
    registry = Registry(models_dir, **kw)
    registry.reload()
    return registry


@pytest.mark.parametrize("level", ["model", "version", "file"])
def test_links_out_of_the_registry_are_refused_unless_allowed(
    registry_copy: Path, tmp_path: Path, level: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    if level == "model":
        shutil.move(registry_copy / "digits-pca", outside / "digits-pca")
        (registry_copy / "digits-pca").symlink_to(outside / "digits-pca")
    elif level == "version":
        shutil.move(registry_copy / "digits-pca" / "1", outside / "1")
        (registry_copy / "digits-pca" / "1").symlink_to(outside / "1")
    else:
        onnx = registry_copy / "digits-pca" / "1" / "encoder.onnx"
        shutil.move(onnx, outside / "encoder.onnx")
        onnx.symlink_to(outside / "encoder.onnx")
    record = _registry(registry_copy).records()["digits-pca"][1]
    assert record.status == "failed" and record.error is not None
    assert "leads out of the registry" in record.error and "LATENTSERVE_ALLOW_SYMLINKS" in record.error
    assert str(tmp_path) not in record.error
    assert _registry(registry_copy, allow_symlinks=True).records()["digits-pca"][1].status == "ready"


def test_a_link_inside_the_registry_is_served(registry_copy: Path) -> None:
    publish_copy(registry_copy, "digits-pca", 2)
    onnx = registry_copy / "digits-pca" / "2" / "encoder.onnx"
    onnx.unlink()
    onnx.symlink_to(registry_copy / "digits-pca" / "1" / "encoder.onnx")
    assert _registry(registry_copy).records()["digits-pca"][2].status == "ready"


def test_a_truncated_live_artifact_fails_its_version_and_the_last_good_one_serves(
    make_client, registry_copy: Path, digits
) -> None:
    publish_copy(registry_copy, "digits-pca", 2)
    body = {"model": "digits-pca", "inputs": digits[:1].tolist()}
    with make_client(registry_copy) as c:
        assert c.post("/encode", json=body).json()["version"] == 2
        onnx = registry_copy / "digits-pca" / "2" / "encoder.onnx"
        original = onnx.read_bytes()
        onnx.write_bytes(original[: len(original) // 2])
        assert c.post("/admin/reload").json()["failed"]["digits-pca"] == [2]
        versions = {v["version"]: v for v in c.get("/models/digits-pca").json()["versions"]}
        assert versions[2]["status"] == "failed" and "sha256" in versions[2]["error"]
        assert c.post("/encode", json=body).json()["version"] == 1
        err = error_of(c.post("/encode", json={**body, "version": 2}), 503)
        assert "'digits-pca' version 2" in err["message"] and "encoder.onnx" in err["message"]
        assert str(registry_copy) not in err["message"]
        # put back, the version serves again on the next reload
        onnx.write_bytes(original)
        assert c.post("/admin/reload").json()["added"] == {"digits-pca": [2]}
        assert c.post("/encode", json=body).json()["version"] == 2


def test_a_touched_artifact_is_rehashed_and_stays_ready(registry_copy: Path) -> None:
    registry = _registry(registry_copy)
    onnx = registry_copy / "breast-cancer-pca" / "1" / "decoder.onnx"
    st = onnx.stat()
    os.utime(onnx, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert registry.reload() == {"breast-cancer-pca": [1]}  # re-hashed
    assert registry.records()["breast-cancer-pca"][1].status == "ready"
    assert registry.reload() == {}  # unchanged since: not hashed again


def test_load_errors_name_the_model_and_version_never_a_server_path(registry_copy: Path) -> None:
    folder = registry_copy / "digits-pca" / "1"
    onnx = folder / "encoder.onnx"
    onnx.write_bytes(b"not a graph")  # with its checksum updated: onnxruntime's own error names the path
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "encoder.onnx":
            entry["sha256"], entry["bytes"] = sha256_of(onnx), onnx.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    error = _registry(registry_copy).records()["digits-pca"][1].error
    assert error is not None and "model 'digits-pca' version 1" in error and "does not load" in error
    assert str(registry_copy) not in error and str(registry_copy.resolve()) not in error
    assert "/tmp" not in error


def test_public_message_keeps_registry_relative_paths() -> None:
    roots = ["/srv/models"]
    text = "Load model from /srv/models/digits-pca/7/encoder.onnx failed; see /etc/passwd or /srv/models"
    assert public_message(text, roots) == (
        "Load model from digits-pca/7/encoder.onnx failed; see <path> or MODELS_DIR"
    )


def test_feature_names_are_optional_and_one_per_value(models_dir: Path) -> None:
    old = Manifest.read(models_dir / "digits-pca" / "1")
    assert old.input.feature_names is None  # an image model's manifest has none, and loads
    assert InputSpec(shape=[2], feature_names=["a", "b"]).feature_names == ["a", "b"]
    with pytest.raises(ValidationError, match="feature_names has 1 names for 2 values"):
        InputSpec(shape=[2], feature_names=["a"])


def test_a_version_folder_named_with_a_non_ascii_digit_is_ignored(make_client, registry_copy: Path) -> None:
    """Break 10: a folder named '²' (str.isdigit() accepts it, int() does not) made every reload
    a 500 and a fresh server ready while serving nothing."""
    shutil.copytree(registry_copy / "digits-pca" / "1", registry_copy / "digits-pca" / "²")
    with make_client(registry_copy) as c:
        assert c.get("/health/ready").status_code == 200
        assert c.post("/admin/reload").status_code == 200
        versions = [v["version"] for v in c.get("/models/digits-pca").json()["versions"]]
        assert versions == [1]
        assert c.post("/encode", json={"model": "digits-pca", "inputs": [[0.0] * 64]}).status_code == 200


def test_a_failed_manifest_is_logged_once_per_change_not_on_every_poll(
    registry_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Break 12: a version whose manifest does not read was re-read and logged on every poll."""
    publish_copy(registry_copy, "digits-pca", 2)
    manifest = registry_copy / "digits-pca" / "2" / "manifest.json"
    manifest.write_text("{not json")
    registry = Registry(registry_copy)
    for _ in range(5):
        registry.reload()

    def logged() -> int:
        return sum("could not load digits-pca version 2" in r.getMessage() for r in caplog.records)

    assert logged() == 1
    assert registry.record("digits-pca", 2).error  # still shown as failed
    manifest.write_text("{still not json")
    os.utime(manifest, ns=(1, 1))  # a change of the folder: read (and logged) once more
    registry.reload()
    registry.reload()
    assert logged() == 2
