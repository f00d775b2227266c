"""Task finalization: the aggregates, the per-sample step metrics and the samples and scores
tables of a task run, computed from what *MLflow* holds for the task.

Each sample trace carries its summary as a trace tag and its assessments are on it, so which
receiver got which sample does not matter. Whichever receiver applied the last piece of a task
sees it complete and writes. The receiver holding the task span also polls until the task is
complete, or writes what there is once nothing changed for ``settle_s``. A write happens only
when the content differs from the finalization the task run already records (tag
``mlflow.inspect_otel.finalized``), and the marker is written last, alone: it says what is
written. The step metrics follow the task span's own results on the run page.

A task whose finalization fails is recorded in the dead letters (``_dead_letters.py``): held back
and tried again, never marked finalized until it succeeded. ``run()`` returns its counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from inspect_otel import semconv as sc

from . import _evaluations, _finalize, _mlflow_names, _samples
from ._dead_letters import Item
from ._mlflow_io import MAX_TRACE_LINKS, chunks, log_batch, write_tables
from ._spool_drain import SpoolDrain
from ._trace_labels import TraceLabeller

SEARCH_PAGE = 500
CHECK_MIN_INTERVAL_S = 0.25  # between two finalization checks of one task


@dataclass(frozen=True)
class Finalized:
    """What one ``TaskFinalizer.run()`` did."""

    checked: int = 0  # tasks checked against MLflow
    finalizations: int = 0  # finalizations written
    sample_metrics: int = 0  # per-sample step metrics written


@dataclass
class _Written:
    finalizations: int = 0
    sample_metrics: int = 0


class TaskFinalizer:
    """One receiver's finalization of the tasks whose data it holds (the writer's last stage).
    ``on_failure(item, exc)`` records a task whose check failed (and raises ``Transient`` when
    MLflow is failing: the rest waits for the writer's next pass)."""

    def __init__(self, drain: SpoolDrain, mlflow: Callable[[], Any], trace_store: Callable[[], Any],
                 experiment_id: Callable[[], str], settle_s: float,
                 on_failure: Callable[[Item, BaseException], None], executor: Executor):
        self.drain = drain
        self._labeller = TraceLabeller(mlflow, executor)
        self.settle_s = settle_s
        self._mlflow = mlflow
        self._trace_store = trace_store
        self._experiment_id = experiment_id
        self._on_failure = on_failure
        # eval id -> when to check again (tasks polled by their task-span holder)
        self._poll: dict[str, float] = {}
        self._last_check: dict[str, float] = {}
        # eval id -> (marker of the MLflow view, when it last changed): the settle clock
        self._view: dict[str, tuple[str, float]] = {}
        # MLflow run id -> step metrics written (key, value, ts, step): a task finalized more
        # than once writes only what is new (forgotten with the task's view)
        self._stepped: dict[str, set[tuple[str, float, int, int]]] = {}

    def polling(self) -> bool:
        """Tasks still being polled (work the spool's counts do not show)."""
        return bool(self._poll)

    def due_times(self) -> Iterable[float]:
        """When each polled task is next due (monotonic clock)."""
        return self._poll.values()

    def run(self) -> Finalized:
        """Check every task that is due; write what this receiver should."""
        now = time.monotonic()
        due = [e for e, t in self._poll.items() if t <= now]
        checked, written = 0, _Written()
        checkable = self.drain.evals_to_check(due)
        for eval_id in set(due) - {ev["eval_id"] for ev in checkable}:
            self._poll[eval_id] = now + self._poll_interval()  # its own data is still pending
        for ev in checkable:
            eval_id = ev["eval_id"]
            if eval_id not in due and now - self._last_check.get(eval_id, -1e9) < CHECK_MIN_INTERVAL_S:
                self._poll[eval_id] = self._last_check[eval_id] + CHECK_MIN_INTERVAL_S
                continue
            self._last_check[eval_id] = now
            self._poll.pop(eval_id, None)
            checked += 1
            try:
                done = self._check_task(ev, written)
            except Exception as e:  # noqa: BLE001 - held back, tried again (never marked done)
                self._on_failure(Item("finalize", eval_id), e)
                continue
            if done:
                self.drain.mark_finalized(eval_id, ev["rev"])
                self._view.pop(eval_id, None)
                self._stepped.pop(ev["mlflow_run_id"], None)
            else:
                self._poll[eval_id] = time.monotonic() + self._poll_interval()
        return Finalized(checked, written.finalizations, written.sample_metrics)

    def _poll_interval(self) -> float:
        return max(0.2, min(1.0, self.settle_s / 4))

    def _check_task(self, ev: dict[str, Any], written: _Written) -> bool:
        """Finalize the task if this receiver should, from what MLflow holds. Returns True when
        this receiver has nothing more to do for it (until its own data changes again)."""
        eval_id, run_id = ev["eval_id"], ev["mlflow_run_id"]
        run = self._mlflow().get_run(run_id)
        # The task span's data is complete once its run is terminated (the holder's last write
        # for it): before that, the aggregates' timestamp (the run's end) is not known yet.
        expected = run.data.metrics.get("samples/total") if run.info.end_time else None
        records = self._sample_records(eval_id)
        final = _finalize.task_final(records, int(expected) if expected is not None else None)
        recorded = run.data.tags.get(_mlflow_names.TAG_FINALIZED)
        now = time.monotonic()
        marker, since = self._view.get(eval_id, (final.marker, now))
        if marker != final.marker:
            since = now
        self._view[eval_id] = (final.marker, since)
        if recorded == final.marker:
            return final.complete or not ev["holder"] or now - since >= self.settle_s
        if final.complete:
            self._write_final(run, final, records, written)
            return True
        if ev["holder"]:
            if now - since < self.settle_s:
                return False  # others may still be writing: look again soon
            self._write_final(run, final, records, written)
            return False  # confirm once more: a concurrent writer may have had another view
        if recorded is not None and covers(final, recorded):
            # the holder gave up waiting and wrote what it saw; this receiver saw more
            self._write_final(run, final, records, written)
            return False
        return True

    def _sample_records(self, eval_id: str) -> list[_finalize.SampleRecord]:
        """Every sample trace of the task in MLflow, with its summary and our assessments."""
        quoted = eval_id.replace("\\", "\\\\").replace("'", "\\'")
        filter_string = (f"tags.`{sc.INSPECT_EVAL_ID}` = '{quoted}' AND "
                         f"tags.`{_mlflow_names.TRACE_TAG_KIND}` = '{_mlflow_names.TRACE_KIND_SAMPLE}'")
        out, token = [], None
        while True:
            infos, token = self._trace_store().search_traces(
                experiment_ids=[self._experiment_id()], filter_string=filter_string,
                max_results=SEARCH_PAGE, page_token=token)
            for info in infos:
                summary = _samples.summary_of_trace(info.tags)
                if summary is None:
                    continue
                hex_id = info.trace_id[3:] if info.trace_id.startswith("tr-") else info.trace_id
                ours = []
                for a in info.assessments or []:
                    # the scorer span: in the metadata (on the trace), or the assessment's own
                    # span (written by receivers before the assessments moved to the trace)
                    span = (a.metadata or {}).get(_mlflow_names.ASSESSMENT_SCORER_SPAN) \
                        or a.span_id or ""
                    if a.assessment_id != _evaluations.assessment_id(hex_id, a.name, span):
                        continue  # written by someone else (a person, another tool)
                    ours.append({
                        "name": a.name, "value": a.feedback.value if a.feedback else None,
                        "label": (a.metadata or {}).get("label"), "rationale": a.rationale,
                        "source_type": a.source.source_type if a.source else None,
                        "source_id": a.source.source_id if a.source else None,
                        "span_id": span,
                    })
                end_ms = (info.request_time + info.execution_duration
                          if info.request_time is not None and info.execution_duration is not None
                          else None)
                out.append(_finalize.SampleRecord(info.trace_id, summary, tuple(ours), end_ms,
                                                  dict(info.tags)))
            if not token:
                return out

    def _write_final(self, run: Any, final: _finalize.TaskFinal,
                     records: Iterable[_finalize.SampleRecord], written: _Written) -> None:
        from mlflow.entities import Metric, RunTag

        # first: a transient failure here leaves the finalization unrecorded, so it is tried
        # again (a trace refused for good is only logged, see _trace_labels.py)
        self._labeller.label(run, ((r.trace_id, r.tags) for r in records))
        run_id = run.info.run_id
        ts = run.info.end_time or 0
        write_tables(self._mlflow(), run_id, {_mlflow_names.SAMPLES_TABLE: final.samples,
                                             _mlflow_names.SCORES_TABLE: final.scores})
        trace_ids = sorted(set(final.samples.get("trace_id", [])))
        for chunk in chunks(trace_ids, MAX_TRACE_LINKS):
            self._mlflow().link_traces_to_run(chunk, run_id)
        logged = [{"path": p, "type": "table"}
                  for p in (_mlflow_names.SAMPLES_TABLE, _mlflow_names.SCORES_TABLE, _mlflow_names.MODEL_USAGE_TABLE)]
        # The aggregates, then the per-sample step metrics this receiver has not written yet
        # (after the task span's results, which lead the run page); the marker last, alone: it
        # says what is written.
        stepped = self._stepped.setdefault(run_id, set())
        steps = [m for m in final.step_metrics if m not in stepped]
        log_batch(self._mlflow(), run_id,
                  [Metric(k, v, ts, final.n_samples) for k, v in sorted(final.aggregates.items())]
                  + [Metric(k, v, t, step) for k, v, t, step in steps])
        stepped.update(steps)
        written.sample_metrics += len(steps)
        log_batch(self._mlflow(), run_id,
                  tags=[RunTag(_mlflow_names.TAG_LOGGED_ARTIFACTS, json.dumps(logged)),
                        RunTag(_mlflow_names.TAG_FINALIZED, final.marker)])
        written.finalizations += 1


def covers(final: _finalize.TaskFinal, recorded: str) -> bool:
    """``final`` holds more than the finalization recorded on the run (``n/m/digest``)."""
    try:
        n, m, _ = recorded.split("/", 2)
        return (final.n_samples, final.n_assessments) > (int(n), int(m)) and \
            final.n_samples >= int(n) and final.n_assessments >= int(m)
    except ValueError:
        return True
