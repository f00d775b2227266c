"""What the hook's redaction costs, alone: the exporter's pass over a real log's spans, and the
scan of one long value.

Maps the samples of a finished log (not timed), then times ``Redactor.attributes`` over every
span, span event and evaluation result, and ``Redactor.text`` over every span name, exactly what
``export.py`` does per sample (CPU time, best of ``--passes``), with content capture off and on.
Then one 16 KB value of prose, base64 and JSON messages.

    python bench/redaction_cost.py --log LOG.eval [--passes 7]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from pathlib import Path


def _best(fn, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()

    from inspect_otel.config import ContentCapture
    from inspect_otel.content import ContentPolicy
    from inspect_otel.mapping import map_sample, task_context
    from inspect_otel.redaction import Redactor
    from inspect_otel.replay import iter_samples, read_header

    ctx = task_context(read_header(Path(args.log)).eval)
    samples = list(iter_samples(Path(args.log)))
    for capture in (ContentCapture.NO_CONTENT, ContentCapture.SPAN_AND_EVENT):
        policy = ContentPolicy(capture=capture)
        mapped = [map_sample(s, ctx, policy) for s in samples]
        attributes = sum(len(sp.attributes) + sum(len(e.attributes) for e in sp.events)
                         for t in mapped for sp in t.spans) / len(mapped)
        redactor = Redactor()

        def export_pass() -> None:
            for telemetry in mapped:
                for span in telemetry.spans:
                    redactor.attributes(span.attributes)
                    for event in span.events:
                        redactor.attributes(event.attributes)
                    redactor.text(span.name)
                for result in telemetry.results:
                    redactor.attributes(result.attributes)

        us = _best(export_pass, args.passes) / len(mapped) * 1e6
        print(f"content {capture.name}: {us:.0f} us CPU per sample for the exporter's pass "
              f"({len(mapped[0].spans)} spans, {attributes:.0f} attributes per sample)")

    random.seed(1)
    words = ["the", "answer", "is", "model", "tool", "call", "result", "value", "token", "x"]
    values = {
        "prose": " ".join(random.choice(words) for _ in range(4000))[:16000],
        "base64": "".join(random.choice(string.ascii_letters + string.digits + "+/")
                          for _ in range(16000)),
        "JSON messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": " ".join(
            random.choice(words) for _ in range(40))}]} for _ in range(60)])[:16000],
    }
    redactor = Redactor()
    for name, text in values.items():
        us = _best(lambda t=text: redactor.text(t), args.passes * 5) * 1e6
        print(f"one 16 KB value of {name}: {us:.0f} us CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
