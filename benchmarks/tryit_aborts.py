"""Event-loop time one aborted Try-it upload costs the app, in process (no sockets, no uvicorn).

    .venv/bin/python benchmarks/tryit_aborts.py [--models DIR] [--n 1000]

Drives the ASGI app directly with Try-it POSTs (`/ui/models/digits-pca/versions/1/try`) whose
client leaves after the first 4 KiB of a 1 MiB multipart body, and prints the microseconds each
costs, best of 5 runs of `--n`. `benchmarks/soak.py --only tryit-aborts` measures the same attack
end to end (`python -m service`, its liveness); this figure is the app's share, steadier on a busy
machine. Trains the soak's two tiny models into a temporary registry unless `--models` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from service.app import create_app
from service.settings import Settings

PATH = "/ui/models/digits-pca/versions/1/try"
PART = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + b"\0" * 4096


def _scope() -> dict[str, Any]:
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"multipart/form-data; boundary=x"),
        (b"content-length", str(1 << 20).encode()),
    ]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "root_path": "", "query_string": b"",
        "client": ("127.0.0.1", 5000), "server": ("bench", 80), "headers": headers,
    }  # fmt: skip


async def _measure(models: Path, n: int) -> list[float]:
    app = create_app(Settings(models_dir=models, reload_interval_s=0))

    async def abort() -> None:
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": PART, "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(_message: MutableMapping[str, Any]) -> None:
            return None

        await app(_scope(), receive, send)

    async with app.router.lifespan_context(app):
        while not app.state.registry.loaded:
            await asyncio.sleep(0.05)
        for _ in range(200):  # warm up
            await abort()
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                await abort()
            runs.append((time.perf_counter() - start) / n * 1e6)
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models", type=Path, default=None, help="a registry holding digits-pca (default: train one)"
    )
    p.add_argument("--n", type=int, default=1000, help="aborted uploads per run")
    args = p.parse_args()
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models
        if models is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import soak

            models = Path(tmp) / "models"
            soak.train(models)
        runs = asyncio.run(_measure(models, args.n))
    every = [round(r) for r in runs]
    print(f"aborted Try-it upload: {min(runs):.0f} us of event loop each (best of 5 x {args.n}; all {every})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
