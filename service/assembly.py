"""The one place the service's shared objects are built: the settings, then from them the
registry, the admission (memory budget and compute slots), the metrics and the dataplane.

`python -m service`, `create_app` (and through it uvicorn's factory) and the tests go through
here, so each object exists once per app and is passed down, never built again on the side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.admission import Admission
from service.inference import Dataplane
from service.metrics import ServiceMetrics
from service.registry import Registry
from service.settings import Settings


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings: `overrides` (CLI flags, a test's) over the LATENTSERVE_* environment."""
    return Settings(**dict(overrides or {}))


def build_admission(settings: Settings) -> Admission:
    """The admission every transport of one app shares."""
    return Admission(settings)


@dataclass(frozen=True)
class Assembly:
    """The shared objects of one app."""

    settings: Settings
    registry: Registry
    admission: Admission
    metrics: ServiceMetrics
    dataplane: Dataplane  # the door


def assemble(settings: Settings) -> Assembly:
    """Build the registry (not yet loaded), the admission, the metrics and the dataplane."""
    registry = Registry(
        settings.models_dir,
        allow_pickle=settings.allow_pickle,
        trusted_models=frozenset(settings.trusted_models),
        threads=settings.threads,
        allow_symlinks=settings.allow_symlinks,
    )
    admission = build_admission(settings)
    metrics = ServiceMetrics(registry, admission)
    return Assembly(
        settings, registry, admission, metrics, Dataplane(registry, settings, metrics, admission)
    )
