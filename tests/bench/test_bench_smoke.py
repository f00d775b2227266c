"""Keeps the benchmark code from rotting: the workload runs, the hook timer and RSS probe work,
and the table renders. No timing assertions (the numbers come from `make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import run as bench_run  # noqa: E402
import workload  # noqa: E402


def test_workload_shape(tmp_path: Path) -> None:
    log = workload.run_workload(5, tmp_path)
    assert log.status == "success"
    assert log.results is not None and log.results.completed_samples == 5
    sample = log.samples[0]
    model_calls = [e for e in sample.events if e.event == "model"]
    tool_calls = [e for e in sample.events if e.event == "tool"]
    assert (len(model_calls), len(tool_calls)) == (workload.TOOL_CALLS + 1, workload.TOOL_CALLS)
    assert log.results.scores[0].metrics["accuracy"].value == 1.0


def test_workload_subprocess_result(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = bench_run.clean_env()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workload.py"), "--samples", "5", "--log-dir",
         str(tmp_path / "logs"), "--out", str(out), "--probe", "--time-hooks"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["completed_samples"] == 5 and result["peak_rss"] > 0
    assert [p["samples"] for p in result["rss_points"]][-1] == 5
    assert result["hooks_env"] == {"inspect_otel": False, "inspect_mlflow": False}


def test_summary_and_table_render() -> None:
    def run_row(config: str, rnd: int, eval_s: float) -> dict:
        return {"config": config, "round": rnd, "status": "success", "returncode": 0,
                "eval_s": eval_s, "process_wall_s": eval_s + 3, "process_cpu_s": eval_s,
                "process_peak_rss": 150 << 20,
                "hook_times": {"inspect_otel.OtelHooks.on_sample_end": [10, 0.01],
                               "inspect_otel.OtelHooks.on_run_end": [1, 0.1]}}

    rows = [run_row(c, r, 10.0 + r + (c != "baseline")) for r in range(2)
            for c in ("baseline", "inspect-otel")]
    result = {"configs": ["baseline", "inspect-otel"], "otel_target": "OTLP sink",
              "args": {"samples": 10, "memory_samples": 0},
              "overhead_summary": bench_run.summarize(rows, ["baseline", "inspect-otel"])}
    text = bench_run.table(result)
    assert "inspect-otel (OTLP sink)" in text and "ratio" in text
    pts = [{"samples": n, "rss": 100 + 2 * n} for n in range(1, 101)]
    assert abs(bench_run.rss_slope(pts, 100) - 2.0) < 1e-9


def test_request_size_bench_runs_and_reports_a_ratio(tmp_path: Path) -> None:
    out = tmp_path / "request_size.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "request_size.py"), "--samples", "3", "--passes",
         "2", "--json", str(out)],
        env=bench_run.clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["spans"] == 3 * 16 + 1  # and the task span
    assert set(result["us_per_span"]) == {"sdk_encoding", "size_bound"}
    assert all(v > 0 for v in result["us_per_span"].values())
    assert 0 < result["size_bound_over_encoding"]["median"]
