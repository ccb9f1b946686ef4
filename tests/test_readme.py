"""README.md stays a short user guide whose links lead somewhere; so do the guide's pages in docs/.

Its commands are run by the tests that read them (`tests/training/test_api.py`, the deploy tests).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.live import clean_env, fit_models, service

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 350
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # no code comments
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in _anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {path or page.name}")
    return broken


def test_the_readme_is_a_short_guide() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page: Path) -> None:
    assert _broken_links(page) == []


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading, here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-heading-here) ![pic](missing.png) [bad](there.md#nope) [web](https://x.org/y)\n"
        "```bash\n# [not a link](nowhere.md)\n```\n"
    )
    assert _broken_links(page) == ["missing.png: no such file", "there.md#nope: no heading #nope in there.md"]


def _blocks(text: str, heading: str) -> list[tuple[str, str]]:
    """The (language, code) blocks of the README section under `heading`."""
    section = text[text.index(f"\n{heading}\n") :]
    end = section.find("\n## ", 1)
    return re.findall(r"```(bash|python)\n(.*?)```", section if end < 0 else section[:end], re.S)


TASK_SECTIONS = [
    "## The two commands",
    "## Score your table",
    "## Score your images",
    "## Score your embeddings",
    "## Deploy",
]


def test_the_task_sections_run_against_a_live_service(tmp_path: Path) -> None:
    """Every bash and Python block of the task sections, run as a user would, from a scratch folder
    whose `models/` the service serves (`scripts/run.sh` and `docker compose` lines excepted: the
    deploy tests cover those). `.venv/bin/` is this interpreter's folder; the port is a free one."""
    pytest.importorskip("torch")  # the training package
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the README's HTTP examples use it")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    models = tmp_path / "models"
    fit_models(
        models,
        [
            [
                "--model",
                "pca",
                "--n-components",
                "0.9",
                "--dataset",
                "breast-cancer",
                "--name",
                "breast-cancer-pca",
            ],
            ["--model", "pca", "--n-components", "0.95", "--dataset", "digits", "--name", "digits-pca"],
        ],
    )
    bin_dir = Path(sys.executable).parent
    env = clean_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "client"), os.environ.get("PYTHONPATH", "")]),
    )
    ran = 0
    with service(models, tmp_path / "service.log") as url:
        for heading in TASK_SECTIONS:
            for language, code in _blocks(text, heading):
                if "scripts/" in code or "docker compose" in code or "kubectl" in code:
                    continue
                code = code.replace(".venv/bin/", f"{bin_dir}/").replace(
                    "localhost:8000", url.removeprefix("http://")
                )
                argv = (
                    ["bash", "-euo", "pipefail", "-c", code]
                    if language == "bash"
                    else [sys.executable, "-c", code]
                )
                done = subprocess.run(
                    argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
                )
                out = done.stdout + done.stderr
                assert done.returncode == 0, (
                    f"{heading} block failed ({done.returncode}):\n{code}\n{out[-3000:]}"
                )
                assert not re.search(r'"error":\s*\{', done.stdout), (
                    f"{heading} block answered an error:\n{code}\n{out[-3000:]}"
                )
                ran += 1
    assert ran >= 6, f"only {ran} README blocks ran"
    assert (tmp_path / "rows.scores.csv").exists() and (tmp_path / "vectors.scores.csv").exists()
