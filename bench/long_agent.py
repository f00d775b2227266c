"""Long agent trajectories: what content capture costs at 50-300 turns, and whether it stalls
the eval's event loop. ``make bench BENCH_ARGS=...`` runs bench/run.py; this is its own script.

The workload is ``tests/support/long_agent.py``: samples that each read ``turns - 1`` chunks of
4 kB of real source code, one per model call, then answer; model and tools are instant (the worst
case for telemetry). Every measurement is a fresh process; configurations are interleaved in
rotated order in every round and compared with the baseline of the same round (paired ratios).

Configurations (``--configs``):
  baseline        no telemetry
  otel-off        inspect-otel to a counting OTLP sink, content capture off (the default)
  otel-content    content capture on (SPAN_AND_EVENT)
  otel-raw        content on plus the provider's raw request and response on every chat span
  otel-before     otel-content running the inspect_otel tree of ``--before-code DIR``
  inspect-mlflow  the peer (PyPI, pinned; content always, cut at 500 characters), to a local
                  MLflow server (installed into bench/.deps, never into the project's env)

What each run reports (from inside the eval process):
  - process CPU and wall time (the parent's rusage of exactly that process), peak RSS;
  - the hook's own CPU on the eval's thread (its on_* methods and the coalesced mapping callback;
    garbage collections inside excluded), and per chat span;
  - the event loop's longest stall as the eval feels it: a coroutine on the eval's own loop that
    sleeps 10 ms in a loop and records how late it wakes up (the lateness is what every other
    sample, timer, time limit and model call waits).

    .venv/bin/python bench/long_agent.py --turns 50,100,200 --repeats 3
    .venv/bin/python bench/long_agent.py child --turns 200 --samples 4 --out r.json   # one run
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

_ONCE_PER_RUN = ("on_run_start", "on_run_end", "on_task_start", "on_task_end")
CONFIGS = ("baseline", "otel-off", "otel-content", "otel-raw", "otel-before", "inspect-mlflow")
PROBE_INTERVAL_S = 0.010


# --- one measurement, in a fresh process --------------------------------------------------------

def install_stall_probe() -> dict[str, Any]:
    """A hook whose first sample start starts a coroutine on the eval's loop that sleeps 10 ms at
    a time and records how late it wakes up; the task end stops it. Identical in every
    configuration. (Inspect's own task set-up before the first sample holds the loop for seconds
    in every configuration: outside the window.)"""
    import asyncio

    from inspect_ai.hooks import Hooks, SampleStart, TaskEnd, hooks

    found: dict[str, Any] = {"lateness": []}

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PROBE_INTERVAL_S)
            found["lateness"].append(loop.time() - before - PROBE_INTERVAL_S)

    @hooks(name="bench_stall_probe", description="benchmark event-loop stall probe")
    class StallProbe(Hooks):
        def enabled(self) -> bool:
            return True

        async def on_sample_start(self, data: SampleStart) -> None:
            if "task" not in found and "stopped" not in found:
                found["task"] = asyncio.get_running_loop().create_task(probe())

        async def on_task_end(self, data: TaskEnd) -> None:
            found["stopped"] = True
            task = found.pop("task", None)
            if task is not None:
                task.cancel()

    return found


def child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="long_agent.py child")
    parser.add_argument("--turns", type=int, required=True)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import workload  # bench/workload.py: the hook timers, GC clock and thread CPU
    from inspect_ai import eval

    from tests.support.long_agent import MODEL, corpus_chunks, long_agent, model_args

    corpus_chunks()  # read the source files before the eval, not inside its first model call
    stalls = install_stall_probe()
    hook_times = workload.time_hooks()
    start = time.perf_counter()
    log = eval(long_agent(turns=args.turns, samples=args.samples), model=MODEL,
               model_args=model_args(), log_dir=args.log_dir, display="none",
               max_samples=args.samples)[0]
    eval_s = time.perf_counter() - start
    lateness = sorted(stalls["lateness"])
    hook_cpu = sum(v[2] for v in hook_times.values())
    # per chat span: the per-sample and per-event methods (and the mapping callback), without
    # the once-per-run ones (the first run start imports the SDK)
    per_event_cpu = sum(v[2] for k, v in hook_times.items()
                        if k.rsplit(".", 1)[-1] not in _ONCE_PER_RUN)
    chat_spans = args.samples * args.turns
    result = {
        "turns": args.turns, "samples": args.samples, "status": log.status,
        "error": str(log.error.message) if log.error else None,
        "eval_s": eval_s, "import_s": workload._IMPORTED - workload._T0,
        "peak_rss": workload.peak_rss_bytes(),
        "hook_times": {k: v for k, v in hook_times.items() if v[0]},
        "hook_cpu_s": hook_cpu, "hook_cpu_per_chat_span_us": per_event_cpu / chat_spans * 1e6,
        "stall_max_s": lateness[-1] if lateness else None,
        "stall_p99_s": lateness[int(len(lateness) * 0.99)] if lateness else None,
        "stall_wakeups": len(lateness),
        "thread_cpu_s": workload.thread_cpu_s(), "gc": workload.GC.summary(),
        "inspect_otel_file": getattr(sys.modules.get("inspect_otel"), "__file__", None),
    }
    Path(args.out).write_text(json.dumps(result))
    return 0 if log.status == "success" else 1


# --- the rounds ---------------------------------------------------------------------------------

def config_env(stack: Any, config: str) -> dict[str, str] | None:
    import run as bench_run

    sink = {"OTEL_EXPORTER_OTLP_ENDPOINT": stack.sink_url} if stack.sink_url else None
    content = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT"}
    if config == "baseline":
        return bench_run.clean_env()
    if sink is None:
        return None
    if config == "otel-off":
        return bench_run.clean_env(**sink)
    if config == "otel-content":
        return bench_run.clean_env(**sink, **content)
    if config == "otel-raw":
        return bench_run.clean_env(**sink, **content, INSPECT_OTEL_CAPTURE_PROVIDER_CALL="true")
    if config == "otel-before":
        if not stack.before_code_path:
            return None
        return bench_run.clean_env(**sink, **content, PYTHONPATH=stack.before_code_path)
    if config == "inspect-mlflow":
        return bench_run.config_env(stack, "inspect-mlflow")
    raise ValueError(config)


def one_run(stack: Any, config: str, turns: int, samples: int, tag: str) -> dict[str, Any]:
    import run as bench_run

    env = config_env(stack, config)
    assert env is not None
    run_dir = stack.work / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [bench_run.PY, str(Path(__file__)), "child", "--turns", str(turns), "--samples",
           str(samples), "--log-dir", str(run_dir / "logs"), "--out", str(run_dir / "result.json")]
    m = bench_run.measure(cmd, env, run_dir / "output.txt", timeout=3600)
    try:
        inner = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        inner = {}
    row = {"config": config, "tag": tag, "returncode": m.returncode, "process_wall_s": m.wall_s,
           "process_cpu_s": m.cpu_s, "process_peak_rss": m.peak_rss, **inner}
    if m.returncode != 0 or inner.get("status") != "success":
        row["output_tail"] = m.output[-2000:]
        bench_run.log(f"  {tag}: FAILED (rc {m.returncode}):\n{m.output[-1500:]}")
    for eval_log in (run_dir / "logs").glob("*.eval"):
        eval_log.unlink()
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("status") == "success" and r["returncode"] == 0]
    base = {(r["round"], r["turns"]): r for r in ok if r["config"] == "baseline"}
    out: dict[str, Any] = {}
    for r in ok:
        out.setdefault(f"{r['config']}@{r['turns']}", []).append(r)
    summary: dict[str, Any] = {}
    for key, mine in sorted(out.items()):
        paired_cpu = [r["process_cpu_s"] / base[(r["round"], r["turns"])]["process_cpu_s"]
                      for r in mine if (r["round"], r["turns"]) in base]
        paired_stall = [r["stall_max_s"] / base[(r["round"], r["turns"])]["stall_max_s"]
                        for r in mine if (r["round"], r["turns"]) in base
                        and r.get("stall_max_s") and base[(r["round"], r["turns"])]["stall_max_s"]]
        s: dict[str, Any] = {"n": len(mine)}
        for name, values in (
            ("process_cpu_s", [r["process_cpu_s"] for r in mine]),
            ("process_wall_s", [r["process_wall_s"] for r in mine]),
            ("peak_rss_mb", [r["process_peak_rss"] / 2**20 for r in mine]),
            ("hook_cpu_s", [r["hook_cpu_s"] for r in mine]),
            ("hook_cpu_per_chat_span_us", [r["hook_cpu_per_chat_span_us"] for r in mine]),
            ("stall_max_ms", [r["stall_max_s"] * 1000 for r in mine if r.get("stall_max_s")]),
            ("cpu_vs_baseline_paired", paired_cpu),
            ("stall_vs_baseline_paired", paired_stall),
        ):
            if values:
                s[name] = {"median": statistics.median(values), "min": min(values),
                           "max": max(values)}
        summary[key] = s
    return summary


def table(summary: dict[str, Any], turns: list[int], configs: list[str]) -> str:
    def cell(key: str, measure: str, fmt: str) -> str:
        s = summary.get(key, {}).get(measure)
        if s is None:
            return "-"
        return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"

    rows = [("process CPU vs baseline (paired)", "cpu_vs_baseline_paired", "{:.2f}x"),
            ("process CPU s", "process_cpu_s", "{:.1f}"),
            ("hook CPU per chat span, us", "hook_cpu_per_chat_span_us", "{:.0f}"),
            ("longest loop stall, ms", "stall_max_ms", "{:.0f}"),
            ("longest stall vs baseline (paired)", "stall_vs_baseline_paired", "{:.2f}x"),
            ("peak RSS, MB", "peak_rss_mb", "{:.0f}")]
    lines = []
    for turn in turns:
        lines.append(f"\n### {turn} turns per sample\n")
        lines.append("| measure | " + " | ".join(configs) + " |")
        lines.append("|---" * (len(configs) + 1) + "|")
        for label, measure, fmt in rows:
            cells = [cell(f"{c}@{turn}", measure, fmt) for c in configs]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["child"]:
        return child(argv[1:])
    import run as bench_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", default="50,100,200")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default="baseline,otel-off,otel-content,otel-raw")
    parser.add_argument("--before-code", help="an inspect_otel source tree for otel-before")
    parser.add_argument("--mlflow-turns", default=None,
                        help="turn counts inspect-mlflow runs at (default: all)")
    parser.add_argument("--out", default=None, help="JSON result (default bench/results/...)")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args(argv)
    turns = [int(t) for t in args.turns.split(",")]
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    mlflow_turns = {int(t) for t in args.mlflow_turns.split(",")} if args.mlflow_turns else set(turns)

    import tempfile

    work = Path(tempfile.mkdtemp(prefix="inspect-otel-long-agent-"))
    stack = bench_run.Stack(work=work)
    if args.before_code:
        tree = Path(args.before_code).resolve()
        if not (tree / "inspect_otel" / "__init__.py").is_file():
            parser.error(f"--before-code {args.before_code}: no inspect_otel package there")
        stack.before_code_path = str(tree)
    elif "otel-before" in configs:
        parser.error("config otel-before needs --before-code DIR")
    rows: list[dict[str, Any]] = []
    try:
        bench_run.start_sink(stack)
        if "inspect-mlflow" in configs:
            bench_run.ensure_inspect_mlflow(stack, install=not args.no_install)
            bench_run.start_mlflow(stack)
        runnable = [c for c in configs if config_env(stack, c) is not None]
        bench_run.log(f"configs {runnable}; turns {turns}; {args.samples} samples; "
                      f"{args.repeats} rounds; work dir {work}")
        one_run(stack, "baseline", min(turns), args.samples, "warmup")
        for rnd in range(args.repeats):
            for turn in turns:
                order = runnable[rnd % len(runnable):] + runnable[:rnd % len(runnable)]
                for config in order:
                    if config == "inspect-mlflow" and turn not in mlflow_turns:
                        continue
                    row = one_run(stack, config, turn, args.samples, f"r{rnd}-{turn}-{config}")
                    row["round"] = rnd
                    rows.append(row)
                    bench_run.log(
                        f"  r{rnd} {turn:4d} turns {config:15s} cpu {row['process_cpu_s']:7.2f}s "
                        f"hook {row.get('hook_cpu_s', float('nan')):6.2f}s stall "
                        f"{(row.get('stall_max_s') or float('nan')) * 1000:6.0f} ms "
                        f"rss {row['process_peak_rss'] / 2**20:6.0f} MB")
    finally:
        stack.stop()
    summary = summarize(rows)
    result = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "turns": turns, "samples": args.samples, "repeats": args.repeats,
              "configs": configs, "before_code": args.before_code, "load": os.getloadavg(),
              "summary": summary, "rows": rows, "notes": stack.notes}
    out = Path(args.out) if args.out else (
        BENCH / "results" / f"long-agent-{time.strftime('%Y%m%dT%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(table(summary, turns, [c for c in configs if any(k.startswith(c + "@") for k in summary)]))
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
