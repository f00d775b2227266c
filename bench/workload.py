"""The benchmark workload: an offline agent eval where telemetry cost is fully exposed.

Each sample is a small agent loop driven by a scripted ``mockllm/model``: the model asks for
``TOOL_CALLS`` tool calls one after the other (add, multiply, add, multiply, ...), then answers, so
a sample makes ``TOOL_CALLS + 1`` model calls and ``TOOL_CALLS`` tool calls, then one ``match``
score. Model calls return instantly, so any time a telemetry hook spends shows up in wall time.
Every scripted output sets ``usage`` (without it mockllm downloads a tokenizer, which fails
offline).

Run as a script it is one benchmark measurement in a fresh process: it runs the eval once and
writes a JSON result (wall times, peak RSS and, with ``--probe``, RSS sampled at 25/50/75/100%
of finished samples from a tiny extra hook)::

    python bench/workload.py --samples 200 --log-dir /tmp/logs --out result.json [--probe]

Which telemetry is on is decided by the environment the parent gives it (inspect-otel by
``OTEL_EXPORTER_OTLP_ENDPOINT``, inspect-mlflow by ``MLFLOW_TRACKING_URI``), never here.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # before the heavy imports: import cost is part of the process time

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from inspect_ai import Task, eval, task  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage  # noqa: E402
from inspect_ai.scorer import match  # noqa: E402
from inspect_ai.solver import generate, use_tools  # noqa: E402
from inspect_ai.tool import tool  # noqa: E402

MODEL = "mockllm/model"
TOOL_CALLS = 4
_IMPORTED = time.perf_counter()


def _usage() -> ModelUsage:
    return ModelUsage(input_tokens=120, output_tokens=24, total_tokens=144)


def _numbers(input: list[Any]) -> tuple[int, int]:
    first = input[0].text if input else ""
    parts = first.split()
    return int(parts[-2]), int(parts[-1])


def agent_model(input: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
    """Decides from the conversation (not shared state: samples run concurrently)."""
    done = sum(1 for m in input if isinstance(m, ChatMessageTool))
    x, y = _numbers(input)
    if done < TOOL_CALLS:
        name = "add" if done % 2 == 0 else "multiply"
        output = ModelOutput.for_tool_call(MODEL, name, {"x": x + done, "y": y})
    else:
        output = ModelOutput.from_content(MODEL, f"The answer is {x + y}.")
    output.usage = _usage()
    return output


@tool
def add():
    async def execute(x: int, y: int) -> int:
        """Add two integers.

        Args:
          x: First addend.
          y: Second addend.
        """
        return x + y

    return execute


@tool
def multiply():
    async def execute(x: int, y: int) -> int:
        """Multiply two integers.

        Args:
          x: First factor.
          y: Second factor.
        """
        return x * y

    return execute


@task
def agent_workload(samples: int = 200):
    rows = [
        Sample(id=f"s{i}", input=f"Use the tools, then answer: what is {i} + {i % 7 + 1}? {i} {i % 7 + 1}",
               target=str(i + i % 7 + 1))
        for i in range(samples)
    ]
    return Task(dataset=rows, solver=[use_tools(add(), multiply()), generate()], scorer=match())


def model_args() -> dict[str, Any]:
    return {"custom_outputs": agent_model}


def run_workload(samples: int, log_dir: str | Path, **kwargs: Any) -> Any:
    """Run the eval in this process; returns the EvalLog."""
    logs = eval(
        agent_workload(samples=samples), model=MODEL, model_args=model_args(),
        log_dir=str(log_dir), display="none", **kwargs,
    )
    return logs[0]


# --- measurement in a fresh process -----------------------------------------------------------

def rss_bytes() -> int:
    """Current resident set size (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def install_probe(total: int) -> list[dict[str, Any]]:
    """A tiny hook that samples RSS when 25/50/75/100% of samples have finished (and every 5%
    for the slope). Registered only in the measuring process, identical in every configuration."""
    from inspect_ai.hooks import Hooks, SampleEnd, hooks

    points: list[dict[str, Any]] = []
    marks = sorted({max(1, round(total * p / 20)) for p in range(1, 21)})
    state = {"done": 0}
    lock = threading.Lock()

    @hooks(name="bench_rss_probe", description="benchmark RSS probe")
    class RssProbe(Hooks):
        def enabled(self) -> bool:
            return True

        async def on_sample_end(self, data: SampleEnd) -> None:
            with lock:
                state["done"] += 1
                done = state["done"]
            if done in marks:
                points.append({"samples": done, "rss": rss_bytes(),
                               "t": time.perf_counter() - _T0})

    return points


# Hook methods Inspect does not call itself but the hook schedules on the eval loop (inspect-otel's
# coalesced live mapping runs as a loop callback, outside any on_* method).
LOOP_CALLBACKS = {"inspect_otel.hook.OtelHooks": ("_map_pending",)}


class GcClock:
    """CPU time of the interpreter's garbage collections, per generation, and the part that ran
    inside timed hook code: a collection runs wherever an allocation crosses a threshold, so a
    full (gen 2) one of Inspect's heap, about 0.17 s here, can land inside the hook's code and
    would be counted as the hook's own work."""

    def __init__(self) -> None:
        import gc

        self.n = [0, 0, 0]
        self.s = [0.0, 0.0, 0.0]
        self.in_hook = 0.0  # collections that ran inside timed hook code
        self.depth = 0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.thread_time()
            return
        spent = time.thread_time() - self._start
        gen = info["generation"]
        self.n[gen] += 1
        self.s[gen] += spent
        if self.depth:
            self.in_hook += spent

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "s": self.s, "in_hook_s": self.in_hook}


GC = GcClock()


class _Timing:
    """One timed call into the hook: adds [1 call, wall s, CPU s without GC] to ``slot``, unless it
    was called from timed code (counted there)."""

    def __init__(self, slot: list[float]) -> None:
        self.slot = slot

    def __enter__(self) -> None:
        GC.depth += 1
        self.t0, self.c0, self.g0 = time.perf_counter(), time.thread_time(), GC.in_hook

    def __exit__(self, *exc: Any) -> None:
        GC.depth -= 1
        if not GC.depth:
            self.slot[0] += 1
            self.slot[1] += time.perf_counter() - self.t0
            self.slot[2] += time.thread_time() - self.c0 - (GC.in_hook - self.g0)


def time_hooks() -> dict[str, list[float]]:
    """Wrap the telemetry hooks' own ``on_*`` methods (and the loop callbacks of LOOP_CALLBACKS)
    with timers: the eval loop's wall time in each and the CPU time of the thread running it
    (``{"pkg.Class.method": [calls, wall seconds, cpu seconds]}``). Only methods a class defines
    itself are wrapped, so Inspect's view of which hooks are implemented is unchanged. The CPU
    column leaves out garbage collections that ran inside (GcClock counts those apart)."""
    import functools
    import importlib
    import inspect as pyinspect

    totals: dict[str, list[float]] = {}
    targets = [("inspect_otel.hook", "OtelHooks")]
    if os.environ.get("MLFLOW_TRACKING_URI"):
        targets += [("inspect_mlflow.tracing", "MlflowTracingHooks"),
                    ("inspect_mlflow.tracking", "MlflowTrackingHooks")]
    for module_name, class_name in targets:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        callbacks = LOOP_CALLBACKS.get(f"{module_name}.{class_name}", ())
        for name, method in list(vars(cls).items()):
            if not ((name.startswith("on_") or name in callbacks) and callable(method)):
                continue
            key = f"{module_name.split('.')[0]}.{class_name}.{name}"
            slot = totals.setdefault(key, [0, 0.0, 0.0])

            def wrap(method: Any = method, slot: list[float] = slot) -> Any:
                if pyinspect.iscoroutinefunction(method):
                    @functools.wraps(method)
                    async def timed(self: Any, *args: Any, **kwargs: Any) -> None:
                        with _Timing(slot):
                            await method(self, *args, **kwargs)
                    return timed

                @functools.wraps(method)
                def timed_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
                    with _Timing(slot):
                        return method(self, *args, **kwargs)
                return timed_sync

            setattr(cls, name, wrap())
    return totals


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of this process's main thread and of all its other threads
    together (the OTel SDK's export threads, Inspect's own pools), from /proc; {} elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        out = {"main": 0.0, "other": 0.0}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
            out["main" if int(tid) == os.getpid() else "other"] += cpu
        return out
    except (OSError, ValueError, IndexError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--out", required=True, help="write the JSON result here")
    parser.add_argument("--probe", action="store_true", help="sample RSS during the eval")
    parser.add_argument("--time-hooks", action="store_true",
                        help="time the telemetry hooks' methods on the eval loop")
    args = parser.parse_args(argv)

    points = install_probe(args.samples) if args.probe else []
    hook_times = time_hooks() if args.time_hooks else {}
    rss_before = rss_bytes()
    start = time.perf_counter()
    log = run_workload(args.samples, args.log_dir)
    eval_s = time.perf_counter() - start
    samples_ok = 0
    if log.results is not None:
        samples_ok = log.results.completed_samples
    result = {
        "samples": args.samples,
        "completed_samples": samples_ok,
        "status": log.status,
        "error": str(log.error.message) if log.error else None,
        "import_s": _IMPORTED - _T0,
        "eval_s": eval_s,
        "rss_before_eval": rss_before,
        "rss_after_eval": rss_bytes(),
        "peak_rss": peak_rss_bytes(),
        "rss_points": points,
        "hook_times": {k: v for k, v in hook_times.items() if v[0]},
        # at eval() end: the run's telemetry is flushed (the hook's on_run_end), exit is not
        "thread_cpu_s": thread_cpu_s(),
        "gc": GC.summary(),
        # which inspect_otel ran (bench/run.py --code measures another tree)
        "inspect_otel_file": getattr(sys.modules.get("inspect_otel"), "__file__", None),
        "hooks_env": {
            "inspect_otel": bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")),
            "inspect_mlflow": bool(os.environ.get("MLFLOW_TRACKING_URI")),
        },
    }
    Path(args.out).write_text(json.dumps(result))
    # The parent measures the whole process too (interpreter exit flushes exporters).
    return 0 if log.status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
