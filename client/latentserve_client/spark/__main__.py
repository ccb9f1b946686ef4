"""`python -m latentserve_client.spark score ...`: score a Parquet (or CSV) table on Spark into Parquet.

Under spark-submit, pass this file as the application (the master and resources come from
spark-submit; see docs/spark.md):

    app=$(python -c 'import latentserve_client.spark.__main__ as m; print(m.__file__)')
    spark-submit --master yarn "$app" score --model breast-cancer-pca --registry /shared/models \\
        --input s3a://lake/t/ --output s3a://lake/t-scored/

Bad arguments, a missing column or a tampered artifact exit 2 with one `error:` line, before any job.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from latentserve_client.spark import OUTPUTS, load_model, score
from latentserve_core.errors import LatentServeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m latentserve_client.spark")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="add score, p_value and is_anomaly columns to a table")
    p.add_argument(
        "--model", required=True, help="a version folder, or NAME[:VERSION] with --registry / --service"
    )
    p.add_argument("--registry", help="a registry folder (models/) that holds NAME")
    p.add_argument("--service", metavar="URL", help="a running latentserve that serves NAME's files")
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        default="LATENTSERVE_API_KEY",
        help="the variable holding the service's key",
    )
    p.add_argument("--input", required=True, help="a Parquet path or glob (a .csv path: CSV with a header)")
    p.add_argument("--output", required=True, help="where to write the scored table, as Parquet")
    p.add_argument(
        "--columns", help="comma-separated feature columns (default: the manifest's feature names)"
    )
    p.add_argument("--array-column", help="one array column holding a whole row (an image's pixels)")
    p.add_argument(
        "--outputs", default="score,p_value,is_anomaly", help=f"comma-separated, of {','.join(OUTPUTS)}"
    )
    p.add_argument(
        "--on-invalid", choices=["fail", "null"], default="fail", help="bad rows: fail the job, or null"
    )
    p.add_argument("--id-column", help="a column naming rows in error messages")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--master", help="the Spark master when not run by spark-submit (e.g. local[4])")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pyspark.errors import AnalysisException
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("latentserve-score")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    try:
        model = load_model(
            args.model, registry=args.registry, service=args.service, api_key=os.environ.get(args.api_key_env)
        )
        reader = spark.read.option("header", True).option("inferSchema", True)
        df = reader.csv(args.input) if args.input.endswith(".csv") else spark.read.parquet(args.input)
        columns = args.array_column or (args.columns.split(",") if args.columns else None)
        scored = score(
            df,
            model,
            columns=columns,
            outputs=[o.strip() for o in args.outputs.split(",") if o.strip()],  # type: ignore[misc]
            on_invalid=args.on_invalid,
            id_column=args.id_column,
        )
        scored.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.output)
    except LatentServeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except AnalysisException as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
