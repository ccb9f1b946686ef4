"""The registry UI in a real browser: Debian's chromium, driven by selenium through chromium-driver.

The service runs as `python -m service` on a free port over a copy of the session registry (with
a real evaluation report), so the scores posted go through its HTTP fast path. The test loads /ui,
opens a version page, checks that every picture loaded, uploads a digit image and reads the score
the page shows, which must be the one /anomaly-score gives for the same image; a broken upload
shows the API's error message. Screenshots go into the test's temporary folder, and into
LATENTSERVE_SCREENSHOTS_DIR when set (scripts/test.sh sets it to docs/screenshots, the README's
pictures).

Skipped, loudly, only where chromium or chromium-driver is not installed (CI installs them:
scripts/install-chromium.sh).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.deploy.live import service
from tests.service.conftest import ROOT, png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NO_BROWSER = (
    "!!! BROWSER TESTS SKIPPED: chromium and/or chromium-driver are not installed "
    f"(chromium: {CHROMIUM}, chromedriver: {DRIVER}); install them with scripts/install-chromium.sh "
    "(apt-get install -y chromium chromium-driver) !!!"
)
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason=NO_BROWSER)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(DRIVER or ""), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """A screenshot of the whole page into the test's tmp folder (and LATENTSERVE_SCREENSHOTS_DIR)."""
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path = tmp_path / name
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"
    out = os.environ.get("LATENTSERVE_SCREENSHOTS_DIR")
    if out:
        target = Path(out) if Path(out).is_absolute() else ROOT / out
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return path


def _images_loaded(driver: Any) -> list[tuple[str, int]]:
    """(src, naturalWidth) of every <img> on the page, once each has finished loading."""
    deadline = time.monotonic() + 10
    while True:
        state = driver.execute_script(
            "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth])"
        )
        if all(complete for _, complete, _ in state) or time.monotonic() > deadline:
            return [(src, int(width)) for src, _, width in state]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def evaluated_registry(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session registry where digits-pca has a real evaluation report."""
    from training.evaluate import evaluate

    root = tmp_path_factory.mktemp("ui-registry") / "models"
    shutil.copytree(models_dir, root)
    evaluate(root, "digits-pca:1", "digits", normal_classes=[0, 1, 2, 3, 4])
    return root


def test_the_registry_and_a_version_page_in_chromium(
    browser: Any, evaluated_registry: Path, digits: np.ndarray, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from sklearn.datasets import load_digits

    every_digit = (load_digits().images[:300] / 16.0).astype(np.float32)
    image = png(digits[3])
    upload = tmp_path / "three.png"
    upload.write_bytes(image)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a picture")
    with service(evaluated_registry, tmp_path / "service.log", LATENTSERVE_RELOAD_INTERVAL_S="0") as url:
        # live scores for the histogram: digits the model saw, and the same digits inverted
        for rows in (every_digit, 1.0 - every_digit[:60]):
            r = httpx.post(f"{url}/anomaly-score", json={"model": "digits-vae", "inputs": rows.tolist()})
            assert r.status_code == 200, r.text

        browser.get(f"{url}/ui")
        assert "latentserve" in browser.title
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.version")
        assert {(r.get_attribute("data-model"), r.get_attribute("data-version")) for r in rows} >= {
            ("digits-pca", "1"),
            ("digits-vae", "1"),
            ("breast-cancer-pca", "1"),
        }
        assert "auroc" in browser.find_element(By.CSS_SELECTOR, 'tr[data-model="digits-pca"]').text
        assert all(width > 0 for _, width in _images_loaded(browser))
        _screenshot(browser, tmp_path, "registry.png")

        browser.find_element(By.CSS_SELECTOR, 'tr[data-model="digits-vae"] a[href$="/versions/1"]').click()
        assert browser.current_url.endswith("/ui/models/digits-vae/versions/1")
        pictures = _images_loaded(browser)
        assert len(pictures) >= 3, pictures  # loss, reconstructions, scores, codes: in the card
        assert all(width > 0 for _, width in pictures), pictures
        assert browser.find_elements(By.CSS_SELECTOR, "svg.hist polyline.live")
        posted = len(every_digit) + 60  # through the HTTP fast path: drift counts them all
        assert f"{posted} live scores since start-up" in browser.find_element(By.TAG_NAME, "body").text

        browser.find_element(By.CSS_SELECTOR, 'input[name="file"]').send_keys(str(upload))
        browser.find_element(By.CSS_SELECTOR, '#try button[type="submit"]').click()
        shown = browser.find_element(By.ID, "try-score").text
        api = httpx.post(
            f"{url}/anomaly-score?model=digits-vae&version=1", files={"files": ("three.png", image)}
        ).json()
        assert float(shown) == api["scores"][0]
        assert browser.find_element(By.ID, "try-verdict").text == (
            "anomaly" if api["is_anomaly"][0] else "normal"
        )
        side = _images_loaded(browser)
        assert sum(src.startswith("data:image/png") and width > 0 for src, width in side) == 3
        _screenshot(browser, tmp_path, "version.png")

        browser.find_element(By.CSS_SELECTOR, 'input[name="file"]').send_keys(str(junk))
        browser.find_element(By.CSS_SELECTOR, '#try button[type="submit"]').click()
        shown_error = browser.find_element(By.ID, "try-error").text
        api_error = httpx.post(
            f"{url}/anomaly-score?model=digits-vae", files={"files": ("junk.png", junk.read_bytes())}
        ).json()["error"]["message"]

    def no_address(text: str) -> str:  # PIL's message names the BytesIO object's address
        return re.sub(r"0x[0-9a-f]+", "0x", text)

    assert "not a readable image" in shown_error
    assert no_address(shown_error) == no_address(api_error)
