"""`inspect-otel up`: start the stack, print how to use it, supervise it until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from ..config import DATA_DIR_ENV, EXPERIMENT_ENV, LOG_ARTIFACT_ROOTS_ENV, data_dir
from ._backend import BACKEND_STORE_ENV
from ._embedded import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_HTTP_PORT,
    DEFAULT_MLFLOW_PORT,
    EmbeddedStack,
)
from ._errors import StackError
from ._signals import STOP_SIGNALS, install_sigterm_handler
from ._supervise import supervise


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path,
        default=data_dir(),
        help=f"where MLflow's sqlite database, artifacts, the receiver spool, its token and logs "
             f"live (env {DATA_DIR_ENV}; default ~/.inspect-otel)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--mlflow-port", type=int, default=DEFAULT_MLFLOW_PORT,
                        help="MLflow UI/API port (default 5000)")
    parser.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT,
                        help="OTLP/HTTP port of the receiver (default 4318)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="OTLP/gRPC port of the receiver (default 4317)")
    parser.add_argument(
        "--backend-store-uri", default=os.environ.get(BACKEND_STORE_ENV) or None,
        help=f"MLflow's backend store, e.g. postgresql://user:password@host:5432/mlflow "
             f"(needs `pip install 'inspect-otel[postgres]'`; env {BACKEND_STORE_ENV}; default "
             "sqlite under --data-dir). Artifacts stay under --data-dir.",
    )
    parser.add_argument(
        "--experiment", default=None,
        help=f"MLflow experiment the receiver writes to (env {EXPERIMENT_ENV}; default "
             "inspect_ai); printed with the URLs",
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="MLflow server workers (default 1 on sqlite, which serialises writers; 2-4 by CPU "
             "count on a database server such as PostgreSQL)",
    )
    parser.add_argument(
        "--log-artifact-root", action="append", default=[], metavar="DIR_OR_URL",
        help="also store the eval logs written under this directory (or s3://bucket/prefix) "
             "with their MLflow runs; repeatable (env "
             f"{LOG_ARTIFACT_ROOTS_ENV}, comma-separated). Always allowed: ./logs of where "
             "this starts (INSPECT_LOG_DIR if set) and the demo's eval-logs in --data-dir",
    )


def stack_from_args(args: argparse.Namespace, out: TextIO) -> EmbeddedStack:
    return EmbeddedStack(
        data_dir=Path(args.data_dir), host=args.host, mlflow_port=args.mlflow_port,
        http_port=args.port, grpc_port=args.grpc_port,
        backend_store_uri=args.backend_store_uri, workers=args.workers,
        experiment=args.experiment, log_artifact_roots=tuple(args.log_artifact_root), out=out,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_arguments(parser)


def start_stack(stack: EmbeddedStack, out: TextIO) -> bool:
    """Start it, with progress on ``out``; False after saying in one line why it could not."""
    out.write(f"Starting MLflow and the inspect-otel receiver (data in {stack.data_dir})\n")
    try:
        stack.start()
    except StackError as exc:
        out.write(f"error: {exc}\n")
        return False
    return True


def main(args: argparse.Namespace) -> int:
    out = sys.stderr
    stack = stack_from_args(args, out)
    try:
        stack.preflight()  # before any other output: a bad port, store, root or token is one line
    except StackError as exc:
        out.write(f"error: {exc}\n")
        return 1
    undo = install_sigterm_handler()
    try:
        if not start_stack(stack, out):
            return 1
        sys.stdout.write(stack.summary() + "Press Ctrl-C to stop.\n")
        sys.stdout.flush()
        code = supervise(stack, out)
        out.write("\nStopping ...\n")
        return code
    except STOP_SIGNALS:
        out.write("\nInterrupted, stopping ...\n")
        return 130
    finally:
        stack.stop()
        undo()
        out.write("Stopped.\n")
