"""A bounded schemathesis run over the OpenAPI spec: generated requests never get a 5xx."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def api_schema(models_dir: Path) -> Any:
    app = create_app(
        Settings(models_dir=models_dir, reload_interval_s=0, trusted_models=["digits-kernel-pca"])
    )
    app.state.registry.reload()  # the ASGI transport does not run the lifespan
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# CI replays the same examples (derandomize); LATENTSERVE_FUZZ_EXAMPLES=500 explores new ones
EXAMPLES = int(os.environ.get("LATENTSERVE_FUZZ_EXAMPLES", "25"))


def fuzz(
    schema: Any, keep: Callable[[Any], bool] = lambda op: True, base_url: str | None = None
) -> list[str]:
    """Run EXAMPLES generated requests per kept operation, failing on any 5xx; return the labels."""
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not keep(operation):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=EXAMPLES <= 25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base_url, checks=[not_a_server_error])

        run()
        checked.append(operation.label)
    return checked


def test_no_server_errors(api_schema: Any) -> None:
    checked = fuzz(api_schema)
    assert len(checked) >= 20, checked  # ours and the Open Inference Protocol's (/v2)


def test_no_server_errors_over_the_http_fast_path(models_dir: Path, tmp_path: Path) -> None:
    """The inference POSTs again, against `python -m service` over a socket: they take the HTTP
    fast path (service.fastpath.protocol), which the ASGI run above does not reach."""
    from tests.deploy.live import service

    with service(models_dir, tmp_path / "service.log") as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        inference = lambda op: op.method.upper() == "POST" and op.path.endswith(  # noqa: E731
            ("/encode", "/decode", "/reconstruct", "/anomaly-score", "/sample", "/infer")
        )
        checked = fuzz(schema, inference, base_url=url)
    # encode, decode, reconstruct, anomaly-score, sample, and /v2 infer with and without a version
    assert len(checked) == 7, checked
