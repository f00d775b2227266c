"""Run the calculator eval with the live hook exporting through a process-wide OpenTelemetry SDK
(as a user's own set-up would), into OTLP files in both Collector file-exporter formats and,
optionally, over OTLP/HTTP to an endpoint (the receiver). Run in its own process: SDK providers
are process-global.

    python -m tests.scout.produce --log-dir D --jsonl F.jsonl --proto F.pb [--endpoint URL]
        [--content on|off] [--samples N] [--epochs N] [--workload N] [--long-agent TURNS]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--jsonl", type=Path)
    parser.add_argument("--proto", type=Path)
    parser.add_argument("--endpoint")
    parser.add_argument("--content", choices=["on", "off"], default="on")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workload", type=int, metavar="N",
                        help="run bench/workload.py's agent eval with N samples instead")
    parser.add_argument("--long-agent", type=int, metavar="TURNS",
                        help="run tests/support/long_agent.py's eval (--samples of them) instead")
    parser.add_argument("--max-attribute-length", type=int,
                        help="INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH for the hook")
    parser.add_argument("--redact-pattern", help="INSPECT_OTEL_REDACT_PATTERNS for the hook")
    args = parser.parse_args(argv)

    os.environ["INSPECT_OTEL_ENABLED"] = "true"  # the hook uses the providers set up below
    os.environ["OTEL_METRICS_EXPORTER"] = "none"
    if args.redact_pattern:
        os.environ["INSPECT_OTEL_REDACT_PATTERNS"] = args.redact_pattern
    if args.max_attribute_length:
        os.environ["INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH"] = str(args.max_attribute_length)
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = (
        "true" if args.content == "on" else "false")

    from opentelemetry import _logs, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from inspect_otel.export import build_resource
    from tests.support.otlp_files import otlp_file

    resource = build_resource()
    tracer_provider = TracerProvider(resource=resource)
    logger_provider = LoggerProvider(resource=resource)
    files = []
    for path, fmt in ((args.jsonl, "json"), (args.proto, "proto")):
        if path is None:
            continue
        spans, logs, target = otlp_file(path, fmt)
        files.append(target)
        # Batches, as a Collector's batch processor makes them: lines mix spans of many traces.
        tracer_provider.add_span_processor(BatchSpanProcessor(spans, schedule_delay_millis=200))
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(logs, schedule_delay_millis=200))
    if args.endpoint:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = args.endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
    trace.set_tracer_provider(tracer_provider)
    _logs.set_logger_provider(logger_provider)

    from inspect_ai import eval

    from tests.support import evals

    if args.workload:
        from bench.workload import run_workload

        logs = [run_workload(args.workload, args.log_dir)]
    elif args.long_agent:
        from tests.support import long_agent

        logs = eval(long_agent.long_agent(turns=args.long_agent, samples=args.samples or 1),
                    model=long_agent.MODEL, model_args=long_agent.model_args(),
                    log_dir=str(args.log_dir), display="none")
    else:
        evals._attempts.clear()
        task = evals.calculator(**({"samples": args.samples} if args.samples else {}))
        logs = eval(task, model=evals.MODEL, model_args=evals.model_args(),
                    log_dir=str(args.log_dir), epochs=args.epochs, retry_on_error=1,
                    fail_on_error=False, display="none")
    tracer_provider.force_flush(60_000)
    logger_provider.force_flush(60_000)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    for target in files:
        target.close()
    return 0 if logs and logs[0].status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
