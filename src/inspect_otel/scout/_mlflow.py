"""Traces in MLflow (as the receiver stores them through MLflow's own OTLP ingest) -> traces.

Read with MLflow's client API, a page at a time. MLflow 3.x hands span attributes back decoded
from the JSON it stores them as, and strips one layer from text that is itself JSON: a JSON-valued
attribute may come back decoded (``gen_ai.input.messages`` as a list) and a text attribute that
looks like JSON may too; the mapping accepts both forms. Attributes MLflow adds (``mlflow.*``)
are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import semconv as sc
from ..config import default_experiment
from ._spans import Span, SpanEvent, TaskInfo, Trace, hex_id

PAGE_SIZE = 100  # traces per search request (MLflow's default page)


class MlflowSourceError(Exception):
    """The tracking server cannot be read (unreachable, no such experiment or run)."""


@dataclass(frozen=True)
class MlflowQuery:
    tracking_uri: str
    experiment: str | None = None  # name; None: MLFLOW_EXPERIMENT_NAME, else inspect_ai
    run_id: str | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _probe(uri: str) -> None:
    """Fail fast on an unreachable server: MLflow's client retries a refused connection with
    backoff for minutes before it gives up."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as ex:
        reason = type(ex).__name__
        if isinstance(ex, requests.ConnectionError):
            reason = "connection refused or host unreachable"
        elif isinstance(ex, requests.Timeout):
            reason = "no answer within 10 s"
        raise MlflowSourceError(f"cannot reach MLflow at {uri} ({reason})") from None


def _fail(query: MlflowQuery, ex: Exception) -> MlflowSourceError:
    message = str(getattr(ex, "message", None) or ex).splitlines()[0][:300]
    return MlflowSourceError(f"MLflow at {query.tracking_uri}: {message}")


def experiment_id(client: Any, query: MlflowQuery) -> str:
    name = query.experiment or default_experiment()
    try:
        experiment = client.get_experiment_by_name(name)
    except Exception as ex:  # noqa: BLE001 - MlflowException, connection errors, ...
        raise _fail(query, ex) from None
    if experiment is None:
        raise MlflowSourceError(f"MLflow at {query.tracking_uri}: no experiment named {name!r}"
                                f"{existing_experiments_hint(client)}")
    return str(experiment.experiment_id)


def existing_experiments_hint(client: Any, limit: int = 10) -> str:
    """``; existing: a, b, c`` (the experiments a user may have meant), or "" if none or
    unreadable."""
    try:
        names = [e.name for e in client.search_experiments(max_results=limit + 1)]
    except Exception:  # noqa: BLE001 - only a hint
        return ""
    if not names:
        return ""
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"; existing: {shown}{', ...' if len(names) > limit else ''} (--experiment NAME)"


def _run_ids(client: Any, query: MlflowQuery, experiment: str) -> list[str | None]:
    """The run and its nested runs: the receiver links sample traces to the task (child) runs of
    an Inspect run, so the parent run's id selects all of its tasks."""
    if query.run_id is None:
        return [None]
    try:
        client.get_run(query.run_id)
        children = client.search_runs(
            [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{query.run_id}'",
            max_results=1000)
    except Exception as ex:  # noqa: BLE001
        raise _fail(query, ex) from None
    return [query.run_id] + [r.info.run_id for r in children]


def _filter(query: MlflowQuery, extra: str | None = None) -> str | None:
    clauses = []
    if query.from_time is not None:
        clauses.append(f"trace.timestamp_ms >= {int(query.from_time.timestamp() * 1000)}")
    if query.to_time is not None:
        clauses.append(f"trace.timestamp_ms < {int(query.to_time.timestamp() * 1000)}")
    if extra:
        clauses.append(extra)
    return " AND ".join(clauses) or None


def _search(client: Any, query: MlflowQuery, experiment: str, run_id: str | None,
            filter_string: str | None, limit: int | None) -> Iterator[Any]:
    token = None
    seen = 0
    while True:
        size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - seen)
        if size <= 0:
            return
        try:
            page = client.search_traces(
                locations=[experiment], filter_string=filter_string, max_results=size,
                order_by=["timestamp_ms ASC"], page_token=token, run_id=run_id,
            )
        except Exception as ex:  # noqa: BLE001
            raise _fail(query, ex) from None
        for trace in page:
            seen += 1
            yield trace
        token = getattr(page, "token", None)
        if not token or not len(page):
            return


def _attributes(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if not k.startswith("mlflow.")}


def _span(trace_id: str, span: Any) -> Span | None:
    span_id = hex_id(span.span_id, 16)
    if span_id is None:
        return None
    status = span.status
    code = getattr(getattr(status, "status_code", None), "value", getattr(status, "status_code", ""))
    return Span(
        trace_id=trace_id, span_id=span_id, parent_id=hex_id(span.parent_id, 16),
        name=span.name, start_ns=int(span.start_time_ns or 0), end_ns=int(span.end_time_ns or 0),
        attributes=_attributes(span.attributes or {}),
        events=tuple(SpanEvent(e.name, int(e.timestamp or 0), dict(e.attributes or {}))
                     for e in span.events or []),
        error=(status.description or "") if str(code).upper().endswith("ERROR") else None,
    )


def trace_from_mlflow(trace: Any, source_uri: str | None) -> Trace | None:
    trace_id = hex_id(trace.info.trace_id, 32)
    if trace_id is None or trace.data is None:
        return None
    spans = tuple(s for s in (_span(trace_id, span) for span in trace.data.spans) if s)
    return Trace(trace_id, spans, (), source_uri) if spans else None


def _trace_url(query: MlflowQuery, experiment: str, trace_id: str) -> str:
    return (f"{query.tracking_uri.rstrip('/')}/#/experiments/{experiment}/traces"
            f"?selectedEvaluationId={trace_id}")


class MlflowTraces:
    """Sample traces of one experiment (optionally one run and a time window) in MLflow."""

    def __init__(self, query: MlflowQuery) -> None:
        self.query = query
        _probe(query.tracking_uri)
        self.client = _client(query.tracking_uri)
        self.experiment_id = experiment_id(self.client, query)

    def tasks(self) -> dict[str, TaskInfo]:
        """Task spans (in the run traces) by eval id, for the agent, plan and config of samples."""
        tasks: dict[str, TaskInfo] = {}
        runs = _filter(MlflowQuery(self.query.tracking_uri),
                       f"tags.`{sc.INSPECT_SPAN_KIND}` = '{sc.SPAN_KIND_RUN}'")
        for trace in _search(self.client, self.query, self.experiment_id, None, runs, None):
            for span in trace.data.spans if trace.data else ():
                attrs = span.attributes or {}
                if attrs.get(sc.INSPECT_SPAN_KIND) == sc.SPAN_KIND_TASK and attrs.get(sc.INSPECT_EVAL_ID):
                    eval_id = str(attrs[sc.INSPECT_EVAL_ID])
                    tasks[eval_id] = TaskInfo(eval_id, _attributes(attrs))
        return tasks

    def traces(self) -> Iterator[Trace]:
        """Traces in time order, fetched a page at a time as they are consumed; run traces are
        left out (they are context, see ``tasks``)."""
        seen: set[str] = set()
        for run_id in _run_ids(self.client, self.query, self.experiment_id):
            # MLflow has no "tag absent" filter: other producers' traces carry no inspect tags,
            # so run traces are skipped here rather than in the query.
            for raw in _search(self.client, self.query, self.experiment_id, run_id,
                               _filter(self.query), None):
                tags = getattr(raw.info, "tags", None) or {}
                if tags.get(sc.INSPECT_SPAN_KIND) == sc.SPAN_KIND_RUN:
                    continue
                trace_id = hex_id(raw.info.trace_id, 32)
                if trace_id is None or trace_id in seen:
                    continue
                seen.add(trace_id)
                trace = trace_from_mlflow(raw, _trace_url(self.query, self.experiment_id,
                                                          raw.info.trace_id))
                if trace is not None:
                    yield trace
