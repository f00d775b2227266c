"""OTLP span encoding, the SDK's ``encode_spans`` against the hook's in-place encoder
(``inspect_otel.span_encoding``), on the spans the hook's pipeline makes for the workload of
``bench/workload.py``: the same bytes, the CPU per span.

Runs the workload once without telemetry (its log), replays the log through the hook's real
pipeline into memory (replay produces the live hook's spans), then times both encoders on the same
batches, interleaved, in the thread's CPU time.

    .venv/bin/python bench/span_encoding.py [--samples 20] [--passes 10] [--json out.json]
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
    parser.add_argument("--passes", type=int, default=10, help="timed passes per encoder (10)")
    parser.add_argument("--batch", type=int, default=64, help="spans per request (64)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    for name in list(os.environ):  # the workload runs without telemetry: its log is the input
        if name.startswith(("OTEL_", "INSPECT_OTEL_")):
            del os.environ[name]
    import workload
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
        encode_spans as sdk,
    )

    from inspect_otel.span_encoding import encode_in_place

    log = workload.run_workload(args.samples, tempfile.mkdtemp(prefix="span-encoding-"))
    spans = pipeline_spans(log.location)
    batches = [spans[i:i + args.batch] for i in range(0, len(spans), args.batch)]
    same = all(sdk(b).SerializeToString(deterministic=True)
               == encode_in_place(b).SerializeToString(deterministic=True) for b in batches)
    times: dict[str, list[float]] = {"sdk": [], "in_place": []}
    for _ in range(args.passes):
        for key, encode in (("sdk", sdk), ("in_place", encode_in_place)):
            start = time.thread_time()
            for batch in batches:
                encode(batch).SerializePartialToString()
            times[key].append((time.thread_time() - start) / len(spans) * 1e6)
    result = {
        "spans": len(spans), "samples": args.samples, "batch": args.batch, "same_bytes": same,
        "us_per_span": {k: statistics.median(v) for k, v in times.items()},
        "passes": times,
    }
    per = result["us_per_span"]
    print(f"{len(spans)} spans ({args.samples} samples), same bytes: {same}; us per span, median "
          f"of {args.passes} passes: SDK {per['sdk']:.1f}, in place {per['in_place']:.1f} "
          f"({per['sdk'] / per['in_place']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
