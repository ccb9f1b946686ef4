"""Prometheus text exposition."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    """Return requests, latency, rows and errors per endpoint and model, and load failures."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
