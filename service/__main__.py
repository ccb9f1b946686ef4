"""`python -m service --models-dir DIR [--host H] [--port P] [--workers N]`: run the API with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOG_LEVELS

from service.assembly import load_settings
from service.fastpath import compat
from service.server import DrainingServer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service", description="Serve the latentserve registry over HTTP."
    )
    p.add_argument("--models-dir", type=Path, default=None, help="registry folder (LATENTSERVE_MODELS_DIR)")
    p.add_argument("--host", default=None, help="address (LATENTSERVE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (LATENTSERVE_PORT, default 8000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (LATENTSERVE_WORKERS)")
    p.add_argument("--log-level", default=None, help="uvicorn log level (LATENTSERVE_LOG_LEVEL)")
    p.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="turn the per-request access log off",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = load_settings(overrides)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # uvicorn's names for the levels: "trace" is its own, below DEBUG, unknown to `logging` by name
    logging.basicConfig(level=LOG_LEVELS[settings.log_level], format="%(levelname)s %(name)s: %(message)s")
    try:
        http = compat.http_protocol(settings.fast_path)
    except compat.UvicornInternalsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        "timeout_keep_alive": settings.keepalive_timeout_s,
        # every connection gets service.fastpath.protocol's timeouts and header caps; with FAST_PATH the
        # inference POSTs also skip the ASGI cycle; everything else is uvicorn's httptools
        "http": http,
    }
    if settings.workers == 1:
        from service.app import create_app

        app = create_app(settings)
        config = uvicorn.Config(app, **common)  # type: ignore[arg-type]
        server = DrainingServer(
            config, settings.shutdown_drain_s, lambda: setattr(app.state, "draining", True)
        )
        server.run()
    else:
        # worker processes build their own settings from the environment through the factory
        os.environ.update(settings.as_env())
        uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
