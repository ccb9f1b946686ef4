"""Overload, slow clients and faults, replayed against a live `python -m service` over loopback.

    .venv/bin/python benchmarks/soak.py [--only NAME,...] [--scale 1.0]

Trains two tiny models (digits-pca, breast-cancer-pca) into a temporary registry, starts the
service on 127.0.0.1 (one worker, nofile 1024, default limits except the timeouts below, which are
shortened so the run takes minutes) and replays the attacks of issue 13, one server per attack.
Every attack is bounded in connections, bytes and seconds; nothing leaves 127.0.0.1. For each it
prints: the peak RSS of the server and its JSON worker processes over their idle baseline,
requests answered, 503s, other 5xx, connections reset, the slowest /health/live probe (every
50 ms, from a process of its own), and the seconds from the end of the attack until nothing is in
flight (`/metrics`) and /health/live answers within 100 ms again.

Targets: peak RSS <= baseline + 2 x MAX_INFLIGHT_BYTES; no 5xx but the 503s of shedding and the
504s of deadlines; no reset of a received request on SIGTERM; stalled uploads closed within the
body timeout; /health/live within 100 ms throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MiB = 1 << 20
BUDGET = 256 * MiB  # MAX_INFLIGHT_BYTES (the default)
SETTINGS = {  # shortened timeouts so that each attack ends in seconds; the rest are the defaults
    "LATENTSERVE_HEADER_TIMEOUT_S": "3",
    "LATENTSERVE_BODY_TIMEOUT_S": "5",
    "LATENTSERVE_WRITE_TIMEOUT_S": "5",
    "LATENTSERVE_REQUEST_TIMEOUT_S": "2",
    "LATENTSERVE_SHUTDOWN_DRAIN_S": "1",
    "LATENTSERVE_LOG_LEVEL": "warning",
    "LATENTSERVE_ACCESS_LOG": "false",
    "LATENTSERVE_RELOAD_INTERVAL_S": "0",
}
KEY = "soak-key"


@dataclass
class Row:
    attack: str
    baseline_mb: float = 0.0
    peak_mb: float = 0.0
    answered: int = 0
    shed: int = 0  # 503
    other_5xx: int = 0  # 5xx but 503 and 504
    resets: int = 0
    live_max_ms: float = 0.0
    recovery_s: float = 0.0
    note: str = ""
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.answered += 1
        if status == 503:
            self.shed += 1
        elif status >= 500 and status != 504:
            self.other_5xx += 1


# ---- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _nofile_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@contextlib.contextmanager
def server(
    models: Path, log: Path | None = None, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("LATENTSERVE_")}
    full.update(SETTINGS)
    full.update(env)
    argv = [sys.executable, "-m", "service", "--models-dir", str(models), "--host", HOST, "--port", str(port)]
    err = log.open("ab") if log is not None else None  # the server's log, where an attack counts it
    proc = subprocess.Popen(argv, cwd=ROOT, env=full, preexec_fn=_nofile_1024, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if err is not None:
            err.close()


def _ready(port: int) -> bool:
    try:
        return _get(port, "/health/ready", timeout=1.0)[0] == 200
    except OSError:
        return False


def _get(
    port: int, path: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def cpu_s(pid: int) -> float:
    """The CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident memory of the server and of its descendants (its JSON worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        with contextlib.suppress(OSError), open(f"/proc/{current}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


PROBE = """
import http.client, select, sys, time
port, worst, failures = int(sys.argv[1]), 0.0, 0
while True:
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        conn.request("GET", "/health/live")
        failures += conn.getresponse().status != 200
        conn.close()
    except OSError:
        failures += 1
    worst = max(worst, (time.perf_counter() - start) * 1000)
    if select.select([sys.stdin], [], [], 0.05)[0]:  # stdin closed: the attack is over
        print(worst, failures)
        break
"""


class Watch:
    """Samples the server's RSS every 50 ms while an attack runs, and probes /health/live every
    50 ms from a process of its own: a probe thread here would share this process's GIL with the
    attack's client threads, and their wait would count against the server."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.peak = 0.0
        self.live_max = 0.0
        self.live_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._probe: subprocess.Popen[str] | None = None

    def __enter__(self) -> Watch:
        self._probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self._probe is not None
        out, _ = self._probe.communicate("", timeout=30)  # closes its stdin: it prints and exits
        worst, failures = out.split()
        self.live_max, self.live_failures = float(worst), int(failures)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(0.05)


def _idle(port: int, key: str | None) -> bool:
    headers = {"x-api-key": key} if key else {}
    try:
        start = time.perf_counter()
        status, _ = _get(port, "/health/live", timeout=1.0)
        fast = status == 200 and time.perf_counter() - start < 0.1
        text = _get(port, "/metrics", timeout=1.0, headers=headers)[1].decode()
    except OSError:
        return False
    requests = re.search(r"^latentserve_inflight_requests (\S+)", text, re.M)
    held = re.search(r"^latentserve_inflight_bytes (\S+)", text, re.M)
    return (
        fast and requests is not None and held is not None and float(requests[1]) == 0 and float(held[1]) == 0
    )


def recovery(port: int, key: str | None = None, limit: float = 60.0) -> float:
    start = time.monotonic()
    while not _idle(port, key) and time.monotonic() - start < limit:
        time.sleep(0.05)
    return time.monotonic() - start


# ---- raw clients --------------------------------------------------------------------------------
def head(path: str, length: int, ctype: str = "application/json", extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
        f"{extra}\r\n"
    ).encode()


def status_of(data: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m[1]) if m else None


def read_status(sock: socket.socket, timeout: float) -> tuple[int | None, str]:
    """The status of the answer on `sock` within `timeout` s: (status, "") or (None, why)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None, "closed"
            data += chunk
    except ConnectionResetError:
        return None, "reset"
    except TimeoutError:
        return None, "timeout"
    except OSError as exc:
        return None, type(exc).__name__
    return status_of(data), ""


def upload(
    port: int,
    row: Row,
    declared: int,
    send: int,
    payload: memoryview,
    lock: threading.Lock,
    extra: str = "",
    ctype: str = "application/json",
) -> float | None:
    """Send headers and `send` of `declared` body bytes, then stall; the seconds until the server
    closed or answered (None: it never did within 60 s)."""
    sock = socket.create_connection((HOST, port))
    try:
        sock.sendall(head("/anomaly-score?model=digits-pca", declared, ctype, extra=extra))
        status, why = read_status(sock, 0.2)  # a refusal comes before any body byte is sent
        if status is None and why == "timeout":
            sent = 0
            try:
                while sent < send:
                    n = min(MiB, send - sent)
                    sock.sendall(payload[:n])
                    sent += n
            except OSError:
                pass
            start = time.monotonic()
            status, why = read_status(sock, 60.0)
            elapsed = time.monotonic() - start
        else:
            elapsed = 0.0
        with lock:
            if status is not None:
                row.count(status)
            elif why == "reset":
                row.resets += 1
        return elapsed if why != "timeout" else None
    finally:
        sock.close()


def run_threads(n: int, target: Callable[[int], object]) -> list[object]:
    out: list[object] = [None] * n

    def one(i: int) -> None:
        out[i] = target(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# ---- the attacks --------------------------------------------------------------------------------
def attack_stalled(models: Path, scale: float) -> Row:
    row = Row("stalled uploads: 48 x 63 of a declared 64 MiB .npy, then silence")
    payload = memoryview(b"1" * (64 * MiB))
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()
        n = max(2, int(48 * scale))
        # .npy: a JSON body this large is refused on its headers (MAX_JSON_BODY_BYTES), never stalls
        closed = run_threads(
            n, lambda _: upload(port, row, 64 * MiB, 63 * MiB, payload, lock, ctype="application/x-npy")
        )
        stalls = [c for c in closed if isinstance(c, float) and c > 0.5]
        row.note = f"stalled closed after {max(stalls):.1f} s (body timeout 5 s)" if stalls else ""
        row.recovery_s = recovery(port)
    return _done(row, watch)


def attack_key_before_body(models: Path, scale: float) -> Row:
    row = Row("32 unauthenticated 63 MiB uploads, API key set")
    payload = memoryview(b"1" * (64 * MiB))
    with server(models, LATENTSERVE_API_KEY=KEY) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()
        run_threads(max(2, int(32 * scale)), lambda _: upload(port, row, 63 * MiB, 63 * MiB, payload, lock))
        row.recovery_s = recovery(port, KEY)
        row.note = f"statuses {row.statuses}"
    return _done(row, watch)


def _post(
    port: int, path: str, body: bytes, ctype: str, row: Row, lock: threading.Lock, read: bool = True
) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers={"content-type": ctype})
        r = conn.getresponse()
        if read:
            r.read()
        with lock:
            row.count(r.status)
    except ConnectionResetError:
        with lock:
            row.resets += 1
    except OSError:
        pass
    finally:
        conn.close()


def _flood(
    models: Path, row: Row, body: bytes, path: str = "/anomaly-score", ctype: str = "application/json"
) -> Row:
    """32 concurrent POSTs of one body, each answer read to its end."""
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()
        start = time.monotonic()
        run_threads(32, lambda _: _post(port, path, body, ctype, row, lock))
        row.note = f"statuses {row.statuses}, all answered in {time.monotonic() - start:.1f} s"
        row.recovery_s = recovery(port)
    return _done(row, watch)


def attack_flood(models: Path, scale: float) -> Row:
    rows = int(14_000 * scale) or 1
    X = np.random.default_rng(0).random((rows, 64))
    body = orjson.dumps({"model": "digits-pca", "inputs": X.tolist()})
    row = Row(f"flood: 32 concurrent {len(body) / MiB:.0f} MiB JSON /anomaly-score")
    return _flood(models, row, body)


def attack_flood_under_cap(models: Path, scale: float) -> Row:
    """32 concurrent JSON bodies just under MAX_JSON_BODY_BYTES (4 MiB): all admitted by size,
    each parsed (off the event loop's GIL when over JSON_OFFLOAD_BYTES)."""
    X = np.random.default_rng(0).random((14_000, 64))
    per_row = len(orjson.dumps(X.tolist())) / len(X)
    rows = max(1, int(0.97 * 4 * MiB / per_row * scale))
    body = orjson.dumps({"model": "digits-pca", "inputs": X[:rows].tolist()})
    row = Row(f"flood: 32 concurrent {len(body) / MiB:.1f} MiB JSON /anomaly-score (under the JSON cap)")
    return _flood(models, row, body)


def _npy(A: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, A)
    return buf.getvalue()


def attack_big_answers(models: Path, scale: float) -> Row:
    n = int(100_000 * scale) or 1
    body = _npy(np.zeros((n, 16), dtype=np.float32))
    row = Row(f"4 x /decode of {n} codes (.npy in, JSON out), never read")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()

        def unread(_: int) -> None:  # send, never read: the answer sits in the server's buffers
            sock = socket.create_connection((HOST, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                sock.sendall(head("/decode?model=digits-pca", len(body), "application/x-npy") + body)
                time.sleep(12)  # past the 5 s write timeout
                status, why = read_status(sock, 1.0)
                with lock:
                    if status is not None:
                        row.count(status)
                    elif why == "reset":
                        row.resets += 1
            finally:
                sock.close()

        run_threads(4, unread)
        status, text = _post_status(port, "/decode?model=digits-pca", body, "application/x-npy")
        row.note = f"statuses {row.statuses}; one read: {status} {text[:60]}"
        row.recovery_s = recovery(port)
    return _done(row, watch)


def attack_answers_under_cap(models: Path, scale: float) -> Row:
    """32 concurrent /decode whose JSON answers are predicted just under MAX_JSON_RESPONSE_BYTES:
    each is encoded by orjson in one call that holds the GIL."""
    n = max(1, int(7_500 * scale))  # predicted n x 64 values x 16 bytes: 7.3 MiB, under the 8 MiB cap
    body = _npy(np.random.default_rng(0).random((n, 16), dtype=np.float32))
    row = Row(f"32 concurrent /decode of {n} codes (.npy in, JSON out, read)")
    return _flood(models, row, body, "/decode?model=digits-pca", "application/x-npy")


def _post_status(port: int, path: str, body: bytes, ctype: str, accept: str = "") -> tuple[int, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        headers = {"content-type": ctype, **({"accept": accept} if accept else {})}
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, data.decode("latin-1")
    finally:
        conn.close()


def attack_images(models: Path, scale: float) -> Row:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4096, 4096)).save(buf, format="PNG")
    png = buf.getvalue()
    n = max(1, int(300 * scale))
    boundary = "soakboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="i{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + png
        + b"\r\n"
        for i in range(n)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    row = Row(f"multipart of {n} images 4096x4096, resize=true")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        cpu0 = _cpu_s(proc.pid)
        status, text = _post_status(
            port, "/encode?model=digits-pca&resize=true", body, f"multipart/form-data; boundary={boundary}"
        )
        row.count(status)
        answered = _cpu_s(proc.pid)
        time.sleep(3)
        after = _cpu_s(proc.pid) - answered
        row.note = f"{status} {text[:70]}; CPU {answered - cpu0:.1f} s to answer, {after:.2f} s after"
        row.recovery_s = recovery(port)
    return _done(row, watch)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def attack_idle(models: Path, scale: float) -> Row:
    n = int(1050 * scale) or 1
    row = Row(f"{n} idle connections (server nofile 1024)")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        socks = []
        for _ in range(n):
            with contextlib.suppress(OSError):
                socks.append(socket.create_connection((HOST, port), timeout=2))
        start = time.monotonic()
        closed = 0
        while closed < len(socks) and time.monotonic() - start < 30:
            time.sleep(0.2)
            closed = sum(_is_closed(s) for s in socks)
        took = time.monotonic() - start
        row.note = f"{closed} of {len(socks)} closed by the server after {took:.1f} s (header timeout 3 s)"
        for s in socks:
            s.close()
        row.recovery_s = recovery(port)
    return _done(row, watch)


def _is_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def attack_headers(models: Path, scale: float) -> Row:
    row = Row("a 300 MiB header, 10,000 headers, 200 slow-header clients")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        sock = socket.create_connection((HOST, port))
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * MiB
        with contextlib.suppress(OSError):
            for _ in range(int(300 * scale) or 1):
                sock.sendall(chunk)
        status, _ = read_status(sock, 5)
        if status:
            row.count(status)
        sock.close()
        sock = socket.create_connection((HOST, port))
        with contextlib.suppress(OSError):
            sock.sendall(
                b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
                + b"".join(b"X-%d: v\r\n" % i for i in range(10_000))
                + b"\r\n"
            )
        status, _ = read_status(sock, 5)
        if status:
            row.count(status)
        sock.close()
        slow = []
        for _ in range(200):
            s = socket.create_connection((HOST, port))
            s.sendall(b"GET /health/live HTTP/1.1\r\n")
            slow.append(s)
        start = time.monotonic()
        closed = 0
        while closed < len(slow) and time.monotonic() - start < 20:
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"X")
            time.sleep(0.5)
            closed = sum(_is_closed(s) for s in slow)
        took = time.monotonic() - start
        row.note = f"statuses {row.statuses}; {closed} of 200 slow clients closed after {took:.1f} s"
        for s in slow:
            s.close()
        row.recovery_s = recovery(port)
    return _done(row, watch)


def attack_sigterm(models: Path, scale: float) -> Row:
    row = Row("SIGTERM under a 16-way keep-alive burst")
    X = np.random.default_rng(0).random((256, 64))
    body = orjson.dumps({"model": "digits-pca", "inputs": X.tolist()})
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()
        stop_at = time.monotonic() + 3.0
        refused = [0]

        def client(_: int) -> None:
            conn: http.client.HTTPConnection | None = None
            while time.monotonic() < stop_at + 5:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(HOST, port, timeout=30)
                    conn.request(
                        "POST", "/anomaly-score", body=body, headers={"content-type": "application/json"}
                    )
                    r = conn.getresponse()
                    r.read()
                    with lock:
                        row.count(r.status)
                    if r.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except ConnectionRefusedError:
                    with lock:
                        refused[0] += 1  # the server no longer accepts: nothing was received
                    return
                except ConnectionResetError:
                    with lock:
                        row.resets += 1
                    conn = None
                except (http.client.RemoteDisconnected, BrokenPipeError):
                    conn = None  # closed between requests, before this one was read: not received
                except OSError:
                    return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        ready_after = _ready(port)
        for t in threads:
            t.join()
        code = proc.wait(timeout=30)
        readiness = "200" if ready_after else "503"
        row.note = f"exit {code}; readiness after the signal: {readiness}; statuses {row.statuses}"
    return _done(row, watch)


# ---- the red-team's breaks (issue 22) -----------------------------------------------------------
def attack_pipelined_unread(models: Path, scale: float) -> Row:
    """Break 1: connections with a 4 KiB receive buffer pipeline .npy /reconstruct and never read."""
    conns, per = max(1, int(48 * scale)), max(1, int(400 * scale))
    body = _npy(np.zeros((1000, 64), dtype=np.float32))
    request = head(
        "/reconstruct?model=digits-pca", len(body), "application/x-npy", "Accept: application/x-npy\r\n"
    )
    row = Row(f"break 1: {conns} connections pipeline {per} .npy /reconstruct each, never read")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()

        def unread(_: int) -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((HOST, port))
            sock.settimeout(10)
            try:
                for _ in range(per):  # blocks once the server stops reading: that is the point
                    sock.sendall(request + body)
            except (TimeoutError, OSError) as exc:
                with lock:
                    row.resets += isinstance(exc, ConnectionResetError)
            finally:
                sock.close()

        run_threads(conns, unread)
        row.note = "the server stops reading a connection whose answer is unread"
        row.recovery_s = recovery(port)
    return _done(row, watch)


def _grandchildren(pid: int) -> list[int]:
    """The server's JSON workers: the children of its forkserver (a child of the server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isascii() and entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    return [g for c in children.get(pid, []) for g in children.get(c, [])]


def attack_json_pool_kill(models: Path, scale: float) -> Row:
    """Break 2: SIGKILL the JSON workers 8 times during a 6-way load of 3.8 MiB JSON bodies; then
    one more body must be answered at once, not wait for a 504."""
    X = np.random.default_rng(0).random((int(3_000 * scale) or 1, 64))  # 3.6 MiB: under MAX_JSON_BODY_BYTES
    body = orjson.dumps({"model": "digits-pca", "inputs": X.tolist()})
    row = Row(f"break 2: 6-way {len(body) / MiB:.1f} MiB JSON load, JSON workers SIGKILLed 8 times")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()
        stop = time.monotonic() + 12

        def load(_: int) -> None:
            while time.monotonic() < stop:
                _post(port, "/anomaly-score", body, "application/json", row, lock)

        def killer(_: int) -> None:
            for _ in range(8):
                time.sleep(1.0)
                for pid in _grandchildren(proc.pid):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)

        run_threads(7, lambda i: killer(i) if i == 6 else load(i))
        start = time.monotonic()
        status, _ = _post_status(port, "/anomaly-score", body, "application/json")
        row.note = f"statuses {row.statuses}; after: {status} in {time.monotonic() - start:.1f} s"
        row.recovery_s = recovery(port)
    return _done(row, watch)


def attack_fifo(models: Path, scale: float) -> Row:
    """Break 3: a listed display file replaced by a FIFO, fetched 50 times at once."""
    import json
    import shutil

    n = max(1, int(50 * scale))
    row = Row(f"break 3: a listed file replaced by a FIFO, GET {n} times at once")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "models"
        shutil.copytree(models, copy)
        folder = copy / "digits-pca" / "1"
        manifest = json.loads((folder / "manifest.json").read_text())
        card = b"# digits-pca\n"  # a listed model card, then a FIFO in its place
        (folder / "README.md").write_bytes(card)
        entry = {"role": "card", "path": "README.md", "format": "md", "bytes": len(card)}
        manifest["files"].append({**entry, "sha256": hashlib.sha256(card).hexdigest()})
        (folder / "manifest.json").write_text(json.dumps(manifest))
        listed = ["README.md"]
        (folder / listed[0]).unlink()
        os.mkfifo(folder / listed[0])
        with server(copy) as (proc, port), Watch(proc.pid, port) as watch:
            row.baseline_mb = rss_mb(proc.pid)
            lock = threading.Lock()

            def fetch(_i: int) -> None:
                try:
                    status, _ = _get(port, f"/models/digits-pca/versions/1/files/{listed[0]}", timeout=10)
                    with lock:
                        row.count(status)
                except OSError:
                    with lock:
                        row.resets += 1

            run_threads(n, fetch)
            ready, _ = _get(port, "/health/ready", timeout=5)
            row.note = f"statuses {row.statuses}; /health/ready {ready}"
            row.recovery_s = recovery(port)
        return _done(row, watch)


def attack_v2_header(models: Path, scale: float) -> Row:
    """Break 5: /v2 binary bodies whose Inference-Header-Content-Length is the whole (JSON) body."""
    size = int(60 * MiB * scale) or 1024
    doc = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    )
    body = doc[:-1] + b', "pad": "' + b"x" * max(0, size - len(doc) - 11) + b'"}'
    row = Row(f"break 5: 4 x /v2 binary, a {len(body) / MiB:.0f} MiB JSON header as the whole body")
    with server(models) as (proc, port), Watch(proc.pid, port) as watch:
        row.baseline_mb = rss_mb(proc.pid)
        lock = threading.Lock()

        def send(_: int) -> None:
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            try:
                headers = {
                    "content-type": "application/octet-stream",
                    "inference-header-content-length": str(len(body)),
                }
                conn.request("POST", "/v2/models/digits-pca/infer", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                with lock:
                    row.count(r.status)
            except ConnectionResetError:
                with lock:
                    row.resets += 1
            except OSError:
                pass
            finally:
                conn.close()

        run_threads(4, send)
        row.note = f"statuses {row.statuses}"
        row.recovery_s = recovery(port)
    return _done(row, watch)


def attack_tryit_aborts(models: Path, scale: float) -> Row:
    """Break 9: Try-it uploads aborted mid-body, 8 at a time; the server's log lines are counted."""
    n = max(1, int(2_000 * scale))
    row = Row(f"break 9: {n} Try-it uploads aborted mid-body")
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    try:
        with server(models, log=log) as (proc, port), Watch(proc.pid, port) as watch:
            row.baseline_mb = rss_mb(proc.pid)
            before = log.stat().st_size
            part = (
                b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + b"\0" * 4096
            )
            path = "/ui/models/digits-pca/versions/1/try"

            def abort(i: int) -> None:
                for _ in range(n // 8 + (i < n % 8)):
                    with contextlib.suppress(OSError):
                        sock = socket.create_connection((HOST, port))
                        sock.sendall(
                            (
                                f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {1 << 20}\r\n"
                                "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
                            ).encode()
                            + part
                        )
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                        sock.close()  # a reset mid-body: the client is gone

            cpu = cpu_s(proc.pid)
            run_threads(8, abort)
            row.recovery_s = recovery(port)
            cpu = cpu_s(proc.pid) - cpu  # with the probes' and the recovery's few requests
            logged = log.stat().st_size - before
            row.note = f"server log grew {logged} bytes; server CPU {cpu / n * 1e6:.0f} us an abort"
        return _done(row, watch)
    finally:
        log.unlink(missing_ok=True)


def _done(row: Row, watch: Watch) -> Row:
    row.peak_mb = watch.peak
    row.live_max_ms = watch.live_max
    if watch.live_failures:
        row.note += f"; /health/live failed {watch.live_failures} times"
    return row


ATTACKS = {
    "stalled": attack_stalled,
    "key": attack_key_before_body,
    "flood": attack_flood,
    "flood-under-cap": attack_flood_under_cap,
    "answers": attack_big_answers,
    "answers-under-cap": attack_answers_under_cap,
    "images": attack_images,
    "idle": attack_idle,
    "headers": attack_headers,
    "sigterm": attack_sigterm,
    "pipelined-unread": attack_pipelined_unread,
    "json-pool-kill": attack_json_pool_kill,
    "fifo": attack_fifo,
    "v2-header": attack_v2_header,
    "tryit-aborts": attack_tryit_aborts,
}


def train(models: Path) -> None:
    for name, dataset, k in (("digits-pca", "digits", "16"), ("breast-cancer-pca", "breast-cancer", "0.9")):
        argv = ["fit", "--model", "pca", "--dataset", dataset, "--name", name, "--models-dir", str(models)]
        subprocess.run(
            [sys.executable, "-m", "training", *argv, "--n-components", k],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated attacks of {sorted(ATTACKS)}")
    p.add_argument("--scale", type=float, default=1.0, help="scale the connection and byte counts")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ATTACKS)
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        train(models)
        results = []
        for name in names:
            row = ATTACKS[name](models, args.scale)
            results.append(row)
            print(f"done: {row.attack}", file=sys.stderr, flush=True)
    budget = BUDGET / MiB
    print(
        "| attack | peak RSS MB (baseline) | answered | 503s | other 5xx | resets "
        "| slowest /health/live ms | recovery s | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.attack} | {r.peak_mb:.0f} ({r.baseline_mb:.0f}) | {r.answered} | {r.shed} | {r.other_5xx} "
            f"| {r.resets} | {r.live_max_ms:.0f} | {r.recovery_s:.1f} | {r.note} |"
        )
    worst = max((r.peak_mb - r.baseline_mb for r in results), default=0.0)
    print(
        f"\nworst peak over baseline: {worst:.0f} MB; target <= 2 x MAX_INFLIGHT_BYTES = {2 * budget:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
