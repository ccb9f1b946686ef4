"""Scoring and fitting on Apache Spark against the in-process and REST paths, one run, side by side.

    .venv/bin/python benchmarks/spark.py [--rows 10000000] [--small-rows 1000000] [--rest-rows 200000]

Generates Parquet tables of --small-rows and --rows rows x 30 float32 features (8 latent factors
plus noise), fits the tabular preset and a dense autoencoder on 50,000 of their rows, then scores:
  (a) Spark local[2]: `latentserve_client.spark.score` into Spark's no-op sink (every row scored);
  (b) in process: onnxruntime on one thread through the scoring core, the same rows read by pyarrow
      by row group; and pyarrow's reading alone (what any reader of the file pays);
  (c) `latentserve-score` (the REST client, .npy bodies) against a local `python -m service`, on the
      first --rest-rows rows (rows/s do not depend on the count past a few chunks);
and fits PCA on the tables through Spark (`training fit --spark`) and in memory (`training fit
--dataset FILE.parquet`), each in its own process. Peak RSS is sampled from /proc every 0.1 s: the
driver (Python and its JVM) and the largest Python worker. Prints one table (Markdown).

Targets: tabular Spark >= 1.5x in-process one thread; both models Spark >= 5x REST; dense AE: the
Spark cost per row over reading with pyarrow alone, small; worker RSS flat from --small-rows to
--rows; Spark fit driver RSS independent of the row count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "client"), str(ROOT / "core"), str(ROOT / "benchmarks")]
FEATURES = 30
CHUNK = 250_000  # rows per generated row group (a Spark task each)


@dataclass
class Peaks:
    """Peak RSS (MiB) by role over a process tree, sampled from /proc."""

    root: int
    peaks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _roles(self) -> Iterator[tuple[str, float]]:
        for pid in _tree(self.root):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                continue
            if "pyspark.daemon" in cmd or "pyspark.worker" in cmd or "pyspark/daemon" in cmd:
                role = "worker"
            elif "java" in cmd.split(" ")[0]:
                role = "jvm"
            elif pid == self.root:
                role = "driver"
            else:
                role = "other"
            yield role, rss / 2**20

    def run(self) -> None:
        while not self._stop.wait(0.1):
            for role, mib in self._roles():
                self.peaks[role] = max(self.peaks.get(role, 0.0), mib)

    @contextmanager
    def sampling(self) -> Iterator[Peaks]:
        self.peaks.clear()
        t = threading.Thread(target=self.run, daemon=True)
        t.start()
        try:
            yield self
        finally:
            self._stop.set()
            t.join()
            self._stop.clear()


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """rows x FEATURES float32: 8 latent factors mixed, plus noise; one file, row groups of CHUNK."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(8, FEATURES))
    names = [f"f{i:02d}" for i in range(FEATURES)]
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        X = (rng.normal(size=(n, 8)) @ mix + 0.3 * rng.normal(size=(n, FEATURES))).astype(np.float32)
        table = pa.table({c: X[:, i] for i, c in enumerate(names)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
    assert writer is not None
    writer.close()


def fit_models(table: Path, registry: Path, work: Path) -> None:
    import pyarrow.parquet as pq

    from training import fit
    from training.config import FitConfig
    from training.nn.config import NetConfig, TrainConfig
    from training.presets import preset

    sample = pq.ParquetFile(table).read_row_group(0).slice(0, 50_000)
    pq.write_table(sample, work / "sample.parquet")
    fit(preset("tabular"), work / "sample.parquet", name="bench-tabular", models_dir=registry)
    dense = FitConfig("dense", net=NetConfig(hidden=(64,)), train=TrainConfig(epochs=5), latent_dim=8)
    fit(dense, work / "sample.parquet", name="bench-dense", models_dir=registry)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spark_score(spark: Any, table: Path, folder: Path, peaks: Peaks) -> tuple[float, dict[str, float]]:
    from latentserve_client.spark import score

    df = spark.read.parquet(str(table))
    with peaks.sampling():
        seconds = timed(lambda: score(df, folder).write.format("noop").mode("overwrite").save())
    return seconds, dict(peaks.peaks)


def in_process(table: Path, folder: Path | None) -> float:
    """Seconds to read every row group with pyarrow and, given a model, score it on one thread."""
    import pyarrow.parquet as pq

    from latentserve_core.manifest import Manifest
    from latentserve_core.runtime import OnnxRuntime

    rt = OnnxRuntime.load(Manifest.read(folder), folder, threads=1) if folder is not None else None
    f = pq.ParquetFile(table)

    def run() -> None:
        for g in range(f.num_row_groups):
            for batch in f.iter_batches(batch_size=10_000, row_groups=[g]):
                X = np.stack([c.to_numpy() for c in batch.columns], axis=1)
                if rt is not None:
                    X32 = rt.check_inputs(X)
                    (scores,) = rt.compute("scores", X32)
                    rt.judge(scores)

    return timed(run)


def rest(table: Path, registry: Path, model: str, rows: int, work: Path) -> float:
    import pyarrow.parquet as pq
    from serve import free_port, start_ours, stop  # benchmarks/serve.py

    subset = work / f"rest-{rows}.parquet"
    if not subset.exists():
        pq.write_table(pq.ParquetFile(table).read_row_group(0).slice(0, rows), subset)
    port = free_port()
    proc = start_ours(registry, port)
    try:
        cmd = [sys.executable, "-m", "latentserve_client", "score", "--url", f"http://127.0.0.1:{port}"]
        cmd += ["--model", model, "--quiet", "-o", str(work / "rest-out.csv"), str(subset)]
        return timed(lambda: subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL))
    finally:
        stop(proc)


def fit_process(argv: list[str]) -> tuple[float, dict[str, float]]:
    """Seconds and peak RSS by role of `python -m training fit ...` in its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "fit", *argv], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    peaks = Peaks(proc.pid)
    with peaks.sampling():
        proc.wait()
    assert proc.returncode == 0, argv
    return time.perf_counter() - start, dict(peaks.peaks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000)
    parser.add_argument("--rest-rows", type=int, default=200_000)
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the tables here (default: a temp folder)"
    )
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "client"), str(ROOT / "core")])
    work = args.work or Path(tempfile.mkdtemp(prefix="spark-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = sorted({args.small_rows, args.rows})
    tables = {n: work / f"table-{n}.parquet" for n in sizes}
    for n, path in tables.items():
        if not path.exists():
            print(f"generating {n} rows -> {path}", file=sys.stderr)
            generate(path, n)
    registry = work / "models"
    if not (registry / "bench-dense").exists():
        fit_models(tables[sizes[0]], registry, work)
    folders = {m: registry / m / "1" for m in ("bench-tabular", "bench-dense")}

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    peaks = Peaks(os.getpid())
    lines = [
        "| path | model | rows | seconds | rows/s | vs (b) | vs (c) | peak RSS MiB: driver / JVM / worker |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    big = sizes[-1]
    read_s = in_process(tables[big], None)
    lines.append(f"| pyarrow read alone | - | {big} | {read_s:.1f} | {big / read_s:,.0f} | | | |")
    for model, folder in folders.items():
        b_s = in_process(tables[big], folder)
        c_s = rest(tables[big], registry, model, args.rest_rows, work)
        b_rate, c_rate = big / b_s, args.rest_rows / c_s
        for n in sizes:
            a_s, p = spark_score(spark, tables[n], folder, peaks)
            rate = n / a_s
            rss = f"{p.get('driver', 0):.0f} / {p.get('jvm', 0):.0f} / {p.get('worker', 0):.0f}"
            lines.append(
                f"| (a) Spark local[2] | {model} | {n} | {a_s:.1f} | {rate:,.0f} | {rate / b_rate:.2f}x | "
                f"{rate / c_rate:.1f}x | {rss} |"
            )
            if n == big and model == "bench-dense":
                over = (1 / rate - 1 / (big / read_s)) * 1e6
                lines.append(
                    f"| (a) - pyarrow read | {model} | {n} | | | | | Spark: {over:.2f} us/row over reading |"
                )
        lines.append(
            f"| (b) in process, 1 thread | {model} | {big} | {b_s:.1f} | {b_rate:,.0f} | 1.00x | | |"
        )
        lines.append(
            f"| (c) latentserve-score | {model} | {args.rest_rows} | {c_s:.1f} | {c_rate:,.0f} | | 1.0x | |"
        )
    spark.stop()
    lines += [
        "",
        "| fit PCA (n_components 0.99) | rows | seconds | peak RSS MiB: driver py / JVM / worker |",
        "|---|---:|---:|---|",
    ]
    for n in sizes:
        common = [
            "--model",
            "pca",
            "--n-components",
            "0.99",
            "--models-dir",
            str(work / "fits"),
            "--dataset",
            str(tables[n]),
        ]
        s, p = fit_process([*common, "--name", f"spark-{n}", "--spark", "local[2]"])
        rss = f"{p.get('driver', 0):.0f} / {p.get('jvm', 0):.0f} / {p.get('worker', 0):.0f}"
        lines.append(f"| Spark local[2] | {n} | {s:.1f} | {rss} |")
        s, p = fit_process([*common, "--name", f"memory-{n}"])
        lines.append(f"| in memory | {n} | {s:.1f} | {p.get('driver', 0):.0f} / - / - |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
