"""Read what the receiver wrote into MLflow, and check it against a SynthEval."""

from __future__ import annotations

from typing import Any

from inspect_otel import ids
from inspect_otel import semconv as sc
from inspect_otel.receiver import _finalize, _mlflow_names


def runs(client: Any, exp_id: str, run_id: str, role: str) -> list[Any]:
    return client.search_runs(
        [exp_id],
        filter_string=f"tags.`{sc.INSPECT_RUN_ID}` = '{run_id}' and tags.`{_mlflow_names.TAG_ROLE}` = '{role}'",
        max_results=100,
    )


def read_table(client: Any, run_id: str, path: str) -> Any:
    """A table the receiver logged, read through ``client`` itself. (MlflowClient.load_table
    finds runs through the fluent API's global tracking URI, so with two servers it reads the
    wrong one.) Parsed as MLflow parses tables: pandas JSON in "split" orientation."""
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_json(client.download_artifacts(run_id, path, tmp), orient="split")


def run_page_metric_order(client: Any, run_id: str) -> list[str]:
    """A run's metric keys in the order MLflow's run page lists them (its REST ``runs/get``)."""
    import requests

    r = requests.get(f"{client.tracking_uri.rstrip('/')}/api/2.0/mlflow/runs/get",
                     params={"run_id": run_id}, timeout=30)
    r.raise_for_status()
    return [m["key"] for m in r.json()["run"]["data"].get("metrics", [])]


def run_page_note(client: Any, run_id: str) -> str:
    """The description at the top of a run's page (``mlflow.note.content``, via ``runs/get``)."""
    import requests

    r = requests.get(f"{client.tracking_uri.rstrip('/')}/api/2.0/mlflow/runs/get",
                     params={"run_id": run_id}, timeout=30)
    r.raise_for_status()
    tags = {t["key"]: t["value"] for t in r.json()["run"]["data"].get("tags", [])}
    return tags.get(_mlflow_names.TAG_RUN_NOTE, "")


def run_traces(client: Any, exp_id: str, run_id: str) -> list[Any]:
    """The run trace of an Inspect run (its run and task spans), by its tags."""
    return client.search_traces(
        locations=[exp_id], include_spans=False,
        filter_string=f"tags.`{sc.INSPECT_RUN_ID}` = '{run_id}' AND "
                      f"tags.`{_mlflow_names.TRACE_TAG_KIND}` = '{_mlflow_names.TRACE_KIND_RUN}'")


def snapshot(client: Any, experiment: str, run_id: str) -> dict[str, Any]:
    """Everything MLflow holds for one Inspect run, with MLflow's own ids normalised away.
    ``parents``: MLflow runs of the Inspect run itself (receivers make none: its tasks are
    top-level runs); ``run_trace``: its run trace, and the runs it is linked to."""
    exp = client.get_experiment_by_name(experiment)
    parents = runs(client, exp.experiment_id, run_id, _mlflow_names.ROLE_RUN)
    out: dict[str, Any] = {"parents": len(parents), "tasks": {}}
    for t in run_traces(client, exp.experiment_id, run_id):
        out["run_trace"] = {"status": t.info.state.value if t.info.state else None,
                            "linked": t.info.trace_metadata.get("mlflow.sourceRun")}
    for child in runs(client, exp.experiment_id, run_id, _mlflow_names.ROLE_TASK):
        cid = child.info.run_id
        task = child.data.tags.get(sc.INSPECT_TASK_NAME)
        history = {k: sorted((m.step, m.timestamp, m.value)
                             for m in client.get_metric_history(cid, k))
                   for k in child.data.metrics}
        tables = {}
        for path in (_mlflow_names.SAMPLES_TABLE, _mlflow_names.SCORES_TABLE, _mlflow_names.MODEL_USAGE_TABLE):
            try:
                df = read_table(client, cid, path)
                df = df.astype(object).where(df.notna(), None)  # NaN != NaN
                tables[path] = df.to_dict(orient="records")
            except Exception as e:  # noqa: BLE001
                tables[path] = repr(e)
        traces = {}
        for t in client.search_traces(locations=[exp.experiment_id], run_id=cid, max_results=500):
            full = client.get_trace(t.info.trace_id)
            traces[t.info.trace_id] = {
                "spans": sorted((s.name, s.span_type) for s in full.data.spans),
                "assessments": sorted(
                    (a.name, a.value, a.source.source_type,
                     (a.metadata or {}).get(_mlflow_names.ASSESSMENT_SCORER_SPAN, ""),
                     a.rationale or "", a.span_id or "")
                    for a in full.info.assessments),
                "request_preview": bool(full.info.request_preview),
                "response_preview": bool(full.info.response_preview),
                "tokens": (full.info.token_usage or {}).get("total_tokens"),
                "sample": full.info.tags.get(sc.INSPECT_SAMPLE_ID),
                "session": full.info.trace_metadata.get("mlflow.trace.session"),
                "labels": {k: v for k, v in full.info.tags.items()
                           if k.startswith(_mlflow_names.TAG_LABEL_PREFIX)},
            }
        out["tasks"][task] = {
            "count": 1 + out["tasks"].get(task, {}).get("count", 0),
            "status": child.info.status,
            "top_level": _mlflow_names.TAG_PARENT_RUN_ID not in child.data.tags,
            "params": dict(child.data.params),
            "metrics": dict(child.data.metrics),
            "history": history,
            "tables": tables,
            "traces": traces,
        }
    return out


def complete(snap: dict[str, Any], ev: Any) -> bool:
    """True once MLflow holds everything for the eval (used for bounded polling)."""
    if snap.get("run_trace", {}).get("status") != "OK":
        return False
    for task in ev.tasks:
        t = snap["tasks"].get(task)
        n = ev.samples * ev.epochs
        if not t or t["status"] != "FINISHED" or len(t["traces"]) != n:
            return False
        if any(len(tr["assessments"]) < len(ev.scorers) for tr in t["traces"].values()):
            return False
        if not isinstance(t["tables"][_mlflow_names.SAMPLES_TABLE], list) or \
                len(t["tables"][_mlflow_names.SAMPLES_TABLE]) != n or \
                len(t["tables"][_mlflow_names.SCORES_TABLE]) != n * len(ev.scorers):
            return False
        if t["metrics"].get("samples/received") != n:
            return False
    return True


def check_eval(snap: dict[str, Any], ev: Any, exact_history: bool = True) -> None:
    """Assert the full content for a SynthEval: runs, params, metrics, tables, traces, links."""
    assert snap["parents"] == 0  # the tasks are the runs: no empty row above them in MLflow
    assert snap["run_trace"] == {"status": "OK", "linked": None}  # in the experiment, no run
    n = ev.samples * ev.epochs
    for task in ev.tasks:
        t = snap["tasks"][task]
        exp = ev.expected[task]
        assert t["count"] == 1, "one child run per task"
        assert t["top_level"]
        assert t["status"] == "FINISHED"
        p = t["params"]
        assert p["task"] == task and p["model"] == ev.model and p["dataset"] == "synthetic"
        assert p["task_args.level"] == "2" and p["generate_config.temperature"] == "0.5"
        assert p["epochs"] == str(ev.epochs)
        assert "task_args.api_key" not in p and not any("sk-" in v for v in p.values())
        m = t["metrics"]
        for r in exp["results"]:
            assert abs(m[f"{r['name']}/{r['metric']}"] - r["value"]) < 1e-9
        assert m["samples/total"] == n and m["samples/completed"] == n
        assert m["usage/input_tokens"] == exp["input_tokens"]
        assert m[f"usage/{ev.model}/input_tokens"] == exp["input_tokens"]
        assert m["samples/received"] == n
        assert m["model_calls"] == n and m["tool_calls"] == n
        assert m["tool_errors"] == ev.epochs  # sample index 0 of each epoch has a tool error
        latencies = sorted(float(i + 1) for i in range(ev.samples) for _ in range(ev.epochs))
        assert abs(m["sample_latency/mean"] - sum(latencies) / n) < 1e-9
        assert abs(m["sample_latency/p50"] - _finalize.percentile(latencies, 0.5)) < 1e-9
        assert "sample_latency/p95" in m
        h = t["history"]
        for scorer in ev.scorers:
            steps = [s for s, _, _ in h[f"sample/{scorer}"]]
            assert steps == list(range(n)), f"sample/{scorer} steps {steps}"
        assert [s for s, _, _ in h["sample/total_time"]] == list(range(n))
        if exact_history:
            for key in ("match/accuracy", "sample_latency/p50", "samples/total", "model_calls"):
                assert len(h[key]) == 1, f"{key} history {h[key]}"
        # tables
        rows = t["tables"][_mlflow_names.SAMPLES_TABLE]
        assert [r["ordinal"] for r in rows] == list(range(n))
        assert all(r["trace_id"] in t["traces"] for r in rows)
        assert all(f"score/{s}" in rows[0] for s in ev.scorers)
        assert len(t["tables"][_mlflow_names.SCORES_TABLE]) == n * len(ev.scorers)
        usage = t["tables"][_mlflow_names.MODEL_USAGE_TABLE]
        assert [u["model"] for u in usage] == [ev.model]
        assert usage[0]["input_tokens"] == exp["input_tokens"]
        # traces: ids derived from Inspect's sample uuids, linked to the task run
        want = {"tr-" + ids.trace_id_hex(ids.sample_trace_id(ev.sample_uuid(task, i, e)))
                for i in range(ev.samples) for e in range(1, ev.epochs + 1)}
        assert set(t["traces"]) == want
        for tr in t["traces"].values():
            types = {st for _, st in tr["spans"]}
            assert {"AGENT", "CHAT_MODEL", "TOOL", "EVALUATOR", "CHAIN"} <= types
            assert len(tr["spans"]) == 5 + len(ev.scorers)
            assert tr["request_preview"] and tr["response_preview"]
            assert tr["session"] is None  # MLflow pairs the runs' traces by request, per epoch
            assert tr["tokens"]
            names = [a[0] for a in tr["assessments"]]
            assert sorted(names) == sorted(ev.scorers), f"assessments {tr['assessments']}"
            for name, value, source, span_id, rationale, on_span in tr["assessments"]:
                assert source == ("LLM_JUDGE" if name in ev.model_graded else "CODE")
                assert len(span_id) == 16 and rationale.startswith(name)
                assert on_span == ""  # on the trace, as MLflow's evaluations put feedback


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two snapshots differ (readable assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'second' if k in b else 'first'}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:400]]


def normalized(snap: dict[str, Any], ev: Any) -> Any:
    """``snap`` with every id derived from the eval's Inspect run id (trace and span ids, the run
    id itself in eval ids and sample uuids) replaced by its position in ``ev``: snapshots of the
    same eval sent under different run ids (MLflow's trace ids are global, so one eval cannot be
    sent twice to one MLflow under the same ids) compare equal."""
    import json

    subs: dict[str, str] = {}
    for i, span in enumerate(ev.spans()):
        subs.setdefault(span.trace_id.hex(), f"<trace {len(subs)}>")
        subs[span.span_id.hex()] = f"<span {i}>"
    text = json.dumps(snap, sort_keys=True, default=repr)
    for old, new in subs.items():
        text = text.replace(old, new)
    return json.loads(text.replace(ev.run_id, "<run>"))
