"""Score files against a running latentserve service, or list its models.

    latentserve-score --url URL --model NAME [--version V] [--api-key K] INPUT
        [-o OUTPUT] [--chunk-rows 4096] [--concurrency 4] [--threshold T | --alpha A] [--quiet]
    python -m latentserve_client score ...     (the same as latentserve-score ...)
    python -m latentserve_client models --url URL [--api-key K]

INPUT is `.npy` (rows on the first axis), `.csv` or `.parquet`. A header that names the model's
features (its manifest's `input.feature_names`) picks them by name, in any column order; else the
numeric columns are the features, by position. Every original column is kept in the output.
OUTPUT's suffix picks its format: `.csv` (default: `<INPUT stem>.scores.csv`), `.parquet`, or
`.npy` (a structured array). Failures exit 1 with one `error:` line; bad arguments and a file
that lacks one of the model's feature columns exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from latentserve_client._client import Client, ClientError, ServiceUnreachable
from latentserve_client._scoring import score_file
from latentserve_client._tables import InputError, MissingColumns


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _connection(q: argparse.ArgumentParser) -> None:
    q.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    q.add_argument("--api-key", default=None, help="sent as X-API-Key")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    q.add_argument("--retries", type=int, default=3, help="retries on 5xx and connection errors")


def _score_arguments(s: argparse.ArgumentParser) -> None:
    _connection(s)
    s.add_argument("--model", required=True, help="model name")
    s.add_argument("--version", type=_positive, default=None, help="model version (default: latest)")
    rule = s.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    rule.add_argument(
        "--alpha", type=float, default=None, help="flag p_value <= ALPHA, a false-positive rate in (0, 1)"
    )
    s.add_argument("input", type=Path, metavar="INPUT", help=".npy, .csv or .parquet rows")
    s.add_argument("-o", "--output", type=Path, default=None, help="default: INPUT stem + .scores.csv")
    s.add_argument("--chunk-rows", type=_positive, default=4096, help="rows per request (default 4096)")
    s.add_argument("--concurrency", type=_positive, default=4, help="requests in flight (default 4)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """`python -m latentserve_client score | models`."""
    p = _Parser(prog="python -m latentserve_client", description="Score files against latentserve.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _score_arguments(sub.add_parser("score", help="score every row of a .npy, .csv or .parquet file"))
    _connection(sub.add_parser("models", help="list the service's models (JSON)"))
    return p


def build_score_parser() -> argparse.ArgumentParser:
    """`latentserve-score`: the `score` command on its own."""
    p = _Parser(
        prog="latentserve-score",
        description="Score every row of a .npy, .csv or .parquet file against latentserve.",
    )
    _score_arguments(p)
    p.set_defaults(command="score")
    return p


def score_main(argv: Sequence[str] | None = None) -> int:
    """The `latentserve-score` console script."""
    return _run(build_score_parser().parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m latentserve_client`."""
    return _run(build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    try:
        with Client(
            args.url,
            api_key=args.api_key,
            timeout=args.timeout,
            retries=args.retries,
            max_connections=max(4, getattr(args, "concurrency", 4)),
        ) as client:
            if args.command == "models":
                print(json.dumps(client.models(), indent=2))
                return 0
            summary = score_file(
                client,
                args.model,
                args.input,
                args.output,
                version=args.version,
                threshold=args.threshold,
                alpha=args.alpha,
                chunk_rows=args.chunk_rows,
                concurrency=args.concurrency,
                progress=not args.quiet,
            )
    except MissingColumns as exc:  # a usage error: the file does not fit the model
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ServiceUnreachable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ClientError as exc:
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        print(f"error: {exc.message}{status}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    if summary.dropped:
        print(f"note: text columns left out of the .npy output: {list(summary.dropped)}", file=sys.stderr)
    matched = " (columns matched by name)" if summary.by_name else ""
    print(
        f"scored {summary.rows} rows{matched} with {summary.model} v{summary.version} in "
        f"{summary.seconds:.1f} s: {summary.anomalies} anomalies -> {summary.output}",
        file=sys.stderr,
    )
    print(summary.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
