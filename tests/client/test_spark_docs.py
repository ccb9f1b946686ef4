"""docs/spark.md's scoring example runs as written (its fit command, then its Python block)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _blocks(page: str, section: str) -> list[tuple[str, str]]:
    text = (ROOT / page).read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S)


@pytest.mark.parametrize(
    ("page", "section"), [("docs/spark.md", "Score a DataFrame"), ("README.md", "At scale: Apache Spark")]
)
def test_the_scoring_example_runs_as_written(spark: Any, tmp_path: Path, page: str, section: str) -> None:
    """`spark` only for its skip (java, pyspark) and PYSPARK_PYTHON; the example starts its own."""
    bash, python = _blocks(page, section)[:2]
    assert bash[0] == "bash" and python[0] == "python"
    argv = shlex.split(bash[1].strip())
    assert argv[0].endswith("python")  # `python`, or the README's `.venv/bin/python`
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, check=True, capture_output=True)
    shutil.rmtree(tmp_path / "models" / ".staging", ignore_errors=True)
    (tmp_path / "example.py").write_text(python[1])
    out = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^\d+ of 569 rows are anomalies$", out.stdout, flags=re.M), out.stdout
    assert (tmp_path / "cancer-scored.parquet").is_dir()
