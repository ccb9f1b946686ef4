"""The registry pages' HTML: Jinja2 templates, and a version's page (shared by its route and Try-it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.drift import Drift
from service.errors import LatentServeError
from service.registry import Registry
from service.ui.charts import score_histogram_svg
from service.ui.pages import render_card, version_view

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def version_page(registry: Registry, drift: Drift, name: str, version: int, **extra: Any) -> HTMLResponse:
    """One version's page; `extra` are Try-it's `results`, `row` and `error` (its status is the page's)."""
    view = version_view(registry, drift, name, version)
    card = render_card(registry, view)
    chart = score_histogram_svg(view.drift) if view.drift is not None else None
    error: LatentServeError | None = extra.get("error")
    html = page(
        "version.html",
        status_code=error.status_code if error is not None else 200,
        v=view,
        card=card,
        chart=chart,
        **extra,
    )
    html.headers.update(getattr(error, "headers", None) or {})  # a 503's Retry-After
    return html
