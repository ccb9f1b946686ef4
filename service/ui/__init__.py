"""The registry UI: server-rendered pages over the registry, the artifacts and the drift counts."""

from service.ui.routes import router

__all__ = ["router"]
