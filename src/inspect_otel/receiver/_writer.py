"""Background writer: applies the spool's pending rows to MLflow, idempotently, with backoff.

Order of one pass: experiment, runs (parent per Inspect run, nested child per task), task and
run span data (params, tags, metrics, status), span forwarding to MLflow's ``/v1/traces``,
per-sample step metrics, assessments, then task finalization (aggregates, tables, trace links).
Every MLflow write is keyed by Inspect ids and uses deterministic timestamps and steps, so
re-applying after a crash or a redelivery changes nothing:

- runs are looked up by tag before being created (a crash between create and the local commit
  finds the run again);
- params already on the run are skipped; metrics repeat exactly (MLflow's SQL store drops
  duplicate (key, timestamp, step, value) rows);
- spans are upserted by MLflow keyed by (trace id, span id);
- assessments are created only when the trace has none with the same (name, span id);
- tables are overwritten, not appended.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from inspect_otel import semconv as sc

from . import _mapping as mp
from ._spool import EVAL_KEY, RUN_KEY, PendingSpan, Spool, eval_key, run_key

log = logging.getLogger("inspect_otel.receiver")

MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_TRACE_LINKS = 100
FORWARD_MAX_SPANS = 1000
FORWARD_MAX_BYTES = 4 << 20

# MLflow error codes that mean "this item is wrong", not "try again later".
PERMANENT_ERROR_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE",
    "RESOURCE_ALREADY_EXISTS", "PERMISSION_DENIED", "NOT_IMPLEMENTED",
})


class Transient(Exception):
    """MLflow unreachable or failing: retry the whole pass later."""


class Permanent(Exception):
    """This item can never be applied: log it, count it and move on."""


def _classify(exc: BaseException) -> Exception:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (Transient, Permanent)):
        return exc
    if isinstance(exc, MlflowException):
        code = getattr(exc, "error_code", "") or ""
        if code in PERMANENT_ERROR_CODES:
            return Permanent(f"{code}: {exc.message[:500]}")
        return Transient(f"{code}: {exc.message[:500]}")
    if isinstance(exc, (requests.RequestException, OSError, TimeoutError)):
        return Transient(f"{type(exc).__name__}: {exc}")
    return Permanent(f"{type(exc).__name__}: {exc}")


def _ms(ns: int | None) -> int | None:
    return int(ns // 1_000_000) if ns else None


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i: i + n]


@dataclass
class WriterStatus:
    mlflow_ok: bool | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    dropped: int = 0
    passes: int = 0
    applied: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Writer:
    def __init__(self, spool: Spool, tracking_uri: str, experiment_name: str,
                 settle_s: float = 10.0, max_backoff_s: float = 30.0,
                 request_timeout_s: float = 60.0):
        self.spool = spool
        self.tracking_uri = tracking_uri.rstrip("/")
        self.experiment_name = experiment_name
        self.settle_s = settle_s
        self.max_backoff_s = max_backoff_s
        self.request_timeout_s = request_timeout_s
        self.status = WriterStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._tracing: Any = None
        self._experiment_id: str | None = None
        self._http = requests.Session()
        spool.add_listener(self._wake.set)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="inspect-otel-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                did = self.run_once()
                backoff = 0.5
                if not did:
                    # Poll for settle deadlines too; new data wakes us immediately.
                    self._wake.wait(min(1.0, max(0.1, self.settle_s / 4)))
                    self._wake.clear()
            except Exception as e:  # noqa: BLE001 - the writer must survive anything
                err = _classify(e)
                self.status.mlflow_ok = False if isinstance(err, Transient) else self.status.mlflow_ok
                self.status.last_error = str(err)
                self.status.last_error_at = time.time()
                log.warning("MLflow write failed (%s); retrying in %.1fs", err, backoff)
                self._stop.wait(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    # --- MLflow clients ------------------------------------------------------------------------
    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient
            from mlflow.tracing.client import TracingClient

            self._client = MlflowClient(self.tracking_uri)
            self._tracing = TracingClient(self.tracking_uri)
        return self._client

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            client = self._mlflow()
            exp = client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                try:
                    exp_id = client.create_experiment(self.experiment_name)
                except MlflowException as e:
                    if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp_id = client.get_experiment_by_name(self.experiment_name).experiment_id
            else:
                if exp.lifecycle_stage == "deleted":
                    client.restore_experiment(exp.experiment_id)
                exp_id = exp.experiment_id
            self._experiment_id = exp_id
        return self._experiment_id

    def _permanent(self, what: str, err: Exception, n: int = 1) -> None:
        self.status.dropped += n
        self.status.last_error = f"{what}: {err}"
        self.status.last_error_at = time.time()
        log.error("dropping %s: %s", what, err)

    def _guard(self, what: str, fn: Any, *args: Any, n: int = 1) -> bool:
        """Run ``fn``; a permanent error is logged and swallowed (returns False)."""
        try:
            fn(*args)
            return True
        except Exception as e:  # noqa: BLE001
            err = _classify(e)
            if isinstance(err, Transient):
                raise err from e
            self._permanent(what, err, n)
            return False

    # --- one pass ------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Apply everything pending once. Returns True if anything was done."""
        did = False
        self.experiment_id()
        did |= self._create_runs()
        did |= self._apply_tasks()
        did |= self._apply_runs()
        did |= self._forward_spans()
        did |= self._apply_sample_metrics()
        did |= self._apply_results()
        did |= self._finalize_tasks()
        self.status.passes += 1
        self.status.mlflow_ok = True
        self.status.last_success_at = time.time()
        return did

    # --- runs ----------------------------------------------------------------------------------
    def _find_run(self, tag: str, value: str, role: str) -> str | None:
        safe = value.replace("\\", "\\\\").replace("'", "\\'")
        runs = self._mlflow().search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{tag}` = '{safe}' and tags.`{mp.TAG_ROLE}` = '{role}'",
            max_results=2,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else None

    def _create_runs(self) -> bool:
        did = False
        for ident in self.spool.identities_without_run():
            client = self._mlflow()
            attrs = ident["attrs"]
            start_ms = _ms(ident["start_ns"])
            if ident["role"] == mp.ROLE_RUN:
                run_id = ident["run_id"]
                mlflow_id = self._find_run(sc.INSPECT_RUN_ID, run_id, mp.ROLE_RUN)
                if mlflow_id is None:
                    run = client.create_run(
                        self.experiment_id(), start_time=start_ms,
                        tags=mp.parent_run_tags(run_id, attrs),
                        run_name=mp.parent_run_name(run_id, attrs))
                    mlflow_id = run.info.run_id
            else:
                parent = self.spool.mlflow_run_id(run_key(ident["run_id"]))
                if parent is None:
                    continue  # the parent identity is created first in the same pass
                eval_id = ident["eval_id"]
                mlflow_id = self._find_run(sc.INSPECT_EVAL_ID, eval_id, mp.ROLE_TASK)
                if mlflow_id is None:
                    run = client.create_run(
                        self.experiment_id(), start_time=start_ms,
                        tags=mp.task_run_tags(eval_id, parent, attrs),
                        run_name=mp.task_run_name(attrs))
                    mlflow_id = run.info.run_id
            self.spool.set_mlflow_run_id(ident["key"], mlflow_id)
            self.status.applied["runs"] += 1
            did = True
        return did

    def _log_batch(self, run_id: str, metrics: list[Any] = (), params: list[Any] = (),
                   tags: list[Any] = ()) -> None:
        client = self._mlflow()
        for chunk in _chunks(list(metrics), MAX_BATCH_METRICS):
            client.log_batch(run_id, metrics=chunk)
        for chunk in _chunks(list(params), MAX_BATCH_PARAMS):
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks(list(tags), MAX_BATCH_TAGS):
            client.log_batch(run_id, tags=chunk)

    def _apply_tasks(self) -> bool:
        from mlflow.entities import Metric, Param, RunTag

        did = False
        for task in self.spool.pending_tasks():
            def apply(task: dict[str, Any] = task) -> None:
                client = self._mlflow()
                run_id, attrs = task["mlflow_run_id"], task["attrs"]
                existing = client.get_run(run_id).data.params
                params = [Param(k, v) for k, v in sorted(mp.task_params(attrs).items())
                          if k not in existing]
                ts = _ms(task["end_ns"]) or 0
                metrics = [Metric(k, v, ts, 0) for k, v in sorted(mp.task_metrics(attrs).items())]
                parent = self.spool.mlflow_run_id(run_key(task["run_id"])) or ""
                tags = [RunTag(k, v) for k, v in
                        sorted(mp.task_run_tags(task["eval_id"], parent, attrs).items())]
                self._log_batch(run_id, metrics, params, tags)
                status = mp.run_status(attrs.get(sc.INSPECT_TASK_STATUS))
                if status:
                    client.set_terminated(run_id, status, end_time=_ms(task["end_ns"]))
            self._guard(f"task {task['eval_id']}", apply)
            self.spool.mark_task_applied(task["eval_id"], task["digest"])
            self.status.applied["tasks"] += 1
            did = True
        return did

    def _apply_runs(self) -> bool:
        from mlflow.entities import RunTag

        did = False
        for run in self.spool.pending_runs():
            def apply(run: dict[str, Any] = run) -> None:
                client = self._mlflow()
                attrs = run["attrs"]
                tags = dict(mp.parent_run_tags(run["run_id"], attrs))
                tags[mp.TAG_RUN_NAME] = mp.parent_run_name(run["run_id"], attrs)
                self._log_batch(run["mlflow_run_id"],
                                tags=[RunTag(k, v) for k, v in sorted(tags.items())])
                status = mp.run_status(attrs.get(sc.INSPECT_RUN_STATUS))
                if status:
                    client.set_terminated(run["mlflow_run_id"], status,
                                          end_time=_ms(run["end_ns"]))
            self._guard(f"run {run['run_id']}", apply)
            self.spool.mark_run_applied(run["run_id"], run["digest"])
            did = True
        return did

    # --- traces --------------------------------------------------------------------------------
    def _forward_spans(self, max_batches: int = 8) -> bool:
        did = False
        for _ in range(max_batches):
            spans = self.spool.pending_spans(FORWARD_MAX_SPANS, FORWARD_MAX_BYTES)
            if not spans:
                break
            groups: dict[str | None, list[PendingSpan]] = defaultdict(list)
            for s in spans:
                run = self.spool.mlflow_run_id(s.link_key) if s.link_key else None
                groups[run].append(s)
            for run, group in groups.items():
                self._post_spans(group, run)
            self.spool.mark_spans_forwarded(spans)
            self.status.applied["spans"] += len(spans)
            did = True
        return did

    def _post_spans(self, spans: list[PendingSpan], mlflow_run_id: str | None) -> None:
        body = build_trace_request(spans).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf",
                   "x-mlflow-experiment-id": self.experiment_id()}
        if mlflow_run_id:
            headers["x-mlflow-run-id"] = mlflow_run_id
        try:
            r = self._http.post(f"{self.tracking_uri}/v1/traces", data=body, headers=headers,
                                timeout=self.request_timeout_s)
        except requests.RequestException as e:
            raise Transient(f"POST /v1/traces: {e}") from e
        if r.status_code < 300:
            return
        if r.status_code in (408, 429) or r.status_code >= 500:
            raise Transient(f"POST /v1/traces: HTTP {r.status_code} {r.text[:300]}")
        # A 4xx for the batch: isolate the offending trace(s) by sending trace by trace.
        by_trace: dict[str, list[PendingSpan]] = defaultdict(list)
        for s in spans:
            by_trace[s.trace_id].append(s)
        if len(by_trace) == 1:
            self._permanent(f"trace tr-{spans[0].trace_id}",
                            Permanent(f"HTTP {r.status_code} {r.text[:300]}"), len(spans))
            return
        for group in by_trace.values():
            self._post_spans(group, mlflow_run_id)

    # --- per-sample step metrics ---------------------------------------------------------------
    def _apply_sample_metrics(self) -> bool:
        from mlflow.entities import Metric

        rows = self.spool.pending_sample_metrics()
        if not rows:
            return False
        by_run: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            ts = _ms(r["end_ns"]) or 0
            for k, v in sorted(mp.sample_step_metrics(r["values"]).items()):
                by_run[r["mlflow_run_id"]].append(Metric(k, v, ts, int(r["ordinal"])))
        for run_id, metrics in by_run.items():
            self._guard(f"sample metrics of run {run_id}", self._log_batch, run_id, metrics,
                        n=len(metrics))
        self.spool.mark_sample_metrics_applied(rows)
        self.status.applied["sample_metrics"] += len(rows)
        return True

    # --- assessments ---------------------------------------------------------------------------
    def _apply_results(self) -> bool:
        rows = self.spool.pending_results()
        if not rows:
            return False
        by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_trace[r["trace_id"]].append(r)
        for trace_hex, results in by_trace.items():
            self._guard(f"assessments of tr-{trace_hex}", self._log_assessments, trace_hex,
                        results, n=len(results))
            self.spool.mark_results_applied(results)
            self.status.applied["assessments"] += len(results)
        return True

    def _log_assessments(self, trace_hex: str, results: list[dict[str, Any]]) -> None:
        from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback

        self._mlflow()
        trace_id = "tr-" + trace_hex
        info = self._tracing.get_trace_info(trace_id)
        existing = {(a.name, a.span_id or "") for a in (info.assessments or [])}
        for r in results:
            if (r["name"], r["span_id"]) in existing:
                continue
            source = AssessmentSource(
                source_type=(AssessmentSourceType.LLM_JUDGE if r.get("model_graded")
                             else AssessmentSourceType.CODE),
                source_id=r.get("scorer") or r["name"],
            )
            ts = _ms(r.get("time_ns"))
            feedback = Feedback(
                name=r["name"], value=r.get("value") if r.get("value") is not None else r.get("label"),
                source=source, rationale=r.get("rationale"), metadata=r.get("metadata") or None,
                span_id=r["span_id"] or None, create_time_ms=ts, last_update_time_ms=ts,
            )
            self._tracing.log_assessment(trace_id, feedback)
            existing.add((r["name"], r["span_id"]))

    # --- task finalization ---------------------------------------------------------------------
    def _finalize_tasks(self) -> bool:
        did = False
        for ev in self.spool.evals_to_finalize(self.settle_s):
            self._guard(f"finalize task {ev['eval_id']}", self._finalize, ev)
            self.spool.mark_finalized(ev["eval_id"], ev["rev"])
            self.status.applied["finalizations"] += 1
            did = True
        return did

    def _finalize(self, ev: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        client = self._mlflow()
        run_id, attrs = ev["mlflow_run_id"], ev["attrs"]
        snap = self.spool.task_snapshot(ev["eval_id"])
        samples = snap["samples"]
        latencies = [s["values"].get("total_time") for s in samples]
        agg = mp.aggregate_metrics([x for x in latencies if isinstance(x, (int, float))],
                                   snap["counts"], len(samples))
        ts = _ms(ev["end_ns"]) or 0
        step = len(samples)
        self._log_batch(run_id, [Metric(k, v, ts, step) for k, v in sorted(agg.items())])

        sample_rows = []
        for s in samples:
            row = {"sample_id": s["sample_id"], "epoch": s["epoch"], "ordinal": s["ordinal"],
                   "status": s["status"], "trace_id": "tr-" + s["trace_id"]}
            row.update(s["values"])
            sample_rows.append(row)
        by_trace = {s["trace_id"]: s for s in samples}
        score_rows = []
        for r in snap["results"]:
            s = by_trace.get(r["trace_id"], {})
            score_rows.append({
                "sample_id": s.get("sample_id"), "epoch": s.get("epoch"),
                "scorer": r.get("scorer"), "name": r["name"], "value": r.get("value"),
                "label": r.get("label"), "rationale": r.get("rationale"),
                "model_graded": bool(r.get("model_graded")), "trace_id": "tr-" + r["trace_id"],
                "span_id": r["span_id"] or None,
            })
        tables = {
            mp.SAMPLES_TABLE: mp.samples_table(sample_rows),
            mp.SCORES_TABLE: mp.scores_table(score_rows),
            mp.MODEL_USAGE_TABLE: mp.model_usage_table(attrs),
        }
        self._write_tables(run_id, tables)

        trace_ids = ["tr-" + s["trace_id"] for s in samples]
        for chunk in _chunks(trace_ids, MAX_TRACE_LINKS):
            try:
                client.link_traces_to_run(chunk, run_id)
            except Exception as e:  # noqa: BLE001 - traces not forwarded yet link on arrival
                if isinstance(_classify(e), Transient):
                    raise

    def _write_tables(self, run_id: str, tables: dict[str, dict[str, list[Any]]]) -> None:
        client = self._mlflow()
        with tempfile.TemporaryDirectory(prefix="inspect-otel-") as tmp:
            for path, data in tables.items():
                local = os.path.join(tmp, os.path.basename(path))
                with open(local, "w", encoding="utf-8") as f:
                    json.dump(mp.split_table(data), f, ensure_ascii=False, allow_nan=False)
                client.log_artifact(run_id, local, artifact_path=os.path.dirname(path))
        logged = [{"path": p, "type": "table"} for p in tables]
        client.set_tag(run_id, mp.TAG_LOGGED_ARTIFACTS, json.dumps(logged))


def _kv(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def build_trace_request(spans: list[PendingSpan]) -> ExportTraceServiceRequest:
    """Regroup stored spans by resource and scope; add the enrichment attributes."""
    req = ExportTraceServiceRequest()
    resources: dict[bytes, Any] = {}
    scopes: dict[tuple[bytes, str, str], Any] = {}
    for s in spans:
        rs = resources.get(s.resource)
        if rs is None:
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(resource_pb2.Resource.FromString(s.resource))
            resources[s.resource] = rs
        key = (s.resource, s.scope_name, s.scope_version)
        ss = scopes.get(key)
        if ss is None:
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = s.scope_name, s.scope_version
            ss.schema_url = sc.SCHEMA_URL if s.scope_name == mp.INSPECT_SCOPE else ""
            scopes[key] = ss
        span = trace_pb2.Span.FromString(s.payload)
        if s.enrich:
            span.attributes.extend(_kv(k, v) for k, v in sorted(s.enrich.items()))
        ss.spans.append(span)
    return req


__all__ = ["Writer", "build_trace_request", "Transient", "Permanent", "EVAL_KEY", "RUN_KEY",
           "eval_key"]
