"""The service's settings: one class, read from `LATENTSERVE_*` environment variables or arguments.

Built by `python -m service` or by `create_app()` when uvicorn calls the factory; never at import time.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1 << 20


class Settings(BaseSettings):
    """Every knob of the service; `LATENTSERVE_<FIELD>` sets each one."""

    model_config = SettingsConfigDict(env_prefix="LATENTSERVE_", extra="ignore", frozen=True)

    models_dir: Path = Field(default=Path("models"), description="the registry folder: <name>/<version>/")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on (0: any free port)")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    api_key: SecretStr | None = Field(
        default=None, description="when set, every route but health needs X-API-Key or Authorization: Bearer"
    )
    docs_public: bool = Field(
        default=False, description="with an API key set, serve /docs, /redoc and /openapi.json without it"
    )
    allow_pickle: bool = Field(default=False, description="load joblib (pickle) artifacts of any model")
    allow_symlinks: bool = Field(
        default=False, description="follow symlinks in the registry that lead out of MODELS_DIR"
    )
    trusted_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="models whose joblib artifacts may load (comma-separated or JSON)"
    )
    max_body_bytes: int = Field(default=64 * MiB, ge=1, description="largest request body; larger: 413")
    max_rows: int = Field(default=100_000, ge=1, description="most rows in one request; more: 413")
    # a JSON body is parsed, and a JSON answer encoded, in one C call that holds the GIL (orjson,
    # simdjson: 3-9 ms a MiB here), stalling the event loop and /health/live for
    # as long; these caps keep each such call to a few tens of ms. Large batches go as .npy.
    max_json_body_bytes: int = Field(
        default=4 * MiB,
        ge=1,
        description="largest JSON request body; larger: 413 suggesting Content-Type: application/x-npy",
    )
    max_json_response_bytes: int = Field(
        default=8 * MiB,
        ge=1,
        description="largest JSON answer, predicted before computing; larger: 413 suggesting "
        "Accept: application/x-npy",
    )
    max_connections: int = Field(
        default=0,
        ge=0,
        description="open connections per process (0: the RLIMIT_NOFILE soft limit less FD_RESERVE); at "
        "the cap a new connection closes the longest-idle one, or is answered 503 and closed when none "
        "is idle",
    )
    fd_reserve: int = Field(
        default=128, ge=0, description="descriptors kept from connections: probes, model files, logs"
    )
    drains_at_once: int = Field(
        default=2,
        ge=1,
        le=1024,
        description="refused request bodies read and dropped at once per process (so the client gets "
        "its answer, not a reset); the other refused connections are not read until their turn",
    )
    read_turn_bytes: int = Field(
        default=256 * 1024,
        ge=64 * 1024,
        description="request-body bytes read in one turn of the event loop (service.readturns); past "
        "it, connections reading bodies wait for the next turn, so health probes are not kept waiting",
    )
    # ---- large JSON bodies are parsed, and large JSON answers encoded, in worker processes
    # (service.jsonpool), off the GIL
    # the hop costs about what simdjson's parse does (here 16-43 ms for a 2.2 MiB body against 4.4 ms
    # in process): only bodies near MAX_JSON_BODY_BYTES, the longest GIL holds, take it
    json_offload_bytes: int = Field(
        default=3 * MiB,
        ge=0,
        description="JSON bodies of rows, and JSON answers predicted, larger: parsed / encoded off the GIL",
    )
    json_workers: int = Field(
        default=1, ge=0, le=64, description="processes that parse large JSON bodies (0: parse in the server)"
    )
    json_queue: int = Field(
        default=8, ge=0, description="large JSON bodies or answers waiting for a JSON worker; more: 503"
    )
    # ---- admission control and timeouts: what keeps memory bounded under floods and slow clients
    max_inflight_bytes: int = Field(
        default=256 * MiB,
        ge=1,
        description="request bodies being read or held, weighted by what parsing them costs (JSON x4, "
        "others x2); a request past it gets 503 + Retry-After before its body is read (a lone request "
        "is always admitted)",
    )
    max_concurrency: int = Field(
        default=2, ge=1, le=256, description="requests computed at once in worker threads"
    )
    max_queue: int = Field(
        default=32, ge=0, description="admitted requests waiting beyond MAX_CONCURRENCY; more: 503"
    )
    max_response_bytes: int = Field(
        default=128 * MiB,
        ge=1,
        description="largest answer, predicted from rows x output size before computing; larger: 413",
    )
    max_request_pixels: int = Field(
        default=64 * MiB, ge=1, description="decoded image pixels in one multipart request; more: 413"
    )
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="request line + headers; more: 431")
    max_headers: int = Field(default=100, ge=1, description="header fields in one request; more: 431")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="a new connection's request line and headers must arrive within it"
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="a request body must arrive within it once its headers are read"
    )
    keepalive_timeout_s: float = Field(
        default=5.0, gt=0, description="an idle keep-alive connection is closed after it"
    )
    write_timeout_s: float = Field(
        default=30.0, gt=0, description="a client that reads nothing of its answer for this long is dropped"
    )
    shutdown_drain_s: float = Field(
        default=2.0,
        ge=0,
        description="on SIGTERM, readiness answers 503 this long while requests are still served, "
        "so a load balancer drains the pod; then new connections are refused",
    )
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, description="then, the longest wait for received requests to be answered"
    )
    reload_interval_s: float = Field(default=10.0, ge=0, description="registry poll period; 0 disables")
    threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads per session")
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="longest a model call may take; then 504"
    )
    inline_bytes: int = Field(
        default=16384, ge=0, description="bodies up to this size run on the event loop (no thread hop)"
    )
    inline_npy_bytes: int = Field(
        default=4 * MiB, ge=0, description=".npy bodies up to this size are validated on the event loop"
    )
    inline_compute_ms: float = Field(
        default=2.0,
        ge=0,
        description="such .npy requests also run the model on the event loop when this version's own "
        "timings predict the call takes at most this long; longer ones go to a worker thread",
    )
    batching: bool = Field(
        default=True, description="stack concurrent small requests to one model into one model call"
    )
    batch_max_rows: int = Field(default=256, ge=1, description="most rows in one stacked model call")
    tune_malloc: bool = Field(
        default=True, description="keep large request buffers in glibc's heap (see service.allocator)"
    )
    freeze_heap: bool = Field(
        default=True,
        description="move the objects of start-up out of the garbage collector's full passes once the "
        "registry is loaded, so a pass does not stall the event loop (see service.gcfreeze)",
    )
    fast_path: bool = Field(
        default=True, description="inference POSTs skip FastAPI's router and dependency solving"
    )
    access_log: bool = Field(default=True, description="uvicorn access log")
    log_level: str = Field(default="info", pattern=r"^(critical|error|warning|info|debug|trace)$")

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, v: object) -> object:
        # LATENTSERVE_API_KEY= (empty, as compose writes an unset variable) means no key, not ""
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        if isinstance(v, SecretStr) and not v.get_secret_value().strip():
            return None
        return v

    @field_validator("trusted_models", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return orjson.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return v

    def connection_cap(self) -> int:
        """MAX_CONNECTIONS, or the descriptors this process may open less FD_RESERVE."""
        if self.max_connections:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 1 << 20
        return max(1, soft - self.fd_reserve)

    def as_env(self) -> dict[str, str]:
        """These settings as `LATENTSERVE_*` variables (for worker processes that rebuild them)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, list):
                text = orjson.dumps(value).decode()
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"LATENTSERVE_{name.upper()}"] = text
        return env
