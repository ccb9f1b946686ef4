"""What the registry page and a version page show, gathered from the registry and the drift counts.

The model card (README.md) is fetched through `service.artifacts` (sha256-verified) and rendered
by markdown-it in CommonMark mode with raw HTML off, so a card's `<script>` is shown as text; its
pictures that the manifest lists point at the UI's file route. An evaluation report
(`<version>/evaluations/*.json` and its ROC curve, written by `python -m training evaluate`) is
not listed in the manifest: its figures are shown as unverified.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt
from markupsafe import Markup

from latentserve_core.manifest import FileEntry, Manifest
from service.artifacts import EVALUATIONS_DIR, read_artifact, read_evaluation, served_files
from service.drift import Drift, DriftSnapshot
from service.errors import ArtifactTampered, ModelNotFound
from service.registry import Registry, VersionRecord

EVALUATION_FIGURES = ("auroc", "average_precision", "precision", "recall", "f1", "fpr_at_threshold")


def version_url(name: str, version: int) -> str:
    return f"/ui/models/{quote(name)}/versions/{version}"


def file_url(name: str, version: int, file: str) -> str:
    return f"{version_url(name, version)}/files/{quote(file)}"


@dataclass(frozen=True)
class Evaluation:
    """The newest evaluation report's figures (unverified: the manifest does not list it)."""

    file: str
    dataset: str
    figures: dict[str, float]
    expected_fpr: float | None
    picture: str | None  # the ROC curve PNG beside it


@dataclass(frozen=True)
class VersionView:
    """One version as both pages show it."""

    name: str
    version: int
    status: str
    error: str | None
    manifest: Manifest | None
    latest: bool
    pictures: list[FileEntry] = field(default_factory=list)
    drift: DriftSnapshot | None = None
    evaluation: Evaluation | None = None

    @property
    def url(self) -> str:
        return version_url(self.name, self.version)

    def file_url(self, file: str) -> str:
        return file_url(self.name, self.version, file)

    def evaluation_url(self, file: str) -> str:
        return f"{self.url}/evaluations/{quote(file)}"

    @property
    def key_metrics(self) -> dict[str, float]:
        if self.manifest is None:
            return {}
        m = self.manifest.metrics
        out = {"train error": m.train_error, "validation error": m.validation_error}
        if m.explained_variance_ratio_total is not None:
            out["explained variance"] = m.explained_variance_ratio_total
        return out


def _view(registry: Registry, record: VersionRecord, drift: Drift) -> VersionView:
    runtime = record.runtime
    return VersionView(
        record.name,
        record.version,
        record.status,
        record.error,
        record.manifest,
        latest=record.version == registry.latest(record.name),
        pictures=[f for f in served_files(record) if f.role == "picture"],
        drift=drift.of(runtime.manifest).snapshot() if runtime is not None else None,
        evaluation=_evaluation(registry, record),
    )


def registry_views(registry: Registry, drift: Drift) -> dict[str, list[VersionView]]:
    """Every model's versions, newest first."""
    return {
        name: [_view(registry, versions[v], drift) for v in sorted(versions, reverse=True)]
        for name, versions in sorted(registry.records().items())
    }


def version_view(registry: Registry, drift: Drift, name: str, version: int) -> VersionView:
    return _view(registry, registry.record(name, version), drift)


@dataclass(frozen=True)
class Card:
    """The model card as HTML (None: no card, or `error` says why it is not shown)."""

    html: Markup | None = None
    error: str | None = None
    pictures: frozenset[str] = frozenset()  # the listed pictures it shows


_MARKDOWN = MarkdownIt("commonmark", {"html": False})  # raw HTML off: a card cannot run a script


def render_card(registry: Registry, view: VersionView) -> Card:
    """The version's card, its listed pictures pointed at the UI's file route."""
    record = registry.record(view.name, view.version)
    card = next((f for f in served_files(record) if f.role == "card"), None)
    if card is None:
        return Card()
    try:
        text = read_artifact(registry, view.name, view.version, card.path).data.decode("utf-8", "replace")
    except ArtifactTampered as exc:
        return Card(error=exc.message)
    md = _MARKDOWN
    tokens = md.parse(text)
    listed = {f.path for f in view.pictures}
    shown = set()
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src")
            if child.type == "image" and isinstance(src, str) and src in listed:
                child.attrSet("src", view.file_url(src))
                shown.add(src)
    return Card(Markup(md.renderer.render(tokens, md.options, {})), None, frozenset(shown))


def _evaluation(registry: Registry, record: VersionRecord) -> Evaluation | None:
    """The newest `evaluations/*.json` (by modification time), if it reads as a report, and its ROC PNG."""
    try:
        reports = sorted((record.folder / EVALUATIONS_DIR).glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        if not reports:
            return None
        newest = reports[-1]
        data: Any = json.loads(read_evaluation(registry, record.name, record.version, newest.name).data)
    except (OSError, ValueError, RecursionError, ModelNotFound):  # deep nesting: RecursionError
        return None
    if not isinstance(data, dict):
        return None
    figures = {k: f for k in EVALUATION_FIGURES if (f := _finite(data.get(k))) is not None}
    expected = _finite(data.get("expected_fpr"))
    roc = newest.with_suffix(".png")
    return Evaluation(
        file=newest.name,
        dataset=str(data.get("dataset", "")),
        figures=figures,
        expected_fpr=expected,
        picture=roc.name if roc.is_file() else None,
    )


def _finite(value: Any) -> float | None:
    """A report's number as a finite float; None for anything else (a 400-digit integer too)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
