"""The inspect-otel hot path in isolation: what ``on_sample_end`` costs the eval loop per sample.

Loads the samples of a finished log into memory (not timed), then times, on this thread only,
``map_sample`` (EvalSample -> span model) and ``TelemetryPipeline.emit_sample`` (span model ->
SDK ``ReadableSpan`` -> batch-processor queue, log records, metric instruments): exactly the work
the hook does on the eval's event loop. Export itself runs on the SDK's worker threads and is not
in these numbers (it is in the process CPU time of the eval-overhead runs). Then a cProfile pass
lists the hotspots.

    python bench/profile_hook.py --log LOG.eval --endpoint http://127.0.0.1:4318 [--out f.json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _hotspots(profile: cProfile.Profile, samples: int, top: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({
            "function": f"{_short(filename)}:{line}({func})",
            "calls_per_sample": nc / samples,
            "tottime_us_per_sample": tt / samples * 1e6,
            "cumtime_us_per_sample": ct / samples * 1e6,
        })
    rows.sort(key=lambda r: r["tottime_us_per_sample"], reverse=True)
    return rows[:top]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def profile_log(log: str, rounds: int = 3, top: int = 20, cpu: bool = False) -> dict[str, Any]:
    """``cpu``: time with this process's CPU time instead of the wall clock (steadier on a loaded
    machine, where the wall clock also counts the time other processes held the CPU)."""
    clock = time.process_time if cpu else time.perf_counter
    from inspect_otel.content import ContentPolicy
    from inspect_otel.config import load_settings
    from inspect_otel.export import TelemetryPipeline
    from inspect_otel.mapping import map_sample, task_context
    from inspect_otel.replay import iter_samples, read_header

    header = read_header(Path(log))
    ctx = task_context(header.eval, os.environ)
    samples = list(iter_samples(Path(log)))
    settings = load_settings()
    policy = ContentPolicy.from_settings(settings)  # as the hook builds it
    pipeline = TelemetryPipeline(settings)

    map_us: list[float] = []
    emit_us: list[float] = []
    parts_us: list[dict[str, float]] = []
    spans = 0
    for _ in range(rounds):
        t_map = t_spans = t_results = t_metrics = 0.0
        spans = 0
        for sample in samples:
            t0 = clock()
            telemetry = map_sample(sample, ctx, policy)
            t1 = clock()
            # emit_sample = emit_spans + emit_results + record_sample, timed one by one
            pipeline.emit_spans(telemetry.spans)
            t2 = clock()
            pipeline.emit_results(telemetry.results)
            t3 = clock()
            pipeline.record_sample(telemetry, ctx.task_name)
            t4 = clock()
            t_map += t1 - t0
            t_spans += t2 - t1
            t_results += t3 - t2
            t_metrics += t4 - t3
            spans += len(telemetry.spans)
        n = len(samples) / 1e6
        map_us.append(t_map / n)
        emit_us.append((t_spans + t_results + t_metrics) / n)
        parts_us.append({"map_sample": t_map / n, "emit_spans": t_spans / n,
                         "emit_results (log records)": t_results / n,
                         "record_sample (metrics)": t_metrics / n})
        pipeline.drain()  # keep the queue from filling between rounds (not timed)
    best = min(range(rounds), key=lambda i: map_us[i] + emit_us[i])

    profile = cProfile.Profile()
    profile.enable()
    for sample in samples:
        pipeline.emit_sample(map_sample(sample, ctx, policy), ctx.task_name)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    pipeline.close()
    return {
        "log": log,
        "samples": len(samples),
        "spans_per_sample": spans / len(samples),
        "map_us_per_sample": min(map_us),
        "emit_us_per_sample": min(emit_us),
        "total_us_per_sample": min(m + e for m, e in zip(map_us, emit_us)),
        "rounds": {"map_us": map_us, "emit_us": emit_us},
        "parts_us_per_sample": parts_us[best],  # the best round, split by step
        "hotspots": _hotspots(profile, len(samples), top),
        "pstats_text": text.getvalue(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--endpoint", help="OTLP endpoint the pipeline exports to (a sink)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", help="write JSON here")
    parser.add_argument("--cpu", action="store_true",
                        help="time with the process's CPU time instead of the wall clock")
    args = parser.parse_args()
    if args.endpoint:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.endpoint
    result = profile_log(args.log, args.rounds, args.top, cpu=args.cpu)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{result['samples']} samples, {result['spans_per_sample']:.1f} spans/sample: "
          f"map_sample {result['map_us_per_sample']:.0f} us + emit_sample "
          f"{result['emit_us_per_sample']:.0f} us = {result['total_us_per_sample']:.0f} us "
          f"per sample (best of {args.rounds}; median map "
          f"{statistics.median(result['rounds']['map_us']):.0f} us)")
    print("  best round by step: " + ", ".join(
        f"{k} {v:.0f} us" for k, v in result["parts_us_per_sample"].items()))
    print("  cProfile (inflates many small calls; use the timings above for totals):")
    for row in result["hotspots"][:12]:
        print(f"  {row['tottime_us_per_sample']:8.1f} us self {row['cumtime_us_per_sample']:8.1f} us cum "
              f"{row['calls_per_sample']:6.1f} calls  {row['function']}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
