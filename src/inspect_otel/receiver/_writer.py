"""Background writer: applies the spool's pending rows to MLflow, idempotently, with backoff.

One pass, in the order that makes finished samples visible first:

1. runs: the MLflow run of each Inspect run and task, *claimed* so that several receivers agree
   on one (``_claims.py``);
2. traces: pending spans forwarded to MLflow's own ``/v1/traces`` in large requests (the sample
   roots with ``x-mlflow-run-id`` of their task run, which links them);
3. assessments: one ``create_assessment`` per evaluation result, with an id derived from the
   result's key (concurrently; MLflow's primary key refuses a second copy, from a redelivery or
   another receiver);
4. beside the assessments: task and run span data (params, the task's metrics with its results
   first, tags, the results table as the run's description, status, the model usage table; the
   eval log as an artifact on its own thread);
5. task finalization (``_task_finalizer.py``): aggregates, per-sample step metrics, samples and
   scores tables, computed from what *MLflow* holds for the task, by whichever receiver should.

Every MLflow write is keyed by Inspect ids with deterministic timestamps and steps, so applying
the same data again (crash, redelivery, another receiver) changes nothing: metrics repeat exactly
(MLflow drops duplicate rows), params are insert-once, spans are upserted by (trace, span) id,
assessments have deterministic ids, tables are overwritten.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from inspect_otel import semconv as sc

from . import (
    _evaluations,
    _forward,
    _mlflow_names,
    _run_metrics,
    _run_note,
    _run_params,
    _run_tags,
    _tables,
    _values,
)
from ._claims import Claims
from ._mlflow_io import (
    Permanent,
    Transient,
    chunks,
    classify,
    log_batch,
    permanent,
    write_tables,
)
from ._eval_logs import DEFAULT_MAX_LOG_BYTES, EvalLogStore, Root
from ._ownership import OwnershipUnknown, TraceOwnership
from ._spool import EVAL_KEY, RUN_KEY, PendingSpan, Spool, eval_key, run_key
from ._task_finalizer import MAX_TRACE_LINKS, TaskFinalizer

log = logging.getLogger("inspect_otel.receiver")

FORWARD_MAX_SPANS = 1000
FORWARD_MAX_BYTES = 4 << 20
FORWARD_BATCHES_PER_PASS = 4
# Assessments are written concurrently: MLflow has no batch call for them, and an MLflow with
# several uvicorn workers answers each request ~40 ms late on Linux (its workers' sockets lack
# TCP_NODELAY), a latency that only concurrency hides. A one-worker sqlite MLflow serialises them.
ASSESSMENT_WORKERS = 8
# A result whose trace this receiver never saw is tried against MLflow this often (another
# receiver may forward the trace), backing off to the maximum.
PROBE_MIN_S, PROBE_MAX_S = 0.5, 10.0
PROBE_TRACES_PER_PASS = 100
# A result is first tried against MLflow this long after it arrived: with the Collector's
# trace-id routing its trace comes to this receiver too, only later (the SDK's span batches leave
# every 5 s by default, log records every second).
PROBE_GRACE_S = 5.0
AWAITING_SCAN = 2000  # results awaiting a trace looked at per pass (newest first)
RECOVERY_PROBE_S = 1.0  # while backing off from an MLflow that does not answer: look this often




def _ms(ns: int | None) -> int | None:
    return int(ns // 1_000_000) if ns else None


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
                 request_timeout_s: float = 60.0, log_roots: tuple[Root, ...] = (),
                 max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
                 assessment_workers: int = ASSESSMENT_WORKERS):
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
        self._creds: Any = None
        self._claims: Claims | None = None
        self._experiment_id: str | None = None
        self._pool = ThreadPoolExecutor(max(1, assessment_workers),
                                        thread_name_prefix="inspect-otel-assess")
        # claims run beside the pass (one at a time), with their own helpers: queued behind a
        # pass's assessment writes they would wait for all of them
        self._claim_pool = ThreadPoolExecutor(1, thread_name_prefix="inspect-otel-claims")
        self._results_pool = ThreadPoolExecutor(1, thread_name_prefix="inspect-otel-results")
        self._claim_io = ThreadPoolExecutor(2, thread_name_prefix="inspect-otel-claims-io")
        # results whose trace is not (yet) in MLflow: (trace id) -> (next try, backoff)
        self._probe: dict[str, tuple[float, float]] = {}
        self.finalizer = TaskFinalizer(spool, self._mlflow, self._trace_store, self.experiment_id,
                                       settle_s, self.status.applied, self._permanent)
        self.ownership = TraceOwnership(self._post_json, lambda: self._experiment_id)
        self.eval_logs = EvalLogStore(spool, self._mlflow, log_roots, max_log_bytes, self._stop,
                                      max_backoff_s, classify, self._count_eval_log)
        spool.add_listener(self._wake.set)
        # set_terminated would print "View run ... / View experiment ..." (and read the run back
        # to do so) on every status write; a headless receiver wants neither.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="inspect-otel-writer", daemon=True)
        self._thread.start()
        self.eval_logs.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.eval_logs.stop(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._claim_pool.shutdown(wait=False, cancel_futures=True)
        self._results_pool.shutdown(wait=False, cancel_futures=True)
        self._claim_io.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def busy(self) -> bool:
        """Work the spool's counts do not show: polls of unfinished tasks, eval logs to store."""
        return self.finalizer.polling() or self.logs_pending()

    def logs_pending(self) -> bool:
        return self.eval_logs.pending()

    def _count_eval_log(self) -> None:
        self.status.applied["eval_logs"] += 1

    def _loop(self) -> None:
        backoff = 0.5
        try:
            # Importing MLflow takes seconds, and a fresh MLflow server's first search takes a
            # while too: right away, while the first eval is still running, not when its first
            # data arrives.
            self._mlflow().search_runs([self.experiment_id()], max_results=1)
        except Exception as e:  # noqa: BLE001 - MLflow not reachable yet: the passes retry
            log.info("MLflow not ready at start (%s); retrying", classify(e))
        while not self._stop.is_set():
            try:
                did = self.run_once()
                backoff = 0.5
                if not did:
                    self._wake.wait(self._idle_wait())
                    self._wake.clear()
            except Exception as e:  # noqa: BLE001 - the writer must survive anything
                err = classify(e)
                self.status.mlflow_ok = False if isinstance(err, Transient) else self.status.mlflow_ok
                self.status.last_error = str(err)
                self.status.last_error_at = time.time()
                log.warning("MLflow write failed (%s); retrying in %.1fs", err, backoff)
                self._back_off(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    def _back_off(self, backoff: float) -> None:
        """Wait ``backoff`` seconds before the next pass. When MLflow itself stopped answering,
        look every second whether it is back and go on at once: a restarted MLflow gets the
        spool within about a second, not after up to ``max_backoff_s`` of backoff. (MLflow
        answering but failing requests keeps the full exponential backoff.)"""
        deadline = time.monotonic() + backoff
        down = not self._mlflow_answers()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(left, RECOVERY_PROBE_S)):
                return
            if down and self._mlflow_answers():
                log.info("MLflow answers again; resuming")
                return

    def _mlflow_answers(self) -> bool:
        try:
            return requests.get(self.tracking_uri + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _idle_wait(self) -> float:
        """Until the next poll or probe is due (new data wakes the writer at once; results in
        their grace period are looked at every second)."""
        now = time.monotonic()
        due = [*self.finalizer.due_times()] + [t for t, _ in self._probe.values()]
        return max(0.05, min([1.0] + [t - now for t in due]))

    # --- MLflow clients ------------------------------------------------------------------------
    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient
            from mlflow.tracing.client import TracingClient
            from mlflow.utils.credentials import get_default_host_creds

            self._client = MlflowClient(self.tracking_uri)
            self._tracing = TracingClient(self.tracking_uri)
            self._creds = get_default_host_creds(self.tracking_uri)
        return self._client

    def _trace_store(self) -> Any:
        self._mlflow()
        return self._tracing.store

    def _rest(self, method: str, endpoint: str, **kw: Any) -> requests.Response:
        """One request with MLflow's own REST plumbing (auth from MLflow's env vars), no
        retries: the writer retries whole passes on its own schedule."""
        from mlflow.utils.rest_utils import http_request

        self._mlflow()
        try:
            return http_request(self._creds, endpoint, method, max_retries=0, retry_codes=(),
                                timeout=self.request_timeout_s, **kw)
        except requests.RequestException as e:
            raise Transient(f"{method} {endpoint}: {e}") from e

    def _post_json(self, endpoint: str, body: dict[str, Any], timeout_s: float) -> Any:
        from mlflow.utils.rest_utils import http_request

        if self._creds is None:
            raise OwnershipUnknown("MLflow client not ready")
        return http_request(self._creds, endpoint, "POST", max_retries=0, retry_codes=(),
                            timeout=timeout_s, json=body)

    def _foreign(self, trace_ids: set[str]) -> set[str]:
        """Traces of another experiment among ``trace_ids`` (see _ownership.py)."""
        if not trace_ids:
            return set()
        self.experiment_id()
        try:
            return self.ownership.foreign(trace_ids, self.request_timeout_s)
        except OwnershipUnknown as e:
            raise Transient(f"checking trace ownership: {e}") from e

    def _refuse_foreign(self, what: str, n: int, trace_ids: set[str]) -> None:
        self.ownership.rejected += n
        log.warning("%d %s of %d trace(s) of another MLflow experiment not written (e.g. tr-%s)",
                    n, what, len(trace_ids), min(trace_ids))

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
            self._claims = Claims(client, exp_id, self._claim_io)
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
            self._permanent(what, permanent(e), n)
            return False

    # --- one pass ------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Apply everything pending once. Returns True if anything was done."""
        self.spool.expire_orphans()  # before any MLflow call: also while MLflow is down
        self.experiment_id()
        # Claiming runs takes a few round trips: meanwhile the spans that link no run are
        # forwarded; the roots follow once their run is known (MLflow links a trace to the run
        # named in the request that carries its root), then the traces' assessments.
        claiming = (self._claim_pool.submit(self._resolve_runs)
                    if self.spool.identities_without_run() else None)
        did = self._forward_spans()
        if claiming is not None:
            did |= claiming.result()
            did |= self._forward_spans()
        did |= self._link_running()
        # Assessments (one request each) beside the run writes (params, metrics, tags, tables,
        # status; the eval log upload starts from there): they touch different MLflow entities,
        # and one after the other they were most of an eval's end-to-MLflow time. The task's
        # finalization reads both, after both.
        assessing = self._results_pool.submit(self._apply_results)
        try:
            did |= self._apply_tasks()
            did |= self._apply_runs()
        finally:
            did |= assessing.result()
        did |= self.finalizer.run()
        assert self._claims is not None
        self._claims.drain()
        self.status.passes += 1
        self.status.mlflow_ok = True
        self.status.last_success_at = time.time()
        return did

    # --- runs ----------------------------------------------------------------------------------
    def _resolve_runs(self) -> bool:
        """Claim the MLflow run of each new identity. One that MLflow refuses for good is marked
        failed (reported in /health) and its data goes on without a run: it never holds up the
        others, in this pass or after a restart."""
        did = False
        for ident in self.spool.identities_without_run():
            try:
                mlflow_id = self._resolve_run(ident)
            except Exception as e:  # noqa: BLE001
                err = permanent(e)
                self._permanent(f"the MLflow run of {ident['role']} {ident['key']}", err)
                self.spool.fail_identity(ident["key"], str(err))
                did = True
                continue
            if mlflow_id is None:
                continue
            self.spool.set_mlflow_run_id(ident["key"], mlflow_id)
            self.status.applied["runs"] += 1
            did = True
        return did

    def _resolve_run(self, ident: dict[str, Any]) -> str | None:
        assert self._claims is not None
        attrs, start_ms = ident["attrs"], _ms(ident["start_ns"])
        if ident["role"] == _mlflow_names.ROLE_RUN:
            return self._claims.parent_run(
                ident["run_id"], _run_tags.parent_run_tags(ident["run_id"], attrs), start_ms,
                run_name=_run_tags.parent_run_name(ident["run_id"], attrs))
        parent_key = run_key(ident["run_id"])
        parent = self.spool.mlflow_run_id(parent_key)
        if parent is None:
            if self.spool.identity_failed(parent_key):
                raise Permanent("its Inspect run has no MLflow run")
            return None  # the parent identity is resolved first in the same pass
        tags = dict(_run_tags.task_run_tags(ident["eval_id"], parent, attrs))
        tags[_mlflow_names.TAG_RUN_NAME] = _run_tags.task_run_name(attrs)
        return self._claims.task_run(ident["eval_id"], parent, tags, start_ms,
                                     run_name=tags[_mlflow_names.TAG_RUN_NAME])

    def _apply_tasks(self) -> bool:
        did = False
        for task in self.spool.pending_tasks():
            self._guard(f"task {task['eval_id']}", self._apply_task, task)
            self.spool.mark_task_applied(task["eval_id"], task["digest"])
            self.status.applied["tasks"] += 1
            did = True
        return did

    def _apply_task(self, task: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        client = self._mlflow()
        run_id, attrs = task["mlflow_run_id"], task["attrs"]
        current = client.get_run(run_id)
        ts = _ms(task["end_ns"]) or 0
        params = [Param(k, v) for k, v in sorted(_run_params.task_params(attrs).items())]
        # in task_metrics' order (the scorers' results first): MLflow's run page lists a run's
        # metrics in the order they were first logged
        metrics = [Metric(k, v, ts, 0) for k, v in _run_metrics.task_metrics(attrs).items()]
        parent = self.spool.mlflow_run_id(run_key(task["run_id"])) or ""
        tags = dict(_run_tags.task_run_tags(task["eval_id"], parent, attrs))
        tags[_mlflow_names.TAG_RUN_NAME] = _run_tags.task_run_name(attrs)
        note = _run_note.task_run_note(attrs)
        if note and _run_note.owned(current.data.tags.get(_mlflow_names.TAG_RUN_NOTE)):
            tags[_mlflow_names.TAG_RUN_NOTE] = _mlflow_names.mlflow_text(
                note, _mlflow_names.TAG_VALUE_MAX)
        run_tags = [RunTag(k, v) for k, v in sorted(tags.items())]
        try:
            log_batch(self._mlflow(), run_id, metrics, params, run_tags)
        except MlflowException as e:
            if getattr(e, "error_code", "") != "INVALID_PARAMETER_VALUE":
                raise
            # a param already logged with another value (an earlier version of this task
            # span): params are insert-once, keep the first and log the rest
            existing = current.data.params
            log_batch(self._mlflow(), run_id, metrics, [p for p in params if p.key not in existing],
                            run_tags)
        write_tables(self._mlflow(), run_id, {_mlflow_names.MODEL_USAGE_TABLE: _tables.model_usage_table(attrs)})
        status = _run_tags.run_status(attrs.get(sc.INSPECT_TASK_STATUS))
        if status:
            # Inspect's log stats (the task span's times) have whole seconds: the task would end
            # before its last samples, and its run page would show a negative duration
            # (the run's start: its first sample as the receiver that claimed it saw it)
            last_sample = self.spool.latest_sample_end(task["eval_id"]) or 0
            end_ms = _ms(max(task["end_ns"] or 0, last_sample))
            if end_ms is not None:
                end_ms = max(end_ms, current.info.start_time or 0)
            client.set_terminated(run_id, status, end_time=end_ms)
        location = attrs.get(sc.INSPECT_TASK_LOG_LOCATION)
        if isinstance(location, str) and location:
            self.eval_logs.enqueue(task["eval_id"], run_id, location)

    def _apply_runs(self) -> bool:
        from mlflow.entities import RunTag

        did = False
        for run in self.spool.pending_runs():
            def apply(run: dict[str, Any] = run) -> None:
                client = self._mlflow()
                attrs = run["attrs"]
                tags = dict(_run_tags.parent_run_tags(run["run_id"], attrs))
                tags[_mlflow_names.TAG_RUN_NAME] = _run_tags.parent_run_name(run["run_id"], attrs)
                log_batch(self._mlflow(), run["mlflow_run_id"],
                                tags=[RunTag(k, v) for k, v in sorted(tags.items())])
                status = _run_tags.run_status(attrs.get(sc.INSPECT_RUN_STATUS))
                if status:
                    client.set_terminated(run["mlflow_run_id"], status,
                                          end_time=_ms(run["end_ns"]))
            self._guard(f"run {run['run_id']}", apply)
            self.spool.mark_run_applied(run["run_id"], run["digest"])
            did = True
        return did

    # --- traces --------------------------------------------------------------------------------
    def _forward_spans(self) -> bool:
        did = False
        for _ in range(FORWARD_BATCHES_PER_PASS):
            spans = self.spool.pending_spans(FORWARD_MAX_SPANS, FORWARD_MAX_BYTES)
            if not spans:
                break
            foreign = self._foreign({s.trace_id for s in spans})
            if foreign:  # never written: done with them here
                refused = [s for s in spans if s.trace_id in foreign]
                self.spool.mark_spans_forwarded(refused)
                self._refuse_foreign("span(s)", len(refused), foreign)
                spans = [s for s in spans if s.trace_id not in foreign]
                did = True
            # One request per run to link (MLflow links the traces whose root is in a request to
            # its x-mlflow-run-id); spans that link nothing ride along with the largest group:
            # MLflow's per-request cost is high, its per-span cost low.
            groups: dict[str | None, list[PendingSpan]] = defaultdict(list)
            unlinked: list[PendingSpan] = []
            runs = {k: self.spool.mlflow_run_id(k) for k in {s.link_key for s in spans} if k}
            # roots whose identity MLflow refused: no run will ever come, they go in a request
            # of their own (riding along with another run's they would be linked to it)
            failed = {k for k, v in runs.items() if v is None and self.spool.identity_failed(k)}
            for s in spans:
                if s.link_key in failed:
                    groups[None].append(s)
                elif s.link_key and runs[s.link_key] is None:
                    continue  # a root whose run is not resolved yet: next pass
                else:
                    (groups[runs[s.link_key]] if s.link_key else unlinked).append(s)
            carrier = max(groups, key=lambda k: len(groups[k]), default=None)
            groups[carrier].extend(unlinked)
            sent = [s for group in groups.values() for s in group]
            for run, group in groups.items():
                if group:
                    self._post_spans(group, run)
            self.ownership.mark_ours({s.trace_id for s in sent})
            self.spool.mark_spans_forwarded(sent)
            self.status.applied["spans"] += len(sent)
            did = did or bool(sent)
            if len(sent) < len(spans):
                break
        return did

    def _link_running(self) -> bool:
        """Running samples' traces (IN_PROGRESS in MLflow until their root arrives) linked to
        their task run as soon as their first spans are in, so the run shows them running."""
        rows = self.spool.running_to_link()
        if not rows:
            return False
        by_run: dict[str, list[str]] = defaultdict(list)
        for trace_id, run_id in rows:
            by_run[run_id].append(trace_id)
        for run_id, trace_ids in by_run.items():
            for chunk in chunks(trace_ids, MAX_TRACE_LINKS):
                self._guard(f"link of {len(chunk)} running traces to run {run_id}",
                            self._mlflow().link_traces_to_run, ["tr-" + t for t in chunk],
                            run_id, n=0)
        self.spool.forget_running(t for t, _ in rows)
        self.status.applied["running_links"] += len(rows)
        return True

    def _post_spans(self, spans: list[PendingSpan], mlflow_run_id: str | None) -> None:
        body = build_trace_request(spans).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf",
                   "x-mlflow-experiment-id": self.experiment_id()}
        if mlflow_run_id:
            headers["x-mlflow-run-id"] = mlflow_run_id
        r = self._rest("POST", "/v1/traces", data=body, extra_headers=headers)
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

    # --- assessments ---------------------------------------------------------------------------
    def _apply_results(self) -> bool:
        """Results of traces forwarded here, then results of traces this receiver never saw (with
        several receivers another one may forward them): one result per such trace probes
        MLflow first (with backoff while the trace is not there), the rest follow."""
        ready = self.spool.pending_results()
        now = time.monotonic()
        by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        awaiting = self.spool.results_awaiting_trace(AWAITING_SCAN)
        if len(awaiting) < AWAITING_SCAN:  # forget traces no result waits for (applied, expired)
            waiting_for = {r["trace_id"] for r in awaiting}
            self._probe = {t: v for t, v in self._probe.items() if t in waiting_for}
        young = time.time() - PROBE_GRACE_S
        for r in awaiting:
            if r["received"] > young and r["trace_id"] not in self._probe:
                continue  # its trace is most likely still on its way here
            if self._probe.get(r["trace_id"], (0.0, 0.0))[0] <= now and (
                    r["trace_id"] in by_trace or len(by_trace) < PROBE_TRACES_PER_PASS):
                by_trace[r["trace_id"]].append(r)
        foreign = self._foreign({r["trace_id"] for r in ready} | set(by_trace))
        if foreign:  # never written: done with them here
            refused = [r for r in ready if r["trace_id"] in foreign] + [
                r for t in foreign for r in by_trace.pop(t, [])]
            self.spool.mark_results_applied(refused)
            self._refuse_foreign("evaluation result(s)", len(refused), foreign)
            ready = [r for r in ready if r["trace_id"] not in foreign]
        probes = [rows[0] for rows in by_trace.values()]
        if not ready and not probes:
            return bool(foreign)
        applied, transient = [], None

        def settle(rows: list[dict[str, Any]], probing: bool) -> list[str]:
            nonlocal transient
            found = []
            for r, (outcome, detail) in zip(rows, self._pool.map(self._create_assessment, rows)):
                if outcome == "applied":
                    applied.append(r)
                    found.append(r["trace_id"])
                    self._probe.pop(r["trace_id"], None)
                elif outcome == "no_trace" and probing:
                    _, backoff = self._probe.get(r["trace_id"], (0.0, PROBE_MIN_S / 2))
                    backoff = min(PROBE_MAX_S, backoff * 2)
                    self._probe[r["trace_id"]] = (now + backoff, backoff)
                elif outcome == "transient":
                    transient = detail
                else:  # permanent, or no trace although this receiver forwarded it
                    self._permanent(f"assessment {r['name']} of tr-{r['trace_id']}",
                                    Permanent(detail))
                    applied.append(r)
            return found

        settle(ready, probing=False)
        for trace_id in settle(probes, probing=True):
            settle(by_trace[trace_id][1:], probing=True)
        if applied:
            self.spool.mark_results_applied(applied)
            self.status.applied["assessments"] += len(applied)
        if transient is not None:
            raise Transient(transient)
        return bool(applied)

    def _create_assessment(self, r: dict[str, Any]) -> tuple[str, str]:
        """Outcome of writing one result: applied | no_trace | transient | permanent."""
        from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback
        from mlflow.protos.service_pb2 import CreateAssessment
        from mlflow.utils.proto_json_utils import message_to_json

        trace_id = "tr-" + r["trace_id"]
        aid = _evaluations.assessment_id(r["trace_id"], r["name"], r["span_id"])
        ts = _ms(r.get("time_ns"))
        # On the trace, as MLflow's evaluations put feedback (the trace opens with its scores);
        # the scorer span and the task run it belongs to are named in the metadata.
        metadata = dict(r.get("metadata") or {})
        if r["span_id"]:
            metadata[_mlflow_names.ASSESSMENT_SCORER_SPAN] = r["span_id"]
        task_run = self.spool.mlflow_run_id(eval_key(r["eval_id"])) if r.get("eval_id") else None
        if task_run:
            metadata[_mlflow_names.ASSESSMENT_SOURCE_RUN] = task_run
        feedback = Feedback(
            name=r["name"],
            value=r.get("value") if r.get("value") is not None else r.get("label"),
            source=AssessmentSource(
                source_type=(AssessmentSourceType.LLM_JUDGE if r.get("model_graded")
                             else AssessmentSourceType.CODE),
                source_id=r.get("scorer") or r["name"]),
            rationale=r.get("rationale"), metadata=metadata or None,
            create_time_ms=ts, last_update_time_ms=ts,
        )
        feedback.assessment_id = aid
        feedback.trace_id = trace_id
        endpoint = f"/api/3.0/mlflow/traces/{trace_id}/assessments"
        try:
            resp = self._rest("POST", endpoint, data=message_to_json(
                CreateAssessment(assessment=feedback.to_proto())),
                extra_headers={"Content-Type": "application/json"})
            if resp.status_code == 200:
                return "applied", ""
            if resp.status_code == 404:
                return "no_trace", resp.text[:300]
            # A second copy is refused by the primary key (as an internal error); it is there.
            exists = self._rest("GET", f"{endpoint}/{aid}")
            if exists.status_code == 200:
                return "applied", ""
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                return "transient", f"HTTP {resp.status_code} {resp.text[:300]}"
            return "permanent", f"HTTP {resp.status_code} {resp.text[:300]}"
        except Transient as e:
            return "transient", str(e)

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
            rs.resource.CopyFrom(_forward.drop_nul(resource_pb2.Resource.FromString(s.resource)))
            resources[s.resource] = rs
        key = (s.resource, s.scope_name, s.scope_version)
        ss = scopes.get(key)
        if ss is None:
            ss = rs.scope_spans.add()
            ss.scope.name = s.scope_name.replace("\x00", "")
            ss.scope.version = s.scope_version.replace("\x00", "")
            ss.schema_url = sc.SCHEMA_URL if s.scope_name == _values.INSPECT_SCOPE else ""
            scopes[key] = ss
        span = _forward.drop_nul(trace_pb2.Span.FromString(s.payload))
        if s.enrich:
            kept = [kv for kv in span.attributes if _forward.forwarded_attribute(kv.key, s.enrich)]
            if len(kept) < len(span.attributes):
                del span.attributes[:]
                span.attributes.extend(kept)
            span.attributes.extend(_kv(k, v) for k, v in sorted(s.enrich.items()))
        ss.spans.append(span)
    return req


__all__ = ["Writer", "build_trace_request", "Transient", "Permanent", "EVAL_KEY", "RUN_KEY",
           "eval_key"]
