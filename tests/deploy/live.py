"""A real service process for tests: a tiny registry trained by the CLI, a free port, readiness wait.

Used by the deployment tests (the image's own command, outside Docker) and the client tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any LATENTSERVE_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTSERVE_")}
    env.update(extra)
    return env


def fit_models(models_dir: Path, specs: Sequence[Sequence[str]], timeout: float = 120.0) -> None:
    """Run `python -m training fit --models-dir DIR <spec>` for each spec, in parallel processes."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "training", "fit", "--models-dir", str(models_dir), *spec],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for spec in specs
    ]
    errors = []
    for spec, proc in zip(specs, procs, strict=True):
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            errors.append(f"{' '.join(spec)}: {err.decode()[-800:]}")
    assert not errors, "training failed:\n" + "\n".join(errors)


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    env: Mapping[str, str],
    url: str,
    log: Path,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv`, wait until `url`/health/ready answers 200, and stop the process at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv} not ready after {timeout} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def service(models_dir: Path, log: Path, **env: str) -> Iterator[str]:
    """`python -m service --models-dir DIR --port P` on a free port, with `env` added to a clean
    environment; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "service", "--models-dir", str(models_dir), "--port", str(port)]
    with running(argv, clean_env(**env), url, log):
        yield url
