"""API key, /admin/reload, and hot reload while requests run."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latentserve_core.manifest import Manifest
from tests.service.conftest import error_of


def publish_copy(models_dir: Path, name: str, version: int) -> None:
    """Publish version 1 of `name` again as `version`, the way the exporter does (staging + rename)."""
    staging = models_dir / ".staging" / f"{name}-{version}"
    shutil.copytree(models_dir / name / "1", staging)
    m = Manifest.read(staging).model_copy(update={"version": version})
    (staging / "manifest.json").write_text(m.to_json())
    staging.rename(models_dir / name / str(version))


@pytest.mark.parametrize("path", ["/models", "/metrics", "/admin/reload", "/encode"])
def test_routes_need_the_key(make_client, path):
    with make_client(api_key="s3cret") as c:
        method = c.get if path in ("/models", "/metrics") else c.post
        err = error_of(method(path), 401)
        assert "missing API key" in err["message"]
        err = error_of(method(path, headers={"x-api-key": "wrong"}), 401)
        assert err["message"] == "wrong API key"
        assert method(path, headers={"authorization": "Bearer nope"}).status_code == 401


def test_the_key_opens_the_routes(make_client, digits):
    body = {"model": "digits-pca", "inputs": digits[:1].tolist()}
    with make_client(api_key="s3cret") as c:
        assert c.post("/encode", json=body, headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.post("/encode", json=body, headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/models", headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.post("/admin/reload", headers={"x-api-key": "s3cret"}).status_code == 200


def test_admin_reload_picks_up_a_new_version(make_client, registry_copy: Path, digits):
    with make_client(registry_copy) as c:
        publish_copy(registry_copy, "digits-pca", 2)
        r = c.post("/admin/reload")
        assert r.status_code == 200
        body = r.json()
        assert body["added"] == {"digits-pca": [2]} and body["models"]["digits-pca"] == [1, 2]
        assert body["failed"]["digits-kernel-pca"] == [1]
        served = c.post("/encode", json={"model": "digits-pca", "inputs": digits[:1].tolist()}).json()
        assert served["version"] == 2
        pinned = c.post("/encode", json={"model": "digits-pca", "version": 1, "inputs": digits[:1].tolist()})
        assert pinned.json()["version"] == 1


def test_poller_picks_up_a_new_version(make_client, registry_copy: Path, digits):
    with make_client(registry_copy, reload_interval_s=0.05) as c:
        publish_copy(registry_copy, "breast-cancer-pca", 2)
        deadline = time.monotonic() + 10
        while c.get("/models/breast-cancer-pca").json()["latest"] != 2:
            assert time.monotonic() < deadline, "the poller never loaded version 2"
            time.sleep(0.05)


def test_hot_reload_under_load(make_client, registry_copy: Path, digits):
    """Versions appear while threads send requests: no request fails, each names its version."""
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()
    with make_client(registry_copy, reload_interval_s=0.01) as c:

        def hammer() -> None:
            while not stop.is_set():
                for body, headers in (
                    ({"model": "digits-pca", "inputs": np.tile(digits, (30, 1, 1)).tolist()}, {}),
                    ({"model": "digits-pca", "inputs": digits[:1].tolist()}, {}),
                ):
                    r = c.post("/anomaly-score", json=body, headers=headers)
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        seen.append(r.json()["version"])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for version in (2, 3, 4):
            time.sleep(0.2)
            publish_copy(registry_copy, "digits-pca", version)
            c.post("/admin/reload")
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert set(seen) <= {1, 2, 3, 4} and seen[-1] == 4 and 1 in seen
