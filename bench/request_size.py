"""What bounding each OTLP request's size costs the export thread: the size bound of a batch's
spans (``inspect_otel.export._request_size.SizeBoundSpanExporter`` in front of an exporter that
does nothing) against the SDK's own encoding of the same batch (which the
exporter does anyway), on the spans the hook's pipeline makes for the workload of
``bench/workload.py``. Both in the same passes, interleaved, in the thread's CPU time; the result
is their ratio.

Runs the workload once without telemetry (its log), replays the log through the hook's real
pipeline into memory (replay produces the live hook's spans), then times both per batch.

    .venv/bin/python bench/request_size.py [--samples 20] [--passes 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from tests.support.pipeline import pipeline_spans  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--passes", type=int, default=10, help="timed passes (10)")
    parser.add_argument("--batch", type=int, default=64, help="spans per batch (64)")
    parser.add_argument("--content", action="store_true",
                        help="content capture on spans (larger attributes)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    for name in list(os.environ):  # the workload runs without telemetry: its log is the input
        if name.startswith(("OTEL_", "INSPECT_OTEL_")):
            del os.environ[name]
    import workload
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from inspect_otel.config import Protocol
    from inspect_otel.export._request_size import REQUEST_LIMITS, SizeBoundSpanExporter

    class Nothing(SpanExporter):
        def export(self, spans):  # noqa: ANN001, ANN202
            return SpanExportResult.SUCCESS

    log = workload.run_workload(args.samples, tempfile.mkdtemp(prefix="request-size-"))
    if args.content:
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    spans = pipeline_spans(log.location)
    batches = [spans[i:i + args.batch] for i in range(0, len(spans), args.batch)]
    size_bound = SizeBoundSpanExporter(Nothing(), REQUEST_LIMITS[Protocol.HTTP_PROTOBUF])

    def bound(batch: list) -> None:  # what the wrapper adds in front of the SDK's exporter
        size_bound.export(batch)

    def encode(batch: list) -> None:  # what the SDK's exporter computes
        encode_spans(batch).SerializePartialToString()

    times: dict[str, list[float]] = {"sdk_encoding": [], "size_bound": []}
    for _ in range(args.passes):
        for key, work in (("sdk_encoding", encode), ("size_bound", bound)):
            start = time.thread_time()
            for batch in batches:
                work(batch)
            times[key].append((time.thread_time() - start) / len(spans) * 1e6)
    per = {k: statistics.median(v) for k, v in times.items()}
    ratios = [b / e for b, e in zip(times["size_bound"], times["sdk_encoding"])]
    result = {
        "spans": len(spans), "samples": args.samples, "batch": args.batch,
        "content": args.content, "us_per_span": per,
        "size_bound_over_encoding": {"median": statistics.median(ratios), "min": min(ratios),
                                     "max": max(ratios)},
        "passes": times,
    }
    print(f"{len(spans)} spans ({args.samples} samples, content {'on' if args.content else 'off'});"
          f" us per span, median of {args.passes} passes: SDK encoding "
          f"{per['sdk_encoding']:.1f}, size bound {per['size_bound']:.1f}; size bound / encoding "
          f"paired per pass: {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f}-{max(ratios):.3f}]")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
