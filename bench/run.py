"""inspect-otel benchmarks, side by side: eval overhead, memory, replay, ingest. ``make bench``.

Everything runs on this machine with public tools only: a real MLflow server (sqlite store), the
inspect-otel receiver in front of it, and the offline agent workload of ``bench/workload.py``
(``mockllm/model``, 4 tool calls and 5 model calls per sample: model calls are instant, so
telemetry cost is fully exposed). Each measurement is a fresh subprocess; configurations are
interleaved (rotated order in every round) and summarised by medians with their min-max spread.

Configurations (``--configs``):
  baseline        no telemetry
  inspect-otel    OTEL_EXPORTER_OTLP_ENDPOINT -> a live ``inspect-otel receiver`` -> MLflow
                  (falls back to the counting OTLP sink of bench/sink.py if the receiver cannot
                  start; the output says which)
  inspect-mlflow  the inspect-mlflow package (PyPI, pinned), tracking + tracing on, pointed at the
                  same MLflow server (installed into bench/.deps, never into the project's env)
  otel-sink       inspect-otel exporting to the counting sink: the hook's own cost, without the
                  receiver and MLflow competing for the same CPUs during the eval
  otel-sink-spans-only  optional: the same with OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
  otel-sink-end-only  optional: otel-sink with INSPECT_OTEL_LIVE=false (each sample leaves at its
                  end, as before live export): what live export costs
  otel-sink-sdk-delays  optional: otel-sink with the SDK's default batch delays (5 s spans, 1 s log
                  records) instead of the hook's 500 ms: what sending each sample promptly costs
  otel-sink-content  optional: otel-sink with content capture on spans and events (prompts,
                  outputs, tool I/O: the most strings to redact)
  otel-sink-provider-call  optional: otel-sink-content plus INSPECT_OTEL_CAPTURE_PROVIDER_CALL=true
                  (mockllm records a raw call too: Inspect keeps the first 5 per model and sample,
                  i.e. every call of this workload)
  otel-sink-before  optional: otel-sink running the inspect_otel tree of ``--before-code DIR``:
                  a before/after in the same rounds, against the same baselines (drift between
                  two separate runs on a shared machine is as large as the difference measured)

Results: one table on stdout, raw JSON in bench/results/<timestamp>.json and latest.json.

    .venv/bin/python bench/run.py                      # defaults (about 15 minutes on 2 cores)
    .venv/bin/python bench/run.py --samples 200 --repeats 3 --memory-samples 500   # quicker
    git archive <commit> src | tar -x -C /tmp/before          # a before/after: the old tree
    .venv/bin/python bench/run.py --configs baseline,otel-sink,otel-sink-before \
        --before-code /tmp/before/src --no-time-hooks
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.support.mlflow_server import MlflowServer, free_port, start_mlflow_server  # noqa: E402

INSPECT_MLFLOW_PIN = "inspect-mlflow==0.9.0"
DEPS = BENCH / ".deps"
PY = sys.executable
_SCRUB = ("OTEL_", "INSPECT_OTEL_", "MLFLOW_", "INSPECT_MLFLOW_")
ALL_CONFIGS = ("baseline", "inspect-otel", "inspect-mlflow", "otel-sink", "otel-sink-spans-only",
               "otel-sink-sdk-delays", "otel-sink-content", "otel-sink-end-only",
               "otel-sink-provider-call", "otel-sink-before")
MB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------------

@dataclass
class Child:
    """A background service in its own process group (stopped by group, never by name)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True, cwd=str(ROOT))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        _killpg(proc.pid)  # anything the leader left behind in its group

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def wait_healthy(child: Child, url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        try:
            get_json(url, timeout=2)
            return True
        except (OSError, ValueError):
            time.sleep(0.3)
    return False


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.pop("PYTHONPATH", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child process itself
    peak_rss: int  # bytes, from the kernel's rusage of that child
    output: str


def measure(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> Measured:
    """Run one fresh process; wall time, CPU time and peak RSS of exactly that process."""
    with open(log_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
                                start_new_session=True)
        timer = threading.Timer(timeout, lambda: _killpg(proc.pid))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024,
                    log_path.read_text(errors="replace"))


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- the stack --------------------------------------------------------------------------------

@dataclass
class Stack:
    work: Path
    mlflow: MlflowServer | None = None
    receiver: Child | None = None
    receiver_url: str | None = None
    sink: Child | None = None
    sink_url: str | None = None
    notes: list[str] = field(default_factory=list)
    mlflow_plugin_path: str | None = None  # PYTHONPATH entry holding inspect-mlflow, "" = in env
    code_path: str | None = None  # --code: an inspect_otel source tree measured instead of ours
    before_code_path: str | None = None  # --before-code: the tree of config otel-sink-before
    time_hooks: bool = True  # --no-time-hooks: no timers around the hook's methods

    def stop(self) -> None:
        for child in (self.receiver, self.sink):
            if child is not None:
                child.stop()
        if self.mlflow is not None:
            self.mlflow.stop()


def start_mlflow(stack: Stack) -> None:
    log("starting MLflow server (sqlite, 1 worker) ...")
    t0 = time.monotonic()
    try:
        stack.mlflow = start_mlflow_server(stack.work / "mlflow")
        log(f"MLflow healthy at {stack.mlflow.url} after {time.monotonic() - t0:.0f}s")
    except Exception as ex:  # noqa: BLE001 - reported, the rest still runs
        stack.notes.append(f"MLflow server did not start: {ex}")
        log(stack.notes[-1])


def start_receiver(stack: Stack) -> None:
    if stack.mlflow is None:
        stack.notes.append("receiver not started (no MLflow server)")
        return
    if importlib.util.find_spec("inspect_otel.receiver") is None:
        stack.notes.append("receiver not importable")
        return
    port, grpc_port = free_port(), free_port()
    child = Child("receiver", [
        PY, "-m", "inspect_otel.cli", "receiver", "--mlflow-uri", stack.mlflow.url,
        "--experiment", "bench-inspect-otel", "--port", str(port), "--grpc-port", str(grpc_port),
        "--data-dir", str(stack.work / "receiver"), "--log-level", "WARNING",
    ], clean_env(), stack.work / "receiver.log").start()
    url = f"http://127.0.0.1:{port}"
    if wait_healthy(child, url + "/health", 120):
        stack.receiver, stack.receiver_url = child, url
        log(f"receiver healthy at {url}")
    else:
        stack.notes.append(f"receiver did not become healthy; inspect-otel exports to the "
                           f"counting OTLP sink instead. Receiver log tail:\n{child.tail()}")
        log(stack.notes[-1])
        child.stop()


def start_sink(stack: Stack) -> None:
    port = free_port()
    child = Child("sink", [PY, str(BENCH / "sink.py"), "--port", str(port)], clean_env(),
                  stack.work / "sink.log").start()
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(child, url + "/health", 60):
        raise RuntimeError(f"counting sink did not start:\n{child.tail()}")
    stack.sink, stack.sink_url = child, url


def ensure_inspect_mlflow(stack: Stack, install: bool) -> None:
    """inspect-mlflow registers an Inspect hook through an entry point: keep it out of the
    project's environment (it would switch on in any eval that has MLFLOW_TRACKING_URI set) and
    give it only to the inspect-mlflow runs, through PYTHONPATH."""
    if importlib.util.find_spec("inspect_mlflow") is not None:
        stack.mlflow_plugin_path = ""
        stack.notes.append("inspect-mlflow is installed in this environment: its hook is "
                           "registered (though disabled) in every configuration")
        return
    if not (DEPS / "inspect_mlflow").is_dir():
        if not install:
            stack.notes.append("inspect-mlflow not installed (--no-install): config skipped")
            return
        uv = shutil.which("uv", path=str(Path(PY).parent)) or shutil.which("uv")
        cmd = ([uv, "pip", "install", "--python", PY] if uv else [PY, "-m", "pip", "install"]) + [
            "--quiet", "--target", str(DEPS), "--no-deps", INSPECT_MLFLOW_PIN]
        log(f"installing {INSPECT_MLFLOW_PIN} into {DEPS} (bench only) ...")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            stack.notes.append(f"could not install {INSPECT_MLFLOW_PIN}: {result.stderr[-500:]}")
            return
    stack.mlflow_plugin_path = str(DEPS)


def config_env(stack: Stack, config: str) -> dict[str, str] | None:
    """The environment of one configuration's eval process, or None if it cannot run."""
    if config == "baseline":
        return clean_env()
    if config == "inspect-otel":
        url = stack.receiver_url or stack.sink_url
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=url) if url else None
    if config == "otel-sink":
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url) if stack.sink_url else None
    if config == "otel-sink-before":
        if not (stack.sink_url and stack.before_code_path):
            return None
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url,
                         PYTHONPATH=stack.before_code_path)
    if config == "otel-sink-end-only":  # no live export: each sample mapped at its end
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url,
                         INSPECT_OTEL_LIVE="false") if stack.sink_url else None
    if config == "otel-sink-spans-only":  # standard switches: no metrics, no log records
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url, OTEL_METRICS_EXPORTER="none",
                         OTEL_LOGS_EXPORTER="none") if stack.sink_url else None
    if config == "otel-sink-sdk-delays":  # the SDK's defaults, set through the standard variables
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url, OTEL_BSP_SCHEDULE_DELAY="5000",
                         OTEL_BLRP_SCHEDULE_DELAY="1000") if stack.sink_url else None
    if config == "otel-sink-content":
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url,
                         OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT"
                         ) if stack.sink_url else None
    if config == "otel-sink-provider-call":  # content plus the raw provider call on chat spans
        return clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.sink_url,
                         OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT",
                         INSPECT_OTEL_CAPTURE_PROVIDER_CALL="true") if stack.sink_url else None
    if config == "inspect-mlflow":
        if stack.mlflow is None or stack.mlflow_plugin_path is None:
            return None
        env = clean_env(MLFLOW_TRACKING_URI=stack.mlflow.url, MLFLOW_INSPECT_TRACING="true",
                        MLFLOW_EXPERIMENT_NAME="bench-inspect-mlflow")
        if stack.mlflow_plugin_path:
            env["PYTHONPATH"] = stack.mlflow_plugin_path
        return env
    raise ValueError(config)


def wait_receiver_idle(stack: Stack, timeout: float) -> float | None:
    """After an inspect-otel run: wait until the receiver has written everything to MLflow, so
    its work does not spill into the next measurement. Returns the seconds it took."""
    if stack.receiver_url is None:
        return None
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if get_json(stack.receiver_url + "/health", timeout=10).get("idle"):
                return time.monotonic() - t0
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    stack.notes.append(f"receiver not idle {timeout:.0f}s after a run")
    return None


# --- measurements -----------------------------------------------------------------------------

def run_workload(stack: Stack, config: str, samples: int, tag: str, probe: bool,
                 keep_log: bool = False) -> dict[str, Any]:
    env = config_env(stack, config)
    assert env is not None
    if stack.code_path and config not in ("inspect-mlflow", "otel-sink-before"):
        # every process of the run, the baseline too (Inspect imports the hook's entry point)
        env["PYTHONPATH"] = stack.code_path
    run_dir = stack.work / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [PY, str(BENCH / "workload.py"), "--samples", str(samples),
           "--log-dir", str(run_dir / "logs"), "--out", str(run_dir / "result.json")]
    # The timers cost the timed configurations a little CPU (about 2 us per hook call) that the
    # baseline, whose hook is off, never pays: --no-time-hooks for the cleanest ratios.
    cmd += (["--time-hooks"] if stack.time_hooks else []) + (["--probe"] if probe else [])
    m = measure(cmd, env, run_dir / "output.txt", timeout=max(600.0, samples * 5.0))
    try:
        inner = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        inner = {}
    row: dict[str, Any] = {
        "config": config, "samples": samples, "tag": tag, "returncode": m.returncode,
        "process_wall_s": m.wall_s, "process_cpu_s": m.cpu_s, "process_peak_rss": m.peak_rss,
        **{k: v for k, v in inner.items() if k != "samples"},
    }
    if m.returncode != 0 or inner.get("status") != "success":
        row["output_tail"] = m.output[-2000:]
        log(f"  {tag}: FAILED (rc {m.returncode}); output tail:\n{m.output[-1500:]}")
    if config == "inspect-otel":
        row["receiver_idle_after_s"] = wait_receiver_idle(stack, 900)
    logs = sorted((run_dir / "logs").glob("*.eval"))
    if keep_log and logs:
        row["log"] = str(logs[0])
    elif not keep_log:
        shutil.rmtree(run_dir / "logs", ignore_errors=True)
    return row


def eval_overhead(stack: Stack, configs: list[str], samples: int, repeats: int,
                  mlflow_repeats: int) -> list[dict[str, Any]]:
    rows = []
    # Warm-up (not counted): first imports after a cold start are slower for everyone.
    log("warm-up run (not counted)")
    run_workload(stack, "baseline", max(5, samples // 10), "warmup", probe=False)
    for r in range(repeats):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for config in order:
            if config == "inspect-mlflow" and r >= mlflow_repeats:
                continue
            tag = f"overhead-r{r}-{config}"
            row = run_workload(stack, config, samples, tag, probe=False, keep_log=(r == 0))
            row["round"] = r
            rows.append(row)
            log(f"  round {r} {config:15s} eval {row.get('eval_s', float('nan')):7.2f}s  process "
                f"{row['process_wall_s']:7.2f}s  cpu {row['process_cpu_s']:7.2f}s")
    return rows


def rss_slope(points: list[dict[str, Any]], total: int) -> float | None:
    """Least-squares RSS growth in bytes per finished sample, from 25% of samples on (the first
    quarter is warm-up: imports, caches, connection pools)."""
    pts = [(p["samples"], p["rss"]) for p in points if p["samples"] >= total * 0.25]
    if len(pts) < 3:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def memory(stack: Stack, configs: list[str], samples: int) -> list[dict[str, Any]]:
    rows = []
    for config in configs:
        tag = f"memory-{config}"
        row = run_workload(stack, config, samples, tag, probe=True, keep_log=(config == "baseline"))
        pts = row.get("rss_points") or []
        row["rss_slope_bytes_per_sample"] = rss_slope(pts, samples)
        row["rss_at"] = {q: _rss_at(pts, samples * q / 100) for q in (25, 50, 75, 100)}
        rows.append(row)
        slope = row["rss_slope_bytes_per_sample"]
        log(f"  memory {config:15s} peak {row['process_peak_rss'] / MB:7.1f} MB  slope "
            f"{(slope or 0) * 1000 / MB:6.2f} MB/1000 samples")
    return rows


def _rss_at(points: list[dict[str, Any]], target: float) -> int | None:
    best = [p for p in points if p["samples"] >= target]
    return best[0]["rss"] if best else None


def replay_memory(stack: Stack, logs: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Peak RSS of ``inspect-otel export`` replaying logs of different sizes to the sink."""
    rows = []
    for samples, path in logs:
        out = stack.work / f"replay-{samples}.txt"
        m = measure([PY, "-m", "inspect_otel.cli", "export", path, "--endpoint", stack.sink_url],
                    clean_env(), out, timeout=1800)
        rows.append({"log_samples": samples, "returncode": m.returncode, "wall_s": m.wall_s,
                     "cpu_s": m.cpu_s, "peak_rss": m.peak_rss, "summary": m.output.strip()[-400:],
                     "log_bytes": os.path.getsize(path)})
        log(f"  replay {samples} samples: {m.wall_s:.1f}s peak {m.peak_rss / MB:.1f} MB "
            f"rc {m.returncode}")
    return rows


def profile_hot_path(stack: Stack, log_path: str) -> dict[str, Any] | None:
    out = stack.work / "profile.json"
    m = measure([PY, str(BENCH / "profile_hook.py"), "--log", log_path, "--endpoint",
                 stack.sink_url, "--out", str(out)], clean_env(), stack.work / "profile.txt",
                timeout=900)
    if m.returncode != 0:
        stack.notes.append(f"profile_hook.py failed: {m.output[-500:]}")
        return None
    data = json.loads(out.read_text())
    lines = [l for l in m.output.splitlines() if "per sample" in l or "by step" in l]
    log("\n".join(lines) if lines else "profile done")
    return data


def ingest(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    script = BENCH / "receiver_ingest.py"
    if not script.exists():
        note = ("bench/receiver_ingest.py does not exist yet: no receiver ingest throughput or "
                "sample-end -> queryable numbers in this run")
        stack.notes.append(note)
        return {"status": "missing", "note": note}
    out = stack.work / "ingest.json"
    cmd = [PY, str(script), "--json", str(out)] + list(args.ingest_args or ["--samples", str(args.samples)])
    log(f"running {' '.join(cmd[1:])} ...")
    m = measure(cmd, clean_env(), stack.work / "ingest.txt", timeout=args.ingest_timeout)
    result: dict[str, Any] = {"status": "ok" if m.returncode == 0 else "failed",
                              "returncode": m.returncode, "wall_s": m.wall_s,
                              "output_tail": m.output[-3000:]}
    try:
        result["results"] = json.loads(out.read_text())
    except (OSError, ValueError):
        result["status"] = "failed" if m.returncode else "no-json"
    if result["status"] != "ok":
        stack.notes.append(f"receiver_ingest.py: {result['status']} (rc {m.returncode}); see JSON")
    return result


# --- summary and table ------------------------------------------------------------------------

def summarize(rows: list[dict[str, Any]], configs: list[str]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("status") == "success" and r["returncode"] == 0]
    out: dict[str, Any] = {}
    for config in configs:
        mine = [r for r in ok if r["config"] == config]
        if not mine:
            continue
        s: dict[str, Any] = {"n": len(mine)}
        for key in ("eval_s", "process_wall_s", "process_cpu_s"):
            values = [r[key] for r in mine]
            s[key] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                      "values": values}
        hook_s = [sum(v[1] for v in r.get("hook_times", {}).values()) for r in mine]
        s["hook_loop_s"] = {"median": statistics.median(hook_s), "values": hook_s}
        per_sample = [sum(v[1] for k, v in r.get("hook_times", {}).items() if not _fixed(k))
                      for r in mine]
        s["hook_per_sample_methods_s"] = {"median": statistics.median(per_sample),
                                          "values": per_sample}
        s["hook_fixed_s"] = {"median": statistics.median(h - p for h, p in zip(hook_s, per_sample))}
        # CPU time of the thread running the hook's code (older results have no CPU column)
        hook_cpu = [sum(v[2] for v in r.get("hook_times", {}).values() if len(v) > 2)
                    for r in mine]
        s["hook_cpu_s"] = {"median": statistics.median(hook_cpu), "values": hook_cpu}
        other = [r["thread_cpu_s"]["other"] for r in mine if r.get("thread_cpu_s")]
        if other:
            s["other_threads_cpu_s"] = {"median": statistics.median(other), "values": other}
        s["peak_rss_median"] = statistics.median(r["process_peak_rss"] for r in mine)
        drains = [r["receiver_idle_after_s"] for r in mine if r.get("receiver_idle_after_s") is not None]
        if drains:
            s["receiver_idle_after_s_median"] = statistics.median(drains)
        out[config] = s
    base = out.get("baseline")
    if base and "other_threads_cpu_s" in base:
        # The telemetry's own CPU, accounted in the process rather than read off the difference of
        # two noisy process totals: the hook's code on the eval loop plus the extra CPU of the
        # other threads (the SDK's export threads) over the baseline's.
        for s in out.values():
            if "other_threads_cpu_s" in s:
                extra = s["other_threads_cpu_s"]["median"] - base["other_threads_cpu_s"]["median"]
                s["accounted_cpu_s"] = s["hook_cpu_s"]["median"] + max(0.0, extra)
                s["accounted_cpu_share"] = s["accounted_cpu_s"] / base["process_cpu_s"]["median"]
    if base:
        by_round = {(r["round"], r["config"]): r for r in ok}
        for config, s in out.items():
            for key in ("eval_s", "process_wall_s", "process_cpu_s"):
                s[key]["ratio"] = s[key]["median"] / base[key]["median"]
                # paired ratios: each run against the baseline of the same round (drift-robust)
                paired = [by_round[(rnd, config)][key] / by_round[(rnd, "baseline")][key]
                          for rnd, c in by_round if c == config and (rnd, "baseline") in by_round]
                if paired:
                    s[key]["paired_ratio_median"] = statistics.median(paired)
                    s[key]["paired_ratios"] = paired
    return out


def _fixed(hook_key: str) -> bool:
    """Once-per-run hook methods (start/end of run and task) vs per-sample/per-event ones."""
    return hook_key.rsplit(".", 1)[-1] in ("on_run_start", "on_run_end", "on_task_start",
                                           "on_task_end", "on_eval_set_start", "on_eval_set_end")


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}x ({(x - 1) * 100:+.1f}%)"


def table(result: dict[str, Any]) -> str:
    configs = [c for c in result["configs"] if c in result["overhead_summary"]]
    configs += [r["config"] for r in result.get("memory", []) if r["config"] not in configs]
    names = {"inspect-otel": f"inspect-otel ({result['otel_target']})",
             "otel-sink": "inspect-otel (OTLP sink)",
             "otel-sink-spans-only": "inspect-otel (sink, spans only)",
             "otel-sink-sdk-delays": "inspect-otel (sink, SDK delays)",
             "otel-sink-content": "inspect-otel (sink, content on)",
             "otel-sink-end-only": "inspect-otel (sink, at sample end)",
             "otel-sink-provider-call": "inspect-otel (sink, content + raw call)",
             "otel-sink-before": "inspect-otel before (sink)"}
    head = ["measure"] + [names.get(c, c) for c in configs]
    lines: list[list[str]] = []
    S = result["overhead_summary"]
    otel_col = next((c for c in configs if c in ("inspect-otel", "otel-sink")), None)
    n = result["args"]["samples"]

    def row(label: str, fn: Any) -> None:
        cells = []
        for c in configs:
            try:
                v = fn(c)
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            cells.append("-" if v is None else v)
        lines.append([label] + cells)

    row(f"runs ({n} samples each)", lambda c: str(S[c]["n"]))
    row("eval() wall s, median [min-max]", lambda c: "{median:.2f} [{min:.2f}-{max:.2f}]".format(**S[c]["eval_s"]))
    row("  ratio vs baseline (medians)", lambda c: _fmt_ratio(S[c]["eval_s"].get("ratio")))
    row("  ratio, paired per round (median)", lambda c: _fmt_ratio(S[c]["eval_s"].get("paired_ratio_median")))
    row("process wall s (import+eval+exit)", lambda c: "{median:.2f} [{min:.2f}-{max:.2f}]".format(**S[c]["process_wall_s"]))
    row("  ratio vs baseline", lambda c: _fmt_ratio(S[c]["process_wall_s"].get("ratio")))
    row("process CPU s (all threads)", lambda c: "{median:.2f} [{min:.2f}-{max:.2f}]".format(**S[c]["process_cpu_s"]))
    row("  ratio vs baseline", lambda c: _fmt_ratio(S[c]["process_cpu_s"].get("ratio")))
    row("  ratio, paired per round (median)",
        lambda c: _fmt_ratio(S[c]["process_cpu_s"].get("paired_ratio_median")))
    row("other threads' CPU s (export threads, Inspect's pools)",
        lambda c: f"{S[c]['other_threads_cpu_s']['median']:.2f}")
    if not result["args"].get("no_time_hooks"):  # the hook was not timed: no such rows
        row("hook per-sample methods on eval loop, ms/sample",
            lambda c: f"{S[c]['hook_per_sample_methods_s']['median'] / n * 1000:.2f}")
        row("hook run/task start+end on eval loop, s", lambda c: f"{S[c]['hook_fixed_s']['median']:.2f}")
        row("all hook time on eval loop, % of baseline eval()",
            lambda c: f"{S[c]['hook_loop_s']['median'] / S['baseline']['eval_s']['median'] * 100:.1f}%")
        row("hook CPU on eval loop, s (all methods and callbacks)",
            lambda c: f"{S[c]['hook_cpu_s']['median']:.2f}")
        row("telemetry CPU accounted, % of baseline process CPU",
            lambda c: f"{S[c]['accounted_cpu_share'] * 100:.1f}% ({S[c]['accounted_cpu_s'] / n * 1000:.2f} ms/sample)")
    row("peak RSS MB (overhead runs)", lambda c: f"{S[c]['peak_rss_median'] / MB:.0f}")
    if any("receiver_idle_after_s_median" in S[c] for c in configs):
        row("receiver idle after eval end, s", lambda c: f"{S[c]['receiver_idle_after_s_median']:.1f}")
    mem = {r["config"]: r for r in result.get("memory", [])}
    if mem:
        m = result["args"]["memory_samples"]
        row(f"peak RSS MB, {m}-sample eval", lambda c: f"{mem[c]['process_peak_rss'] / MB:.0f}")
        row("RSS at 25/50/75/100% of samples, MB", lambda c: "/".join(
            f"{mem[c]['rss_at'][q] / MB:.0f}" if mem[c]["rss_at"].get(q) else "?" for q in (25, 50, 75, 100)))
        row("RSS slope 25->100%, MB/1000 samples", lambda c: f"{mem[c]['rss_slope_bytes_per_sample'] * 1000 / MB:.2f}")
        base_slope = mem.get("baseline", {}).get("rss_slope_bytes_per_sample")
        if base_slope is not None:
            row("  slope minus baseline slope", lambda c: f"{(mem[c]['rss_slope_bytes_per_sample'] - base_slope) * 1000 / MB:+.2f}")
    prof = result.get("profile")
    if prof:
        row("on_sample_end work, us/sample (isolated)", lambda c: (
            f"{prof['map_us_per_sample']:.0f} map + {prof['emit_us_per_sample']:.0f} emit"
            if c == otel_col else None))
    for rep in result.get("replay", []):
        row(f"`inspect-otel export` {rep['log_samples']}-sample log: peak RSS MB, s",
            lambda c, rep=rep: f"{rep['peak_rss'] / MB:.0f} MB, {rep['wall_s']:.1f}s"
            if c == otel_col else None)
    ing = result.get("ingest", {})
    if ing.get("status") == "ok" and isinstance(ing.get("results"), dict):
        res = ing["results"]
        curated = [
            ("ingest: MLflow /v1/traces direct, spans/s", ("direct", "spans_per_s")),
            ("ingest: receiver acknowledged, spans/s", ("receiver", "spans_acked_per_s")),
            ("ingest: receiver traces visible in MLflow, spans/s", ("receiver", "spans_visible_per_s")),
            ("ingest: receiver everything applied, spans/s", ("receiver", "spans_all_applied_per_s")),
            ("ingest: visible / direct", ("ratio_visible_vs_direct",)),
            ("ingest: sample end -> queryable, median s", ("latency_s", "median")),
            ("ingest: sample end -> queryable, max s", ("latency_s", "max")),
        ]
        shown = 0
        for label, path in curated:
            value: Any = res
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                shown += 1
                row(label, lambda c, v=value: f"{v:.3g}" if c == otel_col else None)
        if not shown:  # an unknown result shape: show every number
            for key, value in _flat(res):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    row(f"ingest: {key}", lambda c, v=value: f"{v:.4g}" if c == otel_col else None)
    elif ing:
        row("ingest (bench/receiver_ingest.py)", lambda c: ing.get("status") if c == otel_col else None)

    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(head), sep] + [fmt(r) for r in lines])


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            items += _flat(v, key + ".")
        else:
            items.append((key, v))
    return items


def machine_facts() -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v
        try:
            return v(pkg)
        except PackageNotFoundError:
            return None

    mem_kb = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = None
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
    except OSError:
        pass
    versions = {p: version(p) for p in ("inspect-ai", "inspect-otel", "opentelemetry-sdk",
                                        "mlflow", "inspect-mlflow")}
    if versions["inspect-mlflow"] is None and (DEPS / "inspect_mlflow").is_dir():
        versions["inspect-mlflow"] = INSPECT_MLFLOW_PIN.split("==")[1] + " (bench/.deps)"
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu, "mem_total_mb": mem_kb // 1024 if mem_kb else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--samples", type=int, default=200, help="samples per overhead run (200)")
    parser.add_argument("--repeats", type=int, default=4, help="rounds of overhead runs (4)")
    parser.add_argument("--mlflow-repeats", type=int, default=1,
                        help="rounds that include inspect-mlflow (1: it is ~20x slower)")
    parser.add_argument("--configs", default="baseline,inspect-otel,otel-sink,inspect-mlflow",
                        help=f"comma list from {','.join(ALL_CONFIGS)}")
    parser.add_argument("--memory-samples", type=int, default=2000,
                        help="samples in the memory runs (2000; 0 skips memory and replay)")
    parser.add_argument("--memory-configs", default="baseline,otel-sink",
                        help="configs of the memory runs (baseline,otel-sink: the eval process's "
                             "memory does not depend on where spans go, and 2,000 samples into "
                             "MLflow would take the receiver minutes to drain)")
    parser.add_argument("--no-profile", action="store_true", help="skip the hot-path profile")
    parser.add_argument("--no-ingest", action="store_true", help="skip bench/receiver_ingest.py")
    parser.add_argument("--ingest-args", nargs=argparse.REMAINDER,
                        help="extra arguments for bench/receiver_ingest.py (must come last)")
    parser.add_argument("--ingest-timeout", type=float, default=900)
    parser.add_argument("--no-install", action="store_true",
                        help="do not install inspect-mlflow into bench/.deps")
    parser.add_argument("--work-dir", help="keep run logs here (default: a temp dir, removed)")
    parser.add_argument("--code", help="measure this inspect_otel source tree instead of the "
                        "installed one (a directory holding inspect_otel/, e.g. the src/ of "
                        "`git archive <commit> src`): the before of a before/after")
    parser.add_argument("--before-code", help="the inspect_otel source tree of config "
                        "otel-sink-before (a directory holding inspect_otel/)")
    parser.add_argument("--no-time-hooks", action="store_true",
                        help="no timers around the hook's methods (no accounted CPU rows; the "
                        "cleanest process ratios)")
    parser.add_argument("--results-dir", default=str(BENCH / "results"))
    args = parser.parse_args()

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    mem_configs = [c.strip() for c in args.memory_configs.split(",") if c.strip()]
    for c in configs + mem_configs:
        if c not in ALL_CONFIGS:
            parser.error(f"unknown config {c!r}")
    if "baseline" not in configs:
        configs.insert(0, "baseline")

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="inspect-otel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    stack = Stack(work)
    def source_tree(flag: str, given: str) -> str:
        tree = Path(given).resolve()
        if not (tree / "inspect_otel" / "__init__.py").is_file():
            parser.error(f"{flag} {given}: no inspect_otel package there")
        return str(tree)

    if args.code:
        stack.code_path = source_tree("--code", args.code)
    if args.before_code:
        stack.before_code_path = source_tree("--before-code", args.before_code)
    elif "otel-sink-before" in configs:
        parser.error("config otel-sink-before needs --before-code DIR")
    stack.time_hooks = not args.no_time_hooks
    started = time.time()
    result: dict[str, Any] = {"started": dt.datetime.now(dt.timezone.utc).isoformat(),
                              "machine": machine_facts(), "args": vars(args), "configs": configs}
    try:
        needs_mlflow = "inspect-otel" in configs + mem_configs or "inspect-mlflow" in configs + mem_configs
        if needs_mlflow:
            start_mlflow(stack)
        start_sink(stack)
        if "inspect-otel" in configs + mem_configs:
            start_receiver(stack)
        if "inspect-mlflow" in configs + mem_configs:
            ensure_inspect_mlflow(stack, install=not args.no_install)
        result["otel_target"] = "receiver->MLflow" if stack.receiver_url else "OTLP sink"
        runnable = [c for c in configs if config_env(stack, c) is not None]
        for c in set(configs) - set(runnable):
            stack.notes.append(f"config {c} skipped (its service is unavailable)")
        result["configs"] = runnable

        log(f"eval overhead: {args.samples} samples x {args.repeats} rounds of {runnable} "
            f"(inspect-mlflow in {min(args.mlflow_repeats, args.repeats)} rounds)")
        rows = eval_overhead(stack, runnable, args.samples, args.repeats, args.mlflow_repeats)
        result["overhead_runs"] = rows
        result["overhead_summary"] = summarize(rows, runnable)

        small_log = next((r["log"] for r in rows if r.get("log") and r["config"] == "baseline"), None)
        if small_log and not args.no_profile:
            log("profiling the hook's hot path on a finished log ...")
            result["profile"] = profile_hot_path(stack, small_log)

        if args.memory_samples > 0:
            mem_run = [c for c in mem_configs if config_env(stack, c) is not None]
            log(f"memory: {args.memory_samples} samples, {mem_run}")
            result["memory"] = memory(stack, mem_run, args.memory_samples)
            big_log = next((r.get("log") for r in result["memory"] if r.get("log")), None)
            replay_logs = [(args.samples, small_log), (args.memory_samples, big_log)]
            log("replay memory: inspect-otel export of small and large logs -> sink")
            result["replay"] = replay_memory(stack, [(n, p) for n, p in replay_logs if p])

        if not args.no_ingest:
            stack.stop()  # receiver_ingest.py starts its own MLflow server: free the CPUs first
            result["ingest"] = ingest(stack, args)
    finally:
        stack.stop()
        result["notes"] = stack.notes
        result["machine"]["loadavg_end"] = os.getloadavg()
        result["duration_s"] = time.time() - started
        results_dir = Path(args.results_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        text = json.dumps(result, indent=1, default=str)
        (results_dir / f"{stamp}.json").write_text(text)
        (results_dir / "latest.json").write_text(text)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    print()
    mach = result["machine"]
    print(f"inspect-otel benchmarks: {mach['cpus']} CPUs ({mach['cpu_model']}), Python "
          f"{mach['python']}, inspect-ai {mach['versions']['inspect-ai']}, load avg "
          f"{mach['loadavg_start'][0]:.1f} -> {mach['loadavg_end'][0]:.1f}, "
          f"{result['duration_s'] / 60:.1f} min")
    print(f"workload: bench/workload.py, mockllm, 5 model + 4 tool calls per sample; "
          f"inspect-otel exports to: {result.get('otel_target')}")
    if result.get("overhead_summary"):
        print(table(result))
    for note in stack.notes:
        print(f"note: {note}")
    print(f"raw results: {results_dir / (stamp + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
