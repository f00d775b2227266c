"""What the raw provider call costs the hook (issue 16), in isolation from the machine's noise.

Maps every sample of a finished log with ``map_sample`` (the hook's work on the eval loop, before
the SDK) under three content policies, in one process, rounds interleaved, timing CPU time of this
process (``time.process_time``: other processes on a shared machine do not count) and the bytes
of the attributes produced:

- ``default``: no content (what most evals run with);
- ``content``: message content on spans and events;
- ``content + raw call``: content plus ``INSPECT_OTEL_CAPTURE_PROVIDER_CALL``.

    python bench/provider_call.py --log LOG.eval [--rounds 7] [--out result.json]

``bench/workload.py --samples 200 --log-dir D`` makes a suitable log (mockllm records a raw call
for each model call; Inspect keeps the first 5 per model and sample, i.e. all of that workload's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _attribute_bytes(telemetry: Any) -> int:
    return sum(len(v) if isinstance(v, str) else 8
               for span in telemetry.spans for v in span.attributes.values())


def measure(log: str, rounds: int) -> dict[str, Any]:
    from inspect_otel.config import ContentCapture
    from inspect_otel.content import ContentPolicy
    from inspect_otel.mapping import map_sample, task_context
    from inspect_otel.replay import iter_samples, read_header

    header = read_header(Path(log))
    ctx = task_context(header.eval, {})
    samples = list(iter_samples(Path(log)))
    policies = {
        "default": ContentPolicy(),
        "content": ContentPolicy(capture=ContentCapture.SPAN_AND_EVENT),
        "content + raw call": ContentPolicy(capture=ContentCapture.SPAN_AND_EVENT,
                                            provider_call=True),
    }
    cpu: dict[str, list[float]] = {name: [] for name in policies}
    size: dict[str, int] = {}
    calls = sum(1 for s in samples for e in s.events if e.event == "model" and e.call is not None)
    for round_ in range(rounds):
        names = list(policies)
        names = names[round_ % len(names):] + names[:round_ % len(names)]  # rotate the order
        for name in names:
            policy = policies[name]
            t0 = time.process_time()
            total = 0
            for sample in samples:
                telemetry = map_sample(sample, ctx, policy)
                if round_ == 0:
                    total += _attribute_bytes(telemetry)
            cpu[name].append((time.process_time() - t0) / len(samples) * 1e6)
            if round_ == 0:
                size[name] = total // len(samples)
    return {
        "log": log, "samples": len(samples), "model_calls_with_raw_call": calls,
        "rounds": rounds,
        "map_cpu_us_per_sample": {k: {"median": statistics.median(v), "min": min(v),
                                      "max": max(v)} for k, v in cpu.items()},
        "attribute_bytes_per_sample": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out")
    args = parser.parse_args()
    result = measure(args.log, args.rounds)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    base = result["map_cpu_us_per_sample"]["content"]["median"]
    print(f"{result['samples']} samples, {result['model_calls_with_raw_call']} model calls with a "
          f"raw call; map_sample CPU per sample, median [min-max] of {args.rounds} rounds:")
    for name, t in result["map_cpu_us_per_sample"].items():
        print(f"  {name:20s} {t['median']:8.0f} us [{t['min']:.0f}-{t['max']:.0f}]  "
              f"x{t['median'] / base:.2f} of content  "
              f"{result['attribute_bytes_per_sample'][name]:7d} attribute bytes/sample")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
