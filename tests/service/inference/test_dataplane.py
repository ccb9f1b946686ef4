"""The door's two steps: `ticket` admits or refuses (counted) on the headers alone, `infer` answers;
and no module but the dataplane calls a model."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import numpy as np
from starlette.responses import Response

import service
from service.assembly import assemble, load_settings
from service.errors import PayloadTooLarge, Unauthorized
from service.inference import VERBS, Refused, Ticket
from service.metrics import UNKNOWN_MODEL
from service.protocols.v2 import V2_VERBS
from tests.service.conftest import from_npy, npy

NPY = {"content-type": "application/x-npy", "accept": "application/x-npy"}


def _counted(parts: object, endpoint: str, status: str) -> float:
    counter = parts.metrics.requests  # type: ignore[attr-defined]
    return float(counter.labels(endpoint, UNKNOWN_MODEL, status)._value.get())


def test_a_refusal_on_the_headers_is_answered_and_counted_before_any_body(models_dir: Path) -> None:
    parts = assemble(load_settings({"models_dir": models_dir, "reload_interval_s": 0, "api_key": "k"}))
    refused = parts.dataplane.ticket(VERBS["encode"], NPY, {"model": "digits-pca"})
    assert isinstance(refused, Refused) and isinstance(refused.error, Unauthorized) and not refused.shed
    assert refused.response.status_code == 401 and b'"type":"Unauthorized"' in refused.response.body
    assert _counted(parts, "encode", "401") == 1
    too_big = {**NPY, "x-api-key": "k", "content-length": str(parts.settings.max_body_bytes + 1)}
    shed = parts.dataplane.ticket(VERBS["encode"], too_big, {})
    assert isinstance(shed, Refused) and isinstance(shed.error, PayloadTooLarge) and shed.shed
    v2 = parts.dataplane.ticket(V2_VERBS["model"], {"content-type": "text/plain", "x-api-key": "k"}, {})
    assert (
        isinstance(v2, Refused)
        and v2.response.status_code == 415
        and v2.response.body.startswith(b'{"error":"')
    )


def test_a_ticket_then_infer_answers_and_releases_its_memory(models_dir: Path, digits: np.ndarray) -> None:
    parts = assemble(load_settings({"models_dir": models_dir, "reload_interval_s": 0}))
    parts.registry.reload()
    body = npy(digits[:3])
    ticket = parts.dataplane.ticket(
        VERBS["anomaly-score"], {**NPY, "content-length": str(len(body))}, {"model": "digits-pca"}
    )
    assert isinstance(ticket, Ticket) and ticket.body_limit == parts.settings.max_body_bytes
    assert parts.admission.requests == 1 and parts.admission.bytes > 0

    async def main() -> Response:
        replies: list[Response] = []
        parts.dataplane.infer(ticket, body, replies.append)
        while not replies:
            await asyncio.sleep(0.001)
        return replies[0]

    response = asyncio.run(main())
    ticket.release()
    assert response.status_code == 200 and from_npy(response.body).shape == (3,)
    assert parts.admission.requests == 0 and parts.admission.bytes == 0


def test_only_the_dataplane_calls_a_model() -> None:
    """`ModelRuntime.compute` is called in `service/inference/dataplane.py` alone (the batcher is
    handed its `compute`)."""
    root = Path(service.__file__).parent
    callers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "compute"
            ):
                receiver = node.func.value
                if not (isinstance(receiver, ast.Name) and receiver.id == "self"):
                    callers.add(str(path.relative_to(root)))
    assert callers == {"inference/dataplane.py"}
