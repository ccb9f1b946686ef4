"""Event-loop time one aborted Try-it upload costs the app, in process (no sockets, no uvicorn).

    .venv/bin/python benchmarks/tryit_aborts.py [--models DIR] [--n 1000]

Drives the ASGI app directly with Try-it POSTs (`/ui/models/digits-pca/versions/1/try`) whose
client leaves after the first 4 KiB of a 1 MiB multipart body, and prints the microseconds each
costs, best of 5 runs of `--n`. `benchmarks/soak.py --only tryit-aborts` measures the same attack
end to end (`python -m service`, its liveness); this figure is the app's share, steadier on a busy
machine. Trains the soak's two tiny models into a temporary registry unless `--models` names one.

`--protocol` drives the connection instead: each upload's bytes fed to a fresh protocol over an
in-memory transport, then a reset (`connection_lost`), its ASGI task left to finish (`LatentServeProtocol`
starts none for an upload aborted mid-body: `service.http.form`); it prints the
CPU microseconds each costs through `service.fastpath.protocol.LatentServeProtocol` and, for
comparison, through uvicorn's own `HttpToolsProtocol` with the same app (no sockets, no uvloop).
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

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.app import create_app
from service.fastpath.protocol import LatentServeProtocol
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


class _Transport(asyncio.Transport):
    """A socket that is already gone: whatever is written is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


RAW = (
    f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nContent-Length: {1 << 20}\r\n"
    "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
).encode() + PART


async def _measure_protocols(models: Path, n: int) -> dict[str, list[float]]:
    app = create_app(Settings(models_dir=models, reload_interval_s=0))
    runs: dict[str, list[float]] = {"LatentServeProtocol": [], "uvicorn HttpToolsProtocol": []}
    async with app.router.lifespan_context(app):
        while not app.state.registry.loaded:
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        for _ in range(5):
            for name, cls in (
                ("LatentServeProtocol", LatentServeProtocol),
                ("uvicorn HttpToolsProtocol", HttpToolsProtocol),
            ):
                config = Config(app=app, http=cls, log_config=None, lifespan="off", access_log=False)
                config.load()
                state = ServerState()
                state.default_headers = list(config.encoded_headers)
                start = time.process_time()
                for i in range(n):
                    protocol = cls(config, state, {}, loop)
                    protocol.connection_made(_Transport())
                    protocol.data_received(RAW)
                    protocol.connection_lost(ConnectionResetError())
                    if i % 50 == 49:  # let the aborted cycles finish, as the loop would
                        while state.tasks:
                            await asyncio.sleep(0)
                while state.tasks:
                    await asyncio.sleep(0)
                runs[name].append((time.process_time() - start) / n * 1e6)
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models", type=Path, default=None, help="a registry holding digits-pca (default: train one)"
    )
    p.add_argument("--n", type=int, default=1000, help="aborted uploads per run")
    p.add_argument("--protocol", action="store_true", help="through the connection's protocol (see above)")
    args = p.parse_args()
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models
        if models is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import soak

            models = Path(tmp) / "models"
            soak.train(models)
        if args.protocol:
            for name, times in asyncio.run(_measure_protocols(models, args.n)).items():
                every = [round(t) for t in times]
                print(
                    f"{name}: {min(times):.0f} us CPU an aborted connection (best of 5 x {args.n}; {every})"
                )
            return 0
        runs = asyncio.run(_measure(models, args.n))
    every = [round(r) for r in runs]
    print(f"aborted Try-it upload: {min(runs):.0f} us of event loop each (best of 5 x {args.n}; all {every})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
