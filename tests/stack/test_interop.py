"""The hook's output through real third-party OTLP parts.

* rotel (a Rust OpenTelemetry collector from PyPI) as a hop between the hook and the receiver:
  what lands in MLflow must be exactly what the direct path produces for the same data.
* Arize Phoenix (from PyPI, in .venv-phoenix): spans arrive, and Phoenix's own GenAI conversion
  recognises model calls as LLM spans with token counts, tool calls as TOOL spans, samples as
  AGENT spans.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from inspect_otel import ids
from tests.receiver.mlflow_view import snapshot
from tests.stack.conftest import (
    ROOT,
    kill_mentioning,
    start_lean_mlflow,
    start_receiver,
    start_rotel,
    wait_for,
)
from tests.support.evals import run_calculator

pytestmark = pytest.mark.interop

TOKEN = "interop-token-0123456789"


def _settled(client: Any, experiment: str, run_id: str, samples: int) -> dict[str, Any] | None:
    """The snapshot once the task run is final, with every sample trace and its assessments."""
    def waiting(why: str) -> None:
        print(f"{experiment}: waiting for {why}")  # shown by pytest if the wait times out

    if client.get_experiment_by_name(experiment) is None:
        return waiting("the experiment")
    snap = snapshot(client, experiment, run_id)
    if snap.get("run_trace", {}).get("status") != "OK":
        return waiting(f"the run trace: {snap.get('run_trace')}")
    if not snap["tasks"]:
        return waiting("the task run")
    for task in snap["tasks"].values():
        if task["status"] != "FINISHED" or len(task["traces"]) != samples:
            return waiting(f"task run {task['status']}, {len(task['traces'])} traces")
        if task["metrics"].get("samples/received") != samples:
            return waiting(f"samples/received {task['metrics'].get('samples/received')}")
        if any(not t["assessments"] for t in task["traces"].values() if t["sample"] != "boom"):
            return waiting("assessments")
    return snap


def _normal(snap: dict[str, Any]) -> Any:
    # Tables hold NaN for missing scores; NaN != NaN, so compare a canonical JSON form.
    return json.loads(json.dumps(snap, sort_keys=True, default=str))


def _stable_snapshot(client: Any, experiment: str, run_id: str, samples: int) -> dict[str, Any]:
    """Bounded polling until two consecutive complete snapshots agree (the writer is done)."""
    previous: list[Any] = []

    def check() -> Any:
        snap = _settled(client, experiment, run_id, samples)
        if snap is None:
            return None
        snap = _normal(snap)
        if previous and previous[-1] == snap:
            return snap
        if previous:
            diff = [k for k in snap["tasks"].get("calculator", {}) if
                    snap["tasks"]["calculator"][k] != previous[-1]["tasks"].get("calculator", {}).get(k)]
            print(f"{experiment}: snapshot still changing: {diff}")
        previous.append(snap)
        return None

    return wait_for(check, 240, f"a complete, stable MLflow snapshot of {experiment!r}", interval=2.0)


def _export(log_path: str, endpoint: str, env_extra: dict[str, str] | None = None) -> None:
    """`inspect-otel export`: the same spans the live hook sent, ids included."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
                **(env_extra or {})})
    done = subprocess.run([sys.executable, "-m", "inspect_otel.cli", "export", log_path],
                          env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(600)
def test_rotel_hop_lands_exactly_like_the_direct_path(
    mlflow_server, mlflow_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deterministic ids make a sample the same MLflow trace wherever it comes from, so the
    # direct path needs its own MLflow to land in. It boots while the rotel path runs.
    second: dict[str, Any] = {}
    # Set here too, so the booting thread's temporary setting changes nothing process-wide.
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    booting = threading.Thread(
        target=lambda: second.update(server=start_lean_mlflow(tmp_path / "mlflow-direct")),
        daemon=True,
    )
    booting.start()
    behind = start_receiver(mlflow_server.url, "interop", tmp_path / "behind", token=TOKEN)
    # The receiver behind rotel demands a token: the header must survive the hop.
    rotel = start_rotel(behind.url, tmp_path / "rotel",
                        headers={"authorization": f"Bearer {TOKEN}"})
    direct = None
    try:
        # Live hook -> rotel (OTLP/gRPC in) -> receiver (OTLP/HTTP protobuf out).
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{rotel.grpc_port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        # Export at sample end: a live export also holds the spans of the flaky sample's failed
        # attempt, which its log (and so the replay compared with below) does not; this test is
        # about the hop (tests/hook/test_live_stream.py compares live with replay).
        monkeypatch.setenv("INSPECT_OTEL_LIVE", "false")
        log = run_calculator(tmp_path / "logs", epochs=1)
        monkeypatch.delenv("INSPECT_OTEL_LIVE")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL")
        samples = len(log.samples or [])
        assert samples == 5

        via_rotel = _stable_snapshot(mlflow_client, "interop", log.eval.run_id, samples)

        # The same spans again (replay re-sends them with the live ids), straight into a
        # receiver of the second MLflow: the path without the hop.
        booting.join(300)
        assert "server" in second, "second MLflow server did not start"
        direct = start_receiver(second["server"].url, "interop", tmp_path / "direct")
        _export(log.location, direct.url)
        from mlflow import MlflowClient

        straight = _stable_snapshot(MlflowClient(second["server"].url), "interop",
                                    log.eval.run_id, samples)

        assert via_rotel == straight

        # and it is the real thing, not two equally empty snapshots
        (task,) = via_rotel["tasks"].values()
        want = {"tr-" + ids.trace_id_hex(ids.sample_trace_id(s.uuid)) for s in log.samples}
        assert set(task["traces"]) == want
        assert task["metrics"]["samples/total"] == samples
        assert any(n.startswith("execute_tool") and t == "TOOL"
                   for tr in task["traces"].values() for n, t in tr["spans"])
        assert any(t == "CHAT_MODEL" for tr in task["traces"].values() for _, t in tr["spans"])
        assert sum(len(tr["assessments"]) for tr in task["traces"].values()) >= 4 * 3
        assert rotel.proc.alive(), rotel.proc.log()
    finally:
        for p in (rotel.proc, behind.proc) + ((direct.proc,) if direct else ()):
            p.stop()
        booting.join(300)
        if "server" in second:
            second["server"].stop()
        kill_mentioning(str(tmp_path))


# ----------------------------------------------------------------------------- Phoenix


def _phoenix_spans(base: str, project: str) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"{base}/v1/projects/{project}/spans?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            page = json.load(r)
        spans += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return spans


def _graphql(base: str, query: str) -> dict[str, Any]:
    req = urllib.request.Request(base + "/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.load(r)
    assert not body.get("errors"), body
    return body["data"]


def test_phoenix_recognises_genai_spans_and_tokens(
    phoenix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = "inspect-interop"
    # What a user sets for Phoenix: its OTLP/HTTP endpoint, traces only (Phoenix has no OTLP
    # logs or metrics endpoint; evaluation results also ride on spans as events).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix.url)
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    log = run_calculator(tmp_path / "logs", epochs=1)
    samples = log.samples or []
    trace_ids = {ids.trace_id_hex(ids.sample_trace_id(s.uuid)) for s in samples}

    def arrived() -> list[dict[str, Any]] | None:
        spans = _phoenix_spans(phoenix.url, project)
        roots = {s["context"]["trace_id"] for s in spans
                 if s["attributes"].get("inspect.span.kind") == "sample"}
        run = [s for s in spans if s["attributes"].get("inspect.span.kind") == "run"]
        return spans if roots >= trace_ids and run else None

    spans = wait_for(arrived, 120, "every sample trace in Phoenix")

    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    tools = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    roots = [s for s in spans if s["attributes"].get("inspect.span.kind") == "sample"]
    assert chats and tools and len(roots) == len(samples)

    # Model calls: Phoenix turned gen_ai.* into an LLM span with its own token counts.
    for s in chats:
        a = s["attributes"]
        assert s["span_kind"] == "LLM", s["name"]
        assert a["llm.token_count.prompt"] == a["gen_ai.usage.input_tokens"]
        assert a["llm.token_count.completion"] == a["gen_ai.usage.output_tokens"]
        assert a["llm.token_count.total"] == a["gen_ai.usage.input_tokens"] + a["gen_ai.usage.output_tokens"]
        assert a["llm.model_name"] == "model" and a["llm.system"] == "mockllm"
        assert a["llm.input_messages.0.message.content"]  # content capture made it through
    # Tool calls: TOOL spans named after the tool, including the failing divide call.
    for s in tools:
        assert s["span_kind"] == "TOOL", s["name"]
        assert s["attributes"]["tool.name"] == s["attributes"]["gen_ai.tool.name"]
    assert {s["attributes"]["tool.name"] for s in tools} == {"add", "divide"}
    # Sample roots: AGENT spans.
    assert {s["span_kind"] for s in roots} == {"AGENT"}

    # Token totals as Phoenix aggregates them equal Inspect's own accounting.
    inspect_total = sum(u.total_tokens for u in log.stats.model_usage.values())
    assert sum(s["attributes"]["llm.token_count.total"] for s in chats) == inspect_total
    data = _graphql(phoenix.url, "{ projects { edges { node { name traceCount tokenCountTotal } } } }")
    node = next(e["node"] for e in data["projects"]["edges"] if e["node"]["name"] == project)
    assert node["traceCount"] == len(samples) + 1  # sample traces + the run trace
    assert node["tokenCountTotal"] == inspect_total


def test_phoenix_shows_a_running_sample_as_its_spans_so_far(phoenix, tmp_path: Path) -> None:
    """A running sample in Phoenix: the spans completed so far, grouped in the sample's trace,
    without a root; the root joins the same trace when the sample ends."""
    import os
    import time

    from inspect_ai.log import read_eval_log

    from inspect_otel.mapping._common import to_ns

    project = "inspect-live"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.url, OTEL_LOGS_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none",
               OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={project}")
    code = ("import sys; from pathlib import Path; from tests.support.evals import run_slow; "
            "run_slow(Path(sys.argv[1]), seconds=1.5, samples=('ok',))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "logs")],
                            cwd=str(Path(__file__).resolve().parents[2]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running: list[tuple[int, list[dict[str, Any]]]] = []  # (seen at, spans) before any root
    try:
        while proc.poll() is None:
            try:
                spans = _phoenix_spans(phoenix.url, project)
            except Exception:  # noqa: BLE001 - the project appears with the first span
                spans = []
            if spans and not any(s["attributes"].get("inspect.span.kind") == "sample"
                                 for s in spans):
                running.append((time.time_ns(), spans))
            time.sleep(0.3)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    sample = read_eval_log(str(next((tmp_path / "logs").glob("*.eval")))).samples[0]
    trace_id = ids.trace_id_hex(ids.sample_trace_id(sample.uuid))
    during = [(at, spans) for at, spans in running if at < to_ns(sample.completed_at)]
    assert during, "no span of the running sample was in Phoenix before it ended"
    at, spans = during[-1]
    names = {s["name"] for s in spans}
    assert "execute_tool wait" in names and "chat model" in names
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}  # grouped in its trace

    def ended() -> list[dict[str, Any]] | None:
        spans = _phoenix_spans(phoenix.url, project)
        roots = [s for s in spans if s["attributes"].get("inspect.span.kind") == "sample"]
        return spans if roots else None

    final = [s for s in wait_for(ended, 60, "the sample root in Phoenix")
             if s["context"]["trace_id"] == trace_id]
    root = next(s for s in final if s["attributes"].get("inspect.span.kind") == "sample")
    assert {s["context"]["span_id"] for s in spans} < {s["context"]["span_id"] for s in final}
    assert len({s["context"]["span_id"] for s in final}) == len(final)  # each span once
    assert root["span_kind"] == "AGENT" and not root["parent_id"]
