"""Serving speed, one run: in-process onnxruntime vs the naive server vs latentserve.

    .venv/bin/python benchmarks/serve.py [--seconds 8]

Builds the lecture's stacked autoencoder 784-100-30-100-784 (random weights, torch) and exports it
to ONNX into a temporary registry. Each server runs pinned to core 0 (`taskset -c 0`); `wrk`
drives it from core 1 over loopback; `/anomaly-score` is measured. Needs `wrk` and `taskset`.

Targets (ratios within this run):
  .npy 256-row rows/s        >= 60% of in-process onnxruntime rows/s at batch 256
  JSON 256-row rows/s        >= 4x the naive server
  JSON 1-row, 16 in flight   >= 4x the naive server's req/s, with p99 <= 10 ms
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
MODEL = "bench-ae"

LUA = """
wrk.method = "POST"
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CTYPE")
"""


@dataclass
class Load:
    label: str
    req_s: float
    rows_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def build_model(registry: Path) -> tuple[Path, np.ndarray]:
    """Export the AE's encoder, decoder and scorer to ONNX with a manifest; save torch weights too."""
    import torch

    from naive_server import AE
    from service.manifest import (
        DataSummary,
        FileEntry,
        InputSpec,
        Manifest,
        Metrics,
        Preprocessing,
        Threshold,
        sha256_of,
    )

    torch.manual_seed(0)
    ae = AE().eval()
    folder = registry / MODEL / "1"
    folder.mkdir(parents=True)
    weights = registry.parent / "ae.pt"
    torch.save(ae.state_dict(), weights)

    class Part(torch.nn.Module):
        def __init__(self, role: str) -> None:
            super().__init__()
            self.ae, self.role = ae, role

        def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            if self.role == "encoder":
                return self.ae.encoder(x.reshape(x.shape[0], 784))
            if self.role == "decoder":
                return self.ae.decoder(x).reshape(x.shape[0], 28, 28)
            flat = x.reshape(x.shape[0], 784)
            x_hat = self.ae(flat)
            return x_hat.reshape(x.shape[0], 28, 28), ((x_hat - flat) ** 2).mean(dim=1)

    x = torch.rand(2, 28, 28)
    for name, arg, outs in (
        ("encoder", x, ["z"]),
        ("decoder", torch.rand(2, 30), ["x_hat"]),
        ("scorer", x, ["x_hat", "scores"]),
    ):
        axes = {"input": {0: "n"}, **{o: {0: "n"} for o in outs}}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(Part(name), (arg,), str(folder / f"{name}.onnx"), input_names=["input"],
                              output_names=outs, dynamic_axes=axes, dynamo=False)
    X = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
    with torch.no_grad():
        cal = np.sort(((ae(torch.from_numpy(X)) - torch.from_numpy(X)) ** 2).mean(dim=1).numpy())
    files = [
        FileEntry(role=name, path=f"{name}.onnx", format="onnx", sha256=sha256_of(folder / f"{name}.onnx"),  # type: ignore[arg-type]
                  bytes=(folder / f"{name}.onnx").stat().st_size)
        for name in ("encoder", "decoder", "scorer")
    ]
    manifest = Manifest(
        name=MODEL, version=1, kind="dense", format="onnx", files=files,
        input=InputSpec(shape=[28, 28], value_range=(0.0, 1.0), layout="image"),
        preprocessing=Preprocessing(kind="none"), latent_dim=30,
        data=DataSummary(dataset="random", rows_train=0, rows_validation=0, rows_calibration=len(cal), seed=0),
        metrics=Metrics(train_error=float(cal.mean()), validation_error=float(cal.mean())),
        threshold=Threshold(value=float(np.quantile(cal, 0.99)), quantile=0.99, n_calibration=len(cal),
                            calibration_scores=cal.tolist()),
        created_at=datetime.now(timezone.utc),
    )
    (folder / "manifest.json").write_text(manifest.to_json())
    return weights, X


def in_process(registry: Path, X: np.ndarray, seconds: float) -> dict[int, float]:
    """Rows/s of the scorer graph run directly, one thread, pinned to core 0."""
    from service.runtime.onnx import make_session

    os.sched_setaffinity(0, {0})
    try:
        sess = make_session(registry / MODEL / "1" / "scorer.onnx", threads=1)
        out: dict[int, float] = {}
        for batch in (1, 256):
            xb = np.ascontiguousarray(X[:batch].reshape(batch, 28, 28))
            for _ in range(20):
                sess.run(None, {"input": xb})
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                sess.run(None, {"input": xb})
                n += 1
            out[batch] = n * batch / (time.perf_counter() - t0)
        return out
    finally:
        os.sched_setaffinity(0, {1})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int, ready: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("server never became ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(label: str, url: str, body: bytes, ctype: str, rows: int, conc: int, seconds: float, work: Path) -> Load:
    body_file = work / f"body-{abs(hash(label))}.bin"
    body_file.write_bytes(body)
    script = work / "post.lua"
    script.write_text(LUA)
    env = {**os.environ, "WRK_BODY": str(body_file), "WRK_CTYPE": ctype}
    base = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conc}", "-s", str(script), "--latency", url]
    subprocess.run([*base[:5], "-d1s", *base[5:]], env=env, capture_output=True, check=True)  # warm-up
    out = subprocess.run([*base[:5], f"-d{seconds:g}s", "--timeout", "10s", *base[5:]], env=env,
                         capture_output=True, text=True, check=True).stdout
    req_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errs.groups()) if errs else 0)
    return Load(label, req_s, req_s * rows, p50, p99, errors)


def npy_bytes(A: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, A)
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="length of each measured load run")
    args = p.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (apt-get install -y wrk util-linux)", file=sys.stderr)
            return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("error: needs two cores (server on core 0, load on core 1)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="latentserve-bench-"))
    try:
        registry = work / "models"
        weights, X = build_model(registry)
        inproc = in_process(registry, X, min(args.seconds, 3.0))
        json256 = orjson.dumps({"model": MODEL, "inputs": X[:256]}, option=orjson.OPT_SERIALIZE_NUMPY)
        json1 = orjson.dumps({"model": MODEL, "inputs": X[:1]}, option=orjson.OPT_SERIALIZE_NUMPY)
        npy256 = npy_bytes(X[:256])
        s = args.seconds
        results: list[Load] = []

        port = free_port()
        proc = start([sys.executable, "benchmarks/naive_server.py", "--weights", str(weights), "--port", str(port)],
                     port, "/health")
        try:
            url = f"http://127.0.0.1:{port}/anomaly-score"
            naive256 = wrk("naive JSON 256 rows, 4 in flight", url, json256, "application/json", 256, 4, s, work)
            naive1 = wrk("naive JSON 1 row, 16 in flight", url, json1, "application/json", 1, 16, s, work)
        finally:
            stop(proc)
        results += [naive256, naive1]

        port = free_port()
        env = {**os.environ, "LATENTSERVE_RELOAD_INTERVAL_S": "0"}
        proc = start([sys.executable, "-m", "service", "--models-dir", str(registry), "--port", str(port),
                      "--log-level", "warning", "--no-access-log"], port, "/health/ready", env)
        try:
            url = f"http://127.0.0.1:{port}/anomaly-score"
            ours256 = wrk("latentserve JSON 256 rows, 4 in flight", url, json256, "application/json", 256, 4, s,
                          work)
            npy = wrk("latentserve .npy 256 rows, 4 in flight", f"{url}?model={MODEL}", npy256,
                      "application/x-npy", 256, 4, s, work)
            ours1 = wrk("latentserve JSON 1 row, 16 in flight", url, json1, "application/json", 1, 16, s, work)
        finally:
            stop(proc)
        results += [ours256, npy, ours1]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nin-process onnxruntime scorer, 1 thread: batch 1 {inproc[1]:,.0f} rows/s, "
          f"batch 256 {inproc[256]:,.0f} rows/s\n")
    print(f"| {'path (/anomaly-score, server on 1 core)':<42} | {'req/s':>9} | {'rows/s':>10} | {'p50 ms':>7} | "
          f"{'p99 ms':>7} | {'errors':>6} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for r in results:
        print(f"| {r.label:<42} | {r.req_s:>9,.0f} | {r.rows_s:>10,.0f} | {r.p50_ms:>7.2f} | {r.p99_ms:>7.2f} | "
              f"{r.errors:>6} |")
    checks = [
        (".npy 256-row vs in-process batch 256", npy.rows_s / inproc[256], 0.60, True),
        ("JSON 256-row vs naive", ours256.rows_s / naive256.rows_s, 4.0, True),
        ("JSON 1-row conc 16 vs naive (req/s)", ours1.req_s / naive1.req_s, 4.0, ours1.p99_ms <= 10.0),
    ]
    print()
    ok = all(r.errors == 0 for r in results)
    for name, ratio, target, extra in checks:
        passed = ratio >= target and extra
        ok &= passed
        note = f" (p99 {ours1.p99_ms:.2f} ms <= 10 ms: {'yes' if extra else 'no'})" if "1-row" in name else ""
        print(f"{name:<40} {ratio:6.2f}x  target >= {target:g}x{note}  {'PASS' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
