"""The one SparkSession of a test run (local[2]), for the tests that ask for `spark`.

Spark needs Java 17+ (Debian: openjdk-17-jre-headless; `scripts/install-java.sh` installs it) and
pyspark (the dev extra). Where either is missing the Spark tests skip with one loud line."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local[2] SparkSession whose Python workers run this interpreter, with this checkout first on
    their path; a small driver, no UI, few shuffle partitions."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip(
            "!!! SPARK TESTS SKIPPED: no java (JDK 17+) on this machine; scripts/install-java.sh installs "
            "Debian's openjdk-17-jre-headless !!!"
        )
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.skip("!!! SPARK TESTS SKIPPED: pyspark is not installed (it is in the dev extra) !!!")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    paths = [str(ROOT), str(ROOT / "client"), str(ROOT / "core"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("latentserve-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.local.dir", str(tmp_path_factory.mktemp("spark-local")))
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
