"""Background writer: applies the spool's pending rows to MLflow, idempotently, with backoff.

One pass (``run_once``), on the writer's thread unless said otherwise:

1. claims: the MLflow run of each new Inspect task, *claimed* so that several receivers agree
   on one (``_claims.py``; an Inspect run has none, see _run_tags.py), on the claim thread (its reads in pairs, and its clean-up, on
   two more). Meanwhile the writer thread forwards the spans that link no run;
2. traces (``_trace_forwarder.py``): pending spans to MLflow's own ``/v1/traces`` in large
   requests, the sample roots with ``x-mlflow-run-id`` of their task run (once it is claimed),
   which links them; running traces linked to their task run;
3. at the same time: the results thread writes the assessments (``_assessments.py``; one
   request per evaluation result, 8 at once on the assessment pool, with an id derived from the
   result's key), while the writer thread applies task and run span data (params, the task's
   metrics with its results first, tags, the results table as the run's description, status,
   the model usage table) and queues the task's eval log, which the eval-log thread stores
   (``_eval_logs.py``) beside every pass;
4. task finalization (``_task_finalizer.py``), after both: aggregates, per-sample step metrics,
   samples and scores tables, computed from what *MLflow* holds for the task, by whichever
   receiver should.

Every MLflow write is keyed by Inspect ids with deterministic timestamps and steps, so applying
the same data again (crash, redelivery, retry, another receiver) changes nothing: metrics repeat
exactly (MLflow drops duplicate rows), params are insert-once, spans are upserted by (trace,
span) id, assessments have deterministic ids, tables are overwritten.

Each item (a claim, a trace, a result, a task, a run, a finalization, a link, an eval log) is
applied on its own and marked applied only once its writes succeeded. One that fails is
recorded in the dead letters (``_dead_letters.py``): held back and retried with backoff, or kept
as a dead letter, while the others go on. MLflow down or failing aborts the pass instead: it is
retried with backoff (0.5 s doubling to ``max_backoff_s``), and no item is charged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from inspect_otel import semconv as sc

from . import _mlflow_names, _run_metrics, _run_note, _run_params, _run_tags, _tables
from ._assessments import AssessmentWriter
from ._claims import Claims
from ._dead_letters import DeadLetters, Item, RetryPolicy
from ._eval_logs import DEFAULT_MAX_LOG_BYTES, EvalLogStore, Root
from ._mlflow_io import Failure, Permanent, Transient, classify, log_batch, scrub_text, write_tables
from ._ownership import OwnershipUnknown, TraceOwnership
from ._spool import Spool
from ._task_finalizer import TaskFinalizer
from ._trace_forwarder import TraceForwarder

log = logging.getLogger("inspect_otel.receiver")

# Assessments are written concurrently: MLflow has no batch call for them, and an MLflow with
# several uvicorn workers answers each request ~40 ms late on Linux (its workers' sockets lack
# TCP_NODELAY), a latency that only concurrency hides. A one-worker sqlite MLflow serialises them.
ASSESSMENT_WORKERS = 8
RECOVERY_PROBE_S = 1.0  # while backing off from an MLflow that does not answer: look this often


def _ms(ns: int | None) -> int | None:
    return int(ns // 1_000_000) if ns else None


@dataclass
class WriterStatus:
    mlflow_ok: bool | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    passes: int = 0
    applied: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Writer:
    def __init__(self, spool: Spool, tracking_uri: str, experiment_name: str,
                 settle_s: float = 10.0, max_backoff_s: float = 30.0,
                 request_timeout_s: float = 60.0, log_roots: tuple[Root, ...] = (),
                 max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
                 assessment_workers: int = ASSESSMENT_WORKERS,
                 retry_policy: RetryPolicy = RetryPolicy()):
        self.spool = spool
        self.drain = spool.drain
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
        self.dead_letters = DeadLetters(spool.dead_letters, retry_policy, self._scrub)
        self.ownership = TraceOwnership(self._post_json, lambda: self._experiment_id)
        self.traces = TraceForwarder(self.drain, self.dead_letters, self._mlflow, self._rest,
                                     self.experiment_id, self.ownership, self._foreign,
                                     self._refuse_foreign)
        self.assessments = AssessmentWriter(self.drain, self.dead_letters, self._rest, self._pool,
                                            self._foreign, self._refuse_foreign)
        self.finalizer = TaskFinalizer(self.drain, self._mlflow, self._trace_store,
                                       self.experiment_id, settle_s, self.dead_letters.failed,
                                       self._pool)
        self.eval_logs = EvalLogStore(spool, self._mlflow, log_roots, max_log_bytes, self._stop,
                                      max_backoff_s, self.dead_letters, self._count_eval_log)
        self._pass_error: str | None = None  # the pass failure last logged (once per cause)
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
            log.info("MLflow not ready at start (%s); retrying", self._describe(e).cause)
        while not self._stop.is_set():
            try:
                did = self.run_once()
                backoff = 0.5
                if self._pass_error is not None:
                    log.info("MLflow writes succeed again")
                    self._pass_error = None
                if not did:
                    self._wake.wait(self._idle_wait())
                    self._wake.clear()
            except Exception as e:  # noqa: BLE001 - the writer must survive anything
                failure = self._describe(e)
                if isinstance(e, Transient) or failure.kind == "transient":
                    self.status.mlflow_ok = False
                self.status.last_error = failure.cause
                self.status.last_error_at = time.time()
                # once per cause: an outage would otherwise log every retry
                if failure.cause != self._pass_error:
                    log.warning("MLflow write failed (%s); retrying with backoff (%.1f s, "
                                "doubling to %.0f s)", failure.cause, backoff, self.max_backoff_s)
                    self._pass_error = failure.cause
                else:
                    log.debug("MLflow write failed again (%s); retrying in %.1f s",
                              failure.cause, backoff)
                self._back_off(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    def _describe(self, exc: BaseException) -> Failure:
        return classify(exc, self._scrub)

    def _scrub(self, text: str) -> str:
        """An error's text as /health and the log may show it (``scrub_text``; the tracking
        server's host name too, wherever it appears)."""
        return scrub_text(text, (urlsplit(self.tracking_uri).hostname or "",))

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
        due = [*self.finalizer.due_times(), *self.assessments.due_times()]
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

    # --- one pass ------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Apply everything pending once. Returns True if anything was done."""
        self.spool.expire_orphans()  # before any MLflow call: also while MLflow is down
        self.experiment_id()
        applied = self.status.applied
        # Claiming runs takes a few round trips: meanwhile the spans that link no run are
        # forwarded; the roots follow once their run is known (MLflow links a trace to the run
        # named in the request that carries its root), then the traces' assessments.
        claiming = (self._claim_pool.submit(self._resolve_runs)
                    if self.drain.identities_without_run() else None)
        forwarded = self.traces.forward()
        applied["spans"] += forwarded.spans
        did = forwarded.did
        if claiming is not None:
            did |= claiming.result()
            forwarded = self.traces.forward()
            applied["spans"] += forwarded.spans
            did |= forwarded.did
        linked = self.traces.link_running()
        applied["running_links"] += linked
        did |= linked > 0
        # Assessments (one request each) beside the run writes (params, metrics, tags, tables,
        # status; the eval log upload starts from there): they touch different MLflow entities,
        # and one after the other they were most of an eval's end-to-MLflow time. The task's
        # finalization reads both, after both.
        assessing = self._results_pool.submit(self.assessments.apply)
        try:
            tasks, runs = self.drain.pending_tasks(), self.drain.pending_runs()
            applied["tasks"] += self._apply_each("task", "eval_id", tasks, self._apply_task,
                                                 self.drain.mark_task_applied)
            self._apply_each("run", "run_id", runs, self._apply_run, self.drain.mark_run_applied)
            did |= bool(tasks or runs)
        finally:
            assessed = assessing.result()
        applied["assessments"] += assessed.applied
        did |= assessed.did
        finalized = self.finalizer.run()
        applied["finalizations"] += finalized.finalizations
        applied["sample_metrics"] += finalized.sample_metrics
        did |= finalized.checked > 0
        assert self._claims is not None
        self._claims.drain()
        self.status.passes += 1
        self.status.mlflow_ok = True
        self.status.last_success_at = time.time()
        return did

    # --- runs ----------------------------------------------------------------------------------
    def _resolve_runs(self) -> bool:
        """Claim the MLflow run of each new identity. One that cannot be claimed is held back
        (a dead letter if MLflow refuses it for good, see _dead_letters.py); its data goes on
        without a run once it is a dead letter, and it never holds up the others."""
        did = False
        for ident in self.drain.identities_without_run():
            try:
                mlflow_id = self._resolve_run(ident)
            except Exception as e:  # noqa: BLE001 - this identity alone (Transient is raised)
                self.dead_letters.failed(Item("identity", ident["key"]), e)
                did = True
                continue
            if mlflow_id is None:
                continue
            self.drain.set_mlflow_run_id(ident["key"], mlflow_id)
            self.status.applied["runs"] += bool(mlflow_id)
            did = True
        return did

    def _resolve_run(self, ident: dict[str, Any]) -> str | None:
        """The MLflow run of an identity: a task's is claimed; an Inspect run has none (its
        tasks are top-level runs, see _run_tags.py): ``""``."""
        assert self._claims is not None
        if ident["role"] == _mlflow_names.ROLE_RUN:
            return ""
        attrs = ident["attrs"]
        tags = dict(_run_tags.task_run_tags(ident["eval_id"], attrs))
        tags[_mlflow_names.TAG_RUN_NAME] = _run_tags.task_run_name(ident["eval_id"], attrs)
        return self._claims.task_run(ident["eval_id"], tags, _ms(ident["start_ns"]),
                                     run_name=tags[_mlflow_names.TAG_RUN_NAME])

    def _apply_each(self, kind: str, key: str, rows: list[dict[str, Any]],
                    apply: Callable[[dict[str, Any]], None],
                    mark: Callable[[str, str], None]) -> int:
        """Task or run span data, each item on its own: marked applied once its writes
        succeeded, held back alone otherwise. Returns how many were applied."""
        applied = 0
        for row in rows:
            try:
                apply(row)
            except Exception as e:  # noqa: BLE001 - this item alone (Transient is raised)
                self.dead_letters.failed(Item(kind, row[key], row["digest"], row["nbytes"]), e)
                continue
            mark(row[key], row["digest"])
            applied += 1
        return applied

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
        tags = dict(_run_tags.task_run_tags(task["eval_id"], attrs))
        tags[_mlflow_names.TAG_RUN_NAME] = _run_tags.task_run_name(task["eval_id"], attrs)
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
            log_batch(self._mlflow(), run_id, metrics,
                      [p for p in params if p.key not in existing], run_tags)
        write_tables(self._mlflow(), run_id,
                     {_mlflow_names.MODEL_USAGE_TABLE: _tables.model_usage_table(attrs)})
        status = _run_tags.run_status(attrs.get(sc.INSPECT_TASK_STATUS))
        if status:
            # Inspect's log stats (the task span's times) have whole seconds: the task would end
            # before its last samples, and its run page would show a negative duration
            # (the run's start: its first sample as the receiver that claimed it saw it)
            last_sample = self.drain.latest_sample_end(task["eval_id"]) or 0
            end_ms = _ms(max(task["end_ns"] or 0, last_sample))
            if end_ms is not None:
                end_ms = max(end_ms, current.info.start_time or 0)
            client.set_terminated(run_id, status, end_time=end_ms)
        location = attrs.get(sc.INSPECT_TASK_LOG_LOCATION)
        if isinstance(location, str) and location:
            self.eval_logs.enqueue(task["eval_id"], run_id, location)

    def _apply_run(self, run: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        if not run["mlflow_run_id"]:
            return  # no MLflow run (only a parent run made by an older receiver has one)
        attrs = run["attrs"]
        tags = dict(_run_tags.parent_run_tags(run["run_id"], attrs))
        tags[_mlflow_names.TAG_RUN_NAME] = _run_tags.parent_run_name(run["run_id"], attrs)
        log_batch(self._mlflow(), run["mlflow_run_id"],
                  tags=[RunTag(k, v) for k, v in sorted(tags.items())])
        status = _run_tags.run_status(attrs.get(sc.INSPECT_RUN_STATUS))
        if status:
            self._mlflow().set_terminated(run["mlflow_run_id"], status, end_time=_ms(run["end_ns"]))


__all__ = ["Writer", "Transient", "Permanent"]
