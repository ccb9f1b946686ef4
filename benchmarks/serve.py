"""Serving speed, one run: in-process onnxruntime vs the naive server vs latentserve.

    .venv/bin/python benchmarks/serve.py [--seconds 8]

Builds the lecture's stacked autoencoder 784-100-30-100-784 (random weights, torch) and exports it
to ONNX into a temporary registry. Each server runs pinned to core 0 (`taskset -c 0`); `wrk`
drives it from core 1 over loopback; `/anomaly-score` is measured, and the same scores through
the Open Inference Protocol (`POST /v2/models/bench-ae/infer`, outputs score, is_anomaly and
p_value), binary (the binary tensor extension, as Triton's clients send) and JSON (flat data).
Needs `wrk` and `taskset`.

Targets (ratios within this run):
  .npy 256-row rows/s        >= 60% of in-process onnxruntime rows/s at batch 256
  JSON 256-row rows/s        >= 4x the naive server
  JSON 1-row, 16 in flight   >= 4x the naive server's req/s, with p99 <= 10 ms
  V2 binary, 256 and 1 row   >= 0.9x our .npy path at the same rows and concurrency
  V2 JSON, 256 and 1 row     >= 0.9x our JSON path at the same rows and concurrency
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
local header_length = os.getenv("WRK_HEADER_LENGTH")
if header_length ~= nil and header_length ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header_length
end
"""


@dataclass
class Load:
    label: str
    req_s: float
    rows_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # server CPU time per request (user + system, all threads)

    @property
    def cpu_req_s(self) -> float:
        """Requests per second of server CPU: throughput with the core to itself."""
        return 1e6 / self.cpu_us


def build_model(registry: Path) -> tuple[Path, np.ndarray]:
    """Export the AE's encoder, decoder and scorer to ONNX with a manifest; save torch weights too."""
    import torch
    from naive_server import AE

    from latentserve_core.manifest import (
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
            out: torch.Tensor
            if self.role == "encoder":
                out = self.ae.encoder(x.reshape(x.shape[0], 784))
                return out
            if self.role == "decoder":
                out = self.ae.decoder(x).reshape(x.shape[0], 28, 28)
                return out
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
            torch.onnx.export(
                Part(name),
                (arg,),
                str(folder / f"{name}.onnx"),
                input_names=["input"],
                output_names=outs,
                dynamic_axes=axes,
                dynamo=False,
            )
    X = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
    with torch.no_grad():
        cal = np.sort(((ae(torch.from_numpy(X)) - torch.from_numpy(X)) ** 2).mean(dim=1).numpy())
    files = [
        FileEntry(
            role=name,
            path=f"{name}.onnx",
            format="onnx",
            sha256=sha256_of(folder / f"{name}.onnx"),
            bytes=(folder / f"{name}.onnx").stat().st_size,
        )
        for name in ("encoder", "decoder", "scorer")
    ]
    manifest = Manifest(
        name=MODEL,
        version=1,
        kind="dense",
        format="onnx",
        files=files,
        input=InputSpec(shape=[28, 28], value_range=(0.0, 1.0), layout="image"),
        preprocessing=Preprocessing(kind="none"),
        latent_dim=30,
        data=DataSummary(
            dataset="random", rows_train=0, rows_validation=0, rows_calibration=len(cal), seed=0
        ),
        metrics=Metrics(train_error=float(cal.mean()), validation_error=float(cal.mean())),
        threshold=Threshold(
            value=float(np.quantile(cal, 0.99)),
            quantile=0.99,
            n_calibration=len(cal),
            calibration_scores=cal.tolist(),
        ),
        created_at=datetime.now(timezone.utc),
    )
    (folder / "manifest.json").write_text(manifest.to_json())
    return weights, X


def in_process(registry: Path, X: np.ndarray, seconds: float) -> dict[int, float]:
    """Rows/s of the scorer graph run directly, one thread, pinned to core 0."""
    from latentserve_core.runtime.onnx import make_session

    os.sched_setaffinity(0, {0})
    try:
        sess = make_session(registry / MODEL / "1" / "scorer.onnx", threads=1)
        out: dict[int, float] = {}
        for batch in (1, 256):
            xb = np.ascontiguousarray(X[:batch].reshape(batch, 28, 28))
            for _ in range(20):
                sess.run(None, {"input": xb})
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                sess.run(None, {"input": xb})
                n += 1
            out[batch] = n * batch / (time.perf_counter() - t0)
            out[-batch] = n * batch / (time.process_time() - c0)  # per CPU second
        return out
    finally:
        os.sched_setaffinity(0, {1})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    cmd: list[str], port: int, ready: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
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


def start_ours(registry: Path, port: int) -> subprocess.Popen[bytes]:
    """`python -m service` on `registry` (no reload poller, no access log), once ready."""
    cmd = [sys.executable, "-m", "service", "--models-dir", str(registry), "--port", str(port)]
    env = {**os.environ, "LATENTSERVE_RELOAD_INTERVAL_S": "0"}
    return start([*cmd, "--log-level", "warning", "--no-access-log"], port, "/health/ready", env)


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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    label: str,
    url: str,
    body: bytes,
    ctype: str,
    rows: int,
    conc: int,
    seconds: float,
    work: Path,
    pid: int,
    header_length: int | None = None,
) -> Load:
    body_file = work / f"body-{abs(hash(label))}.bin"
    body_file.write_bytes(body)
    script = work / "post.lua"
    script.write_text(LUA)
    env = {**os.environ, "WRK_BODY": str(body_file), "WRK_CTYPE": ctype}
    if header_length is not None:
        env["WRK_HEADER_LENGTH"] = str(header_length)
    base = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conc}", "-s", str(script), "--latency", url]
    subprocess.run([*base[:5], "-d1s", *base[5:]], env=env, capture_output=True, check=True)  # warm-up
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(
        [*base[:5], f"-d{seconds:g}s", "--timeout", "10s", *base[5:]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu0
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    req_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errs.groups()) if errs else 0)
    return Load(label, req_s, req_s * rows, p50, p99, errors, cpu / max(n, 1) * 1e6)


def npy_bytes(A: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, A)
    return buf.getvalue()


V2_OUTPUTS = [{"name": "score"}, {"name": "is_anomaly"}, {"name": "p_value"}]  # what /anomaly-score answers


def v2_json(X: np.ndarray) -> bytes:
    """An Open Inference Protocol request with the rows as flat JSON data (tritonclient's JSON mode)."""
    tensor = {"name": "input", "shape": list(X.shape), "datatype": "FP32", "data": X.reshape(-1)}
    return orjson.dumps({"inputs": [tensor], "outputs": V2_OUTPUTS}, option=orjson.OPT_SERIALIZE_NUMPY)


def v2_binary(X: np.ndarray) -> tuple[bytes, int]:
    """The same with the binary tensor extension, answered in binary too; and the header's length."""
    A = np.ascontiguousarray(X, dtype="<f4")
    size = {"binary_data_size": A.nbytes}
    tensor = {"name": "input", "shape": list(A.shape), "datatype": "FP32", "parameters": size}
    doc = {"inputs": [tensor], "outputs": V2_OUTPUTS, "parameters": {"binary_data_output": True}}
    header = orjson.dumps(doc)
    return header + A.tobytes(), len(header)


def one_round(registry: Path, weights: Path, X: np.ndarray, s: float, work: Path) -> list[Load]:
    """Both servers, one after the other, each on core 0 alone."""
    json256 = orjson.dumps({"model": MODEL, "inputs": X[:256]}, option=orjson.OPT_SERIALIZE_NUMPY)
    json1 = orjson.dumps({"model": MODEL, "inputs": X[:1]}, option=orjson.OPT_SERIALIZE_NUMPY)
    npy256, npy1 = npy_bytes(X[:256]), npy_bytes(X[:1])
    (bin256, head256), (bin1, head1) = v2_binary(X[:256]), v2_binary(X[:1])
    port = free_port()
    naive = [sys.executable, "benchmarks/naive_server.py", "--weights", str(weights), "--port", str(port)]
    proc = start(naive, port, "/health")
    try:
        url = f"http://127.0.0.1:{port}/anomaly-score"
        results = [
            wrk(NAIVE_256, url, json256, "application/json", 256, 4, s, work, proc.pid),
            wrk(NAIVE_1, url, json1, "application/json", 1, 16, s, work, proc.pid),
        ]
    finally:
        stop(proc)
    port = free_port()
    proc = start_ours(registry, port)
    try:
        url = f"http://127.0.0.1:{port}/anomaly-score"
        v2 = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
        octet, pid = "application/octet-stream", proc.pid
        results += [
            wrk(OURS_256, url, json256, "application/json", 256, 4, s, work, pid),
            wrk(V2_JSON_256, v2, v2_json(X[:256]), "application/json", 256, 4, s, work, pid),
            wrk(OURS_NPY, f"{url}?model={MODEL}", npy256, "application/x-npy", 256, 4, s, work, pid),
            wrk(V2_BIN_256, v2, bin256, octet, 256, 4, s, work, pid, head256),
            wrk(OURS_1, url, json1, "application/json", 1, 16, s, work, pid),
            wrk(V2_JSON_1, v2, v2_json(X[:1]), "application/json", 1, 16, s, work, pid),
            wrk(OURS_NPY_1, f"{url}?model={MODEL}", npy1, "application/x-npy", 1, 16, s, work, pid),
            wrk(V2_BIN_1, v2, bin1, octet, 1, 16, s, work, pid, head1),
        ]
    finally:
        stop(proc)
    return results


NAIVE_256 = "naive JSON 256 rows, 4 in flight"
NAIVE_1 = "naive JSON 1 row, 16 in flight"
OURS_256 = "latentserve JSON 256 rows, 4 in flight"
OURS_NPY = "latentserve .npy 256 rows, 4 in flight"
OURS_1 = "latentserve JSON 1 row, 16 in flight"
OURS_NPY_1 = "latentserve .npy 1 row, 16 in flight"
V2_JSON_256 = "V2 JSON 256 rows, 4 in flight"
V2_BIN_256 = "V2 binary 256 rows, 4 in flight"
V2_JSON_1 = "V2 JSON 1 row, 16 in flight"
V2_BIN_1 = "V2 binary 1 row, 16 in flight"
V2_CHECKS = [  # (V2 row, our row it is compared with)
    (V2_BIN_256, OURS_NPY),
    (V2_BIN_1, OURS_NPY_1),
    (V2_JSON_256, OURS_256),
    (V2_JSON_1, OURS_1),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="length of each measured load run")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every measurement; the best one counts")
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
    runs: dict[str, list[Load]] = {}
    inproc: dict[int, list[float]] = {1: [], 256: [], -1: [], -256: []}
    try:
        registry = work / "models"
        weights, X = build_model(registry)
        for _ in range(args.rounds):
            for batch, rate in in_process(registry, X, min(args.seconds, 3.0)).items():
                inproc[batch].append(rate)
            for load in one_round(registry, weights, X, args.seconds, work):
                runs.setdefault(load.label, []).append(load)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {label: max(loads, key=lambda r: r.req_s) for label, loads in runs.items()}
    lean = {label: min(loads, key=lambda r: r.cpu_us) for label, loads in runs.items()}
    ip256, ip256_cpu = max(inproc[256]), max(inproc[-256])
    print(
        f"\nin-process onnxruntime scorer, 1 thread, core 0 (best of {args.rounds}): "
        f"batch 1 {max(inproc[1]):,.0f} rows/s, batch 256 {ip256:,.0f} rows/s wall; "
        f"per CPU second: batch 1 {max(inproc[-1]):,.0f}, batch 256 {ip256_cpu:,.0f} rows/s"
    )
    print(
        f"server runs: best of {args.rounds} rounds of {args.seconds:g} s "
        f"(all req/s: {', '.join(f'{r.req_s:,.0f}' for loads in runs.values() for r in loads)})\n"
    )
    print(
        f"| {'path (/anomaly-score, server on 1 core)':<42} | {'req/s':>7} | {'rows/s':>8} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'errors':>6} | {'CPU us/req':>10} | {'rows/CPU-s':>10} |"
    )
    print(f"|{'-' * 44}|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 12}|{'-' * 12}|")
    for label, r in best.items():
        c = lean[label]
        rows = 256 if "256" in label else 1
        print(
            f"| {r.label:<42} | {r.req_s:>7,.0f} | {r.rows_s:>8,.0f} | {r.p50_ms:>7.2f} | {r.p99_ms:>7.2f} | "
            f"{r.errors:>6} | {c.cpu_us:>10,.0f} | {c.cpu_req_s * rows:>10,.0f} |"
        )
    ours1 = best[OURS_1]
    checks = [
        (
            ".npy 256-row vs in-process batch 256",
            best[OURS_NPY].rows_s / ip256,
            lean[OURS_NPY].cpu_req_s * 256 / ip256_cpu,
            0.60,
            True,
        ),
        (
            "JSON 256-row vs naive",
            best[OURS_256].rows_s / best[NAIVE_256].rows_s,
            lean[OURS_256].cpu_req_s / lean[NAIVE_256].cpu_req_s,
            4.0,
            True,
        ),
        (
            "JSON 1-row conc 16 vs naive (req/s)",
            ours1.req_s / best[NAIVE_1].req_s,
            lean[OURS_1].cpu_req_s / lean[NAIVE_1].cpu_req_s,
            4.0,
            ours1.p99_ms <= 10.0,
        ),
    ]
    for v2, ours in V2_CHECKS:
        checks.append(
            (
                f"{v2.split(',')[0]} vs ours",
                best[v2].req_s / best[ours].req_s,
                lean[v2].cpu_req_s / lean[ours].cpu_req_s,
                0.9,
                True,
            )
        )
    print(f"\n{'ratio':<40} {'wall':>7} {'per CPU':>8}  target")
    ok = all(r.errors == 0 for loads in runs.values() for r in loads)
    for name, wall, per_cpu, target, extra in checks:
        passed = wall >= target and extra
        ok &= passed
        note = f", p99 {ours1.p99_ms:.2f} ms <= 10 ms: {'yes' if extra else 'no'}" if "1-row" in name else ""
        cpu_passed = per_cpu >= target and extra
        print(
            f"{name:<40} {wall:6.2f}x {per_cpu:7.2f}x  >= {target:g}x{note}  "
            f"wall {'PASS' if passed else 'FAIL'}, per CPU {'PASS' if cpu_passed else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
