"""Batch scoring: a file in chunks through /anomaly-score, a few requests in flight, rows in order.

The output is written under a temporary name next to the final one and renamed only once every
row is scored; on any failure the temporary file is removed, so a half output never appears.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from latentserve_client._client import AnomalyScores, Client, ClientError, feature_names_of
from latentserve_client._tables import Chunk, InputError, NpyWriter, open_input, open_output


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did."""

    output: Path  # the file written
    rows: int  # rows scored
    anomalies: int  # rows flagged
    seconds: float  # wall time
    model: str  # the model that answered
    version: int  # and its version
    dropped: tuple[str, ...] = ()  # text columns a .npy output could not hold
    by_name: bool = False  # the features were matched to the model's feature names by the header


def default_output(path: Path) -> Path:
    """`data.csv` -> `data.scores.csv`, next to the input."""
    return path.with_name(path.stem + ".scores.csv")


class _Progress(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> None: ...


class _Lines:
    """Progress as plain stderr lines (when tqdm is not installed), at most one a second."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            of = f"/{self.total}" if self.total is not None else ""
            print(f"{self.label}: {self.done}{of} rows", file=sys.stderr, flush=True)

    def close(self) -> None:
        print(f"{self.label}: {self.done} rows", file=sys.stderr, flush=True)


class _Silent:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, label: str, show: bool) -> _Progress:
    if not show:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Lines(total, label)
    bar: _Progress = tqdm(total=total, desc=label, unit="rows", unit_scale=True, file=sys.stderr)
    return bar


def score_file(
    client: Client,
    model: str,
    path: Path,
    output: Path | None = None,
    *,
    version: int | None = None,
    threshold: float | None = None,
    alpha: float | None = None,
    chunk_rows: int = 4096,
    concurrency: int = 4,
    progress: bool = True,
) -> ScoreSummary:
    """Score every row of `path` and write the scored copy to `output` (default: `<stem>.scores.csv`).

    Raises InputError for a bad file or row, ClientError when the service refuses or is unreachable.
    """
    if chunk_rows < 1 or concurrency < 1:
        raise ValueError("chunk_rows and concurrency must be >= 1")
    started = time.perf_counter()
    output = output if output is not None else default_output(path)
    if not output.parent.is_dir():
        raise InputError(f"{output}: the folder {output.parent} does not exist")
    reader = open_input(path, chunk_rows)
    try:
        detail = client.model(model)  # fail fast on an unknown model or an unreachable service
        by_name = reader.match(feature_names_of(detail, version))
        tmp = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.tmp")
        writer = open_output(tmp, output, reader)
    except BaseException:
        reader.close()
        raise
    bar = _progress(reader.total, path.name, progress)
    pending: deque[tuple[Chunk, Future[AnomalyScores]]] = deque()
    rows = anomalies = 0
    answered: AnomalyScores | None = None

    def drain_one() -> None:
        nonlocal rows, anomalies, answered
        chunk, future = pending.popleft()
        result = future.result()
        if len(result.scores) != len(chunk):
            raise ClientError(
                f"the service answered {len(result.scores)} scores for {len(chunk)} rows "
                f"(rows {chunk.start}..{chunk.start + len(chunk) - 1})"
            )
        writer.write(chunk, result)
        rows += len(chunk)
        anomalies += int(result.is_anomaly.sum())
        answered = result
        bar.update(len(chunk))

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="score")
    try:
        for chunk in reader.chunks():
            while len(pending) >= concurrency:
                drain_one()
            future = pool.submit(client.anomaly_score, model, chunk.X, version, threshold, alpha)
            pending.append((chunk, future))
        while pending:
            drain_one()
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        pool.shutdown(wait=True)
        reader.close()
        bar.close()
    dropped = tuple(writer.dropped) if isinstance(writer, NpyWriter) else ()
    return ScoreSummary(
        output=output,
        rows=rows,
        anomalies=anomalies,
        seconds=time.perf_counter() - started,
        model=answered.model if answered is not None else model,
        version=answered.version if answered is not None else 0,
        dropped=dropped,
        by_name=by_name,
    )
