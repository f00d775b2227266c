"""``inspect-otel receiver``: OTLP in (HTTP 4318, gRPC 4317), MLflow out."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from ..config import (DATA_DIR_ENV, LOG_ARTIFACT_ROOTS_ENV, data_dir, default_experiment,
                      log_artifact_roots)
from ._dead_letters import RetryPolicy

ENV_TOKEN = "INSPECT_OTEL_RECEIVER_TOKEN"
DEFAULT_MLFLOW_URI = "http://127.0.0.1:5000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-uri", default=None,
                        help="MLflow tracking server URL (env MLFLOW_TRACKING_URI; default "
                             f"{DEFAULT_MLFLOW_URI}); needs a SQL backend store")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment name (env MLFLOW_EXPERIMENT_NAME; default inspect_ai)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 to expose)")
    parser.add_argument("--port", type=int, default=4318, help="OTLP/HTTP port (default 4318)")
    parser.add_argument("--grpc-port", type=int, default=4317,
                        help="OTLP/gRPC port (default 4317)")
    parser.add_argument("--no-grpc", action="store_true", help="do not serve OTLP/gRPC")
    parser.add_argument("--data-dir", default=None,
                        help=f"where the durable spool lives (env {DATA_DIR_ENV}; default "
                             "~/.inspect-otel); the spool is <data-dir>/receiver/spool.db")
    parser.add_argument("--max-body-mb", type=float, default=32.0,
                        help="largest accepted request body, compressed or not (default 32)")
    parser.add_argument("--max-spool-mb", type=float, default=1024.0,
                        help="pending data kept while MLflow is behind before answering 503 "
                             "with Retry-After (default 1024)")
    parser.add_argument("--max-concurrent-requests", type=int, default=64,
                        help="OTLP requests handled at once (HTTP and gRPC each); more are "
                             "answered 503 with Retry-After (gRPC RESOURCE_EXHAUSTED) (default 64)")
    parser.add_argument("--settle-seconds", type=float, default=10.0,
                        help="finalize a task's aggregates and tables this long after its last "
                             "data when not all expected samples arrived (default 10)")
    parser.add_argument("--log-artifact-root", action="append", default=[], metavar="PATH_OR_URL",
                        help="store each task's eval log (inspect.task.log_location) under its "
                             "run's artifacts inspect/logs/ when it lies under this directory or "
                             "object-store prefix (s3://bucket/prefix) and is an Inspect log of "
                             "that eval; repeatable (env "
                             f"{LOG_ARTIFACT_ROOTS_ENV}, comma-separated). Off without any")
    parser.add_argument("--max-log-artifact-mb", type=float, default=512.0,
                        help="largest eval log stored (default 512)")
    parser.add_argument("--no-log-artifacts", action="store_true",
                        help="store no eval logs, whatever roots are set")
    parser.add_argument("--orphan-ttl-seconds", type=float, default=3600.0,
                        help="an evaluation result whose trace never arrives (e.g. sampled out) "
                             "stops counting as pending this long after it arrived; sooner when "
                             "its log record says the trace was not sampled and its task is "
                             "finalized (default 3600)")
    parser.add_argument("--retry-dead-letters", action="store_true",
                        help="on start, try every dead letter again (items the writer could not "
                             "apply, kept in the spool; /health lists them), then serve as usual. "
                             "For after a fix; a new receiver version does it on its first start. "
                             "Refuses to start while another receiver runs on this --data-dir")
    parser.add_argument("--dead-letter-after", type=int, default=RetryPolicy.attempts,
                        metavar="ATTEMPTS",
                        help="attempts before an item that keeps failing unexpectedly becomes a "
                             f"dead letter (default {RetryPolicy.attempts}; 1 s between the first "
                             f"two, doubling to {RetryPolicy.max_delay_s:.0f} s)")
    parser.add_argument("--log-level", default=os.environ.get("INSPECT_OTEL_LOG_LEVEL", "INFO"))


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # The writer retries on its own schedule; MLflow's client must fail fast instead of
    # blocking it for minutes with its own retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's client prints "View run ... / View experiment ..." for every run status write.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    from ._eval_logs import RootError, parse_roots
    from ._server import Receiver, ReceiverConfig

    if not args.orphan_ttl_seconds > 0:
        print("inspect-otel receiver: --orphan-ttl-seconds must be a positive number of seconds "
              f"(got {args.orphan_ttl_seconds})", file=sys.stderr)
        return 2
    if args.dead_letter_after < 1:
        print("inspect-otel receiver: --dead-letter-after must be at least 1 attempt "
              f"(got {args.dead_letter_after})", file=sys.stderr)
        return 2
    if args.max_concurrent_requests < 1:
        print("inspect-otel receiver: --max-concurrent-requests must be at least 1 "
              f"(got {args.max_concurrent_requests})", file=sys.stderr)
        return 2
    try:
        roots = () if args.no_log_artifacts else parse_roots(
            [*args.log_artifact_root, *log_artifact_roots()])
    except RootError as e:
        print(f"inspect-otel receiver: {e}", file=sys.stderr)
        return 2
    uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI
    if not uri.startswith(("http://", "https://")):
        print(f"inspect-otel receiver: --mlflow-uri must be an http(s) MLflow server URL "
              f"(got {uri!r})", file=sys.stderr)
        return 2
    config = ReceiverConfig(
        mlflow_uri=uri,
        experiment_name=args.experiment or default_experiment(),
        host=args.host,
        port=args.port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        data_dir=args.data_dir or str(data_dir()),
        token=os.environ.get(ENV_TOKEN) or None,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_spool_bytes=int(args.max_spool_mb * (1 << 20)),
        settle_s=args.settle_seconds,
        log_artifact_roots=roots,
        max_log_artifact_bytes=int(args.max_log_artifact_mb * (1 << 20)),
        max_concurrent_requests=args.max_concurrent_requests,
        orphan_ttl_s=args.orphan_ttl_seconds,
        retry_policy=RetryPolicy(attempts=args.dead_letter_after),
        retry_dead_letters=args.retry_dead_letters,
    )
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.token:
        logging.getLogger("inspect_otel.receiver").warning(
            "binding %s without %s: anyone who can reach this port can write to MLflow",
            config.host, ENV_TOKEN)
    try:
        receiver = Receiver(config)
    except (OSError, RuntimeError) as e:  # the spool in use by another receiver, unreadable
        print(f"inspect-otel receiver: {e}", file=sys.stderr)
        return 1
    try:
        receiver.start()
    except (OSError, RuntimeError) as e:
        print(f"inspect-otel receiver: {e}", file=sys.stderr)
        receiver.stop(drain_s=0)  # failed to start: say so at once (the spool keeps its data)
        return 1
    # One machine-readable line so scripts (and tests) learn the bound ports.
    print(f"inspect-otel receiver listening http={config.host}:{receiver.http_port} "
          f"grpc={receiver.grpc_port or 'off'}", file=sys.stderr, flush=True)
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not done.wait(1.0):
        pass
    receiver.stop()
    return 0
