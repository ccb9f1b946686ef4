"""The Open Inference Protocol's paths against ours, interleaved on one server.

    .venv/bin/python benchmarks/v2_paths.py [--runs 6] [--seconds 2] [--rows 1]

`benchmarks/serve.py` measures each path once per round, one after the other, and keeps the best
round; on this 2-core machine one 4 s `wrk` run of a 1-row path moves by up to 30% from the next
on the same server, so its 1-row V2 ratios are decided by which runs were lucky. Here one
latentserve server (pinned to core 0, `wrk` on core 1, as in serve.py) takes our JSON, V2 JSON,
our `.npy` and V2 binary in turn, `--runs` times, and the table gives each path's median, its
spread, and the ratios of the medians. Same model (serve.py's 784-100-30-100-784 autoencoder),
same bodies and outputs as serve.py. Targets: V2 JSON >= 0.9x our JSON, V2 binary >= 0.9x our
`.npy`, in req/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # serve.py's model, bodies, server start and wrk runner

NPY = "application/x-npy"
PATHS = ["our JSON", "V2 JSON", "our .npy", "V2 binary"]
CHECKS = [("V2 JSON", "our JSON"), ("V2 binary", "our .npy")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs of each path, interleaved")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of one wrk run")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    args = parser.parse_args()
    conc = 16 if args.rows == 1 else 4
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, X = serve.build_model(work / "registry")
        rows = X[: args.rows]
        ours_json = orjson.dumps({"model": serve.MODEL, "inputs": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
        binary, header = serve.v2_binary(rows)
        port = serve.free_port()
        proc = serve.start_ours(work / "registry", port)
        base = f"http://127.0.0.1:{port}"
        v2 = f"{base}/v2/models/{serve.MODEL}/infer"
        plan: dict[str, tuple[str, bytes, str, int | None]] = {
            "our JSON": (f"{base}/anomaly-score", ours_json, "application/json", None),
            "V2 JSON": (v2, serve.v2_json(rows), "application/json", None),
            "our .npy": (f"{base}/anomaly-score?model={serve.MODEL}", serve.npy_bytes(rows), NPY, None),
            "V2 binary": (v2, binary, "application/octet-stream", header),
        }
        runs: dict[str, list[serve.Load]] = {path: [] for path in PATHS}
        try:
            for _ in range(args.runs):
                for path in PATHS:
                    url, body, ctype, head = plan[path]
                    load = serve.wrk(
                        path, url, body, ctype, args.rows, conc, args.seconds, work, proc.pid, head
                    )
                    runs[path].append(load)
        finally:
            serve.stop(proc)
    med = {path: statistics.median(r.req_s for r in runs[path]) for path in PATHS}
    cpu = {path: statistics.median(r.cpu_us for r in runs[path]) for path in PATHS}
    each = f"{args.seconds:g} s per path, {args.rows} row(s), {conc} in flight"
    print(f"\n{args.runs} interleaved runs of {each}")
    print("\n| path | median req/s | min - max req/s | median p99 ms | median server CPU µs/req | errors |")
    print("|---|---|---|---|---|---|")
    for path in PATHS:
        r = runs[path]
        p99 = statistics.median(x.p99_ms for x in r)
        low, high = min(x.req_s for x in r), max(x.req_s for x in r)
        errors = sum(x.errors for x in r)
        spread = f"{low:,.0f} - {high:,.0f}"
        print(f"| {path} | {med[path]:,.0f} | {spread} | {p99:.2f} | {cpu[path]:,.0f} | {errors} |")
    print("\n| target | req/s ratio of medians | per server CPU | |")
    print("|---|---|---|---|")
    for ours_v2, ours in CHECKS:
        ratio, per_cpu = med[ours_v2] / med[ours], cpu[ours] / cpu[ours_v2]
        verdict = "met" if ratio >= 0.9 else "MISSED"
        print(f"| {ours_v2} >= 0.9x {ours} | {ratio:.2f}x | {per_cpu:.2f}x | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
