"""Live mapping A/B: batched (the hook's default) against event by event, same code, same loop.

Runs the worst-case workload of ``bench/workload.py`` (instant model, 200 samples) in fresh
processes, interleaved round by round: ``baseline`` (no telemetry), ``coalesce`` (live events
mapped in one pass at most ``LIVE_COALESCE_S`` after they arrive) and ``immediate`` (the same
hook with ``inspect_otel.hook._call_later`` returning None: each event mapped as it arrives).
Prints each mode's process CPU (user + system, children's rusage) and the paired per-round
ratios. Exports go to the counting sink of ``bench/sink.py`` (started here).

    .venv/bin/python bench/live_ab.py [--rounds 9] [--samples 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MODES = ("baseline", "coalesce", "immediate")


def child(mode: str, argv: list[str]) -> int:
    sys.path.insert(0, str(BENCH))
    import workload  # noqa: PLC0415 (after the path)

    if mode == "immediate":
        import inspect_otel.hook as hook

        hook._call_later = lambda *a, **k: None  # noqa: SLF001 - the A/B switch
    return workload.main(argv)


def run(mode: str, samples: int, sink_url: str, work: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    env.pop("PYTHONPATH", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    if mode != "baseline":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink_url
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, __file__, "--child", mode, "--samples", str(samples),
                    "--log-dir", str(work / mode), "--out", str(work / f"{mode}.json")],
                   env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", help="write the raw CPU seconds here")
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH.parent))
    from tests.support.mlflow_server import free_port  # noqa: PLC0415

    port = free_port()
    sink = subprocess.Popen([sys.executable, str(BENCH / "sink.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        with tempfile.TemporaryDirectory(prefix="inspect-otel-ab-") as tmp:
            for r in range(args.rounds):
                for mode in MODES[r % 3:] + MODES[:r % 3]:  # rotated order
                    cpu[mode].append(run(mode, args.samples, f"http://127.0.0.1:{port}",
                                         Path(tmp)))
                print(f"round {r}: " + ", ".join(f"{m} {cpu[m][-1]:.2f}s" for m in MODES),
                      flush=True)
    finally:
        sink.terminate()
    for mode, values in cpu.items():
        print(f"{mode:10s} CPU median {statistics.median(values):.2f} s "
              f"[{min(values):.2f}-{max(values):.2f}]")
    for a, b in itertools.permutations(MODES, 2):
        if a != "baseline" and b in ("baseline", "immediate") and a != b:
            ratios = [x / y for x, y in zip(cpu[a], cpu[b])]
            print(f"{a} / {b}, paired per round: median {statistics.median(ratios):.3f}x "
                  f"[{min(ratios):.3f}-{max(ratios):.3f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "samples": args.samples,
                                               "cpu_s": cpu}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
